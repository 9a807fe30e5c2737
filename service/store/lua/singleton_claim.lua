-- Claims a singleton actor's key for a job (take_singleton in common.lua), for each of a batch of jobs in turn.
-- ARGV: claim pending ms, then per job: claim name ("<actor>:<key>"), job id
-- Returns, per job, the id of the live job that holds the key, or '' when this job holds it now.
local pending_ms = tonumber(ARGV[1])
local holders = {}
for i = 2, #ARGV, 2 do
  holders[#holders + 1] = take_singleton(ARGV[i], ARGV[i + 1], pending_ms) or ''
end
return holders
