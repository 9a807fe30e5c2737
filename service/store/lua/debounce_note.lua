-- Notes a send of a debounced key as its latest, unless a later one is noted already (sends are confirmed by
-- RabbitMQ in any order across processes). Later: a greater send time, or at the same µs a greater job id, so every
-- worker ranks two sends alike.
-- KEYS: the key's latest send. ARGV: send time (µs), job id, ms to keep it.
-- Returns 1 when noted, 0 when a later send is.
local current = redis.call('GET', KEYS[1])
local sent, jid = tonumber(ARGV[1]), ARGV[2]
if current then
  local at, its_id = string.match(current, '^(%d+):(.*)$')
  at = tonumber(at)
  if at and (at > sent or (at == sent and its_id >= jid)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. jid, 'PX', tonumber(ARGV[3]))
return 1
