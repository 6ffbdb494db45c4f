-- lua/census.lua: the census module, the Census protocol. Triggers syncs
-- (adopting the run a lost answer started instead of triggering twice) and
-- waits for their runs: the status names and what each means, thresholds,
-- timeouts, cancel, lists. Requests go through lua/census_transport.lua;
-- what happens is told as events (lua/events.lua) that lua/census_report.lua
-- turns into log lines and report entries.
local timer = require "engine.c.timer"
local tasks = require "engine.c.task"
local errors = require "engine.c.error"
local rules = require "engine.c.rules"
local json = require "engine.json"
local events = require "engine.events"
local journal = require "engine.journal"
local transport = require "engine.census_transport"
local answers = require "engine.census_answers"
require "engine.census_report" -- subscribes to the events below

local census = {}

local raise, invalid = transport.raise, transport.invalid
local connection, request = transport.connection, transport.request
local check_options, env_seconds = transport.check_options, transport.env_seconds
local history_url, strip_nulls = transport.history_url, transport.strip_nulls
local CONNECTION_OPTIONS = transport.CONNECTION_OPTIONS
local has_data, has_run_status = answers.has_data, answers.has_run_status
local run_id_of, has_run_id = answers.run_id_of, answers.has_run_id

local TRIGGER_FORM = "https://bearer:secret-token:<token>@app.getcensus.com" ..
  "/api/v1/syncs/<sync id>/trigger (app-eu.getcensus.com for EU workspaces)"
local POLL_FLOOR = 5
local POLL_JITTER = 0.1 -- fraction of the poll interval
-- Waits polling now: with many, the first sleep of each is stretched by up
-- to a whole interval, so thousands of syncs started together poll spread
-- over it instead of in one burst (and stay spread).
local waiting = 0
local SPREAD_AT = 1000 -- this many waits at once spread over a whole interval

-- Connections and task defaults hold tokens: they live here, keyed weakly by
-- the objects users see, so printing a run or a task never shows a token.
-- private[run] = {conn =, row = (its journal row), recorded = (under
-- --resume, the result recorded for it), occurrence =} for a run this
-- engine started or adopted; private[job] = a census.task's defaults.
local private = setmetatable({}, {__mode = "k"})

-- How long stopping may spend cancelling runs in Census, in total.
local CANCEL_ON_STOP_BUDGET = 5

local function sync_id_of(v, what)
  local id = math.tointeger(tonumber(v))
  if not id or id <= 0 or (type(v) == "string" and not v:match("^%d+$")) then
    invalid("%s: sync_id must be a positive whole number, got %s", what, tostring(v))
  end
  return id
end

local TRIGGER_OPTIONS = {"sync_id", "name", "label", "force_full_sync", "force"}

