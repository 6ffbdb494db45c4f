-- flows/elt.lua: a night of ingest -> transform -> activate. Two Fivetran
-- connections sync in parallel, then the dbt Cloud job builds the models,
-- then three Census syncs send them out (at most 1% failed records each).
-- Exits 0 only when every job really succeeded; flow.on_finish tells a
-- webhook (NOTIFY_URL) what failed.
--   FIVETRAN_API_KEY=... FIVETRAN_API_SECRET=... \
--   DBT_CLOUD_API_TOKEN=... DBT_CLOUD_ACCOUNT_ID=... DBT_CLOUD_BASE_URL=https://ab123.us1.dbt.com \
--   CENSUS_API_KEY=secret-token:... engine flows/elt.lua [--job=123]   (--help lists the parameters)
local p = flow.params({
  connections = {type = "list", default = {"decisive_bloom", "warm_paw"}, help = "Fivetran connection ids"},
  job = {type = "integer", default = 123, help = "the dbt Cloud job id"},
  syncs = {type = "list", of = "integer", default = {101, 102, 103}, help = "Census sync ids"},
}, "Fivetran connections, then a dbt Cloud job, then Census syncs.")

flow.on_finish(function(run)
  local url = os.getenv("NOTIFY_URL")
  if run.status == "ok" or not url then return end
  local lines = {"elt " .. run.status .. ": " .. (run.error or "")}
  for _, job in ipairs(run.jobs) do
    if not job.ok then lines[#lines + 1] = string.format("%s %s %s: %s", job.provider, job.resource, job.outcome,
      job.link or "") end
  end
  local res = http.post(url, json.encode({text = table.concat(lines, "\n")}),
    {headers = {["Content-Type"] = "application/json"}, timeout = 10})
  if res.status >= 300 then log.warn("the webhook answered HTTP %d", res.status) end
end)

flow.step("ingest", function()
  local syncs = {}
  for i, id in ipairs(p.connections) do
    syncs[i] = function() return fivetran.sync({connection_id = id}, {timeout = 3 * 3600}) end
  end
  return flow.parallel(syncs)
end)

flow.step("transform", function()
  return dbt_cloud.run({job_id = p.job}, {timeout = 2 * 3600})
end)

flow.step("activate", function()
  local syncs = {}
  for i, id in ipairs(p.syncs) do
    syncs[i] = function() return census.sync({sync_id = id}, {max_failed_ratio = 0.01}) end
  end
  return flow.parallel(syncs)
end)
