-- lua/report.lua: what a run did, for people and tools. Every step
-- (flow.step) and every Census sync wait is an entry: name, outcome,
-- duration, record counts, link. The live progress view and the end-of-run
-- summary (text on stderr, JSON with --summary-json) render from it.
local timer = require "engine.c.timer"
local rules = require "engine.c.rules"
local files = require "engine.c.files"
local events = require "engine.events"

local report = {entries = {}, started = timer.now(), started_at = rules.wallclock()}
local running = 0     -- entries still running
local first_running = 1 -- no entry before this index is running

-- The step each task runs in, inherited by the tasks it spawns.
local step_of = setmetatable({}, {__mode = "k"})

function report.current_step()
  local co = coroutine.running()
  return step_of[co]
end

function report.set_step(name)
  step_of[coroutine.running()] = name
end

function report.start(kind, name, fields)
  local e = {kind = kind, name = name, status = "running", started = timer.now(),
             started_at = rules.wallclock()}
  for k, v in pairs(fields or {}) do e[k] = v end
  report.entries[#report.entries + 1] = e
  running = running + 1
  events.emit("report.started", e)
  return e
end

-- fields.ok: whether the entry succeeded (a step: its status is "ok").
function report.finish(e, status, fields)
  if e.status == "running" then running = running - 1 end
  e.status = status
  e.duration = timer.now() - e.started
  for k, v in pairs(fields or {}) do e[k] = v end
  if e.ok == nil then e.ok = status == "ok" end
  events.emit("report.finished", e)
end

local function seconds(s)
  if not s then return "" end
  if s < 60 then return string.format("%.1f s", s) end
  return string.format("%dm%02ds", s // 60, math.floor(s % 60))
end

local function count(v)
  return v and tostring(math.tointeger(v) or v) or "-"
end

-- One line per running entry, for the live progress view: at most `max`
-- lines and the number of running entries. A tick looks only at the entries
-- it shows, never at all of them.
function report.progress_lines(width, max)
  local lines, entries = {}, report.entries
  local now = timer.now()
  while entries[first_running] and entries[first_running].status ~= "running" do
    first_running = first_running + 1
  end
  for i = first_running, #entries do
    if #lines >= (max or 12) then break end
    local e = entries[i]
    if e.status == "running" then
      local detail = e.kind == "sync" and (e.run_status or "starting") or "running"
      if e.records_processed then detail = detail .. ", " .. count(e.records_processed) .. " records" end
      local line = string.format("  %-24s %-22s %8s", e.name:sub(1, 24), detail, seconds(now - e.started))
      lines[#lines + 1] = line:sub(1, width or 200)
    end
  end
  return lines, running
end

-- At the end of the run: entries still running get their final status.
local function settle(interrupted)
  for i = first_running, #report.entries do
    local e = report.entries[i]
    if e.status == "running" then report.finish(e, interrupted and "canceled" or "unfinished") end
  end
end

-- Steps and syncs, each counted with how many failed.
local function counts()
  local c = {step = {total = 0, failed = 0}, sync = {total = 0, failed = 0}}
  for _, e in ipairs(report.entries) do
    local k = c[e.kind]
    k.total = k.total + 1
    if not e.ok then k.failed = k.failed + 1 end
  end
  return c
end

local function plural(n, word)
  return string.format("%d %s%s", n, word, n == 1 and "" or "s")
end

local function outcome(e)
  return e.detail and string.format("%s (%s)", e.status, e.detail) or e.status
end

-- The end-of-run table (after settle); nil when the run had no steps or syncs.
function report.summary_text(exit_code)
  if #report.entries == 0 then return nil end
  local c = counts()
  local out = {string.format("summary: %s (%d failed), %s (%d failed), %s, exit %d",
    plural(c.step.total, "step"), c.step.failed, plural(c.sync.total, "sync"), c.sync.failed,
    seconds(timer.now() - report.started), exit_code)}
  out[#out + 1] = string.format("  %-24s %-10s %9s %10s %9s %7s", "STEP / SYNC", "OUTCOME",
    "DURATION", "PROCESSED", "UPDATED", "FAILED")
  for _, e in ipairs(report.entries) do
    local records = e.kind == "sync" and string.format("%10s %9s %7s", count(e.records_processed),
      count(e.records_updated), count(e.records_failed)) or string.format("%10s %9s %7s", "", "", "")
    out[#out + 1] = (string.format("  %-24s %-10s %9s %s", e.name:sub(1, 24), outcome(e),
      seconds(e.duration), records):gsub("%s+$", ""))
    if not e.ok and e.error then out[#out + 1] = "      " .. e.error end
    if e.kind == "sync" and not e.ok and e.url then out[#out + 1] = "      " .. e.url end
  end
  return table.concat(out, "\n")
end

-- Unix seconds as UTC ISO 8601 with milliseconds; nil stays nil.
function report.iso(t)
  if not t then return nil end
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor(t % 1 * 1000))
end
local iso = report.iso

-- The summary as a JSON document (after settle; schema in docs/cli.md).
function report.summary_json(exit_code, interrupted)
  local json = require "engine.json"
  local entries = {}
  for i, e in ipairs(report.entries) do
    entries[i] = {
      kind = e.kind, name = e.name, status = e.status, ok = e.ok == true, detail = e.detail,
      started_at = iso(e.started_at), duration = e.duration,
      sync_id = e.sync_id, sync_run_id = e.sync_run_id, url = e.url,
      records_processed = e.records_processed, records_updated = e.records_updated,
      records_failed = e.records_failed, records_invalid = e.records_invalid, error = e.error,
    }
  end
  local doc = json.encode({
    version = 1, exit_code = exit_code,
    status = interrupted and "interrupted" or (exit_code == 0 and "ok" or "failed"),
    started_at = iso(report.started_at), duration = timer.now() - report.started,
    steps = counts().step, syncs = counts().sync,
  })
  -- lua-cjson 2.1 writes an empty table as {}: splice the list in by hand
  local parts = {}
  for i, e in ipairs(entries) do parts[i] = json.encode(e) end
  return doc:sub(1, -2) .. ',"entries":[' .. table.concat(parts, ",") .. "]}"
end

-- At the end of the run: prints the summary and writes the JSON file (see
-- engine/files.c: atomic for a regular file, through a symlink, in place
-- for a device). Returns false, after a one-line error, when it could not.
function report.finish_run(exit_code, interrupted, json_path)
  settle(interrupted)
  local text = report.summary_text(exit_code)
  if text then io.stderr:write(rules.redact(rules.printable(text)), "\n") end
  if json_path then
    local ok, err = files.write_file(json_path, rules.redact(report.summary_json(exit_code, interrupted)) .. "\n")
    if not ok then
      io.stderr:write("engine: cannot write the summary: ", err, "\n")
      return false
    end
  end
  return true
end

return report
