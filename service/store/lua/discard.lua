-- Removes the record of a job whose message never reached the broker, so nothing is half-written.
-- ARGV: id
local jid = ARGV[1]
local cur = redis.call('HMGET', job_key(jid), 'state', 'actor', 'attempts', 'key', 'queue')
if not cur[1] or tonumber(cur[3]) > 0 or RANK[cur[1]] ~= 0 then return 0 end
if cur[4] then
  redis.call('ZREM', INDEX_BY_KEY .. cur[4], jid)
  local later = new_tally()
  later.move_key(cur[4], cur[5], cur[2], cur[1], nil)
  later.flush()
end
redis.call('DEL', job_key(jid), history_key(jid))
unindex(jid, cur[2], cur[1])
return 1
