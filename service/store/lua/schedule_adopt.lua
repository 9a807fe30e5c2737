-- Hands out the ticks claimed more than ARGV[1] ms ago and still unpublished (their sender died or hangs), stamping
-- them with the time now so that only one scheduler adopts each at a time. The Redis clock serves every scheduler.
-- KEYS[1] unpublished ticks (sorted set); ARGV: age in ms, most to hand out
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
for _, note in ipairs(stale) do
  redis.call('ZADD', KEYS[1], now_ms, note)
end
return stale
