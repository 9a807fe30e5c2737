-- Enforces retention for one actor's finished jobs. ARGV: actor, now_ms, retention (4 numbers)
local actor, now_ms = ARGV[1], tonumber(ARGV[2])
local n = prune(actor, 'completed', now_ms, tonumber(ARGV[3]), tonumber(ARGV[4]))
n = n + prune(actor, 'failed', now_ms, tonumber(ARGV[5]), tonumber(ARGV[6]))
n = n + prune(actor, 'cancelled', now_ms, tonumber(ARGV[5]), tonumber(ARGV[6]))
return n
