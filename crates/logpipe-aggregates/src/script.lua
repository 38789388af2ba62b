#!lua
-- logpipe-aggregates: apply one BatchDelta atomically. Argument layout: see src/redis.rs.
--
-- KEYS[1..P]      watermark keys, one per covered partition
-- KEYS[P+1..]     keys the ops write (totals, minute hashes and zsets, fingerprint templates,
--                 the reconciliation requests)
-- ARGV[1]         P
-- ARGV[2]         minute TTL, seconds
-- ARGV[3]         fingerprint TTL, seconds
-- ARGV[4..3+2P]   expected watermark, new watermark, for each partition in KEYS order
-- ARGV[4+2P..]    ops, 4 arguments each: op, key index (into KEYS), field, amount
--                   h  HINCRBY key field amount
--                   z  ZINCRBY key amount field
--                   s  SET key field EX fingerprint-ttl      (amount unused)
--                   x  EXPIRE key minute-ttl                 (field, amount unused)
--                   q  HSET key field amount                 (a reconciliation request)
--
-- Returns {'ok'}, or {'conflict', i, actual, ...} with the 1-based partition index and the stored
-- watermark ('-1' if none) of every partition whose watermark differs from the expected one; in
-- that case nothing was written. Watermarks are compared and returned as decimal text, so 64-bit
-- offsets never pass through Lua's double-precision numbers.
--
-- The shebang line (Redis 7+) makes Redis refuse the whole script up front when it is out of
-- memory, instead of failing at its first write.

local partitions = tonumber(ARGV[1])
local minute_ttl = ARGV[2]
local fingerprint_ttl = ARGV[3]
local first_op = 4 + 2 * partitions

-- 1. Check every watermark; write nothing if any differs.
local conflicts = {}
for i = 1, partitions do
  local actual = redis.call('GET', KEYS[i]) or '-1'
  if actual ~= ARGV[2 + 2 * i] then
    table.insert(conflicts, tostring(i))
    table.insert(conflicts, actual)
  end
end
if #conflicts > 0 then
  table.insert(conflicts, 1, 'conflict')
  return conflicts
end

-- 2. Validate the ops before the first write, so a malformed call writes nothing.
if (#ARGV - first_op + 1) % 4 ~= 0 then
  return redis.error_reply('ERR logpipe apply: ops are not groups of 4 arguments')
end
for i = first_op, #ARGV, 4 do
  local op = ARGV[i]
  if op ~= 'h' and op ~= 'z' and op ~= 's' and op ~= 'x' and op ~= 'q' then
    return redis.error_reply('ERR logpipe apply: unknown op ' .. op)
  end
  if KEYS[tonumber(ARGV[i + 1])] == nil then
    return redis.error_reply('ERR logpipe apply: key index out of range ' .. ARGV[i + 1])
  end
end

-- 3. Move the watermarks first, then the counters. If a write fails half-way (WRONGTYPE from a
-- foreign key under our prefix), the batch is undercounted, never counted twice on retry.
for i = 1, partitions do
  redis.call('SET', KEYS[i], ARGV[3 + 2 * i])
end
for i = first_op, #ARGV, 4 do
  local op, key, field, amount = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'h' then
    redis.call('HINCRBY', key, field, amount)
  elseif op == 'z' then
    redis.call('ZINCRBY', key, amount, field)
  elseif op == 's' then
    redis.call('SET', key, field, 'EX', fingerprint_ttl)
  elseif op == 'q' then
    redis.call('HSET', key, field, amount)
  else
    redis.call('EXPIRE', key, minute_ttl)
  end
end
return {'ok'}
