-- Shared by every job-store script: key names and retention pruning.
local prefix = ARGV[1]
local RANK = {queued = 0, delayed = 0, active = 1, completed = 2, failed = 2, cancelled = 2}

local function job_key(jid) return prefix .. 'job:' .. jid end
local function history_key(jid) return prefix .. 'history:' .. jid end
local function finished_key(st, actor) return prefix .. 'finished:' .. st .. ':' .. actor end
local function idx(actor, st)
  local k = prefix .. 'index'
  if actor then k = k .. ':actor:' .. actor end
  if st then k = k .. ':state:' .. st end
  return k
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
local function prune(actor, st, now_ms, max_age_s, max_count)
  local fin = finished_key(st, actor)
  -- The common case, nothing to prune, costs two O(1) reads.
  local size = redis.call('ZCARD', fin)
  local oldest = redis.call('ZRANGE', fin, 0, 0, 'WITHSCORES')
  if size <= max_count and (oldest[2] == nil or tonumber(oldest[2]) >= now_ms - max_age_s * 1000) then return 0 end
  local doomed = redis.call('ZRANGEBYSCORE', fin, '-inf', now_ms - max_age_s * 1000, 'LIMIT', 0, 200)
  local left = redis.call('ZCARD', fin) - #doomed
  if left > max_count then
    local extra = redis.call('ZRANGE', fin, #doomed, #doomed + math.min(left - max_count, 200) - 1)
    for _, jid in ipairs(extra) do table.insert(doomed, jid) end
  end
  for _, jid in ipairs(doomed) do
    redis.call('DEL', job_key(jid), history_key(jid))
    unindex(jid, actor, st)
    redis.call('ZREM', fin, jid)
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

-- Every state change also lands in the events outbox (relayed to RabbitMQ's `jobs.events` by the workers, see
-- service/events.py) and in the counters GET /metrics reads. Both live here, in the same atomic script as the
-- change itself, so no state can change without its event and no event can outlive a change that did not happen.
local OUTBOX_MAX = 100000
local RUN_BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

local function note_change(jid, actor, queue, st, now_iso, extra)
  queue = queue or 'default'
  local event = {eventId = redis.call('INCR', prefix .. 'events:seq'), jobId = jid, actor = actor, queue = queue,
    state = st, at = now_iso}
  for k, v in pairs(extra) do event[k] = v end
  local outbox = prefix .. 'events:outbox'
  if redis.call('RPUSH', outbox, cjson.encode(event)) > OUTBOX_MAX then
    -- No worker has relayed events for a long while: keep Redis bounded, and count what was dropped.
    redis.call('LPOP', outbox)
    redis.call('INCR', prefix .. 'events:dropped')
  end
  redis.call('HINCRBY', prefix .. 'metrics:entered', queue .. '|' .. actor .. '|' .. st, 1)
end

-- How long one attempt ran, in fixed buckets (a Prometheus histogram kept in one hash: "<queue>|<actor>|<le>").
local function observe_run(actor, queue, seconds)
  local le = '+Inf'
  for _, bound in ipairs(RUN_BUCKETS) do
    if seconds <= bound then
      le = tostring(bound)
      break
    end
  end
  local key, label = prefix .. 'metrics:runs', (queue or 'default') .. '|' .. actor .. '|'
  redis.call('HINCRBY', key, label .. le, 1)
  redis.call('HINCRBY', key, label .. 'count', 1)
  redis.call('HINCRBYFLOAT', key, label .. 'sum', seconds)
end
