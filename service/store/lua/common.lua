-- Shared by every job-store script: key building and retention pruning.
-- The key layout comes from service/store/keys.py as KEYS, declared above this file under the names of
-- keys.LUA_KEYS (JOB, INDEX, EVENTS, ...; service/store/scripts.py): no key name is spelled here.
local RANK = {queued = 0, delayed = 0, active = 1, completed = 2, failed = 2, cancelled = 2}

local function job_key(jid) return JOB .. jid end
local function history_key(jid) return HISTORY .. jid end
local function lease_key(jid) return LEASE .. jid end
local function finished_key(st, actor) return string.format(FINISHED, st, actor) end
-- The same choice as keys.index().
local function idx(actor, st)
  if actor and st then return string.format(INDEX_BY_ACTOR_STATE, actor, st) end
  if actor then return INDEX_BY_ACTOR .. actor end
  if st then return INDEX_BY_STATE .. st end
  return INDEX
end

local function unindex(jid, actor, st)
  redis.call('ZREM', idx(nil, nil), jid)
  redis.call('ZREM', idx(actor, nil), jid)
  redis.call('ZREM', idx(nil, st), jid)
  redis.call('ZREM', idx(actor, st), jid)
end

local function index(jid, actor, st, score)
  redis.call('ZADD', idx(nil, nil), score, jid)
  redis.call('ZADD', idx(actor, nil), score, jid)
  redis.call('ZADD', idx(nil, st), score, jid)
  redis.call('ZADD', idx(actor, st), score, jid)
end

