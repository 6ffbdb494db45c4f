-- lua/report.lua: what a run did, for people and tools. Every step
-- (flow.step) and every remote job's wait is an entry: name, outcome,
-- duration, counts, link. The live progress view and the end-of-run
-- summary (text on stderr, JSON with --summary-json) render from it.
local timer = require "engine.c.timer"
local rules = require "engine.c.rules"
local files = require "engine.c.files"
local events = require "engine.events"
local clog = require "engine.c.log"

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

-- The flow.retry attempt each task runs in, inherited like the step: an
-- entry an attempt starts takes over the row the same step or sync had in
-- the attempt before, so a retried unit is one row with its attempt count.
local retry_of = setmetatable({}, {__mode = "k"})

function report.current_retry() return retry_of[coroutine.running()] end
function report.set_retry(scope) retry_of[coroutine.running()] = scope end

-- A new scope for flow.retry; scope:next() before each attempt.
function report.retry_scope()
  local scope = {attempt = 0, rows = {}, seen = {}}
  function scope.next()
    scope.attempt = scope.attempt + 1
    scope.seen = {}
  end
  return scope
end

-- What an entry learned in an earlier attempt, forgotten when it starts
-- again (with the fields its start set, and its counts).
local PER_ATTEMPT = {"duration", "error", "detail", "ok", "url", "run_status", "remote_run", "progress"}

-- The error an entry's row shows, so an enclosing step that fails with the
-- same error says where it is instead of repeating it.
local shown_by = setmetatable({}, {__mode = "k"})

