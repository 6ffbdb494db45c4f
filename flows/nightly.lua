-- flows/nightly.lua: the nightly job. Build the models (dbt, or any
-- command), then sync five Census syncs two at a time; when anything
-- failed, tell a webhook. Exits 0 only when every step and sync succeeded.
--   CENSUS_API_KEY=secret-token:... NOTIFY_URL=https://hooks.example.com/... \
--     engine flows/nightly.lua [--syncs=101,102] [--skip-dbt]   (--help lists them)
local p = flow.params({
  syncs = {type = "list", of = "integer", default = {101, 102, 103, 104, 105}, help = "Census sync ids"},
  skip_dbt = {type = "boolean", default = false, help = "sync without building the models"},
  dbt = {env = "DBT_COMMAND", default = "dbt run --target prod", help = "the build command"},
}, "Builds the models, then runs the Census syncs two at a time.")

flow.on_finish(function(run)
  local url = os.getenv("NOTIFY_URL")
  if run.status == "ok" or not url then return end
  local lines = {"nightly " .. run.status .. ": " .. (run.error or "")}
  for _, e in ipairs(run.entries) do
    if not e.ok then lines[#lines + 1] = string.format("%s %s %s", e.name, e.status, e.url or "") end
  end
  local res = http.post(url, json.encode({text = table.concat(lines, "\n")}),
    {headers = {["Content-Type"] = "application/json"}, timeout = 10})
  if res.status >= 300 then log.warn("the webhook answered HTTP %d", res.status) end
end)

if not p.skip_dbt then flow.step("dbt", flow.sh, p.dbt, {timeout = 3600}) end
flow.step("census", function()
  local jobs = {}
  for i, id in ipairs(p.syncs) do
    jobs[i] = function() return census.sync({sync_id = id}, {max_records_failed = 0}) end
  end
  return flow.parallel(jobs, {limit = 2})
end)
