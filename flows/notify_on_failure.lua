-- flows/notify_on_failure.lua: run a sync and post to a webhook (Slack,
-- Teams, PagerDuty...) when it fails, then fail the run.
--   CENSUS_API_KEY=secret-token:... NOTIFY_URL=https://hooks.example.com/... \
--     engine flows/notify_on_failure.lua SYNC_ID
local id = tonumber(arg[1] or 1)

local ok, err = pcall(census.sync, {sync_id = id})
if not ok then
  http.post(os.getenv("NOTIFY_URL"), json.encode({
    text = string.format("sync %d %s: %s", id, err.kind or "error", tostring(err)),
    link = err.result and err.result.url,
  }), {headers = {["Content-Type"] = "application/json"}})
  error(err, 0)
end
