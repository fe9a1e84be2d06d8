-- Withdraw this node (clean shutdown): its users go offline where it was their last node.
withdraw(node)
redis.call('DEL', p .. 'node:' .. node)
redis.call('SREM', p .. 'nodes', node)
return 1
