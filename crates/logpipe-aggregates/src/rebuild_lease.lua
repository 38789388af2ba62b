#!lua
-- logpipe-aggregates: take the rebuild lease, or say who holds it. See src/redis_rebuild.rs.
--
-- KEYS[1]  {p}:rb, the lease
-- ARGV[1]  the new lease's value: '{id} {start ms} {holder}'
-- ARGV[2]  its TTL, milliseconds
--
-- Returns {'ok'}, or {'busy', value held, PTTL in ms ('-1': no expiry)}. One script, so the
-- holder reported is the one that made the SET fail.

if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'ok'}
end
return {'busy', redis.call('GET', KEYS[1]) or '', tostring(redis.call('PTTL', KEYS[1]))}
