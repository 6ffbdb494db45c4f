-- lua/metrics.lua: --metrics FILE, the run's end in the Prometheus text
-- exposition format, written atomically so node_exporter's textfile
-- collector never reads half a file. Every value is a gauge of the last
-- run, run-wide and per remote job (with its provider); the last success survives failed runs by
-- being read back from the previous file (when it is a regular file).
local files = require "engine.c.files"
local rules = require "engine.c.rules"

local metrics = {}

-- A label value: printable (a NUL or control byte as \xHH), no secret,
-- then backslash, double quote and newline escaped.
local function label(v)
  local text = rules.redact(rules.printable(tostring(v)))
  return (text:gsub("[\\\"\n]", {["\\"] = "\\\\", ["\""] = "\\\"", ["\n"] = "\\n"}))
end

-- A label set: the labels every series of the run has (rendered once),
-- then this series' own as name, value pairs; a nil value is left out.
local function labels(common, ...)
  local parts = {common}
  for i = 1, select("#", ...), 2 do
    local k, v = select(i, ...)
    if v ~= nil then parts[#parts + 1] = string.format('%s="%s"', k, label(v)) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function number(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v < 0.1 and v > 0 then return string.format("%.6f", v) end -- (a loop's hold: microseconds)
  return string.format("%.3f", v)
end

-- A previous metrics file: a few KiB, about 7 MiB for 10,000 syncs.
local PREVIOUS_MAX = 64 * 1024 * 1024

-- engine_last_success_timestamp_seconds with these labels in the file at
-- path. Read back only from a regular file, without waiting: a FIFO or
-- /dev/stdout would block the run's end forever (or hand back our output).
local function last_success(path, run_labels)
  local text = files.read_regular(path, PREVIOUS_MAX)
  if not text then return nil end
  local want = "engine_last_success_timestamp_seconds" .. run_labels .. " "
  local found
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #want) == want then found = tonumber(line:sub(#want + 1)) end
  end
  return found
end

local KINDS = {"processed", "updated", "failed", "invalid"}

-- extra: --metrics-label pairs {{name, value}, ...} (cli.c checked the
-- names), in every series after flow.
function metrics.text(summary, path, extra)
  local common = {string.format('flow="%s"', label(summary.flow or "(command line)"))}
  for _, l in ipairs(extra or {}) do common[#common + 1] = string.format('%s="%s"', l[1], label(l[2])) end
  common = table.concat(common, ",")
  local fl = labels(common)
  local out = {}
  local function family(name, help, samples)
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " gauge"
    for _, s in ipairs(samples) do out[#out + 1] = name .. s[1] .. " " .. number(s[2]) end
  end
  local outcomes, order, records = {}, {}, {processed = 0, updated = 0, failed = 0, invalid = 0}
  local jobs, seen = {}, {}
  for _, e in ipairs(summary.entries) do
    if e.provider then
      local key = e.provider .. "\0" .. e.status
      if not outcomes[key] then
        outcomes[key] = 0
        order[#order + 1] = {e.provider, e.status, key}
      end
      outcomes[key] = outcomes[key] + 1
      -- a result taken from the resumed run was counted by that run
      if e.detail ~= "recorded" then
        for k in pairs(records) do records[k] = records[k] + (math.tointeger(e["records_" .. k]) or 0) end
      end
      -- one series per job (provider, resource and name): the last of its
      -- rows, as a flow that runs a job twice reruns it
      local key2 = e.provider .. "\0" .. tostring(e.resource or "") .. "\0" .. e.name
      if not seen[key2] then
        jobs[#jobs + 1] = key2
      end
      seen[key2] = e
    end
  end
  local by_outcome = {}
  for _, o in ipairs(order) do
    by_outcome[#by_outcome + 1] = {labels(common, "provider", o[1], "outcome", o[2]), outcomes[o[3]]}
  end
  family("engine_syncs", "Remote jobs of the last run (syncs, job runs), by provider and outcome.", by_outcome)
  local recs = {}
  for _, k in ipairs(KINDS) do recs[#recs + 1] = {labels(common, "kind", k), records[k]} end
  family("engine_records", "Records of the last run's jobs, by kind (as their providers reported them).", recs)
  local durations, job_outcomes, job_records = {}, {}, {}
  for _, key in ipairs(jobs) do
    local e = seen[key]
    -- sync_id: the label these series had before there were several providers
    local function job_labels(...)
      return labels(common, "provider", e.provider, "resource", e.resource, "sync_id", e.sync_id, "name", e.name, ...)
    end
    if e.duration then durations[#durations + 1] = {job_labels(), e.duration} end
    job_outcomes[#job_outcomes + 1] = {job_labels("outcome", e.status), 1}
    for _, k in ipairs(KINDS) do
      local n = math.tointeger(e["records_" .. k])
      if n then job_records[#job_records + 1] = {job_labels("kind", k), n} end
    end
  end
  family("engine_sync_duration_seconds", "How long each remote job of the last run took.", durations)
  family("engine_sync_outcome", "How each remote job of the last run ended: 1, with the outcome as a label.",
    job_outcomes)
  family("engine_sync_records", "Records of each remote job of the last run, by kind (those reported).",
    job_records)
  family("engine_run_duration_seconds", "How long the last run took.", {{fl, summary.duration}})
  family("engine_run_exit_code", "The last run's exit status (0: every job succeeded).",
    {{fl, summary.exit_code}})
  local loop = summary.loop or {}
  family("engine_loop_longest_turn_seconds",
    "The longest turn of the event loop in the last run (timers and answers wait meanwhile).",
    {{fl, loop.longest_turn or 0}})
  family("engine_journal_longest_hold_seconds",
    "The longest time the journal's store held the event loop in one turn, in the last run.",
    {{fl, loop.longest_store_hold or 0}})
  local now = rules.wallclock()
  family("engine_run_timestamp_seconds", "When the last run ended (Unix time).", {{fl, now}})
  -- 0 until a run succeeded: a stale-success alert then fires on a flow
  -- that never succeeded, with no absent() rule beside it
  local success = summary.exit_code == 0 and now or last_success(path, fl) or 0
  family("engine_last_success_timestamp_seconds",
    "When a run of this flow with these labels last succeeded (Unix time; 0: never).", {{fl, success}})
  return table.concat(out, "\n") .. "\n"
end

-- extra: --metrics-label pairs, or nil. Returns true, or false after a
-- one-line error.
function metrics.write(summary, path, extra)
  local ok, err = files.write_file(path, metrics.text(summary, path, extra))
  if not ok then
    require("engine.c.log").final("cannot write the metrics: " .. err)
    return false
  end
  return true
end

return metrics