-- Where the rows show err, as "sync 1" or "sync 1, sync 2 and 3 more";
-- nil unless every part of it (a flow.parallel error's .errors) is shown.
function report.shown_where(err)
  if type(err) ~= "table" then return nil end
  if shown_by[err] then return shown_by[err].name end
  local parts = type(err.errors) == "table" and err.kind == "parallel" and err.errors
  if not parts or #parts == 0 then return nil end
  local names = {}
  for i, f in ipairs(parts) do
    local where = report.shown_where(type(f) == "table" and f.error)
    if not where then return nil end
    if i <= 3 then names[i] = where end
  end
  local text = table.concat(names, ", ")
  if #parts > 3 then text = string.format("%s and %d more", text, #parts - 3) end
  return text
end

function report.start(kind, name, fields, shape)
  local scope = retry_of[coroutine.running()]
  local rows, n, e -- in a retry: the unit's rows, which of them, the earlier attempt's
  if scope then
    local key = kind .. "\0" .. name
    n = (scope.seen[key] or 0) + 1
    scope.seen[key] = n
    rows = scope.rows[key] or {}
    scope.rows[key] = rows
    e = rows[n]
    if e and e.status == "running" then e = nil end
  end
  if e then
    for _, k in ipairs(PER_ATTEMPT) do e[k] = nil end
    for _, k in ipairs(e.fields or {}) do e[k] = nil end
    e.counts = nil
    e.attempts = scope.attempt
    if e.index < first_running then first_running = e.index end
  else
    e = {kind = kind, name = name, index = #report.entries + 1}
    report.entries[e.index] = e
    if rows then rows[n] = e end
  end
  e.status, e.started, e.started_at = "running", timer.now(), rules.wallclock()
  if shape then
    -- a job's: its field names, counts and success words, one table its
    -- provider's entries share (ten thousand entries hold one pointer each)
    e.shape, e.fields = shape, shape.fields
    for k, v in pairs(fields) do e[k] = v end
  else
    e.fields = {}
    for k, v in pairs(fields or {}) do
      e[k] = v
      e.fields[#e.fields + 1] = k
    end
    table.sort(e.fields)
  end
  running = running + 1
  events.emit("report.started", e)
  return e
end

-- fields.ok: whether the entry succeeded (a step: its status is "ok").
-- fields.failure: the error value it failed with (its row shows it).
function report.finish(e, status, fields)
  if e.status == "running" then running = running - 1 end
  e.status = status
  e.duration = timer.now() - e.started
  for k, v in pairs(fields or {}) do e[k] = v end
  if e.ok == nil then e.ok = status == "ok" end
  if e.failure ~= nil then
    if type(e.failure) == "table" and not shown_by[e.failure] then shown_by[e.failure] = e end
    e.failure = nil
  end
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
      local detail = e.kind ~= "step" and (e.run_status or "starting") or "running"
      if e.progress then detail = detail .. ", " .. e.progress end
      local line = string.format("  %-24s %-22s %8s", rules.printable(e.name):sub(1, 24), rules.printable(detail),
        seconds(now - e.started))
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

-- Entries of each kind (steps, syncs, jobs), each counted with how many
-- failed, all remote jobs together (c.remote), and every row counted by
-- outcome (in order of first appearance).

local function counts()
  local c = {step = {total = 0, failed = 0}, sync = {total = 0, failed = 0}, job = {total = 0, failed = 0},
    remote = {total = 0, failed = 0}, outcomes = {}}
  for _, e in ipairs(report.entries) do
    for _, k in ipairs{c[e.kind], e.kind ~= "step" and c.remote or nil} do
      k.total = k.total + 1
      if not e.ok then k.failed = k.failed + 1 end
    end
    -- a status that can be a success ("skipped") says when it was not
    local outcome = e.status
    -- (a job's provider names its statuses that can be a success)
    local can_succeed = outcome == "ok" or (e.shape and e.shape.success[outcome])
    if not e.ok and can_succeed then outcome = outcome .. " (failed)" end
    if not c.outcomes[outcome] then
      c.outcomes[outcome] = 0
      c.outcomes[#c.outcomes + 1] = outcome
    end
    c.outcomes[outcome] = c.outcomes[outcome] + 1
  end
  return c
end

local function plural(n, word)
  return string.format("%d %s%s", n, word, n == 1 and "" or "s")
end

-- A job's counts that are not records (a job run's tests passed, say),
-- as a note: those above zero, in the provider's order.
local function other_counts(e)
  local names = e.shape and e.shape.counts
  if not (e.counts and names) or names[1] == "records_processed" then return nil end
  local parts = {}
  for _, k in ipairs(names) do
    local n = math.tointeger(e.counts[k])
    if n and n > 0 then parts[#parts + 1] = n .. " " .. k end
  end
  return #parts > 0 and table.concat(parts, ", ") or nil
end

local function outcome(e)
  local notes = {}
  if e.detail then notes[#notes + 1] = e.detail end
  notes[#notes + 1] = other_counts(e)
  if e.attempts and e.attempts > 1 then notes[#notes + 1] = e.attempts .. " attempts" end
  if #notes == 0 then return e.status end
  return string.format("%s (%s)", e.status, table.concat(notes, ", "))
end

-- More rows than this: the text summary shows totals and the failed rows.
local SUMMARY_ROWS = 40
local NAME_MAX, OUTCOME_MAX = 40, 60

local function cut(text, max)
  if #text <= max then return text end
  return text:sub(1, max - 3) .. "..."
end

-- The end-of-run table (after settle); nil when the run had no steps or syncs.
function report.summary_text(exit_code)
  if #report.entries == 0 then return nil end
  local c = counts()
  local by_outcome = {}
  for i, status in ipairs(c.outcomes) do by_outcome[i] = c.outcomes[status] .. " " .. status end
  local what = {}
  if c.step.total > 0 then what[#what + 1] = plural(c.step.total, "step") end
  if c.sync.total > 0 then what[#what + 1] = plural(c.sync.total, "sync") end
  if c.job.total > 0 then what[#what + 1] = plural(c.job.total, "job") end
  local out = {string.format("summary: %s: %s; %s, exit %d", table.concat(what, ", "),
    table.concat(by_outcome, ", "), seconds(timer.now() - report.started), exit_code)}
  -- requests an account's budget held back (not a late poll: the budget's)
  for _, b in ipairs(require("engine.api").budget_report()) do
    local parts = {}
    if b.held > 0 then
      parts[#parts + 1] = string.format("the request budget (%s) held back %s, up to %s each", b.rate > 0 and
        string.format("%.3g a second, %s_MAX_REQUESTS_PER_SECOND", b.rate, b.env) or "pauses after a 429",
        plural(b.held, "request"), seconds(b.longest))
    end
    if b.throttled > 0 then
      parts[#parts + 1] = string.format("%s answered 429 %s, pausing every request to the account",
        b.vendor, b.throttled == 1 and "once" or (b.throttled .. " times"))
    end
    out[#out + 1] = string.format("  %s: %s", b.provider, table.concat(parts, "; "))
  end
  local rows, failed = report.entries, 0
  if #rows > SUMMARY_ROWS then
    rows = {}
    for _, e in ipairs(report.entries) do
      if not e.ok then
        failed = failed + 1
        if #rows < SUMMARY_ROWS then rows[#rows + 1] = e end
      end
    end
    out[#out + 1] = string.format("  %d rows: the failed ones below%s (--summary-json has every row)",
      #report.entries, failed > #rows and string.format(", the first %d of %d", #rows, failed) or "")
    if #rows == 0 then return table.concat(out, "\n") end
  end
  -- names and messages shown as text: a NUL or a control byte is escaped
  local first = c.job.total > 0 and "STEP / SYNC / JOB" or "STEP / SYNC"
  local name_w, outcome_w = #first, #"OUTCOME"
  local names, outcomes = {}, {}
  for i, e in ipairs(rows) do
    names[i], outcomes[i] = rules.printable(e.name), rules.printable(outcome(e))
    name_w = math.max(name_w, math.min(#names[i], NAME_MAX))
    outcome_w = math.max(outcome_w, math.min(#outcomes[i], OUTCOME_MAX))
  end
  local row = "  %-" .. name_w .. "s  %-" .. outcome_w .. "s  %8s  %9s  %7s  %6s  %7s"
  -- the record counts, for the jobs that report counts
  out[#out + 1] = string.format(row, first, "OUTCOME", "DURATION", "PROCESSED",
    "UPDATED", "FAILED", "INVALID")
  for i, e in ipairs(rows) do
    -- a column shows a count its job's provider reports ("-": not this time)
    local n = e.counts and {}
    for _, k in ipairs(n and e.shape and e.shape.counts or {}) do n[k] = e.counts[k] or false end
    local function count_of(k)
      if not n or n[k] == nil then return "" end
      return count(n[k] or nil)
    end
    out[#out + 1] = (string.format(row, cut(names[i], NAME_MAX), cut(outcomes[i], OUTCOME_MAX),
      seconds(e.duration), count_of("records_processed"), count_of("records_updated"),
      count_of("records_failed"), count_of("records_invalid")):gsub("%s+$", ""))
    if not e.ok and e.error then
      out[#out + 1] = "      " .. e.error
      if e.url and not e.error:find(e.url, 1, true) then out[#out + 1] = "      " .. e.url end
    end
    -- the records the run rejected, one line each, under its row
    for _, r in ipairs(e.rejected or {}) do
      out[#out + 1] = rules.printable(string.format("      rejected %s: %s", tostring(r.identifier or "(no identifier)"),
        tostring(r.message or r.status or "")))
    end
  end
  return table.concat(out, "\n")
end

-- Unix seconds as UTC ISO 8601 with milliseconds; nil stays nil.
function report.iso(t)
  if not t then return nil end
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor(t % 1 * 1000))
end
local iso = report.iso

-- The summary as data (after settle; schema in docs/cli.md): what
-- --summary-json writes and flow.on_finish handlers get. ending: the
-- error that ended the run, if one did.
-- A remote job's entry also gives what every job has (provider,
-- resource, remote_run, label, outcome, link, counts), its provider's own
-- fields (P.fields) and each count by name.
function report.summary(exit_code, interrupted, ending)
  local entries, remote = {}, {}
  for i, e in ipairs(report.entries) do
    local out = {
      kind = e.kind, name = e.name, status = e.status, ok = e.ok == true, detail = e.detail,
      attempts = e.attempts or 1, started_at = iso(e.started_at), duration = e.duration,
      url = e.url, error = e.error,
    }
    if e.provider then
      for _, k in ipairs(e.fields or {}) do out[k] = e[k] end
      out.remote_run, out.outcome, out.link = e.remote_run, e.status, e.url
      out.counts = e.counts or {}
      for k, v in pairs(out.counts) do out[k] = v end
      out.rejected = e.rejected
      remote[#remote + 1] = out
    end
    entries[i] = out
  end
  local c = counts()
  local held = require("engine.api").budget_report()
  local loop = timer.loop_stats()
  return {
    version = 1, exit_code = exit_code,
    status = interrupted and "interrupted" or (exit_code == 0 and "ok" or "failed"),
    started_at = iso(report.started_at), duration = timer.now() - report.started,
    steps = c.step, syncs = c.sync, remote_jobs = c.remote, error = ending, entries = entries, jobs = remote,
    request_budget = #held > 0 and held or nil,
    loop = {longest_turn = loop.longest_turn, longest_store_hold = loop.longest_store_hold},
  }
end

function report.summary_json(doc)
  local json = require "engine.json"
  local entries, jobs = doc.entries, doc.jobs
  doc.entries, doc.jobs = nil, nil
  local text = json.encode(doc)
  doc.entries, doc.jobs = entries, jobs
  -- lua-cjson 2.1 writes an empty table as {}: splice the lists in by hand
  -- (a remote job's entry is in both lists: encoded once)
  local encoded = {}
  local function list(items)
    local parts = {}
    for i, e in ipairs(items or {}) do
      local text = encoded[e]
      if not text then
        text = json.encode(e)
        encoded[e] = text
      end
      parts[i] = text
    end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return text:sub(1, -2) .. ',"entries":' .. list(entries) .. ',"jobs":' .. list(jobs) .. "}"
end

-- At the end of the run: entries still running get their final status.
report.settle = settle

-- Prints the summary and writes the JSON file (see engine/files.c: atomic
-- for a regular file, through a symlink, in place for a device). Returns
-- false, after a one-line error, when it could not.
-- json: the document as JSON, scrubbed, when it was made already.
function report.write(doc, json_path, json)
  local text = report.summary_text(doc.exit_code)
  if not json and (text or json_path) then json = rules.redact(report.summary_json(doc)) end
  -- as text, or (--log-format=json) one object whose "summary" is the document
  if text then clog.summary(text, json) end
  if json_path then
    local ok, err = files.write_file(json_path, json .. "\n")
    if not ok then
      clog.final("cannot write the summary: " .. err)
      return false
    end
  end
  return true
end

return report
