-- The key lane of a key of a fair queue: the one it has while it is sent within the TTL (which starts again with each
-- send), else the next lane in the queue's turn, so new keys spread over the lanes.
-- KEYS: the key's lane, the queue's turn counter. ARGV: lanes, TTL ms. Returns the lane.
local lanes = tonumber(ARGV[1])
local lane = tonumber(redis.call('GET', KEYS[1]))
if lane == nil or lane >= lanes then
  lane = (redis.call('INCR', KEYS[2]) - 1) % lanes
end
redis.call('SET', KEYS[1], lane, 'PX', ARGV[2])
return lane
