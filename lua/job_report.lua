-- lua/job_report.lua: what a person and the run report see of remote jobs.
-- It observes the machinery's events (lua/jobs.lua) and turns them into log
-- lines and report entries (the progress view and the summary); the
-- machinery never calls it. The words that differ by vendor (what a job
-- and its run are called, its counts) come from the provider.
local errors = require "engine.c.error"
local log = require "engine.log"
local report = require "engine.report"
local events = require "engine.events"

-- A wait keeps its report entry (w.report_entry) and the last status
-- logged (w.logged_status) in itself: no side table for the collector to
-- walk in every cycle's atomic step, with ten thousand waits.

local clog = require "engine.c.log" -- log lines with fields for --log-format=json

local job_report = {}

local function run_name(P, remote_run)
  if P.run_name then return P.run_name(remote_run) end
  return "run " .. tostring(remote_run)
end

-- What every log line, report row and error about a job carries: its
-- provider, resource, remote run, label and link, and the provider's own
-- ids (P.fields: the same ids under the names its users know).
function job_report.ids(P, resource, remote_run, label, url)
  local f = {provider = P.name, resource = resource, remote_run = remote_run, label = label, url = url}
  if P.fields then
    for k, v in pairs(P.fields(resource, remote_run)) do f[k] = v end
  end
  return f
end
local ids = job_report.ids

-- The fields of a line about a job, for the JSON format (nil otherwise):
-- its ids and what is known of its run (status, counts).
local function fields(P, level, resource, remote_run, label, data, w)
  local on, json_format = clog.enabled(level or "info")
  if not (on and json_format) then return nil end
  local f = ids(P, resource, remote_run, label)
  if data then
    f.status = P.status(data, w or {resource = resource, remote_run = remote_run})
    for k, v in pairs(P.counts_of and P.counts_of(data) or {}) do f[k] = v end
  end
  return f
end

local function wait_fields(w, data, level)
  return fields(w.provider, level, w.resource, w.remote_run, w.label, data, w)
end

events.on("job.triggered", function(P, id, remote_run, t)
  clog.info(fields(P, "info", id, remote_run, t.label), "%s: %s triggered: %s%s", P.name, P.describe(id),
    run_name(P, remote_run), P.trigger_note and P.trigger_note(t) or "")
end)

events.on("job.in_flight", function(P, id, remote_run, note)
  clog.warn(fields(P, "warn", id, remote_run), "%s: %s: %s; adopting it instead of triggering again",
    P.name, P.describe(id), note or (run_name(P, remote_run) .. " is already in flight"))
end)

-- started_by: the engine run that triggered it; watched_by: the run whose
-- row this engine found (the same, or one that had adopted it in turn).
events.on("job.adopted_earlier", function(P, id, remote_run, started_by, watched_by)
  clog.warn(fields(P, "warn", id, remote_run), "%s: %s: %s, started by engine run %d%s, is still in flight; " ..
    "adopting it instead of triggering again", P.name, P.describe(id), run_name(P, remote_run), started_by,
    watched_by ~= started_by and string.format(" and watched by engine run %d", watched_by) or "")
end)

events.on("job.finished_unwatched", function(P, id, remote_run, engine_run)
  clog.info(fields(P, "info", id, remote_run), "%s: %s: %s, started by engine run %d, ended while no engine " ..
    "watched it; taking its result instead of triggering again (--resume)", P.name, P.describe(id),
    run_name(P, remote_run), engine_run)
end)

events.on("job.trigger_stopped", function(P, id, remote_run, what)
  local f = fields(P, "warn", id, remote_run)
  if remote_run and what:find("^cancelled in ") then
    clog.warn(f, "%s: %s: the stop interrupted its trigger; %s, which it started, was %s", P.name,
      P.describe(id), run_name(P, remote_run), what)
  elseif remote_run then
    clog.warn(f, "%s: %s: the stop interrupted its trigger; %s, which it started, is %s", P.name,
      P.describe(id), run_name(P, remote_run), what)
  else
    clog.warn(f, "%s: %s: the stop interrupted its trigger: %s", P.name, P.describe(id), what)
  end
end)

