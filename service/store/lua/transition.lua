-- Moves jobs to new states unless that would go backwards; creates a record where asked to.
-- One call carries a batch of transitions (service/store/script_batcher.py gathers them from many threads), taken in
-- order, each exactly as if it were alone. The bookkeeping every change also feeds (events stream, metrics,
-- throughput, retention) is summed over the batch and written once at the end: that is where a batch saves.
-- ARGV: retention (4 numbers), then per transition TRANSITION_WIDTH values:
--       id, state, run, retries, now_ms, now_iso, set_json, create_json, lease holder, lease ms ('' and 0: none),
--       token ('' for none)
-- The fencing token of an attempt is the record's `attempts` after its "active": every start, takeovers included,
-- gets a new one, and the lease's value carries it ("<holder>/<token>", see renew_leases.lua). A write given a token
-- is refused (fenced) when the record's token is a later one, so an attempt that was taken over can never record
-- its outcome; an earlier one means the record was set back by a failover, and the write is taken. For "active" the
-- token is that of the attempt that published the message (a retry): a retry published by an attempt that had been
-- taken over never starts.
-- Returns, per transition, {outcome, state after, n, token}. outcome is one of TransitionOutcome's values
-- (service/store/job_store.py): applied; behind (the job is already as far along); missing (no record, the state is
-- false); running (this attempt already runs under a live lease: a redelivery after a broker blip); fenced. For an
-- applied "active", n is how often this same attempt had started before (its worker died mid-run), so a job that
-- kills its worker every time can be stopped; for running, n is the ms left on that lease. token is the record's
-- fencing token afterwards.
local TRANSITION_WIDTH = 11
local keep_completed_s, keep_completed_n = tonumber(ARGV[1]), tonumber(ARGV[2])
local keep_failed_s, keep_failed_n = tonumber(ARGV[3]), tonumber(ARGV[4])

local later = new_tally()
local to_prune = {}  -- "<state>|<actor>" -> {actor, state}, pruned once after the whole batch
local last_ms = 0

