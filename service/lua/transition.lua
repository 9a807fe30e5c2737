-- Moves a job to a new state unless that would go backwards; creates the record if asked to.
-- ARGV: prefix, id, state, run, retries, now_ms, now_iso, set_json, create_json, retention (4 numbers)
--       then, for "active", the lease holder and lease ms ('' and 0: none)
-- Returns {applied, state after, n}: for "active", n is how often this same attempt had started before (its worker
-- died mid-run), so a job that kills its worker every time can be stopped; for "running" (this attempt is already
-- running under a live lease: a redelivery after a broker blip), n is the ms left on that lease.
local jid, state = ARGV[2], ARGV[3]
local run, retries = tonumber(ARGV[4]), tonumber(ARGV[5])
local now_ms, now_iso = tonumber(ARGV[6]), ARGV[7]
local set = cjson.decode(ARGV[8])
local create = ARGV[9]
local keep_completed_s, keep_completed_n = tonumber(ARGV[10]), tonumber(ARGV[11])
local keep_failed_s, keep_failed_n = tonumber(ARGV[12]), tonumber(ARGV[13])
local holder, lease_ms = ARGV[14] or '', tonumber(ARGV[15] or '0')
local key = job_key(jid)
local lease_key = prefix .. 'lease:' .. jid

local cur = redis.call('HMGET', key, 'state', 'run', 'retries', 'actor', 'createdMs', 'queue', 'startedMs', 'startedAttempt')
local actor, score, cur_state, queue
if not cur[1] then
  if create == '' then return {0, 'missing'} end
  local fields = cjson.decode(create)
  fields['attempts'] = 0
  fields['progress'] = 0
  hset_all(key, fields)
  actor, queue = fields['actor'], fields['queue']
  score = tonumber(fields['createdMs'])
  redis.call('HINCRBY', prefix .. 'metrics:created', (queue or 'default') .. '|' .. actor, 1)
  redis.call('SADD', prefix .. 'actors', actor)
  redis.call('ZADD', idx(nil, nil), score, jid)
  redis.call('ZADD', idx(actor, nil), score, jid)
else
  cur_state, actor, score, queue = cur[1], cur[4], tonumber(cur[5]), cur[6]
  if RANK[cur_state] == 2 then return {0, cur_state} end
  local cur_run, cur_retries = tonumber(cur[2]), tonumber(cur[3])
  if run < cur_run then return {0, cur_state} end
  if run == cur_run then
    if retries < cur_retries then return {0, cur_state} end
    if retries == cur_retries and RANK[state] < RANK[cur_state] then return {0, cur_state} end
    if retries == cur_retries and state == 'active' and cur_state == 'active' and holder ~= '' then
      local left = redis.call('PTTL', lease_key)
      if left > 0 then return {0, 'running', left} end
    end
  end
  redis.call('ZREM', idx(nil, cur_state), jid)
  redis.call('ZREM', idx(actor, cur_state), jid)
end

-- The "all" and per-actor indexes never change after creation; only the state indexes move.
redis.call('ZADD', idx(nil, state), score, jid)
redis.call('ZADD', idx(actor, state), score, jid)
local updates = {state = state, run = run, retries = retries, updatedAt = now_iso}
for k, v in pairs(set) do
  if v == cjson.null then redis.call('HDEL', key, k) else updates[k] = v end
end
local entry = {state = state, at = now_iso, run = run, retry = retries}
local restarts = 0
if state == 'active' then
  entry['attempt'] = redis.call('HINCRBY', key, 'attempts', 1)
  updates['startedAt'] = now_iso
  updates['startedMs'] = now_ms
  local attempt_key = run .. ':' .. retries
  if cur[8] == attempt_key then
    restarts = redis.call('HINCRBY', key, 'restarts', 1)
  else
    updates['startedAttempt'], updates['restarts'] = attempt_key, 0
  end
  -- Taken in the same step as "active", so two deliveries of one attempt can never both start it.
  if holder ~= '' then redis.call('SET', lease_key, holder, 'PX', lease_ms) end
elseif cur_state == 'active' then
  redis.call('DEL', lease_key)
  if cur[7] then observe_run(actor, queue, math.max(0, now_ms - tonumber(cur[7])) / 1000) end
end
if set['lastError'] then entry['error'] = set['lastError'] end
if RANK[state] == 2 then
  updates['finishedAt'] = now_iso
  redis.call('ZADD', finished_key(state, actor), now_ms, jid)
  if set['failedReason'] then entry['error'] = set['failedReason'] end
  if state ~= 'cancelled' then
    -- Per-minute throughput for the dashboard; kept ~2 h so the last hour is always complete.
    local tkey = prefix .. 'throughput:' .. state .. ':' .. math.floor(now_ms / 60000)
    redis.call('INCR', tkey)
    redis.call('EXPIRE', tkey, 7200)
  end
end
hset_all(key, updates)
add_history(jid, entry)
if state ~= cur_state or state == 'active' then  -- queued again is no news; a new attempt is
  note_change(jid, actor, queue, state, now_iso, {run = run, retry = retries, attempt = entry['attempt'],
    error = entry['error']})
end
if RANK[state] == 2 then
  if state == 'completed' then
    prune(actor, state, now_ms, keep_completed_s, keep_completed_n)
  else
    prune(actor, state, now_ms, keep_failed_s, keep_failed_n)
  end
end
return {1, state, restarts}