-- What a provider's entries share (report.start's shape): the names of
-- their fields (P.fields gives the same names for any ids), the names of
-- their counts, the statuses that can be a success.
local shapes = setmetatable({}, {__mode = "k"})
local function shape_of(P)
  local shape = shapes[P]
  if not shape then
    local names = {}
    for k in pairs(ids(P, 1, 1, "", "")) do names[#names + 1] = k end
    table.sort(names)
    shape = {fields = names, counts = P.counts, success = P.success_statuses or {}}
    shapes[P] = shape
  end
  return shape
end

local function entry_name(P, label, resource, name)
  return label or (resource and P.describe(resource)) or name or P.noun
end

-- A trigger that failed is a row too, with its error: the flow asked for
-- the job, whatever stage it failed at.
events.on("job.trigger_failed", function(P, t, err)
  local entry = report.start(P.kind, entry_name(P, t.label, t.resource, t.name),
    ids(P, t.resource, nil, t.label, t.url), shape_of(P))
  local canceled = errors.is_error(err, "canceled")
  local kind = errors.is_error(err) and err.kind or "failed"
  local message = (errors.describe(err):gsub("\n.*", ""))
  if not canceled then
    local f = fields(P, "error", t.resource, nil, t.label)
    if f then f.status, f.kind = kind, kind end
    local text = errors.is_error(err) and err.message or message
    clog.error(f, "%s", text:find("^" .. P.name .. "[.:]") and text or (P.name .. ": " .. text))
  end
  report.finish(entry, kind, {ok = false, url = t.url, failure = err, error = message,
    detail = canceled and err.on_stop or nil})
end)

events.on("job.recorded", function(P, id, remote_run, engine_run)
  clog.info(fields(P, "info", id, remote_run), "%s: %s: %s %s in engine run %d; not triggered again (--resume)",
    P.name, P.describe(id), run_name(P, remote_run), P.done_word or "succeeded", engine_run)
end)

events.on("job.stopped", function(w, what)
  local entry = w.report_entry
  entry.detail = what
  clog.warn(wait_fields(w, nil, "warn"), "%s: %s: stopped; %s", w.provider.name, w.what, what)
end)

events.on("job.adopted", function(P, id, remote_run, why)
  clog.warn(fields(P, "warn", id, remote_run), "%s: %s; adopting %s, which %s created after the trigger " ..
    "was sent", P.name, why, run_name(P, remote_run), P.vendor)
end)

-- Each distinct warning once per process: 500 parallel waits share it.
local warned = {}
events.on("job.warning", function(line)
  if not warned[line] then
    warned[line] = true
    log.warn("%s", line)
  end
end)

events.on("job.wait_started", function(w)
  local P = w.provider
  w.report_entry = report.start(P.kind, entry_name(P, w.label, w.resource, run_name(P, w.remote_run)),
    ids(P, w.resource, w.remote_run, w.label, w.url), shape_of(P))
  -- a result taken from the resumed run is not waited for (its line said so)
  if not w.recorded then
    clog.info(wait_fields(w), "%s: %s: waiting, polling every %g s", P.name, w.what, w.poll)
  end
end)

local function set_counts(entry, counts)
  if not counts then return end
  local mine = entry.counts
  if not mine then
    mine = {}
    entry.counts = mine
  end
  for k, v in pairs(counts) do mine[k] = v end
end

events.on("job.status", function(w, data)
  local P = w.provider
  local entry = w.report_entry
  local status = P.status(data, w)
  entry.run_status = status
  if P.counts_of then set_counts(entry, P.counts_of(data)) end
  if P.progress then entry.progress = P.progress(data) or entry.progress end
  if status ~= w.logged_status and clog.enabled("info") then
    clog.info(wait_fields(w, data), "%s: %s: %s%s", P.name, w.what, status,
      P.status_note and P.status_note(data) or "")
    w.logged_status = status
  end
end)

events.on("job.timed_out", function(w, timeout)
  clog.warn(wait_fields(w, nil, "warn"), "%s: %s: timed out after %g s; cancelling the run", w.provider.name,
    w.what, timeout)
end)

events.on("job.cancel_failed", function(w, err)
  clog.error(wait_fields(w, nil, "error"), "%s: %s", w.provider.name, errors.describe(err))
end)

events.on("job.cancel_requested", function(P, what)
  log.info("%s: %s: cancel requested", P.name, what)
end)

-- How a wait ended, logged once at its level: a success at INFO (WARN when
-- the provider says it deserves one), a failure at ERROR with the vendor's
-- message and the link; a wait stopped by the engine was told by
-- job.stopped.
-- "id_1 (Invalid email address), id_2 (...)": rejected records as text.
function job_report.rejected_text(rows)
  local parts = {}
  for i, r in ipairs(rows or {}) do
    parts[i] = string.format("%s (%s)", tostring(r.identifier or "no identifier"), tostring(r.message or r.status))
  end
  return table.concat(parts, ", ")
end

events.on("job.wait_ended", function(w, ok, result)
  local P = w.provider
  local entry = w.report_entry
  local data = ok and result or (type(result) == "table" and type(result.result) == "table" and result.result) or {}
  if ok and not w.recorded then
    local level = P.warns and P.warns(result) and "warn" or "info"
    if clog.enabled(level) then
      local f = wait_fields(w, result, level)
      if f then f.outcome, f.link = result.status, result.link end
      clog[level](f, "%s: %s %s in %.1f s: %s (%s)", P.name, w.what,
        result.status, result.elapsed, P.summary and P.summary(result) or "no counts", result.link)
    end
    if result.rejected then
      log.warn("%s: %s: rejected records (%d of %d shown): %s", P.name, w.what, #result.rejected,
        result.rejected_total or #result.rejected, job_report.rejected_text(result.rejected))
    end
  elseif not ok and not (errors.is_error(result, "canceled") and result.result == nil) then
    -- (a wait the engine stopped is told by job.stopped, not here)
    local f = wait_fields(w, next(data) and data or nil, "error")
    if f then
      f.kind = errors.is_error(result) and result.kind or "failed"
      f.status = f.status or f.kind -- a threshold's run completed: its status and kind differ
      f.outcome, f.link = f.kind, data.link or w.url
      f.error = (errors.describe(result):gsub("\n.*", ""))
    end
    if errors.is_error(result) then
      clog.error(f, "%s: %s", P.name, result.message)
    else
      clog.error(f, "%s: %s: %s", P.name, w.what, (errors.describe(result):gsub("\n.*", "")))
    end
  end
  if next(data) and P.counts_of then set_counts(entry, P.counts_of(data)) end
  -- a cancel says why (flow.timeout: "timeout") when it knows
  report.finish(entry, ok and tostring(result.status) or (errors.is_error(result) and (result.cause or result.kind) or "failed"), {
    url = data.link or data.url or entry.url, ok = ok, failure = not ok and result or nil,
    rejected = data.rejected,
    remote_run = w.remote_run,
    detail = w.recorded and "recorded" or entry.detail,
    error = not ok and (errors.describe(result):gsub("\n.*", "")) or nil})
end)

return job_report