local function check_label(v, what, key)
  if v ~= nil and (type(v) ~= "string" or v == "" or #v > 200) then
    invalid("%s: %s must be a non-empty string of at most 200 bytes, got %s", what, key,
      type(v) == "string" and string.format("%q", v:sub(1, 40)) or tostring(v))
  end
  return v
end

local list_pages -- below

-- Every sync of a workspace, listed once per run and connection; calls
-- made at once share the one listing.
local sync_lists = {}

local function workspace_syncs(conn)
  local key = table.concat({conn.base, conn.version, conn.token}, "\0")
  local listing = sync_lists[key]
  if not listing then
    listing = tasks.spawn(function() return pcall(list_pages, conn, "/syncs", "census: listing the syncs") end)
    sync_lists[key] = listing
  end
  local ok, syncs = listing:wait()
  if not ok then
    if sync_lists[key] == listing then sync_lists[key] = nil end
    error(syncs, 0)
  end
  return syncs
end

-- The id of the one sync named `name` (its label in Census). The close
-- matches a name not found gets are bounded work (a banded edit distance
-- in C), whatever the workspace holds.
local function sync_named(conn, name)
  local found, close = {}, {}
  local lower = name:lower()
  local near = math.max(2, #name // 4)
  for i, sync in ipairs(workspace_syncs(conn)) do
    if i % 1000 == 0 then tasks.check_stop() end
    local label = sync.label or sync.name
    local id = math.tointeger(tonumber(sync.id))
    if type(label) == "string" and id then
      if label == name then
        found[#found + 1] = id
      else
        local d = rules.distance(label, name, near)
        if d <= near or (#label >= #name and label:lower():find(lower, 1, true)) then
          close[#close + 1] = {d = d, text = string.format("%q (id %d)", label:sub(1, 80), id)}
        end
      end
    end
  end
  if #found == 1 then return found[1] end
  if #found > 1 then
    table.sort(found)
    invalid("census.trigger: %d syncs are named %q (ids %s): pass sync_id instead",
      #found, name, table.concat(found, ", "))
  end
  table.sort(close, function(a, b) return a.d < b.d or (a.d == b.d and a.text < b.text) end)
  local texts = {}
  for i = 1, math.min(#close, 5) do texts[i] = close[i].text end
  raise("not_found", nil, "census.trigger: no sync is named %q%s", name,
    #texts > 0 and ("; close matches: " .. table.concat(texts, ", ")) or
    "; census.syncs() lists them, or pass sync_id")
end

-- An invalid trigger URL as a message may show it: whatever stands before
-- its last "@" (the credentials, whatever they hold) is never echoed.
local function without_credentials(url)
  local at = url:match(".*()@")
  if at then return (url:match("^%a[%w+.-]*://") or "") .. "***" .. url:sub(at) end
  return (url:gsub("secret%-token:.*", "secret-token:***"))
end

-- The sync, the connection and the force_full_sync flag a trigger means.
local function trigger_spec(spec)
  if spec == nil or spec == "" then
    invalid("census.trigger: a trigger URL must be provided: copy the API trigger URL " ..
      "from the sync's configuration page in Census, or pass {sync_id = N} with CENSUS_API_KEY set")
  end
  if type(spec) == "string" then
    local t = rules.parse_trigger(spec)
    if not t then
      invalid("census.trigger: invalid trigger URL %q: paste it directly from the sync's " ..
        "configuration page in Census; it must look like " .. TRIGGER_FORM .. " and is case-sensitive",
        without_credentials(spec))
    end
    return {sync_id = t.sync_id, force_full_sync = t.force_full_sync,
            conn = connection({region = t.eu and "eu" or "us"}, t.token)}
  end
  if type(spec) ~= "table" then
    invalid("census.trigger: expected a trigger URL or {sync_id = N, ...}, got a %s", type(spec))
  end
  check_options("census.trigger", spec, CONNECTION_OPTIONS, TRIGGER_OPTIONS)
  for _, k in ipairs{"force_full_sync", "force"} do
    if spec[k] ~= nil and type(spec[k]) ~= "boolean" then
      invalid("census.trigger: %s must be true or false", k)
    end
  end
  local label = check_label(spec.label, "census.trigger", "label")
  local name = check_label(spec.name, "census.trigger", "name")
  if name and spec.sync_id ~= nil then invalid("census.trigger: give sync_id or name, not both") end
  local conn = connection(spec)
  -- a name is resolved with the job's other work (census.trigger), so a
  -- name not found is a row of the run, like a refused trigger
  return {sync_id = not name and sync_id_of(spec.sync_id, "census.trigger") or nil, name = name,
          force = spec.force, force_full_sync = spec.force_full_sync, conn = conn, label = label or name}
end

-- A run this engine started or adopted: its run id is durable in the
-- journal (row) before anyone can wait on it.
-- origin and started_by: for a run this engine did not trigger, how it
-- came by it ("adopted", "recorded") and which engine run triggered it.
local function new_run(conn, sync_id, run_id, row, occurrence, label, origin, started_by)
  local run = {sync_id = sync_id, sync_run_id = run_id, label = label}
  private[run] = {conn = conn, occurrence = occurrence, reused = origin == "recorded",
    row = journal.run_started(row, sync_id, occurrence, run_id, history_url(conn, sync_id), origin, started_by)}
  return run
end

-- The sync's newest run, when it was created at or after `since` (our clock).
local function run_created_since(conn, sync_id, since, deadline)
  local body, meta = request(conn, {method = "GET", path = "/syncs/" .. sync_id .. "/sync_runs",
    query = "?per_page=1&order=desc", check = has_data, deadline = deadline,
    what = "sync " .. sync_id .. ": looking for the run of a lost trigger"})
  local latest = body.data[1]
  if type(latest) ~= "table" then return nil end
  local created = rules.parse_time(latest.created_at)
  if not created then return nil end
  -- Compare on the server's clock (from its Date header) with 2 s of slack
  -- for the header's one-second resolution.
  local skew = meta.server_skew or 0
  if created >= since + skew - 2 then return latest end
end

-- Whether stopping (Ctrl-C, SIGTERM, handle:cancel(), flow.timeout,
-- os.exit) cancels this wait's run in Census, and if not, why.
local function cancel_on_stop(opts)
  if opts.cancel_on_stop == false then return false, "cancel_on_stop = false" end
  if transport.env("CENSUS_CANCEL_ON_STOP") == "0" then return false, "CENSUS_CANCEL_ON_STOP=0" end
  return true
end

-- How a stop's cleanup reaches Census: each request bounded by the stop
-- budget, retries included.
local function stop_budget()
  -- within what is left of the engine's stop budget (ENGINE_STOP_TIMEOUT)
  return math.max(0.1, math.min(CANCEL_ON_STOP_BUDGET, tasks.stop_left() or CANCEL_ON_STOP_BUDGET))
end

local function stop_connection(conn)
  local c = {}
  for k, v in pairs(conn) do c[k] = v end
  local budget = stop_budget()
  c.request_timeout = math.min(conn.request_timeout, budget)
  c.retry_budget = budget
  return c
end

-- An intent another engine, still alive, wrote and has not yet the run id
-- for (its POST is in flight): wait until the row has the run id, is
-- settled, or its engine died (bounded by the time a trigger may take).
local OWNER_POLL = 0.1

local function await_owner(conn, row)
  local give_up = timer.now() + conn.retry_budget + conn.request_timeout
  while row and not row.sync_run_id and journal.row_owner_alive(row) and timer.now() < give_up do
    timer.sleep(OWNER_POLL)
    row = journal.open_row(row.id)
  end
  return row
end

-- Rows of this sync that earlier (or other, concurrent) engine runs
-- wrote and the journal does not know to be over: a run still in flight
-- is adopted instead of triggering again; the others are settled. An
-- intent without a run id (the engine died between the POST and its
-- answer) goes through the lost-trigger search. Under --resume, a run of
-- the resumed run (same occurrence) that finished while no engine watched
-- it is adopted too: its result is this occurrence's.
local function adopt_earlier(conn, id, occurrence, label, rows)
  local resumed = journal.resume_chain()
  for _, open in ipairs(rows) do
    local row = await_owner(conn, open)
    if row then
      local data
      if row.sync_run_id then
        local ok, body = pcall(request, conn, {method = "GET", path = "/sync_runs/" .. row.sync_run_id,
          what = "sync " .. id .. " run " .. row.sync_run_id, check = has_run_status})
        if ok then
          data = body.data
        elseif not errors.is_error(body, "not_found") then
          error(body, 0)
        end
      elseif row.sent_at then
        data = run_created_since(conn, id, row.sent_at)
      end
      local run_id = data and (run_id_of(data.id) or row.sync_run_id)
      local meaning = data and answers.meaning(data)
      local started_by = row.started_by or row.run
      if meaning == "waiting" then
        journal.settle(row.id, "adopted", string.format("adopted by engine run %s", tostring(journal.recorded_run_id())))
        events.emit("census.adopted_earlier", id, run_id, started_by, row.run)
        return new_run(conn, id, run_id, nil, occurrence, label, "adopted", started_by)
      elseif resumed[row.run] and row.occurrence == occurrence and (meaning == "completed" or meaning == "skipped") then
        journal.settle(row.id, "adopted", string.format("its result taken by engine run %s (--resume)",
          tostring(journal.recorded_run_id())))
        events.emit("census.finished_unwatched", id, run_id, started_by)
        return new_run(conn, id, run_id, nil, occurrence, label, "recorded", started_by)
      elseif data then
        journal.settle(row.id, data.canceled == true and "canceled" or tostring(data.status))
      elseif row.sync_run_id then
        journal.settle(row.id, "gone", "Census no longer knows this run")
      else
        journal.settle(row.id, "lost", "the trigger started no run")
      end
    end
  end
end

-- The engine stopped while a trigger's answer was pending: Census may
-- have started a run. Look for it (bounded by the stop budget) and cancel
-- it, so stopping leaves nothing running that this engine started; say
-- which when it cannot.
local function stopped_while_triggering(conn, id, row, occurrence, sent_at, cancel_opts)
  return tasks.shield(function()
    local c = stop_connection(conn)
    local deadline = timer.now() + c.retry_budget
    local ok, latest = pcall(run_created_since, c, id, sent_at)
    local run_id = ok and latest and run_id_of(latest.id)
    if not run_id then
      local what = ok and "Census had started no run yet; if the trigger still starts one, the next run adopts it"
        or ("could not ask Census whether it started a run: " .. errors.describe(latest):gsub("\n.*", ""))
      events.emit("census.trigger_stopped", id, nil, what)
      return what
    end
    journal.run_started(row, id, occurrence, run_id, history_url(conn, id))
    local yes, why = cancel_on_stop(cancel_opts or {})
    if yes then
      local cancelled, err = pcall(request, c, {method = "POST", path = "/sync_runs/" .. run_id .. "/cancel",
        what = "sync " .. id .. " run " .. run_id .. ": cancel", deadline = deadline})
      if cancelled then
        journal.sync_finished(row, {status = "canceled", final = true, error = "cancelled in Census: the engine stopped"})
        events.emit("census.trigger_stopped", id, run_id, "cancelled in Census")
        return "cancelled in Census"
      end
      why = errors.describe(err):gsub("\n.*", "")
    end
    events.emit("census.trigger_stopped", id, run_id, "left running in Census: " .. why)
    return "left running in Census: " .. why
  end)
end

-- A trigger's error: whether it proves no run started (Census refused the
-- request), so the intent is settled; otherwise it stays open for the
-- next run's lost-trigger search.
local function refused(err)
  local status = type(err) == "table" and err.http_status
  return status and status >= 400 and status < 500 and status ~= 429
end

local MAX_CLAIMS = 20

-- The job a trigger spec names, from its name to its run (t: trigger_spec's).
local function trigger_job(t, cancel_opts)
  if t.name then t.sync_id = sync_named(t.conn, t.name) end
  local conn, id = t.conn, t.sync_id
  t.url = history_url(conn, id)
  local occurrence = journal.sync_occurrence(id)
  local recorded, started_by = journal.recorded_sync(id, occurrence)
  if recorded then -- --resume: it completed in the run being resumed
    local run = {sync_id = id, sync_run_id = recorded.sync_run_id, label = t.label}
    private[run] = {conn = conn, recorded = recorded, occurrence = occurrence, started_by = started_by}
    events.emit("census.recorded", id, recorded.sync_run_id, journal.resumed())
    return run
  end
  tasks.check_stop() -- nothing new starts once the engine is stopping
  -- Write before acting: the intent is durable before the POST. Unless
  -- forced, claiming it is atomic with the look for runs other engines
  -- started, which are adopted instead.
  local row
  if t.force then
    row = journal.intent(id, occurrence)
  else
    for claims = 1, MAX_CLAIMS + 1 do
      local open
      row, open = journal.claim(id, occurrence)
      if not open then break end
      local adopted = adopt_earlier(conn, id, occurrence, t.label, open)
      if adopted then return adopted end
      if claims > MAX_CLAIMS then
        raise("journal", {sync_id = id}, "sync %d: the journal keeps showing runs of it that cannot be settled",
          id)
      end
    end
  end
  -- A trigger whose outcome is unknown may have started a run: adopt it
  -- rather than trigger twice (429 means it was refused: send again).
  local adopted
  local function adopt(err, sent_at, deadline)
    local run = run_created_since(conn, id, sent_at, deadline)
    local run_id = run and run_id_of(run.id)
    if run_id then
      events.emit("census.adopted", id, run_id, err.message)
      adopted = new_run(conn, id, run_id, row, occurrence, t.label)
      return adopted
    end
  end
  local sent_at = rules.wallclock()
  local ok, body = pcall(request, conn, {method = "POST", path = "/syncs/" .. id .. "/trigger",
    query = t.force_full_sync ~= nil and ("?force_full_sync=" .. tostring(t.force_full_sync)) or nil,
    what = "sync " .. id .. ": trigger", check = has_run_id, unknown = adopt,
    fields = {sync_id = id, url = t.url}})
  if not ok then
    if errors.is_error(body, "canceled") and not adopted then
      body.census = stopped_while_triggering(conn, id, row, occurrence, sent_at, cancel_opts)
    elseif refused(body) then
      journal.settle(row, errors.is_error(body) and body.kind or "failed", errors.describe(body))
    else -- it may have started a run: the intent stays open for the next run to look
      journal.trigger_failed(row, errors.describe(body))
    end
    error(body, 0)
  end
  if adopted then return adopted end
  local run_id = body.data.sync_run_id
  local run = new_run(conn, id, run_id, row, occurrence, t.label)
  events.emit("census.triggered", id, run_id, t.force_full_sync)
  return run
end

-- Every job the flow asks for is a row of the run, whatever stage it
-- fails at: a trigger that fails (a name not found, a refused or lost
-- trigger, a stop) is told to the report as such.
function census.trigger(spec, cancel_opts)
  local t = trigger_spec(spec) -- misuse raises here, before any job
  local ok, run = pcall(trigger_job, t, cancel_opts)
  if not ok then
    events.emit("census.trigger_failed", t, run)
    error(run, 0)
  end
  return run
end

local WAIT_OPTIONS = {"poll", "timeout", "cancel_on_timeout", "max_records_failed",
  "max_failed_ratio", "allow_skipped", "cancel_on_stop", "label"}

local function warn_once(fmt, ...)
  events.emit("census.warning", string.format(fmt, ...))
end

local function poll_interval(opts)
  local poll = opts.poll or env_seconds("CENSUS_POLL") or 60
  if type(poll) ~= "number" or poll ~= poll or poll <= 0 then
    invalid("census.wait: poll must be a number of seconds > 0, got %s", tostring(poll))
  end
  local floor = POLL_FLOOR
  local min_poll = env_seconds("CENSUS_MIN_POLL")
  if min_poll then
    floor = min_poll
    warn_once("census: CENSUS_MIN_POLL=%g lowers the poll floor from %d s; meant for tests and simulators",
      min_poll, POLL_FLOOR)
  end
  if poll < floor then
    warn_once("census: poll every %g s is below the %g s floor; polling every %g s", poll, floor, floor)
    poll = floor
  end
  return poll
end

local function check_wait_options(opts)
  check_options("census.wait", opts, CONNECTION_OPTIONS, WAIT_OPTIONS)
  local timeout = opts.timeout or 86400
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
    invalid("census.wait: timeout must be a number of seconds > 0, got %s", tostring(opts.timeout))
  end
  for _, k in ipairs{"cancel_on_timeout", "allow_skipped", "cancel_on_stop"} do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      invalid("census.wait: %s must be true or false, got %s", k, tostring(opts[k]))
    end
  end
  check_label(opts.label, "census.wait", "label")
  for _, k in ipairs{"max_records_failed", "max_failed_ratio"} do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0 or v == math.huge) then
      invalid("census.wait: %s must be a number >= 0, got %s", k, tostring(opts[k]))
    end
  end
  return timeout
end

local function run_of(run, what)
  if type(run) ~= "table" then
    invalid("%s: expected a run from census.trigger (or {sync_id =, sync_run_id =}), got a %s", what, type(run))
  end
  local run_id = math.tointeger(tonumber(run.sync_run_id))
  if not run_id or run_id <= 0 then
    invalid("%s: the run has no sync_run_id; pass what census.trigger returned", what)
  end
  return run_id, math.tointeger(tonumber(run.sync_id))
end

local function describe(sync_id, run_id, label)
  local what = sync_id and string.format("sync %d run %d", sync_id, run_id) or ("run " .. run_id)
  return label and string.format("%s (%s)", what, label) or what
end

local function finish(conn, data, sync_id, run_id, started)
  local result = strip_nulls(data)
  result.sync_id = math.tointeger(result.sync_id) or sync_id
  result.sync_run_id = run_id
  result.elapsed = timer.now() - started
  result.url = history_url(conn, result.sync_id or "?")
  return result
end

local function cancel_run(conn, run_id, what)
  request(conn, {method = "POST", path = "/sync_runs/" .. run_id .. "/cancel", what = what .. ": cancel"})
end

local wait_loop

-- The wait was stopped: cancel the run in Census (bounded), and say so on
-- the error, which the summary shows.
local function stop_run(conn, w, err, opts)
  local yes, why = cancel_on_stop(opts)
  if yes then
    local c = stop_connection(conn)
    local ok, cancel_err = tasks.shield(pcall, request, c, {method = "POST",
      what = w.what .. ": cancel", path = "/sync_runs/" .. w.sync_run_id .. "/cancel",
      deadline = timer.now() + c.retry_budget})
    if ok then
      err.census = "cancelled in Census"
      w.final = true
    else
      why = errors.describe(cancel_err):gsub("\n.*", "")
    end
  end
  err.census = err.census or ("left running in Census: " .. why)
  events.emit("census.stopped", w, err.census)
end

function census.wait(run, opts)
  local run_id, sync_id = run_of(run, "census.wait")
  opts = opts or {}
  local timeout = check_wait_options(opts)
  local poll = poll_interval(opts)
  local here = private[run] or {}
  local conn = here.conn or connection(opts)
  -- The wait as observers see it: they may keep their own state in it.
  local label = opts.label or (type(run.label) == "string" and run.label ~= "" and run.label) or nil
  local w = {sync_id = sync_id, sync_run_id = run_id, label = label, what = describe(sync_id, run_id, label),
             poll = poll, url = sync_id and history_url(conn, sync_id), journal_id = here.row,
             occurrence = here.occurrence, started_by = here.started_by,
             recorded = here.recorded ~= nil or here.reused == true}
  events.emit("census.wait_started", w)
  local ok, result
  if here.recorded then
    ok, result, w.final = true, here.recorded, true
  else
    waiting = waiting + 1
    ok, result = pcall(wait_loop, w, opts, timeout, conn)
    waiting = waiting - 1
    if not ok and errors.is_error(result, "canceled") and private[run] then
      stop_run(conn, w, result, opts)
    end
  end
  events.emit("census.wait_ended", w, ok, result)
  if not ok then error(result, 0) end
  return result
end

-- One poll of the run: its result when it ended, nil while it runs. The
-- answer is dropped when this returns, so a sleeping wait holds none.
local function poll_once(w, opts, timeout, conn, started, deadline)
  local run_id = w.sync_run_id
  local body = request(conn, {method = "GET", path = "/sync_runs/" .. run_id, what = w.what,
    check = has_run_status, deadline = deadline,
    fields = {sync_id = w.sync_id, sync_run_id = run_id, run_id = run_id, url = w.url}})
  local data = body.data
  local sync_id = w.sync_id or math.tointeger(data.sync_id)
  if sync_id ~= w.sync_id then w.sync_id, w.what = sync_id, describe(sync_id, run_id, w.label) end
  events.emit("census.status", w, data)
  local what = w.what
  local meaning = answers.meaning(data)
  local function fail(kind, fmt, ...)
    local result = finish(conn, data, sync_id, run_id, started)
    raise(kind, {sync_id = sync_id, sync_run_id = run_id, run_id = run_id, url = result.url, result = result,
      error_code = result.error_code, error_message = result.error_message,
      error_detail = result.error_detail}, "%s " .. fmt .. " (%s)", what, ...)
  end
  if meaning ~= "waiting" then w.final = true end
  if meaning == "canceled" then
    fail("canceled", "was canceled in Census", history_url(conn, sync_id))
  elseif meaning == "failed" then
    fail("failed", "failed: %s", tostring(strip_nulls(data).error_message or "no error message"),
      history_url(conn, sync_id))
  elseif meaning == "skipped" and not opts.allow_skipped then
    fail("skipped", "was skipped: an earlier run of the sync was still running",
      history_url(conn, sync_id))
  elseif meaning == "unknown" then
    fail("unknown_status", "reported status %q, which is not a known Census status; " ..
      "treating it as a failure, not a success", tostring(data.status), history_url(conn, sync_id))
  elseif meaning ~= "waiting" then
    local result = finish(conn, data, sync_id, run_id, started)
    local failed = math.tointeger(result.records_failed) or 0
    local processed = tonumber(result.records_processed) or 0
    if opts.max_records_failed and failed > opts.max_records_failed then
      fail("threshold", "completed with %d failed records, more than max_records_failed = %d",
        failed, opts.max_records_failed, result.url)
    end
    if opts.max_failed_ratio and failed > 0 and
      (processed == 0 or failed / processed > opts.max_failed_ratio) then
      fail("threshold", "completed with %d of %d records failed, more than max_failed_ratio = %g",
        failed, processed, opts.max_failed_ratio, result.url)
    end
    return result
  end
  if timer.now() >= deadline then
    if opts.cancel_on_timeout then
      events.emit("census.timed_out", w, timeout)
      local ok, err = pcall(cancel_run, conn, run_id, what)
      if not ok and errors.is_error(err, "canceled") then error(err, 0) end
      if not ok then events.emit("census.cancel_failed", w, err) end
    end
    raise("timeout", {sync_id = sync_id, sync_run_id = run_id, run_id = run_id,
      url = history_url(conn, sync_id), seconds = timeout},
      "%s: still %s after the %g s timeout%s (%s)", what, data.status, timeout,
      opts.cancel_on_timeout and "; cancelled it" or "", history_url(conn, sync_id))
  end
end

-- Polls every w.poll seconds (never sooner), each sleep stretched by up to
-- POLL_JITTER of it, the first by up to the spread.
function wait_loop(w, opts, timeout, conn)
  local started = timer.now()
  local deadline = started + timeout
  local spread = math.max(POLL_JITTER, math.min(1, waiting / SPREAD_AT))
  while true do
    local result = poll_once(w, opts, timeout, conn, started, deadline)
    if result then return result end
    timer.sleep(math.max(0, math.min(w.poll * (1 + spread * math.random()), deadline - timer.now())))
    spread = POLL_JITTER
  end
end

-- Every wait option is checked before the trigger: a bad one never
-- leaves a run going that nobody waits for.
local function check_wait(opts)
  check_wait_options(opts or {})
  poll_interval(opts or {})
end

function census.sync(spec, opts)
  check_options("census.sync", opts, CONNECTION_OPTIONS, WAIT_OPTIONS)
  check_wait(opts)
  return census.wait(census.trigger(spec, opts), opts)
end

function census.cancel(run, opts)
  local run_id, sync_id = run_of(run, "census.cancel")
  local conn = private[run] and private[run].conn or
    connection(check_options("census.cancel", opts, CONNECTION_OPTIONS))
  cancel_run(conn, run_id, describe(sync_id, run_id))
  events.emit("census.cancel_requested", describe(sync_id, run_id))
end

local function id_of(v, what)
  local id = math.tointeger(tonumber(v))
  if not id or id <= 0 then invalid("%s: expected a positive whole-number id, got %s", what, tostring(v)) end
  return id
end

function census.get_run(id, opts)
  id = id_of(id, "census.get_run")
  local conn = connection(check_options("census.get_run", opts, CONNECTION_OPTIONS))
  return strip_nulls(request(conn, {method = "GET", path = "/sync_runs/" .. id, what = "run " .. id,
    check = has_run_status}).data)
end

function census.get_sync(id, opts)
  id = id_of(id, "census.get_sync")
  local conn = connection(check_options("census.get_sync", opts, CONNECTION_OPTIONS))
  return strip_nulls(request(conn, {method = "GET", path = "/syncs/" .. id, what = "sync " .. id,
    check = has_data}).data)
end

local PAGE_OPTIONS = {"page", "per_page", "order"}

-- One page when `page` is given, else every page; returns the items and the
-- last pagination object.
local function list(path, what, opts)
  opts = check_options(what, opts, CONNECTION_OPTIONS, PAGE_OPTIONS)
  local per_page = opts.per_page or 100
  if math.type(per_page) ~= "integer" or per_page < 1 or per_page > 100 then
    invalid("%s: per_page must be a whole number from 1 to 100", what)
  end
  if opts.order ~= nil and opts.order ~= "asc" and opts.order ~= "desc" then
    invalid("%s: order must be \"asc\" or \"desc\"", what)
  end
  if opts.page ~= nil and (math.type(opts.page) ~= "integer" or opts.page < 1) then
    invalid("%s: page must be a whole number >= 1", what)
  end
  return list_pages(connection(opts), path, what, per_page, opts.page, opts.order)
end

-- The items of one page (when given) or of every page, and the last
-- pagination object.
function list_pages(conn, path, what, per_page, only_page, order)
  local items, page, pagination = {}, only_page or 1, nil
  while true do
    local query = string.format("?page=%d&per_page=%d%s", page, per_page or 100,
      order and ("&order=" .. order) or "")
    local body = request(conn, {method = "GET", path = path, query = query, what = what, check = has_data})
    for _, item in ipairs(body.data) do items[#items + 1] = strip_nulls(item) end
    pagination = type(body.pagination) == "table" and strip_nulls(body.pagination) or nil
    local next_page = pagination and math.tointeger(pagination.next_page)
    if only_page or not next_page or next_page <= page or #body.data == 0 then break end
    page = next_page
  end
  return items, pagination
end

function census.syncs(opts)
  return list("/syncs", "census.syncs", opts)
end

function census.runs(sync_id, opts)
  sync_id = id_of(sync_id, "census.runs")
  return list("/syncs/" .. sync_id .. "/sync_runs", "census.runs", opts)
end

-- census.task: defaults for later runs, like Prefect's CensusSyncTask.
local Task = {}
Task.__index = Task
local TASK_OPTIONS = {"api_trigger", "sync_id", "name", "force_full_sync"}

function Task:run(overrides)
  local defaults = private[self]
  if not defaults then invalid("census task: call job:run{...} on a task made by census.task") end
  if type(overrides) == "string" then overrides = {api_trigger = overrides} end
  check_options("census task:run", overrides, CONNECTION_OPTIONS, WAIT_OPTIONS, TASK_OPTIONS)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(overrides or {}) do o[k] = v end
  local spec = o.api_trigger
  if spec == nil and (o.sync_id ~= nil or o.name ~= nil) then
    spec = {sync_id = o.sync_id, name = o.name, token = o.token, region = o.region,
            api_version = o.api_version, force_full_sync = o.force_full_sync}
  end
  if spec == nil or spec == "" then
    invalid("census task: a value for api_trigger must be provided: copy the API trigger URL " ..
      "from the sync's configuration page in Census")
  end
  local wait_opts = {}
  for _, k in ipairs(WAIT_OPTIONS) do wait_opts[k] = o[k] end
  for _, k in ipairs(CONNECTION_OPTIONS) do wait_opts[k] = o[k] end
  check_wait(wait_opts)
  return census.wait(census.trigger(spec, wait_opts), wait_opts)
end

function Task:__tostring()
  local d = private[self] or {}
  local id = d.sync_id
  if not id and type(d.api_trigger) == "string" then
    local t = rules.parse_trigger(d.api_trigger)
    id = t and t.sync_id
  end
  return id and ("census task (sync " .. id .. ")") or "census task"
end

function census.task(defaults)
  check_options("census.task", defaults, CONNECTION_OPTIONS, WAIT_OPTIONS, TASK_OPTIONS)
  local job = setmetatable({}, Task)
  local copy = {}
  for k, v in pairs(defaults or {}) do copy[k] = v end
  private[job] = copy
  return job
end

return census
