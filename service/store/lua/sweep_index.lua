-- Removes index entries whose job record no longer exists. ARGV: prefix, index key, member...
local removed = 0
for i = 3, #ARGV do
  if redis.call('EXISTS', job_key(ARGV[i])) == 0 then
    removed = removed + redis.call('ZREM', ARGV[2], ARGV[i])
  end
end
return removed
