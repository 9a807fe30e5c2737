-- Gives a tick back when its message could not be published, but only if this sender still holds it.
-- KEYS[1] tick key; ARGV[1] the job id the sender claimed it with
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
