-- flows/census_sync.lua: trigger one Census sync and wait for it.
--   CENSUS_TRIGGER_URL='https://bearer:secret-token:...@app.getcensus.com/api/v1/syncs/42/trigger' \
--     engine flows/census_sync.lua
-- Exits 0 only when the run completed.
local url = os.getenv("CENSUS_TRIGGER_URL")
local result = census.sync(url, {timeout = 2 * 3600})  -- polls every 60 s (CENSUS_POLL)
log.info("sync %d: %d records updated", result.sync_id, result.records_updated or 0)
