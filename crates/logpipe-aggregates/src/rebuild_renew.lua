#!lua
-- logpipe-aggregates: extend the rebuild lease if this rebuild still holds it (compare, then
-- PEXPIRE). See src/redis_rebuild.rs.
--
-- KEYS[1]  {p}:rb, the lease
-- ARGV[1]  the lease's value
-- ARGV[2]  its TTL, milliseconds
--
-- Returns 1 if renewed, 0 if the key is gone or holds another lease.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
