-- Records a schedule's tick, run or skip, keeping the newest: a late writer never moves a field backwards.
-- KEYS[1] schedule hash; ARGV: kind ("run" | "skipped"), tick ms, tick ISO, job id (run) or count (skipped)
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
return 1
