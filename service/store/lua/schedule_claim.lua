-- Claims a tick for the first sender (SET NX) and, when it is to be published, notes it as unpublished until the
-- publish is confirmed: a sender that dies in between leaves the note, and another scheduler publishes the tick.
-- KEYS[1] tick key, KEYS[2] unpublished ticks (sorted set); ARGV: owner (job id or "skipped"), ttl s, note or ""
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  return 0
end
if ARGV[3] ~= '' then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[2], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[3])
end
return 1
