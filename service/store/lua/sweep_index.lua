-- Removes index entries whose job record no longer exists. KEYS: the layout, then the index; ARGV: member...
local index_key = KEYS[#KEYS]
local removed = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', job_key(ARGV[i])) == 0 then
    removed = removed + redis.call('ZREM', index_key, ARGV[i])
  end
end
return removed
