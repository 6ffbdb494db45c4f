-- flows/census_retry.lua: re-run a whole sync when its run fails or is
-- skipped, up to 3 times, waiting 1 min then 2 min between attempts.
--   CENSUS_API_KEY=secret-token:... engine flows/census_retry.lua SYNC_ID
local id = tonumber(arg[1] or 1)

local result = flow.retry({
  attempts = 3, delay = tonumber(os.getenv("RETRY_DELAY") or 60), backoff = 2,
  -- auth errors or an unknown sync will not heal: give up at once
  retry_if = function(err) return err.kind == "failed" or err.kind == "skipped" end,
}, census.sync, {sync_id = id})

log.info("sync %d completed (run %d)", id, result.sync_run_id)
