-- lua/metrics.lua: --metrics FILE, the run's end in the Prometheus text
-- exposition format, written atomically so node_exporter's textfile
-- collector never reads half a file. Every value is a gauge of the last
-- run; the last success survives failed runs by being read back from the
-- previous file (when it is a regular file).
local files = require "engine.c.files"
local rules = require "engine.c.rules"

local metrics = {}

-- A label value: printable (a NUL or control byte as \xHH), no secret,
-- then backslash, double quote and newline escaped.
local function label(v)
  local text = rules.redact(rules.printable(tostring(v)))
  return (text:gsub("[\\\"\n]", {["\\"] = "\\\\", ["\""] = "\\\"", ["\n"] = "\\n"}))
end

local function labels(t, order)
  local parts = {}
  for _, k in ipairs(order) do
    if t[k] ~= nil then parts[#parts + 1] = string.format('%s="%s"', k, label(t[k])) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function number(v)
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.3f", v)
end

-- A previous metrics file: a few KiB, about 1.5 MiB for 10,000 syncs.
local PREVIOUS_MAX = 64 * 1024 * 1024

-- engine_last_success_timestamp_seconds for this flow in the file at path.
-- Read back only from a regular file, without waiting: a FIFO or
-- /dev/stdout would block the run's end forever (or hand back our output).
local function last_success(path, flow_labels)
  local text = files.read_regular(path, PREVIOUS_MAX)
  if not text then return nil end
  local want = "engine_last_success_timestamp_seconds" .. flow_labels .. " "
  local found
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #want) == want then found = tonumber(line:sub(#want + 1)) end
  end
  return found
end

function metrics.text(summary, path)
  local flow = {flow = summary.flow or "(command line)"}
  local fl = labels(flow, {"flow"})
  local out = {}
  local function family(name, help, samples)
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " gauge"
    for _, s in ipairs(samples) do out[#out + 1] = name .. s[1] .. " " .. number(s[2]) end
  end
  local outcomes, order, records = {}, {}, {processed = 0, updated = 0, failed = 0, invalid = 0}
  local durations, seen = {}, {}
  for _, e in ipairs(summary.entries) do
    if e.kind == "sync" then
      if not outcomes[e.status] then
        outcomes[e.status] = 0
        order[#order + 1] = e.status
      end
      outcomes[e.status] = outcomes[e.status] + 1
      for k in pairs(records) do records[k] = records[k] + (math.tointeger(e["records_" .. k]) or 0) end
      if e.sync_id and e.duration then
        -- one series per sync: the last of its rows
        local key = e.sync_id .. "\0" .. e.name
        if not seen[key] then
          seen[key] = {}
          durations[#durations + 1] = seen[key]
        end
        local l = {flow = flow.flow, sync_id = e.sync_id, name = e.name, outcome = e.status}
        seen[key][1] = labels(l, {"flow", "sync_id", "name"})
        seen[key][2] = e.duration
      end
    end
  end
  local by_outcome = {}
  for _, status in ipairs(order) do
    by_outcome[#by_outcome + 1] = {labels({flow = flow.flow, outcome = status}, {"flow", "outcome"}), outcomes[status]}
  end
  family("engine_syncs", "Census syncs of the last run, by outcome.", by_outcome)
  local recs = {}
  for _, k in ipairs{"processed", "updated", "failed", "invalid"} do
    recs[#recs + 1] = {labels({flow = flow.flow, kind = k}, {"flow", "kind"}), records[k]}
  end
  family("engine_records", "Records of the last run's syncs, by kind (as Census reported them).", recs)
  family("engine_sync_duration_seconds", "How long each sync of the last run took.", durations)
  family("engine_run_duration_seconds", "How long the last run took.", {{fl, summary.duration}})
  family("engine_run_exit_code", "The last run's exit status (0: every sync succeeded).",
    {{fl, summary.exit_code}})
  family("engine_run_timestamp_seconds", "When the last run ended (Unix time).", {{fl, rules.wallclock()}})
  local success = summary.exit_code == 0 and rules.wallclock() or last_success(path, fl)
  if success then
    family("engine_last_success_timestamp_seconds", "When a run of this flow last succeeded (Unix time).",
      {{fl, success}})
  end
  return table.concat(out, "\n") .. "\n"
end

-- Returns true, or false after a one-line error.
function metrics.write(summary, path)
  local ok, err = files.write_file(path, metrics.text(summary, path))
  if not ok then
    io.stderr:write("engine: cannot write the metrics: ", err, "\n")
    return false
  end
  return true
end

return metrics
