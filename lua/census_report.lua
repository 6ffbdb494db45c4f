-- lua/census_report.lua: what a person and the run report see of Census
-- work. It observes the protocol's events (lua/census.lua) and turns them
-- into log lines and report entries (the progress view and the summary);
-- the protocol never calls it.
local errors = require "engine.c.error"
local json = require "engine.json"
local log = require "engine.log"
local report = require "engine.report"
local events = require "engine.events"

-- A wait keeps its report entry (w.report_entry) and the last status
-- logged (w.logged_status) in itself: no side table for the collector to
-- walk in every cycle's atomic step, with ten thousand waits.

local clog = require "engine.c.log" -- log lines with fields for --log-format=json

local COUNTS = {"records_processed", "records_updated", "records_failed", "records_invalid"}

-- A run's counts as a person reads them; Census leaves them null for some
-- runs (a failed or skipped one, some destinations), which is not zero.
local function records_summary(d)
  if d.records_processed == nil and d.records_updated == nil and d.records_failed == nil then
    return "counts not reported"
  end
  local function n(v) return v == nil and "?" or tostring(math.tointeger(v) or v) end
  local text = string.format("%s processed, %s updated, %s failed", n(d.records_processed),
    n(d.records_updated), n(d.records_failed))
  if (math.tointeger(d.records_invalid) or 0) > 0 then text = text .. ", " .. n(d.records_invalid) .. " invalid" end
  return text
end

-- The fields of a wait's log lines: the sync, its run, and what is known;
-- nil unless the line is written in the JSON format.
local function fields_of(w, data, level)
  local on, json_format = clog.enabled(level or "info")
  if not (on and json_format) then return nil end
  local f = {sync_id = w.sync_id, sync_run_id = w.sync_run_id, label = w.label}
  if data then
    f.status = type(data.status) == "string" and data.status or nil
    for _, k in ipairs(COUNTS) do f[k] = math.tointeger(data[k]) end
  end
  return f
end

-- The ids of a line about a job, for the JSON format (nil otherwise).
local function ids(level, sync_id, run_id)
  local on, json_format = clog.enabled(level)
  if on and json_format then return {sync_id = sync_id, sync_run_id = run_id} end
end

events.on("census.triggered", function(sync_id, run_id, full)
  clog.info(ids("info", sync_id, run_id), "census: sync %d triggered: run %d%s", sync_id, run_id,
    full and " (full sync)" or "")
end)

-- started_by: the engine run that triggered it; watched_by: the run whose
-- row this engine found (the same, or one that had adopted it in turn).
events.on("census.adopted_earlier", function(sync_id, run_id, started_by, watched_by)
  clog.warn(ids("warn", sync_id, run_id), "census: sync %d: run %d, started by engine run %d%s, is still in flight; " ..
    "adopting it instead of triggering again", sync_id, run_id, started_by,
    watched_by ~= started_by and string.format(" and watched by engine run %d", watched_by) or "")
end)

events.on("census.finished_unwatched", function(sync_id, run_id, engine_run)
  clog.info(ids("info", sync_id, run_id), "census: sync %d: run %d, started by engine run %d, ended while no engine watched it; " ..
    "taking its result instead of triggering again (--resume)", sync_id, run_id, engine_run)
end)

events.on("census.trigger_stopped", function(sync_id, run_id, what)
  if what == "cancelled in Census" then
    clog.warn(ids("warn", sync_id, run_id), "census: sync %d: the stop interrupted its trigger; run %d, which it " ..
      "started, was cancelled in Census", sync_id, run_id)
  elseif run_id then
    clog.warn(ids("warn", sync_id, run_id), "census: sync %d: the stop interrupted its trigger; run %d, which it " ..
      "started, is %s", sync_id, run_id, what)
  else
    clog.warn(ids("warn", sync_id), "census: sync %d: the stop interrupted its trigger: %s", sync_id, what)
  end
end)

-- A trigger that failed is a row too, with its error: the flow asked for
-- the job, whatever stage it failed at.
events.on("census.trigger_failed", function(t, err)
  local name = t.label or (t.sync_id and ("sync " .. t.sync_id)) or t.name or "sync"
  local entry = report.start("sync", name, {sync_id = t.sync_id, url = t.url})
  local canceled = errors.is_error(err, "canceled")
  local kind = errors.is_error(err) and err.kind or "failed"
  local message = (errors.describe(err):gsub("\n.*", ""))
  if not canceled then
    local f = fields_of({sync_id = t.sync_id, label = t.label}, nil, "error")
    if f then f.status, f.kind = kind, kind end
    local text = errors.is_error(err) and err.message or message
    clog.error(f, "%s", text:find("^census[.:]") and text or ("census: " .. text))
  end
  report.finish(entry, kind, {ok = false, url = t.url, failure = err, error = message,
    detail = canceled and err.census or nil})
end)

