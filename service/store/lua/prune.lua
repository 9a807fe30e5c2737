-- Enforces retention for one actor's finished jobs. ARGV: prefix, actor, now_ms, retention (4 numbers)
local actor, now_ms = ARGV[2], tonumber(ARGV[3])
local n = prune(actor, 'completed', now_ms, tonumber(ARGV[4]), tonumber(ARGV[5]))
n = n + prune(actor, 'failed', now_ms, tonumber(ARGV[6]), tonumber(ARGV[7]))
n = n + prune(actor, 'cancelled', now_ms, tonumber(ARGV[6]), tonumber(ARGV[7]))
return n
