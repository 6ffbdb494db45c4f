-- flows/nightly.lua: the nightly job. Build the models (dbt, or any
-- command), then sync five Census syncs two at a time, then tell a webhook
-- when anything failed. Exits 0 only when every step and sync succeeded.
--   CENSUS_API_KEY=secret-token:... NOTIFY_URL=https://hooks.example.com/... \
--     engine flows/nightly.lua
local dbt = os.getenv("DBT_COMMAND") or "dbt run --target prod"
local syncs = {101, 102, 103, 104, 105}

local function notify(err)
  local url = os.getenv("NOTIFY_URL")
  if not url then return end
  local ok, res = pcall(http.post, url, json.encode({text = "nightly failed: " .. tostring(err)}),
    {headers = {["Content-Type"] = "application/json"}, timeout = 10})
  if not ok or res.status >= 300 then log.warn("could not notify %s", url) end
end

local ok, err = pcall(function()
  flow.step("dbt", flow.sh, dbt, {timeout = 3600})
  flow.step("census", function()
    local jobs = {}
    for i, id in ipairs(syncs) do
      jobs[i] = function() return census.sync({sync_id = id}, {max_records_failed = 0}) end
    end
    return flow.parallel(jobs, {limit = 2})
  end)
end)
if not ok then
  notify(err)
  error(err, 0)
end
