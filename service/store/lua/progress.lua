-- Records progress of an active job and tells the caller whether cancellation was asked for.
-- ARGV: id, percent, message (empty: keep the old one)
local key = job_key(ARGV[1])
local st = redis.call('HGET', key, 'state')
if st ~= 'active' then return {0, st or 'missing', 0} end
redis.call('HSET', key, 'progress', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', key, 'progressMessage', ARGV[3]) end
return {1, st, tonumber(redis.call('HGET', key, 'cancelRequested') or '0')}
