-- Puts an `active` job whose worker died back to `queued`, same run and retry, so the copy RabbitMQ redelivers
-- moves it to `active` again under the usual order rules. Only if nothing changed since the caller looked
-- (same updatedAt) and no worker holds its lease: a live worker always holds one while the job is active.
-- ARGV: id, updatedAt seen, now_iso
local jid, seen, now_iso = ARGV[1], ARGV[2], ARGV[3]
local key = job_key(jid)
local cur = redis.call('HMGET', key, 'state', 'actor', 'createdMs', 'run', 'retries', 'updatedAt', 'queue', 'key')
if cur[1] ~= 'active' or cur[6] ~= seen then return 0 end
if redis.call('EXISTS', lease_key(jid)) == 1 then return 0 end
local actor, score = cur[2], tonumber(cur[3])
redis.call('ZREM', idx(nil, 'active'), jid)
redis.call('ZREM', idx(actor, 'active'), jid)
redis.call('ZADD', idx(nil, 'queued'), score, jid)
redis.call('ZADD', idx(actor, 'queued'), score, jid)
local note = 'worker lost while running; waiting for RabbitMQ to redeliver'
redis.call('HSET', key, 'state', 'queued', 'updatedAt', now_iso, 'lastError', note)
add_history(jid, {state = 'queued', at = now_iso, run = tonumber(cur[4]), retry = tonumber(cur[5]), note = note})
local later = new_tally()
later.move_key(cur[8], cur[7], actor, 'active', 'queued')
later.flush()
return 1
