-- Notes sends of debounced keys, each as its key's latest unless a later one is noted already (sends are confirmed
-- by RabbitMQ in any order across processes). Later: a greater send time, or at the same µs a greater job id, so
-- every worker ranks two sends alike.
-- KEYS: each send's key's latest send. ARGV: ms to keep them, then per send: send time (µs), job id.
-- Returns how many were noted.
local keep_ms, noted = tonumber(ARGV[1]), 0
for i = 1, #KEYS do
  local sent, jid = tonumber(ARGV[2 * i]), ARGV[2 * i + 1]
  local current = redis.call('GET', KEYS[i])
  local later = false
  if current then
    local at, its_id = string.match(current, '^(%d+):(.*)$')
    at = tonumber(at)
    later = at ~= nil and (at > sent or (at == sent and its_id >= jid))
  end
  if not later then
    redis.call('SET', KEYS[i], ARGV[2 * i] .. ':' .. jid, 'PX', keep_ms)
    noted = noted + 1
  end
end
return noted