local function transition(jid, state, run, retries, now_ms, now_iso, set, create, holder, lease_ms, token)
  local key = job_key(jid)
  local lease = lease_key(jid)
  local cur = redis.call('HMGET', key, 'state', 'run', 'retries', 'actor', 'createdMs', 'queue', 'startedMs',
    'startedAttempt', 'attempts', 'restarts', 'surrendered', 'key', 'singleton')
  local actor, score, cur_state, queue
  local claim = cur[13]  -- a singleton job's claim, freed as it ends
  local updates = {state = state, run = run, retries = retries, updatedAt = now_iso}
  local attempts, restarts_before = tonumber(cur[9] or '0'), tonumber(cur[10] or '0')
  local set_back = false  -- the record lost this attempt's "active" in a failover: its lease may be held still
  if not cur[1] then
    if create == '' then return {'missing', false, 0, 0} end
    local fields = cjson.decode(create)
    actor, queue = fields['actor'], fields['queue']
    score = tonumber(fields['createdMs'])
    fields['attempts'], fields['progress'] = 0, 0
    for k, v in pairs(fields) do
      if updates[k] == nil then updates[k] = v end
    end
    attempts = 0
    claim = fields['singleton']
    later.count(later.created, (queue or 'default') .. '|' .. actor, 1)
    later.actors[actor] = true
    redis.call('ZADD', idx(nil, nil), score, jid)
    redis.call('ZADD', idx(actor, nil), score, jid)
    if fields['key'] then redis.call('ZADD', INDEX_BY_KEY .. fields['key'], score, jid) end
  else
    cur_state, actor, score, queue = cur[1], cur[4], tonumber(cur[5]), cur[6]
    if RANK[cur_state] == 2 then return {'behind', cur_state, 0, attempts} end
    local cur_run, cur_retries = tonumber(cur[2]), tonumber(cur[3])
    if run < cur_run then return {'behind', cur_state, 0, attempts} end
    if run == cur_run then
      if retries < cur_retries then return {'behind', cur_state, 0, attempts} end
      if retries == cur_retries and RANK[state] < RANK[cur_state] then return {'behind', cur_state, 0, attempts} end
      if retries == cur_retries and state == 'active' and cur_state == 'active' and holder ~= '' then
        local left = redis.call('PTTL', lease)
        if left > 0 then return {'running', cur_state, left, attempts} end
      end
    end
    if token ~= nil then
      if token > attempts then
        -- The record is behind the attempt writing: a failover promoted a replica that had not received its
        -- "active" yet (replication is asynchronous). The attempt did start, so it counts; no later one can exist.
        attempts, set_back = token, true
        updates['attempts'] = token
      elseif state ~= 'active' then
        if token < attempts then return {'fenced', cur_state, 0, attempts} end
      elseif run == cur_run and retries > cur_retries and token < attempts then
        return {'fenced', cur_state, 0, attempts}
      end
    end
    redis.call('ZREM', idx(nil, cur_state), jid)
    redis.call('ZREM', idx(actor, cur_state), jid)
  end

  -- The "all" and per-actor indexes never change after creation; only the state indexes move.
  redis.call('ZADD', idx(nil, state), score, jid)
  redis.call('ZADD', idx(actor, state), score, jid)
  local removed = {}
  for k, v in pairs(set) do
    if v == cjson.null then
      removed[#removed + 1], updates[k] = k, nil
    else
      updates[k] = v
    end
  end
  if #removed > 0 then redis.call('HDEL', key, unpack(removed)) end
  local entry = {state = state, at = now_iso, run = run, retry = retries}
  local restarts = 0
  if state == 'active' then
    attempts = attempts + 1
    entry['attempt'], updates['attempts'] = attempts, attempts
    updates['startedAt'] = now_iso
    updates['startedMs'] = now_ms
    local attempt_key = run .. ':' .. retries
    if cur[8] == attempt_key then
      -- A takeover. It counts as a restart unless the holder gave the lease up alive (a lost lease, not a crash);
      -- `lapsed` lets a surrender that arrives after the takeover take the count back (renew_leases.lua).
      restarts = restarts_before
      if cur[11] ~= tostring(attempts - 1) then
        restarts = restarts + 1
        updates['lapsed'] = attempts - 1
      end
      updates['restarts'] = restarts
    else
      updates['startedAttempt'], updates['restarts'] = attempt_key, 0
    end
    -- Taken in the same step as "active", so two deliveries of one attempt can never both start it.
    if holder ~= '' then redis.call('SET', lease, holder .. '/' .. attempts, 'PX', lease_ms) end
  elseif cur_state == 'active' or set_back then
    redis.call('DEL', lease)
    if cur[7] and cur_state == 'active' then
      later.observe_run(actor, queue, math.max(0, now_ms - tonumber(cur[7])) / 1000)
    end
  end
  if set['lastError'] then entry['error'] = set['lastError'] end
  if RANK[state] == 2 then
    updates['finishedAt'] = now_iso
    redis.call('ZADD', finished_key(state, actor), now_ms, jid)
    if set['failedReason'] then entry['error'] = set['failedReason'] end
    if state ~= 'cancelled' then
      -- Per-minute throughput for the dashboard; kept ~2 h so the last hour is always complete.
      later.count(later.throughput, string.format(THROUGHPUT, state, math.floor(now_ms / 60000)), 1)
    end
    to_prune[state .. '|' .. actor] = {actor, state}
    last_ms = math.max(last_ms, now_ms)
    release_singleton(claim, jid)
  end
  later.move_key(cur[12] or updates['key'], queue, actor, cur_state, state)  -- a new record's key is in updates
  hset_all(key, updates)
  add_history(jid, entry)
  if state ~= cur_state or state == 'active' then  -- queued again is no news; a new attempt is
    later.change(jid, actor, queue, state, now_iso, {run = run, retry = retries, attempt = entry['attempt'],
      error = entry['error']})
  end
  return {'applied', state, restarts, attempts}
end

local results = {}
for i = 5, #ARGV, TRANSITION_WIDTH do
  local one = transition(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]),
    ARGV[i + 5], cjson.decode(ARGV[i + 6]), ARGV[i + 7], ARGV[i + 8], tonumber(ARGV[i + 9]), tonumber(ARGV[i + 10]))
  results[#results + 1] = one[1]
  results[#results + 1] = one[2]
  results[#results + 1] = one[3]
  results[#results + 1] = one[4]
end

later.flush()
for _, pair in pairs(to_prune) do
  if pair[2] == 'completed' then
    prune(pair[1], pair[2], last_ms, keep_completed_s, keep_completed_n)
  else
    prune(pair[1], pair[2], last_ms, keep_failed_s, keep_failed_n)
  end
end
return results
