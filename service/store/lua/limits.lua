-- Limits shared by every worker (service/domain/limits.py), one sorted set per limit and name:
-- concurrency: the running jobs' slots, scored by when each lapses (its job's lease: renewed with it);
-- rate: the starts of the sliding window, scored by when each started.
-- ARGV[1] is the operation:
-- take    KEYS: each limit's set. ARGV: 'take', member, then per key: kind ('c' or 'r'), count, ms (a slot's life, or
--         the window). Takes every limit or none. Returns 0 when taken; else per key 0 (free), -1 (no slot free) or
--         the ms until the window has room again.
-- renew   KEYS: the sets of slots held. ARGV: 'renew', ms, then per key: member. Extends each slot still held.
-- release KEYS: the sets of slots held. ARGV: 'release', then per key: member.
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if op == 'take' then
  local member, waits, blocked = ARGV[2], {}, false
  for i = 1, #KEYS do
    local kind, count, ms = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
    local wait = 0
    if kind == 'c' then
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
      if redis.call('ZCARD', KEYS[i]) >= count then wait = -1 end
    else
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - ms)
      local held = redis.call('ZCARD', KEYS[i])
      if held >= count then
        -- room again once the start that leaves `count - 1` after it is out of the window
        local start = redis.call('ZRANGE', KEYS[i], held - count, held - count, 'WITHSCORES')
        wait = math.max(tonumber(start[2]) + ms - now + 1, 1)
      end
    end
    waits[i] = wait
    if wait ~= 0 then blocked = true end
  end
  if blocked then return waits end
  for i = 1, #KEYS do
    local kind, ms = ARGV[3 * i], tonumber(ARGV[3 * i + 2])
    if kind == 'c' then
      redis.call('ZADD', KEYS[i], now + ms, member)
      redis.call('PEXPIRE', KEYS[i], ms * 2)
    else
      redis.call('ZADD', KEYS[i], now, member)
      redis.call('PEXPIRE', KEYS[i], ms)
    end
  end
  return 0
elseif op == 'renew' then
  local ms = tonumber(ARGV[2])
  for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], 'XX', now + ms, ARGV[i + 2])  -- XX: a slot that lapsed meanwhile is not made again
    redis.call('PEXPIRE', KEYS[i], ms * 2)
  end
  return 0
elseif op == 'release' then
  for i = 1, #KEYS do
    redis.call('ZREM', KEYS[i], ARGV[i + 1])
  end
  return 0
end
return redis.error_reply('limits.lua: unknown operation ' .. tostring(op))
