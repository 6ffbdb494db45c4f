-- flows/notify_on_failure.lua: run a sync; when the run fails, post its failed syncs and their
-- links to a webhook (Slack, Teams...). CENSUS_API_KEY=... NOTIFY_URL=https://hooks.example.com/...
--   engine flows/notify_on_failure.lua SYNC_ID
flow.on_finish(function(run)
  if run.status == "ok" then return end
  local lines = {"engine run " .. run.status .. ": " .. (run.error or "")}
  for _, e in ipairs(run.entries) do
    if not e.ok then lines[#lines + 1] = string.format("%s %s: %s", e.name, e.status, e.url or "") end
  end
  http.post(os.getenv("NOTIFY_URL"), json.encode{text = table.concat(lines, "\n")})
end)
census.sync{sync_id = tonumber(arg[1] or 1)}
