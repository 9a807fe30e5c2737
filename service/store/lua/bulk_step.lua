-- One step of a bulk run (service/store/bulk_store.py), taken only while the caller still holds the run's lease: a
-- process that lost it (stalled past it, or cut off from Redis, and taken over since) can never write over the
-- process that took the run over. Every step renews the lease and keeps the run's keys a day past its last write.
-- KEYS: lease, run (hash), intents (hash), handled (hash), ids (list), running runs (sorted set)
-- ARGV: token, lease ms, keep s, now (ISO), step, then the step's own:
--   begin    job id, run seen, ...          the jobs of the batch about to be acted on (their intents)
--   commit   jobs, acted, skipped           a batch is done: the cursor moves on, its intents go
--   handled  job id, 'acted' | 'skipped'    one job is done (requeue-dead): counted once, however often it is told
--   finish   state, error, run id           the run is over: its lease is given back, it leaves the running set
--   renew                                  nothing but the lease
-- Returns 1, or 0 when the lease is not the caller's (nothing written).
local lease, run, intents, handled, ids, running = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local token, lease_ms, keep_s, now_iso, step = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
if redis.call('GET', lease) ~= token then return 0 end
if step == 'begin' then
  if #ARGV > 5 then redis.call('HSET', intents, unpack(ARGV, 6)) end
elseif step == 'commit' then
  redis.call('HINCRBY', run, 'done', tonumber(ARGV[6]))
  redis.call('HINCRBY', run, 'acted', tonumber(ARGV[7]))
  redis.call('HINCRBY', run, 'skipped', tonumber(ARGV[8]))
  redis.call('DEL', intents)
elseif step == 'handled' then
  if redis.call('HSETNX', handled, ARGV[6], ARGV[7]) == 1 then
    redis.call('HINCRBY', run, 'done', 1)
    redis.call('HINCRBY', run, ARGV[7], 1)
  end
elseif step == 'finish' then
  redis.call('HSET', run, 'state', ARGV[6], 'error', ARGV[7], 'finishedAt', now_iso, 'updatedAt', now_iso)
  redis.call('ZREM', running, ARGV[8])
  redis.call('DEL', lease, intents)
  for _, key in ipairs({run, handled, ids}) do redis.call('EXPIRE', key, keep_s) end
  return 1
end
redis.call('HSET', run, 'updatedAt', now_iso)
redis.call('PEXPIRE', lease, lease_ms)
for _, key in ipairs({run, intents, handled, ids}) do redis.call('EXPIRE', key, keep_s) end
return 1
