-- A user has a socket in a channel on this node.
-- ARGV[6..]: channel, user id, user JSON, exclude connection id.
pr_add(ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return 1
