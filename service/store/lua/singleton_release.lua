-- Frees singleton claims whose jobs never came to be (their enqueue failed), each only if that job still holds it.
-- ARGV: per job: claim name ("<actor>:<key>"), job id
for i = 1, #ARGV, 2 do release_singleton(ARGV[i], ARGV[i + 1]) end
return 0
