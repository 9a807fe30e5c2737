-- Cancels a job that has not started, or asks a running one to stop.
-- ARGV: id, now_ms, now_iso, retention (failed seconds, failed count), waiting_only ('1': leave active jobs), reason
-- Returns what CancelOutcome (service/store/job_store.py) names.
local jid, now_ms, now_iso = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local key = job_key(jid)
local cur = redis.call('HMGET', key, 'state', 'actor', 'createdMs', 'run', 'retries', 'queue', 'key', 'singleton')
local st, actor = cur[1], cur[2]
if not st then return 'missing' end
if RANK[st] == 2 then return 'already ' .. st end
if st == 'active' then
  if ARGV[6] == '1' then return 'active' end
  redis.call('HSET', key, 'cancelRequested', 1)
  return 'cancelling'
end
unindex(jid, actor, st)
index(jid, actor, 'cancelled', tonumber(cur[3]))
local reason = (ARGV[7] and ARGV[7] ~= '') and ARGV[7] or 'cancelled'
redis.call('HSET', key, 'state', 'cancelled', 'finishedAt', now_iso, 'updatedAt', now_iso, 'failedReason', reason)
redis.call('ZADD', finished_key('cancelled', actor), now_ms, jid)
release_singleton(cur[8], jid)
add_history(jid, {state = 'cancelled', at = now_iso, run = tonumber(cur[4]), retry = tonumber(cur[5])})
local later = new_tally()
later.change(jid, actor, cur[6], 'cancelled', now_iso, {run = tonumber(cur[4]), retry = tonumber(cur[5]), error = reason})
later.move_key(cur[7], cur[6], actor, st, 'cancelled')
later.flush()
prune(actor, 'cancelled', now_ms, tonumber(ARGV[4]), tonumber(ARGV[5]))
return 'cancelled'