-- Removes finished jobs past their age or beyond the count, at most 200 a call so no call blocks Redis for long.
-- By count, it waits until the set is a sixty-fourth over its limit (at most 156 jobs for 10 000; none under 64)
-- and then removes the excess at once: every removal is then one multi-member command per key instead of six
-- commands per job, which on a busy queue at its limit was a fifth of what a job cost Redis.
local function prune(actor, st, now_ms, max_age_s, max_count)
  local fin = finished_key(st, actor)
  -- The common case, nothing to prune, costs two O(1) reads.
  local size = redis.call('ZCARD', fin)
  local oldest = redis.call('ZRANGE', fin, 0, 0, 'WITHSCORES')
  local too_old = oldest[2] ~= nil and tonumber(oldest[2]) < now_ms - max_age_s * 1000
  if size <= max_count + math.floor(max_count / 64) and not too_old then return 0 end
  local doomed = {}
  if too_old then doomed = redis.call('ZRANGEBYSCORE', fin, '-inf', now_ms - max_age_s * 1000, 'LIMIT', 0, 200) end
  local left = size - #doomed
  if left > max_count then
    local extra = redis.call('ZRANGE', fin, #doomed, #doomed + math.min(left - max_count, 200) - 1)
    for _, jid in ipairs(extra) do doomed[#doomed + 1] = jid end
  end
  if #doomed == 0 then return 0 end
  local gone = {}
  for _, jid in ipairs(doomed) do
    gone[#gone + 1], gone[#gone + 2], gone[#gone + 3] = job_key(jid), history_key(jid), JOB_LOGS .. jid
    local its_key = redis.call('HGET', job_key(jid), 'key')
    if its_key then redis.call('ZREM', INDEX_BY_KEY .. its_key, jid) end
  end
  redis.call('DEL', unpack(gone))
  for _, key in ipairs({idx(nil, nil), idx(actor, nil), idx(nil, st), idx(actor, st), fin}) do
    redis.call('ZREM', key, unpack(doomed))
  end
  return #doomed
end

local function add_history(jid, entry)
  if redis.call('RPUSH', history_key(jid), cjson.encode(entry)) > 50 then
    redis.call('LTRIM', history_key(jid), -50, -1)
  end
end

-- One HSET for a whole table of fields.
local function hset_all(key, fields)
  local flat = {}
  for k, v in pairs(fields) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end

-- Every state change also lands in the lifecycle-event stream (`jobs:events`, read by GET /jobs/{id}/events, the
-- dashboard, `jobs events`, other services' consumer groups and the optional RabbitMQ export, service/ops/event_log.py)
-- and in the counters GET /metrics reads. Both are written by the same atomic script as the change itself, so no
-- state can change without its event and no event can outlive a change that did not happen. A script notes them in
-- a tally and writes the tally once at its end: a batch of changes then costs one write per counter instead of one
-- per change.
-- The stream's cap (EVENTS_STREAM_MAXLEN) is baked into the script text when service/store/job_store.py loads it: no read per
-- call. `MAXLEN ~` trims whole stream nodes, so trimming costs next to nothing.
local EVENTS_MAXLEN = tonumber('${EVENTS_STREAM_MAXLEN}')
-- Optional fields of an event, in this order, each only when it has a value (flat, small entries).
local EVENT_EXTRAS = {'run', 'retry', 'attempt', 'error', 'note'}
local RUN_BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

-- Which per-key gauge (service/ops/key_metrics.py) a job in each state counts in; finished jobs count in none.
local KEY_LOAD = {queued = KEY_WAITING, delayed = KEY_WAITING, active = KEY_RUNNING}

local function new_tally()
  local t = {events = {}, entered = {}, created = {}, runs = {}, run_sums = {}, throughput = {}, actors = {},
    key_load = {[KEY_WAITING] = {}, [KEY_RUNNING] = {}}}

  function t.count(counts, key, n) counts[key] = (counts[key] or 0) + n end

  -- A keyed job moved from one state to another (`from` nil: it was just created; `to` nil: its record is removed):
  -- its key's waiting and running counts follow. A job with no key, or one that stays waiting or running (delayed ->
  -- queued, a takeover), costs nothing; the rest is one HINCRBY per count that changed, at flush, summed over the
  -- batch.
  function t.move_key(jkey, queue, actor, from, to)
    if not jkey then return end
    local was, now = KEY_LOAD[from], KEY_LOAD[to]  -- nil: a final state, or no record
    if was == now then return end
    local field = (queue or 'default') .. '|' .. actor .. '|' .. jkey
    if was then t.count(t.key_load[was], field, -1) end
    if now then t.count(t.key_load[now], field, 1) end
  end

  function t.change(jid, actor, queue, st, now_iso, extra)
    queue = queue or 'default'
    local event = {'jobId', jid, 'actor', actor, 'queue', queue, 'state', st, 'at', now_iso}
    for _, k in ipairs(EVENT_EXTRAS) do
      local v = extra[k]
      -- cjson.null (a field being removed) and empty strings are no value.
      if (type(v) == 'string' and v ~= '') or type(v) == 'number' then
        event[#event + 1] = k
        event[#event + 1] = tostring(v)
      end
    end
    t.events[#t.events + 1] = event
    t.count(t.entered, queue .. '|' .. actor .. '|' .. st, 1)
  end

  -- How long one attempt ran, in fixed buckets (a Prometheus histogram kept in one hash: "<queue>|<actor>|<le>").
  function t.observe_run(actor, queue, seconds)
    local le = '+Inf'
    for _, bound in ipairs(RUN_BUCKETS) do
      if seconds <= bound then
        le = tostring(bound)
        break
      end
    end
    local label = (queue or 'default') .. '|' .. actor .. '|'
    t.count(t.runs, label .. le, 1)
    t.count(t.runs, label .. 'count', 1)
    t.count(t.run_sums, label .. 'sum', seconds)
  end

  local function hincr_all(key, counts)
    for field, n in pairs(counts) do redis.call('HINCRBY', key, field, n) end
  end

  function t.flush()
    -- The stream id Redis gives each entry is the event's id: increasing, unique, and a time (ms) as well. `seq`
    -- numbers the events with no gaps, so a group's lag can be counted after the cap has trimmed the stream (Redis
    -- then often answers nil: service/ops/event_log.py) and a reader can tell how many it missed.
    if #t.events > 0 then
      local seq = redis.call('INCRBY', EVENTS_SEQ, #t.events) - #t.events
      for i, event in ipairs(t.events) do
        event[#event + 1], event[#event + 2] = 'seq', seq + i
        redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', unpack(event))
      end
    end
    hincr_all(METRICS_ENTERED, t.entered)
    hincr_all(METRICS_CREATED, t.created)
    hincr_all(METRICS_RUNS, t.runs)
    for field, seconds in pairs(t.run_sums) do redis.call('HINCRBYFLOAT', METRICS_RUNS, field, seconds) end
    for key, n in pairs(t.throughput) do
      if redis.call('INCRBY', key, n) == n then redis.call('EXPIRE', key, 7200) end  -- set once, as the minute starts
    end
    for actor in pairs(t.actors) do redis.call('SADD', ACTORS, actor) end
    -- A field only while above 0: the hashes hold just the keys that have jobs waiting or running.
    for hash, counts in pairs(t.key_load) do
      for field, n in pairs(counts) do
        if n ~= 0 and redis.call('HINCRBY', hash, field, n) <= 0 then redis.call('HDEL', hash, field) end
      end
    end
  end

  return t
end

-- A singleton actor's key is claimed by one job at a time (service/domain/flow_control.py): SINGLETON .. name holds
-- "<job id>|<ms claimed>", name being "<actor>:<key>". Takes the claim for jid unless another job holds it and is
-- still live: its record is not final, or it has none yet but claimed it less than pending_ms ago (its sender is
-- writing it). A claim whose job is final, or missing past that, is stale and taken over, so no key is blocked for
-- ever. Returns the live holder's id, or false when jid holds the claim now (taken, or already its own). The record
-- of jid, if written already, keeps the claim's name, so the script that writes its final state frees it.
local function take_singleton(name, jid, pending_ms)
  local claim = SINGLETON .. name
  local held = redis.call('GET', claim)
  local holder, since
  if held then
    holder, since = string.match(held, '^(.*)|(%d+)$')
    if holder == jid then return false end
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if holder then
    local st = redis.call('HGET', job_key(holder), 'state')
    if (st and RANK[st] ~= 2) or (not st and now - tonumber(since) < pending_ms) then return holder end
  end
  redis.call('SET', claim, jid .. '|' .. now)
  if redis.call('EXISTS', job_key(jid)) == 1 then redis.call('HSET', job_key(jid), 'singleton', name) end
  return false
end

-- Frees the claim `name` (a record's `singleton`) as its job ends, if that job still holds it.
local function release_singleton(name, jid)
  if not name then return end
  local claim = SINGLETON .. name
  local held = redis.call('GET', claim)
  if held and string.sub(held, 1, #jid + 1) == jid .. '|' then redis.call('DEL', claim) end
end
