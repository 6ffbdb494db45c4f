-- flows/census_chain.lua: sync B only after sync A succeeded.
--   CENSUS_API_KEY=secret-token:... engine flows/census_chain.lua A_ID B_ID
local a, b = tonumber(arg[1] or 1), tonumber(arg[2] or 2)
local opts = {timeout = 3600}

census.sync({sync_id = a}, opts)   -- raises if A fails: B never starts
census.sync({sync_id = b}, opts)
log.info("syncs %d then %d completed", a, b)
