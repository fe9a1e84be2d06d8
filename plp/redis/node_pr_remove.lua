-- A user has no socket left in a channel on this node.
-- ARGV[6..]: channel, user id, '1' to announce.
pr_remove(node, ARGV[6], ARGV[7], ARGV[8] == '1')
return 1
