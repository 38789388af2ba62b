#!lua
-- logpipe-aggregates: add one batch of a rebuild's correction atomically, only while the rebuild
-- holds its lease. Argument layout: see src/redis_rebuild.rs.
--
-- KEYS[1]     {p}:rb, the lease
-- KEYS[2]     {p}:totals
-- KEYS[3..]   keys the ops write (minute hashes and zsets, fingerprint templates)
-- ARGV[1]     the lease value of this rebuild
-- ARGV[2]     minute TTL, seconds
-- ARGV[3]     fingerprint TTL, seconds
-- ARGV[4..]   ops, 4 arguments each: op, key index (into KEYS), field, amount
--               h  HINCRBY key field amount; the field is removed if it ends <= 0
--               z  ZINCRBY key amount field; the member is removed if it ends <= 0
--               t  HINCRBY key field amount, never below 0 (a level's all-time total)
--               x  EXPIRE key minute-ttl, only if the key exists without a TTL (field, amount unused)
--               s  SET key field NX EX fingerprint-ttl                          (amount unused)
-- After the t ops, the 'all' field of KEYS[2] changes by the sum of what they added (never
-- below 0).
--
-- Returns {1, cells, clamped, added by each t op in order...}, or {0} when the lease key does not
-- hold ARGV[1] (expired, taken over, or flushed with the data): then nothing was written. A cell
-- or total that would have gone below 0 is counted in `clamped`. Amounts are passed on to Redis
-- as the decimal text they arrived as, so large counts never pass through Lua's doubles on their
-- way in; what comes back is exact up to 2^53.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local minute_ttl = ARGV[2]
local fingerprint_ttl = ARGV[3]

-- Validate the ops before the first write, so a malformed call writes nothing.
if (#ARGV - 3) % 4 ~= 0 then
  return redis.error_reply('ERR logpipe correct: ops are not groups of 4 arguments')
end
for i = 4, #ARGV, 4 do
  local op = ARGV[i]
  if op ~= 'h' and op ~= 'z' and op ~= 't' and op ~= 'x' and op ~= 's' then
    return redis.error_reply('ERR logpipe correct: unknown op ' .. op)
  end
  if KEYS[tonumber(ARGV[i + 1])] == nil then
    return redis.error_reply('ERR logpipe correct: key index out of range ' .. ARGV[i + 1])
  end
end

local cells, clamped = 0, 0
local added = {}
local added_sum = 0
for i = 4, #ARGV, 4 do
  local op, key, field, amount = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'h' then
    cells = cells + 1
    local now = redis.call('HINCRBY', key, field, amount)
    if now <= 0 then
      redis.call('HDEL', key, field)
      if now < 0 then clamped = clamped + 1 end
    end
  elseif op == 'z' then
    cells = cells + 1
    local now = tonumber(redis.call('ZINCRBY', key, amount, field))
    if now <= 0 then
      redis.call('ZREM', key, field)
      if now < 0 then clamped = clamped + 1 end
    end
  elseif op == 't' then
    local stored = redis.call('HGET', key, field)
    local old = tonumber(stored or '0')
    if old + tonumber(amount) < 0 then
      clamped = clamped + 1
      if stored then redis.call('HDEL', key, field) end
      table.insert(added, -old)
      added_sum = added_sum - old
    else
      if redis.call('HINCRBY', key, field, amount) == 0 then
        redis.call('HDEL', key, field)
      end
      table.insert(added, tonumber(amount))
      added_sum = added_sum + tonumber(amount)
    end
  elseif op == 'x' then
    if redis.call('TTL', key) == -1 then
      redis.call('EXPIRE', key, minute_ttl)
    end
  else
    redis.call('SET', key, field, 'NX', 'EX', fingerprint_ttl)
  end
end

if #added > 0 and added_sum ~= 0 then
  local all = tonumber(redis.call('HGET', KEYS[2], 'all') or '0')
  if all + added_sum < 0 then
    clamped = clamped + 1
    redis.call('HDEL', KEYS[2], 'all')
  elseif redis.call('HINCRBY', KEYS[2], 'all', string.format('%d', added_sum)) == 0 then
    redis.call('HDEL', KEYS[2], 'all')
  end
end

local reply = {1, cells, clamped}
for _, amount in ipairs(added) do
  table.insert(reply, amount)
end
return reply
