-- Records a schedule's tick, run or skip, keeping the newest: a late writer never moves a field backwards. In the
-- same step, a published (or skipped) tick leaves the set of unpublished ticks.
-- KEYS[1] schedule hash, KEYS[2] unpublished ticks (sorted set)
-- ARGV: kind ("run" | "skipped"), tick ms, tick ISO, job id (run) or count (skipped), the tick's note or ""
local key, kind, tick_ms, tick_iso = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]

local function newer(field)
  return tick_ms >= tonumber(redis.call('HGET', key, field) or '-1')
end

if newer('lastTickMs') then
  redis.call('HSET', key, 'lastTickMs', tick_ms, 'lastTickAt', tick_iso)
end
if kind == 'run' then
  if newer('lastRunMs') then
    redis.call('HSET', key, 'lastRunMs', tick_ms, 'lastRunAt', tick_iso, 'lastJobId', ARGV[4])
  end
else
  redis.call('HINCRBY', key, 'skippedTicks', tonumber(ARGV[4]))
  if newer('lastSkippedMs') then
    redis.call('HSET', key, 'lastSkippedMs', tick_ms, 'lastSkippedAt', tick_iso)
  end
end
if ARGV[5] ~= nil and ARGV[5] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[5])
end
return 1
