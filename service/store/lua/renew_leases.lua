-- Extends a worker's leases, each only while it still holds the attempt's fencing token, and gives back the leases
-- of attempts it interrupted alive (a lost lease): one call for all of them.
-- ARGV: lease ms, number of leases to extend, then per lease: id, value ("<holder>/<token>"); then per lease
--       given back: id, value, token.
-- Returns the ids of the leases to extend that lapsed or that another attempt holds now: those are lost.
-- Giving back marks the attempt `surrendered`, so the takeover that follows is not counted as a restart of a worker
-- that died (transition.lua); when the takeover came first, its count (`lapsed`) is taken back.
-- A lease that is gone while the record knows fewer attempts than this one's token was set back by a failover (the
-- promoted replica had not received the "active" that took it): no other attempt can hold the job, so the lease is
-- taken again and the attempt runs on; its outcome is recorded as usual (transition.lua takes a token ahead).
local lease_ms, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local lost = {}
local i = 3

local function set_back(jid, value)
  local token = tonumber(string.match(value, '/(%d+)$'))
  local cur = redis.call('HMGET', job_key(jid), 'state', 'attempts')
  return token ~= nil and token > tonumber(cur[2] or '0') and not (cur[1] and RANK[cur[1]] == 2)
end

for _ = 1, n do
  local key = lease_key(ARGV[i])
  local held = redis.call('GET', key)
  if held == ARGV[i + 1] then
    redis.call('PEXPIRE', key, lease_ms)
  elseif not held and set_back(ARGV[i], ARGV[i + 1]) then
    redis.call('SET', key, ARGV[i + 1], 'PX', lease_ms)
  else
    lost[#lost + 1] = ARGV[i]
  end
  i = i + 2
end
while i + 2 <= #ARGV do
  local jid, value, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = job_key(jid)
  local cur = redis.call('HMGET', key, 'attempts', 'lapsed', 'restarts')
  if cur[1] == token then
    local lease = lease_key(jid)
    if redis.call('GET', lease) == value then redis.call('DEL', lease) end
    redis.call('HSET', key, 'surrendered', token)
  elseif cur[2] == token and tonumber(cur[3] or '0') > 0 then
    redis.call('HINCRBY', key, 'restarts', -1)
    redis.call('HDEL', key, 'lapsed')
  end
  i = i + 3
end
return lost
