-- flows/census_threshold.lua: a run that "completed" but had records
-- rejected by the destination fails this flow when more than 1% (or more
-- than 100) failed; the engine logs the counts and the link to look at.
--   CENSUS_API_KEY=secret-token:... engine flows/census_threshold.lua SYNC_ID
census.sync({sync_id = tonumber(arg[1] or 1), label = "threshold check"},
  {max_records_failed = 100, max_failed_ratio = 0.01})
