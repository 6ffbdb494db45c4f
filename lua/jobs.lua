-- lua/jobs.lua: the one machinery for remote jobs, every "trigger a job,
-- then poll it" API (docs/internals.md, "Adding a provider"). It owns what
-- they all need: the intent made durable before the trigger, the trigger,
-- adopting an in-flight or lost run instead of triggering twice, the wait
-- (interval, floor, spread, timeout, cancel_on_timeout), cancel on stop,
-- --resume matching, and the events the report, the journal and the log
-- observe (lua/job_report.lua, lua/run.lua). A provider (lua/provider_*.lua,
-- or a table a flow passes to jobs.define) supplies only what differs; the
-- requests go through lua/api.lua. Nothing here names a vendor.
local timer = require "engine.c.timer"
local tasks = require "engine.c.task"
local errors = require "engine.c.error"
local events = require "engine.events"
local journal = require "engine.journal"
local rules = require "engine.c.rules"
local api = require "engine.api"
local log = require "engine.log"
local job_report = require "engine.job_report" -- (it subscribes to the events below)

local jobs = {}

local raise, invalid = api.raise, api.invalid

local POLL_JITTER = 0.1 -- fraction of the poll interval
-- Waits polling now, over every provider: with many, the first sleep of
-- each is stretched by up to a whole interval, so thousands of jobs started
-- together poll spread over it instead of in one burst (and stay spread).
local waiting = 0
local SPREAD_AT = 1000 -- this many waits at once spread over a whole interval

-- Connections hold secrets: they live here, keyed weakly by the handles
-- users see, so printing a handle never shows one. private[handle] =
-- {provider, conn, row (its journal row), recorded (under --resume, the
-- result recorded for it), occurrence, started_by, reused, intent}.
local private = setmetatable({}, {__mode = "k"})

-- How long stopping may spend cancelling runs, in total.
local CANCEL_ON_STOP_BUDGET = 5
local MAX_CLAIMS = 20
-- An intent another live engine wrote and has no run id for yet.
local OWNER_POLL = 0.1

