-- flows/census_threshold.lua: a run that "completed" but had records
-- rejected by the destination fails this flow when more than 1% (or more
-- than 100) failed, and says where to look.
--   CENSUS_API_KEY=secret-token:... engine flows/census_threshold.lua SYNC_ID
local id = tonumber(arg[1] or 1)

local ok, err = pcall(census.sync, {sync_id = id},
  {max_records_failed = 100, max_failed_ratio = 0.01})
if not ok then
  if err.kind == "threshold" then
    log.error("sync %d rejected %d of %d records: see %s", id,
      err.result.records_failed, err.result.records_processed, err.result.url)
  end
  error(err, 0)
end