events.on("census.recorded", function(sync_id, run_id, engine_run)
  clog.info(ids("info", sync_id, run_id), "census: sync %d: run %s completed in engine run %d; not triggered again (--resume)",
    sync_id, tostring(run_id), engine_run)
end)

events.on("census.stopped", function(w, what)
  local entry = w.report_entry
  entry.detail = what
  if what == "cancelled in Census" then
    clog.warn(fields_of(w, nil, "warn"), "census: %s: stopped; cancelled in Census", w.what)
  else
    clog.warn(fields_of(w, nil, "warn"), "census: %s: stopped; %s", w.what, what)
  end
end)

events.on("census.adopted", function(sync_id, run_id, why)
  clog.warn(ids("warn", sync_id, run_id), "census: %s; adopting run %d, which Census created after the trigger " ..
    "was sent", why, run_id)
end)

-- Each distinct warning once per process: 500 parallel waits share it.
local warned = {}
events.on("census.warning", function(line)
  if not warned[line] then
    warned[line] = true
    log.warn("%s", line)
  end
end)

events.on("census.wait_started", function(w)
  w.report_entry = report.start("sync", w.label or (w.sync_id and ("sync " .. w.sync_id)) or ("run " .. w.sync_run_id),
    {sync_id = w.sync_id, sync_run_id = w.sync_run_id, url = w.url})
  -- a result taken from the resumed run is not waited for (its line said so)
  if not w.recorded then clog.info(fields_of(w), "census: %s: waiting, polling every %g s", w.what, w.poll) end
end)

events.on("census.status", function(w, data)
  local entry = w.report_entry
  entry.run_status = data.status
  entry.records_processed = math.tointeger(data.records_processed) or entry.records_processed
  if data.status ~= w.logged_status and clog.enabled("info") then
    clog.info(fields_of(w, data), "census: %s: %s%s", w.what, data.status,
      data.current_step and data.current_step ~= json.null and (" (" .. tostring(data.current_step) .. ")") or "")
    w.logged_status = data.status
  end
end)

events.on("census.timed_out", function(w, timeout)
  clog.warn(fields_of(w, nil, "warn"), "census: %s: timed out after %g s; cancelling the run", w.what, timeout)
end)

events.on("census.cancel_failed", function(w, err)
  clog.error(fields_of(w, nil, "error"), "census: %s", errors.describe(err))
end)

events.on("census.cancel_requested", function(what)
  log.info("census: %s: cancel requested", what)
end)

-- How a wait ended, logged once at its level: a success at INFO (WARN
-- with failed records), a failure at ERROR with Census's message and the
-- link; a wait stopped by the engine was told by census.stopped.
events.on("census.wait_ended", function(w, ok, result)
  local entry = w.report_entry
  local data = ok and result or (type(result) == "table" and result.result) or {}
  if ok and not w.recorded then
    local failed = math.tointeger(result.records_failed) or 0
    local level = (failed > 0 or result.status ~= "completed") and "warn" or "info"
    if clog.enabled(level) then
      clog[level](fields_of(w, result, level), "census: %s %s in %.1f s: %s (%s)", w.what, result.status,
        result.elapsed, records_summary(result), result.url)
    end
  elseif not ok and not (errors.is_error(result, "canceled") and result.result == nil) then
    -- (a wait the engine stopped is told by census.stopped, not here)
    local f = fields_of(w, data, "error")
    if f then
      f.kind = errors.is_error(result) and result.kind or "failed"
      f.status = f.status or f.kind -- a threshold's run completed: its status and kind differ
    end
    if errors.is_error(result) then
      clog.error(f, "census: %s", result.message)
    else
      clog.error(f, "census: %s: %s", w.what, (errors.describe(result):gsub("\n.*", "")))
    end
  end
  -- a cancel says why (flow.timeout: "timeout") when it knows
  report.finish(entry, ok and result.status or (errors.is_error(result) and (result.cause or result.kind) or "failed"), {
    records_processed = data.records_processed, records_updated = data.records_updated,
    records_failed = data.records_failed, records_invalid = data.records_invalid,
    url = data.url or entry.url, ok = ok, failure = not ok and result or nil,
    detail = w.recorded and "recorded" or entry.detail,
    error = not ok and (errors.describe(result):gsub("\n.*", "")) or nil})
end)

return {}