function jobs.check_label(v, what, key)
  if v ~= nil and (type(v) ~= "string" or v == "" or #v > 200) then
    invalid("%s: %s must be a non-empty string of at most 200 bytes, got %s", what, key,
      type(v) == "string" and string.format("%q", v:sub(1, 40)) or tostring(v))
  end
  return v
end

-- The one of candidates ({name, id, text, listed}) named exactly `name`,
-- by its id. Several: an invalid_argument error listing them (`listed`,
-- after how.listed) and how to pick (how.several); none: a not_found error
-- with the close matches (a banded edit distance in C, or a name holding
-- it), bounded work whatever the list holds, else how to find the names
-- (how.none). how.what prefixes the message, how.noun and how.nouns name
-- what is looked for.
function jobs.pick_by_name(candidates, name, how)
  local found, close = {}, {}
  local lower = name:lower()
  local near = math.max(2, #name // 4)
  for i, c in ipairs(candidates) do
    if i % 1000 == 0 then tasks.check_stop() end
    if type(c.name) == "string" and c.id ~= nil then
      if c.name == name then
        found[#found + 1] = c
      else
        local d = rules.distance(c.name, name, near)
        if d <= near or (#c.name >= #name and c.name:lower():find(lower, 1, true)) then
          close[#close + 1] = {d = d, text = string.format("%q (%s)", c.name:sub(1, 80), c.text)}
        end
      end
    end
  end
  if #found == 1 then return found[1].id end
  if #found > 1 then
    local texts = {}
    for i, c in ipairs(found) do texts[i] = c.listed or c.text end
    table.sort(texts, function(a, b)
      local x, y = tonumber(a), tonumber(b)
      if x and y then return x < y end
      return a < b
    end)
    invalid("%s: %d %s are named %q (%s%s): %s", how.what, #found, how.nouns, name, how.listed or "",
      table.concat(texts, ", "), how.several)
  end
  table.sort(close, function(a, b) return a.d < b.d or (a.d == b.d and a.text < b.text) end)
  local texts = {}
  for i = 1, math.min(#close, 5) do texts[i] = close[i].text end
  raise("not_found", nil, "%s: no %s is named %q%s", how.what, how.noun, name,
    #texts > 0 and ("; close matches: " .. table.concat(texts, ", ")) or ("; " .. how.none))
end

-- The options every provider's wait takes, and its trigger.
jobs.WAIT_OPTIONS = {"poll", "timeout", "cancel_on_timeout", "cancel_on_stop", "label"}
jobs.TRIGGER_OPTIONS = {"name", "label", "force"}

local function concat(...)
  local out = {}
  for _, list in ipairs{...} do
    for _, v in ipairs(list) do out[#out + 1] = v end
  end
  return out
end

-- Whether stopping (Ctrl-C, SIGTERM, handle:cancel(), flow.timeout,
-- os.exit) cancels this wait's run, and if not, why.
local LEASE_LOST = "this engine lost its lease on the journal: the engine that took over the run watches it"

local function cancel_on_stop(P, opts)
  if not P.cancel then return false, P.no_cancel or "no cancel endpoint" end
  if not journal.holds_lease() then return false, LEASE_LOST end
  if opts.cancel_on_stop == false then return false, "cancel_on_stop = false" end
  local var = P.env .. "_CANCEL_ON_STOP"
  if api.env(var) == "0" then return false, var .. "=0" end
  return true
end

-- A stop's cleanup: each request bounded by what is left of the engine's
-- stop budget (ENGINE_STOP_TIMEOUT).
local function stop_connection(conn)
  local budget = math.max(0.1, math.min(CANCEL_ON_STOP_BUDGET, tasks.stop_left() or CANCEL_ON_STOP_BUDGET))
  return api.bounded(conn, budget)
end

local function describe(P, resource, remote_run, label)
  local what = P.describe(resource, remote_run)
  return label and string.format("%s (%s)", what, label) or what
end

-- A handle for a run this engine started or adopted: its run id is
-- durable in the journal (row) before anyone can wait on it. origin and
-- started_by: for a run this engine did not trigger, how it came by it
-- ("adopted", "recorded") and which engine run triggered it.
local function new_handle(P, conn, t, remote_run, row, occurrence, intent, origin, started_by)
  local handle = P.handle(t.resource, remote_run, t.label)
  private[handle] = {provider = P, conn = conn, occurrence = occurrence, reused = origin == "recorded",
    intent = intent, started_by = started_by,
    row = journal.run_started(row, P.name, t.resource, occurrence, remote_run,
      P.link(conn, t.resource, remote_run), origin, started_by, t.label)}
  return handle
end

local function await_owner(conn, row)
  local give_up = timer.now() + conn.retry_budget + conn.request_timeout
  while row and not row.remote_run and journal.row_owner_alive(row) and timer.now() < give_up do
    timer.sleep(OWNER_POLL)
    row = journal.open_row(row.id)
  end
  return row
end

-- Rows of this resource that earlier (or other, concurrent) engine runs
-- wrote and the journal does not know to be over: a run still in flight
-- is adopted instead of triggering again; the others are settled. An
-- intent without a run id (the engine died between the trigger and its
-- answer) is looked for as a lost trigger. Under --resume, a run of the
-- resumed run (same occurrence) that finished while no engine watched it
-- is adopted too: its result is this occurrence's.
local function adopt_earlier(P, conn, t, occurrence, rows)
  local resumed = journal.resume_chain()
  local id = t.resource
  for _, open in ipairs(rows) do
    local row = await_owner(conn, open)
    if row then
      local data, remote_run = P.find(conn, id, row)
      local job = {resource = id, remote_run = remote_run, intent = row.intent}
      local verdict = data and P.judge(data, job, {adopting = true})
      local started_by = row.started_by or row.run
      if verdict == "wait" then
        journal.settle(row.id, "adopted", string.format("adopted by engine run %s", tostring(journal.recorded_run_id())))
        events.emit("job.adopted_earlier", P, id, remote_run, started_by, row.run)
        return new_handle(P, conn, t, remote_run, nil, occurrence, row.intent, "adopted", started_by)
      elseif resumed[row.run] and row.occurrence == occurrence and verdict == "ok" then
        journal.settle(row.id, "adopted", string.format("its result taken by engine run %s (--resume)",
          tostring(journal.recorded_run_id())))
        events.emit("job.finished_unwatched", P, id, remote_run, started_by)
        return new_handle(P, conn, t, remote_run, nil, occurrence, row.intent, "recorded", started_by)
      elseif data then
        journal.settle(row.id, P.status(data, job))
      elseif row.remote_run then
        journal.settle(row.id, "gone", P.vendor .. " no longer knows this run")
      else
        journal.settle(row.id, "lost", "the trigger started no run")
      end
    end
  end
end

-- The engine stopped while a trigger's answer was pending: the vendor may
-- have started a run. Look for it (bounded by the stop budget) and cancel
-- it, so stopping leaves nothing running that this engine started; say
-- which when it cannot.
local function stopped_while_triggering(P, conn, t, row, occurrence, sent_at, intent, cancel_opts)
  local id = t.resource
  return tasks.shield(function()
    local c = stop_connection(conn)
    local deadline = timer.now() + c.retry_budget
    local ok, data, remote_run = pcall(P.find, c, id, {sent_at = sent_at, intent = intent}, deadline)
    if not (ok and data and remote_run) then
      local what = ok and (P.vendor .. " had started no run yet; if the trigger still starts one, the next run adopts it")
        or ("could not ask " .. P.vendor .. " whether it started a run: " .. errors.describe(data):gsub("\n.*", ""))
      events.emit("job.trigger_stopped", P, id, nil, what)
      return what
    end
    journal.run_started(row, P.name, id, occurrence, remote_run, P.link(conn, id, remote_run))
    local yes, why = cancel_on_stop(P, cancel_opts or {})
    if yes then
      local cancelled, err = pcall(P.cancel, c, {resource = id, remote_run = remote_run, intent = intent,
        what = P.describe(id, remote_run)}, deadline)
      if cancelled then
        journal.job_finished(row, {status = "canceled", final = true,
          error = "cancelled in " .. P.vendor .. ": the engine stopped"})
        local text = "cancelled in " .. P.vendor
        events.emit("job.trigger_stopped", P, id, remote_run, text)
        return text
      end
      why = errors.describe(err):gsub("\n.*", "")
    end
    local text = "left running in " .. P.vendor .. ": " .. why
    events.emit("job.trigger_stopped", P, id, remote_run, text)
    return text
  end)
end

-- A trigger's error: whether it proves no run started (the vendor refused
-- the request), so the intent is settled; otherwise it stays open for the
-- next run's lost-trigger search.
local function refused(err)
  local status = type(err) == "table" and err.http_status
  return status and status >= 400 and status < 500 and status ~= 429
end

-- The job a trigger spec names, from its name to its run (t: P.spec's).
local function trigger_job(P, t, cancel_opts)
  if t.name then t.resource = P.resolve(t.conn, t.name, t) end
  local conn, id = t.conn, t.resource
  t.url = P.link(conn, id)
  local occurrence = journal.job_occurrence(P.name, id)
  local recorded, started_by, recorded_run = journal.recorded_job(P.name, id, occurrence)
  if recorded then -- --resume: it succeeded in the run being resumed
    local handle = P.handle(id, recorded_run, t.label)
    private[handle] = {provider = P, conn = conn, recorded = recorded, occurrence = occurrence,
      started_by = started_by}
    events.emit("job.recorded", P, id, recorded_run, started_by or journal.resumed())
    return handle
  end
  tasks.check_stop() -- nothing new starts once the engine is stopping
  -- Under --resume: how this job ended in the resumed run when it did not
  -- succeed (a provider may retry it from the point of failure).
  t.resumed = journal.resumed_job(P.name, id, occurrence)
  -- What the provider reads before the trigger (a baseline, a marker; a
  -- refusal such as a paused connection raises here, before any intent).
  local intent = P.prepare and P.prepare(conn, t) or nil
  -- Write before acting: the intent is durable before the trigger. Unless
  -- forced, claiming it is atomic with the look for runs other engines
  -- started, which are adopted instead.
  local row
  if t.force then
    row = journal.intent(P.name, id, occurrence, intent, t.label)
  else
    for claims = 1, MAX_CLAIMS + 1 do
      local open
      row, open = journal.claim(P.name, id, occurrence, intent, t.label)
      if not open then break end
      local adopted = adopt_earlier(P, conn, t, occurrence, open)
      if adopted then return adopted end
      if claims > MAX_CLAIMS then
        raise("journal", P.fields and P.fields(id) or nil,
          "%s: the journal keeps showing runs of it that cannot be settled", P.describe(id))
      end
    end
  end
  -- A shared journal: the lease that makes this engine the run's holder
  -- must not have run out since (a pause, the server away) before it acts.
  if not journal.holds_lease() then -- (the intent stays open: the holder's lost-trigger search settles it)
    raise("journal", P.fields and P.fields(id) or nil, "%s: not triggered: %s", P.describe(id), LEASE_LOST)
  end
  -- A run already in flight that the provider adopts instead of
  -- triggering (a connection already syncing, reuse_existing).
  if intent and intent.in_flight then
    events.emit("job.in_flight", P, id, intent.in_flight, intent.in_flight_note)
    return new_handle(P, conn, t, intent.in_flight, row, occurrence, intent)
  end
  -- A trigger whose outcome is unknown may have started a run: adopt it
  -- rather than trigger twice (429 means it was refused: send again).
  local adopted
  local function adopt(err, sent_at, deadline)
    local data, remote_run = P.find(conn, id, {sent_at = sent_at, intent = intent}, deadline)
    if data and remote_run then
      events.emit("job.adopted", P, id, remote_run, err.message)
      adopted = new_handle(P, conn, t, remote_run, row, occurrence, intent)
      return adopted
    end
  end
  local sent_at = rules.wallclock()
  local ok, remote_run = pcall(P.trigger, conn, t, intent, adopt)
  if not ok then
    local body = remote_run
    if errors.is_error(body, "canceled") and not adopted then
      body.on_stop = stopped_while_triggering(P, conn, t, row, occurrence, sent_at, intent, cancel_opts)
      body[P.name] = body.on_stop -- (under the provider's name too, as it was before on_stop)
    elseif refused(body) then
      journal.settle(row, errors.is_error(body) and body.kind or "failed", errors.describe(body))
    else -- it may have started a run: the intent stays open for the next run to look
      journal.trigger_failed(row, errors.describe(body))
    end
    error(body, 0)
  end
  if adopted then return adopted end
  local handle = new_handle(P, conn, t, remote_run, row, occurrence, intent)
  events.emit("job.triggered", P, id, remote_run, t)
  return handle
end

local function poll_interval(P, opts, what)
  local poll = opts.poll or api.env_seconds(P.env .. "_POLL") or P.poll or 60
  if type(poll) ~= "number" or poll ~= poll or poll <= 0 then
    invalid("%s: poll must be a number of seconds > 0, got %s", what, tostring(poll))
  end
  local floor = P.poll_floor or 5
  local min_var = P.env .. "_MIN_POLL"
  local min_poll = api.env_seconds(min_var)
  if min_poll then
    events.emit("job.warning", string.format("%s: %s=%g lowers the poll floor from %g s; meant for tests " ..
      "and simulators", P.name, min_var, min_poll, floor))
    floor = min_poll
  end
  if poll < floor then
    events.emit("job.warning", string.format("%s: poll every %g s is below the %g s floor; polling every %g s",
      P.name, poll, floor, floor))
    poll = floor
  end
  return poll
end

local function check_wait_options(P, opts, what)
  api.check_options(what, opts, P.connection_options, jobs.WAIT_OPTIONS, P.wait_options or {})
  local timeout = opts.timeout or 86400
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
    invalid("%s: timeout must be a number of seconds > 0, got %s", what, tostring(opts.timeout))
  end
  for _, k in ipairs{"cancel_on_timeout", "cancel_on_stop"} do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      invalid("%s: %s must be true or false, got %s", what, k, tostring(opts[k]))
    end
  end
  if opts.cancel_on_timeout and not P.cancel then
    invalid("%s: %s cannot cancel a running %s (%s): cancel_on_timeout cannot be true", what, P.vendor,
      P.noun, P.no_cancel or "no cancel endpoint")
  end
  jobs.check_label(opts.label, what, "label")
  if P.check_wait then P.check_wait(opts, what) end
  return timeout
end

-- The result a flow gets: the provider's, with what every job has.
-- The records a run rejected (P.rejected: a sample, bounded), when it
-- ended with some; a failure to read them changes nothing but one WARN.
local REJECTED_BUDGET = 10
local function rejected(P, conn, w, data, opts)
  if not P.rejected then return nil end
  local c = api.bounded(conn, REJECTED_BUDGET)
  c.unbudgeted = nil -- (reads like any other: within the account's budget)
  local ok, rows, total = pcall(P.rejected, c, w, data, opts or {})
  if not ok then
    if errors.is_error(rows, "canceled") then error(rows, 0) end
    log.warn("%s: %s: cannot read its rejected records (the outcome stands): %s", P.name, w.what,
      (errors.describe(rows):gsub("\n.*", "")))
    return nil
  end
  if rows and #rows > 0 then return rows, total end
end


local function finish(P, conn, w, data, started, opts)
  local result = P.result(conn, w, data)
  result.rejected, result.rejected_total = rejected(P, conn, w, data, opts)
  if type(result.status) ~= "string" then result.status = P.status(data, w) end
  result.provider, result.resource, result.remote_run = P.name, w.resource, w.remote_run
  result.label = result.label or w.label
  result.elapsed = timer.now() - started
  result.link = result.link or P.link(conn, w.resource, w.remote_run)
  result.url = result.url or result.link
  return result
end

-- The fields of an error about a wait: the job's ids, and extra.
local function error_fields(P, w, extra)
  local f = job_report.ids(P, w.resource, w.remote_run, w.label, w.url)
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

-- The wait was stopped: cancel the run (bounded), and say so on the
-- error, which the summary shows.
local function stop_run(P, conn, w, err, opts)
  local yes, why = cancel_on_stop(P, opts)
  if yes then
    local c = stop_connection(conn)
    local ok, cancel_err = tasks.shield(pcall, P.cancel, c, w, timer.now() + c.retry_budget)
    if ok then
      err.on_stop = "cancelled in " .. P.vendor
      w.final = true
    else
      why = errors.describe(cancel_err):gsub("\n.*", "")
    end
  end
  err.on_stop = err.on_stop or ("left running in " .. P.vendor .. ": " .. why)
  err[P.name] = err.on_stop -- (under the provider's name too, as it was before on_stop)
  events.emit("job.stopped", w, err.on_stop)
end

-- One poll of the run: its result when it ended, nil while it runs. The
-- answer is dropped when this returns, so a sleeping wait holds none.
local function poll_once(P, w, opts, timeout, conn, started, deadline)
  local resource = w.resource
  local data = P.read(conn, w, deadline)
  if w.resource ~= resource then -- a run the flow named by its id alone: the answer told its job
    w.what, w.url = describe(P, w.resource, w.remote_run, w.label), P.link(conn, w.resource, w.remote_run)
  end
  events.emit("job.status", w, data)
  local verdict, message = P.judge(data, w, opts)
  if verdict ~= "wait" and P.finished then
    -- what the provider reads once a run ended (its results, say); a stop
    -- meanwhile cancels nothing (w.ended), and the row stays open, so the
    -- next run takes the result
    w.ended = true
    data = P.finished(conn, w, data, verdict) or data
    verdict, message = P.judge(data, w, opts)
  end
  if verdict ~= "wait" then w.final = true end
  if verdict == "ok" then return finish(P, conn, w, data, started, opts) end
  if verdict ~= "wait" then
    local result = finish(P, conn, w, data, started, opts)
    local extra = P.error_fields and P.error_fields(result) or {}
    extra.result, extra.rejected = result, result.rejected
    raise(verdict, error_fields(P, w, extra),
      "%s %s (%s)%s", w.what, message, result.link,
      result.rejected and ("; rejected records: " .. job_report.rejected_text(result.rejected)) or "")
  end
  if timer.now() >= deadline then
    local cancelled = false
    if opts.cancel_on_timeout and journal.holds_lease() then -- (refused before the wait without a cancel)
      events.emit("job.timed_out", w, timeout)
      local ok, err = pcall(P.cancel, conn, w)
      if not ok and errors.is_error(err, "canceled") then error(err, 0) end
      if not ok then events.emit("job.cancel_failed", w, err) else cancelled = true end
    end
    raise("timeout", error_fields(P, w, {seconds = timeout}),
      "%s: still %s after the %g s timeout%s (%s)", w.what, P.status(data, w), timeout,
      cancelled and "; cancelled it" or "", w.url)
  end
end

-- Polls every w.poll seconds (never sooner), each sleep stretched by up to
-- POLL_JITTER of it, the first by up to the spread.
local function wait_loop(P, w, opts, timeout, conn)
  local started = timer.now()
  local deadline = started + timeout
  local spread = math.max(POLL_JITTER, math.min(1, waiting / SPREAD_AT))
  while true do
    local result = poll_once(P, w, opts, timeout, conn, started, deadline)
    if result then return result end
    timer.sleep(math.max(0, math.min(w.poll * (1 + spread * math.random()), deadline - timer.now())))
    spread = POLL_JITTER
  end
end

local function wait(P, handle, opts, what)
  local resource, remote_run = P.handle_of(handle, what)
  opts = opts or {}
  local timeout = check_wait_options(P, opts, what)
  local poll = poll_interval(P, opts, what)
  local here = private[handle] or {}
  local conn = here.conn or P.connection(opts)
  -- The wait as observers see it: they may keep their own state in it.
  local label = opts.label or (type(handle.label) == "string" and handle.label ~= "" and handle.label) or nil
  local w = {provider = P, resource = resource, remote_run = remote_run, label = label,
             what = describe(P, resource, remote_run, label), poll = poll,
             url = resource and P.link(conn, resource, remote_run), journal_id = here.row,
             occurrence = here.occurrence, started_by = here.started_by, intent = here.intent,
             recorded = here.recorded ~= nil or here.reused == true}
  events.emit("job.wait_started", w)
  local ok, result
  if here.recorded then
    ok, result, w.final = true, here.recorded, true
  else
    waiting = waiting + 1
    ok, result = pcall(wait_loop, P, w, opts, timeout, conn)
    waiting = waiting - 1
    -- a stop (not a run the vendor reports cancelled: that one is final)
    if not ok and errors.is_error(result, "canceled") and not w.final and not w.ended and private[handle] then
      stop_run(P, conn, w, result, opts)
    end
  end
  events.emit("job.wait_ended", w, ok, result)
  if not ok then error(result, 0) end
  return result
end

-- Every job the flow asks for is a row of the run, whatever stage it
-- fails at: a trigger that fails (a name not found, a refused or lost
-- trigger, a stop) is told to the report as such.
local function trigger(P, spec, cancel_opts, what)
  local t = P.spec(spec, what) -- misuse raises here, before any job
  local ok, handle = pcall(trigger_job, P, t, cancel_opts)
  if not ok then
    events.emit("job.trigger_failed", P, t, handle)
    error(handle, 0)
  end
  return handle
end

-- Providers defined so far, by name.
local providers = {}

-- The provider named `name` (a built-in one is loaded on first use), or
-- nil: what `engine runs` asks to show a job's columns.
function jobs.provider(name)
  if not providers[name] and type(name) == "string" and name:match("^[%l_][%w_]*$") then
    pcall(require, "engine." .. name)
  end
  return providers[name]
end

-- A provider's module: trigger, wait, its run verb (trigger then wait),
-- and cancel when the vendor has one; and check_wait(opts), for a
-- provider's own helpers. P: the provider (docs/internals.md).
function jobs.define(P)
  assert(type(P.name) == "string" and P.name:match("^[%l_][%w_]*$"), "a provider needs a name")
  local M = {}
  local name = P.name
  providers[name] = P
  local WAIT = concat(jobs.WAIT_OPTIONS, P.wait_options or {})
  local TRIGGER = concat(jobs.TRIGGER_OPTIONS, P.trigger_options or {})
  P.trigger_option_list, P.wait_option_list = TRIGGER, WAIT

  function M.trigger(spec, cancel_opts)
    return trigger(P, spec, cancel_opts, name .. ".trigger")
  end

  function M.wait(handle, opts)
    return wait(P, handle, opts, name .. ".wait")
  end

  -- Every wait option is checked before the trigger: a bad one never
  -- leaves a run going that nobody waits for.
  local function check_wait(opts)
    check_wait_options(P, opts or {}, name .. ".wait")
    poll_interval(P, opts or {}, name .. ".wait")
  end

  M[P.run_verb or "sync"] = function(spec, opts)
    local what = name .. "." .. (P.run_verb or "sync")
    api.check_options(what, opts, P.connection_options, WAIT, P.run_options or {})
    check_wait(opts)
    return wait(P, trigger(P, spec, opts, name .. ".trigger"), opts, name .. ".wait")
  end

  if P.cancel then
    function M.cancel(handle, opts)
      local what = name .. ".cancel"
      local resource, remote_run = P.handle_of(handle, what)
      local conn = private[handle] and private[handle].conn or
        P.connection(api.check_options(what, opts, P.connection_options))
      local w = {resource = resource, remote_run = remote_run, what = P.describe(resource, remote_run),
        intent = private[handle] and private[handle].intent}
      P.cancel(conn, w)
      events.emit("job.cancel_requested", P, w.what)
    end
  end
  return M, check_wait
end

-- engine doctor: the resources a flow names literally, each once, as a
-- list ({{what, check = fn(conn)}}) and the function that adds to it.
function jobs.doctor_refs()
  local refs, seen = {}, {}
  return refs, function(what, check)
    if not seen[what] then
      seen[what] = true
      refs[#refs + 1] = {what = what, check = check}
    end
  end
end

-- The names given as name = "..." inside the <module>.x{...} calls of
-- source, one after another.
function jobs.names_in(source, module)
  local calls = source:gmatch(module .. "%.[%w_]+%s*%(?%s*(%b{})")
  return function()
    for call in calls do
      local name = call:match("[{,%s]name%s*=%s*\"([^\"]+)\"")
      if name then return name end
    end
  end
end

return jobs
