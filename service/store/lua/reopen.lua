-- Puts a failed or cancelled job back to queued under a new run, keeping its history.
-- ARGV: id, now_iso, singleton claim ("<actor>:<key>", '' for none), claim pending ms
-- A singleton job takes its key's claim again first: refused ({0, 'singleton', holder}) while another job holds it.
local jid, now_iso, claim = ARGV[1], ARGV[2], ARGV[3]
local key = job_key(jid)
local cur = redis.call('HMGET', key, 'state', 'actor', 'createdMs', 'run', 'queue', 'key')
local st, actor = cur[1], cur[2]
if not st then return {0, 'missing'} end
if st ~= 'failed' and st ~= 'cancelled' then return {0, st} end
if claim and claim ~= '' then
  local holder = take_singleton(claim, jid, tonumber(ARGV[4]))
  if holder then return {0, 'singleton', holder} end
end
local new_run = tonumber(cur[4]) + 1
unindex(jid, actor, st)
redis.call('ZREM', finished_key(st, actor), jid)
index(jid, actor, 'queued', tonumber(cur[3]))
redis.call('HSET', key, 'state', 'queued', 'run', new_run, 'retries', 0, 'progress', 0, 'updatedAt', now_iso)
redis.call('HDEL', key, 'failedReason', 'traceback', 'result', 'finishedAt', 'startedAt', 'cancelRequested',
  'progressMessage', 'lastError')
add_history(jid, {state = 'queued', at = now_iso, run = new_run, retry = 0, note = 'retried from ' .. st})
local later = new_tally()
later.change(jid, actor, cur[5], 'queued', now_iso, {run = new_run, retry = 0, note = 'retried from ' .. st})
later.move_key(cur[6], cur[5], actor, st, 'queued')
later.flush()
return {1, tostring(new_run)}
