#!lua
-- logpipe-aggregates: give the rebuild lease up if this rebuild still holds it (compare, then
-- DEL), never someone else's. See src/redis_rebuild.rs.
--
-- KEYS[1]  {p}:rb, the lease
-- ARGV[1]  the lease's value
--
-- Returns 1 if deleted, 0 if the key is gone or holds another lease.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
