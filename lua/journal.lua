-- lua/journal.lua: the journal, the one storage interface for durable runs
-- (docs/state.md has the schema): what is written and when, for steps and
-- for remote jobs of every provider. It is the single writer of every
-- row; how rows are stored is the store's (lua/store.lua, every SQL
-- statement, over SQLite in the state directory or a PostgreSQL server).
-- Store calls may wait (a lock, a server), so the journal is used from
-- tasks. Without a state directory (--no-state, the REPL) every function
-- is a cheap no-op and every lookup finds nothing.
--
-- Writes that must precede an action (a trigger's intent before the POST,
-- the run id before the wait) are durable: they commit with an fsync. Other
-- writes (status changes, results) commit without one: they survive the
-- engine dying, if not the machine.
local store = require "engine.store"
local files = require "engine.c.files"
local rules = require "engine.c.rules"
local json = require "engine.json"
local values = require "engine.values"
local errors = require "engine.c.error"
local tasks = require "engine.c.task"
local timer = require "engine.c.timer"

local journal = {}

local db          -- the open journal, or nil
local path        -- where it is, as shown (a file, or a URL without its password)
local run_id      -- this engine's flow run
local resumed     -- the run being resumed, or nil
local occurrences = {steps = {}, jobs = {}}
local write_failed = false
local lease_seconds, renewal -- a shared store's lease length, and its renewal
local fenced = false -- this engine lost its lease: it writes and acts no more
local on_fenced      -- what then (lua/run.lua's)

-- Called once when the store says this engine lost its lease (another
-- engine may run the flow now): set by lua/run.lua.
function journal.on_fenced(fn) on_fenced = fn end
function journal.fenced() return fenced end

-- (from a task of its own: the store's caller holds its connection)
local function fence(err)
  if not fenced then
    fenced = true
    if on_fenced then tasks.spawn(on_fenced, err) end
  end
end

local now = rules.wallclock
local started_at = now() -- the run's start, recorded with its row

local function env(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
end

local function is_url(text) return text:match("^%a[%w+.-]*://") ~= nil end

local function shown_url(url)
  return require("engine.store_postgres").redact(url)
end

-- Where the journal is: {url = } for a PostgreSQL server, {dir = } for a
-- directory. --state DIR|URL, else $ENGINE_STATE_URL, else
-- $ENGINE_STATE_DIR, else $XDG_STATE_HOME/engine, else
-- ~/.local/state/engine. A URL is never taken for a directory (it would
-- put its password in a path): one no store serves is refused, with nil,
-- the line and "usage". nil alone: no directory at all.
function journal.location(given)
  local where, from = given ~= "" and given or nil, "--state"
  if not where and env("ENGINE_STATE_URL") then
    where, from = env("ENGINE_STATE_URL"), "ENGINE_STATE_URL"
    if not is_url(where) then
      return nil, string.format("ENGINE_STATE_URL must be a postgresql:// URL, got %q; a directory goes in " ..
        "ENGINE_STATE_DIR", rules.redact(where)), "usage"
    end
  end
  if not where and env("ENGINE_STATE_DIR") then
    where, from = env("ENGINE_STATE_DIR"), "ENGINE_STATE_DIR"
    if is_url(where) then
      return nil, string.format("ENGINE_STATE_DIR is a URL (%s): set ENGINE_STATE_URL to it instead",
        shown_url(where)), "usage"
    end
  end
  if where and is_url(where) then
    local scheme = where:match("^(%a[%w+.-]*)://"):lower()
    if scheme ~= "postgresql" and scheme ~= "postgres" then
      return nil, string.format("%s %s: the journal lives in a directory or on PostgreSQL " ..
        "(postgresql://...); this engine has no store for %s://", from, shown_url(where), scheme), "usage"
    end
    local ok, why = require("engine.c.postgres").parse(where)
    if not ok then
      return nil, string.format("%s %s is not a URL libpq can use: %s", from, shown_url(where),
        rules.redact(why)), "usage"
    end
    return {url = where}
  end
  if where then return {dir = where} end
  if env("XDG_STATE_HOME") then return {dir = env("XDG_STATE_HOME") .. "/engine"} end
  if env("HOME") then return {dir = env("HOME") .. "/.local/state/engine"} end
  return nil
end

local function fail_open(message)
  return nil, string.format("cannot use the journal %s: %s; fix or move it, or run with --no-state",
    path, message)
end

-- This engine as a lease holder: a token of its own, its host, pid and
-- start.
local function me()
  local f = io.open("/dev/urandom", "rb")
  local raw = f and f:read(8)
  if f then f:close() end
  local hex = {}
  for i = 1, 8 do hex[i] = string.format("%02x", raw and raw:byte(i) or math.random(0, 255)) end
  local pid, host = files.whoami()
  return {holder = table.concat(hex), host = host, pid = pid, started_at = started_at}
end

-- Opens the journal at location (journal.location's), creating it (and
-- its directory) unless create is false (to read the history). Returns
-- true, or nil, a one-line error and "usage" when the setting is wrong.
function journal.open(location, create)
  if location.url then
    path = shown_url(location.url)
    location.me = create ~= false and me() or nil
  else
    path = location.dir .. "/journal.db"
    local ok, err = true, nil
    if create ~= false then ok, err = files.mkdirs(location.dir) end
    if not ok then return fail_open(err) end
  end
  local handle, err, why = store.open(location, create)
  if not handle and why == "missing" then
    return nil, string.format("no journal at %s: no run was recorded with this state %s yet", path,
      location.url and "URL" or "directory")
  end
  if not handle and why == "usage" then return nil, err, "usage" end
  if not handle then return fail_open(err) end
  db = handle
  if location.me then
    local seconds, why2 = journal.lease_seconds()
    if not seconds then db:close() db = nil return nil, why2, "usage" end
    lease_seconds = seconds
    local held, lease_err = journal.lease("engine:" .. location.me.holder)
    if not held then
      db:close()
      db = nil
      return fail_open(lease_err or "cannot take this engine's lease")
    end
  end
  return true
end

-- Whether the journal is on a server that several hosts share (its run
-- lock is a lease there, not a lock file).
function journal.shared() return db ~= nil and db.shared == true end

-- Leases: a shared store's run lock ---------------------------------------
-- Each engine on a shared store holds a lease of its own (it lives while
-- the lease does: how other hosts tell a crashed run from a running one)
-- and one per run lock it takes, renewed together every third of
-- ENGINE_STATE_LEASE seconds.

local DEFAULT_LEASE = 30

function journal.lease_seconds()
  local v = os.getenv("ENGINE_STATE_LEASE")
  if v == nil or v == "" then return DEFAULT_LEASE end
  local n = tonumber(v)
  if not n or n ~= n or n < 1 or n > 3600 then
    return nil, string.format("ENGINE_STATE_LEASE must be a number of seconds from 1 to 3600 " ..
      "(default %d), got %q", DEFAULT_LEASE, v)
  end
  return n
end

local function renew()
  local ok, held = pcall(db.renew_leases, db, lease_seconds)
  if ok and not held then
    fence({message = "its lease expired or another engine took it"})
  end -- (the server away: the next tick tries again; the lease runs out meanwhile)
end

-- Takes the lease key: true; false and the holder's row ({host, pid,
-- started_at, expires_at}) when another engine holds it; nil and a line.
-- A holder on this host whose process is gone loses it at once.
function journal.lease(key)
  local _, host = files.whoami()
  local ok, held, row = pcall(db.take_lease, db, key, lease_seconds, function(r)
    return r.host == host and not files.alive(r.pid)
  end)
  if not ok then return nil, tostring(type(held) == "table" and held.message or held) end
  if not held then return false, row end
  if not renewal then renewal = timer.every(lease_seconds / 3, renew) end
  return true, row
end

-- Whether this engine may act (trigger, cancel) as the run's holder: its
-- leases were renewed less than a lease ago (always true off a shared
-- store).
function journal.holds_lease()
  if fenced then return false end
  return not journal.shared() or db:lease_valid()
end

-- The live engines of a shared store, as a set of "host\0pid".
local function live_engines()
  if not journal.shared() then return nil end
  local ok, set = pcall(db.live_holders, db)
  return ok and set or {}
end

-- Whether an engine run (host, pid) lives: on this host, its process; on
-- a shared store, its lease; else (another host, a file) unknown: nil.
local function engine_alive(r, live)
  local _, host = files.whoami()
  if r.host == host then return files.alive(r.pid) end
  if live then return live[r.host .. "\0" .. tostring(r.pid)] == true end
  return nil
end

function journal.enabled() return db ~= nil end
function journal.path() return path end
function journal.run_id() return run_id end -- nil until the run's row is written
function journal.resumed() return resumed end


-- Writes wait in `queued` for the end of the loop turn, when one
-- transaction commits them all: a thousand syncs triggered together cost
-- one fsync, not a thousand (group commit). A durable write's caller waits
-- for that commit before it acts; a note's caller does not wait at all.
local queued = {}
local committer -- the task that commits `queued`, while one is due

-- (A stop's cancel is not a failure of the journal's; an engine that lost
-- its lease writes nothing by design, and said so.)
local function log_failure_once(err)
  if errors.is_error(err, "canceled") or fenced then return end
  if not write_failed then
    write_failed = true
    require("engine.log").error("%s (the run goes on; later journal errors are not shown)",
      tostring(type(err) == "table" and err.message or err))
  end
end

local schedule_retry

-- The run's log lines go into the journal with its writes (bounded:
-- LOG_LINES a run; the lines past it are counted, and the count is kept
-- as one last line). Lines a failed write took wait for the next one.
local LOG_LINES = 10000
local log_seq, log_waiting = 0, {}
local clog = require "engine.c.log"

local log_dropped = 0
local function take_logs()
  local taken, dropped = clog.take()
  log_dropped = dropped
  if #log_waiting == 0 and #taken == 0 then return nil end
  local lines = log_waiting
  log_waiting = {}
  for _, l in ipairs(taken) do
    log_seq = log_seq + 1
    l.seq = log_seq
    lines[#lines + 1] = l
  end
  return lines
end

local function logs_back(lines)
  table.move(log_waiting, 1, #log_waiting, #lines + 1, lines)
  log_waiting = lines
end

-- Runs the queued writes, then fn(...), in one transaction; durable (or a
-- queued durable write): the commit fsyncs. Raises an error object of kind
-- "journal" when the transaction cannot commit (each queued write then
-- holds the error too). When the store is away (a server that did not come
-- back within ENGINE_STATE_TIMEOUT), the queued notes go back in the queue
-- for a later commit; what must precede an action fails, so the action is
-- not taken.
local function write(durable, fn, ...)
  if fenced then
    error(errors.error("journal", "this engine lost its lease: it writes nothing more", {path = path}), 0)
  end
  -- A server store takes the queue once the connection is this write's:
  -- what was queued while it waited for it commits with it. (SQLite
  -- decides its fsync before BEGIN, so it takes the queue first.)
  local items
  local function take()
    if not items then
      items = queued
      queued = {}
    end
  end
  if not db.shared then take() end
  for _, item in ipairs(items or {}) do durable = durable or item.durable end
  local lines = run_id and take_logs()
  local ok, a, b = pcall(db.transaction, db, durable, function(...)
    take()
    for _, item in ipairs(items) do
      item.ok, item.a, item.b = pcall(item.fn, table.unpack(item, 1, item.n))
      db:pause() -- a thousand claims do not hold the loop at once
    end
    if lines and #lines > 0 then store.insert_logs(db, run_id, lines) end
    if fn then return fn(...) end
  end, ...)
  take() -- (the store failed before its transaction began)
  if lines and not ok then logs_back(lines) end
  if ok then
    for _, item in ipairs(items) do
      if not item.ok and not item.durable then log_failure_once(item.a) end
    end
    return a, b
  end
  if type(a) == "table" and a.fenced then fence(a) end
  local err = errors.error("journal", string.format("cannot write the journal: %s", tostring(a)),
    {path = path})
  local kept = {}
  for _, item in ipairs(items) do
    if not item.durable and type(a) == "table" and a.retry and not fenced then
      item.ok = nil
      kept[#kept + 1] = item
    else
      item.ok, item.a = false, err
    end
  end
  if #kept > 0 then
    table.move(queued, 1, #queued, #kept + 1, kept)
    queued = kept
    err.notes_kept = true
    schedule_retry()
  end
  error(err, 0)
end

-- Commits what is queued, when the tasks that run in this loop turn have
-- queued theirs (a stop does not keep it from committing).
local committer_delayed = false
local function commit_queued(delay)
  pcall(timer.sleep, delay or 0) -- (cancelled: commit now)
  committer_delayed = false
  local kept = false
  if #queued > 0 then
    local ok, err = pcall(write, false)
    kept = not ok and type(err) == "table" and err.notes_kept
    if not ok and not kept then log_failure_once(err) end
  end
  -- what was queued while this commit waited on the store goes next (or,
  -- the store being away, a while later)
  committer = nil
  if kept then
    schedule_retry()
  elseif #queued > 0 then
    committer = tasks.spawn(commit_queued)
  end
end

-- Notes kept while the store is away are tried again a while later, while
-- the run has other tasks (at its end, the run's last write takes them).
local RETRY_NOTES = 2
function schedule_retry()
  if committer or not tasks.current() then return end
  local live = tasks.stats().tasks
  if live <= 1 then return end
  committer, committer_delayed = tasks.spawn(commit_queued, RETRY_NOTES), true
end

-- fn(...) at the next group commit. durable: waits for the commit (fsync)
-- and returns fn's results or raises; else returns at once. Outside a task
-- (start, end) it writes at once.
local function queue(durable, fn, ...)
  if not tasks.current() then return write(durable, fn, ...) end
  local item = table.pack(...)
  item.fn, item.durable = fn, durable
  queued[#queued + 1] = item
  if not committer then
    committer = tasks.spawn(commit_queued)
  elseif durable and committer_delayed then
    committer:cancel() -- a retry's pause: what must precede an action does not wait for it
  end
  if not durable then return end
  while item.ok == nil and committer do committer:wait() end
  if not item.ok then error(item.a or errors.error("journal", "cannot write the journal", {path = path}), 0) end
  return item.a, item.b
end

-- A write the run can go on without (status changes, results): queued, and
-- a failure is logged once instead of raised.
local function note(fn, ...)
  if tasks.current() then return queue(false, fn, ...) end
  local ok, err = pcall(write, false, fn, ...)
  if not ok then log_failure_once(err) end
end

-- Text the journal keeps is scrubbed as what the terminal shows: a token
-- inside an error (a trigger URL, a `token =` value) is never stored.
local function scrub(text)
  if type(text) ~= "string" then return text end
  return rules.redact(text)
end

local function encode(v)
  local ok, text = pcall(json.encode, v)
  if ok then return text end
end

-- What a step returned ({n =, ...}) as JSON: {"n": n, "v": [values]}, nil
-- as null, each value written by lua/values.lua so that it reads back
-- exactly (integers, floats to the bit, any bytes, nil inside tables). A
-- value that cannot (a function, a task, a cycle, inf, ...) makes it nil:
-- the row's results stay NULL and --resume runs the step again.
local MAX_RESULTS = 100000 -- more would not unpack again
local function encode_results(r)
  if math.type(r.n) ~= "integer" or r.n < 0 or r.n > MAX_RESULTS then return nil end
  local v = {}
  for i = 1, r.n do
    if r[i] == nil then
      v[i] = "null"
    else
      v[i] = values.encode(r[i])
      if not v[i] then return nil end
    end
  end
  return string.format('{"n":%d,"v":[%s]}', r.n, table.concat(v, ","))
end

-- Rows written by lua-cjson before read too (nil inside tables then was
-- written as null: it reads as nil now).
local function decode_results(text)
  local t = type(text) == "string" and values.decode(text)
  if type(t) ~= "table" or math.type(t.n) ~= "integer" or t.n < 0 or t.n > MAX_RESULTS
      or type(t.v) ~= "table" then
    return nil
  end
  for k in pairs(t.v) do
    if math.type(k) ~= "integer" or k < 1 or k > t.n then return nil end
  end
  local out = {n = t.n}
  for i = 1, t.n do out[i] = t.v[i] end
  return out
end

-- The run ------------------------------------------------------------------

-- The run's row is written with the first step or sync, not at start: a
-- run that does neither (a quick -e, a REPL session) leaves no record and
-- costs no write (a write makes SQLite create, sync and checkpoint the WAL).
local pending_run

-- identify: called once, before the journal is first used for a step or
-- a sync (run.fix_identity: the run's parameters and what it resumes, via
-- journal.set_identity, unless flow.params told them first).
local identify

function journal.begin_run(flow, args, first_use)
  if not db then return end
  clog.keep(LOG_LINES)
  pending_run = {flow = flow, args = args}
  identify = first_use
end

local function identified()
  if identify then
    local fn = identify
    identify = nil
    fn()
  end
end

-- The run's parameters (canonical text, or nil: it is known by its
-- arguments) and the run it resumes, if any.
function journal.set_identity(params, resume_from)
  identify = nil
  if not pending_run then return end
  pending_run.params, pending_run.resume_from = params, resume_from
  resumed = resume_from
end

-- This engine's run id, its row written first if it was not yet.
-- (Tasks that start at once wait for the first one's row: a store whose
-- writes wait on a server would otherwise write one row each.)
local run_row_lock
local function ensure_run()
  identified()
  if run_id or not pending_run then return run_id end
  local me = tasks.current()
  if me then
    run_row_lock = run_row_lock or require("engine.c.mutex").new()
    run_row_lock:lock()
    if run_id or not pending_run then
      run_row_lock:unlock()
      return run_id
    end
  end
  local p = pending_run
  local pid, host = files.whoami()
  local ok, id = pcall(write, false, function()
    return store.insert_run(db, {flow = p.flow, args = encode(p.args), pid = pid, host = host,
      started_at = started_at, resumed_from = p.resume_from, params = p.params})
  end)
  if me then run_row_lock:unlock() end
  if not ok then error(id, 0) end
  run_id = id
  pending_run = nil
  return run_id
end

-- Ends the run's lease-holding: no more renewals, the leases released.
local function release()
  if renewal then renewal:stop() renewal = nil end
  if journal.shared() and not fenced then pcall(db.release_leases, db) end
end

-- The run ends before it began (a lock another engine holds): this
-- engine's leases go back at once.
function journal.abandon()
  if db then release() end
end

-- summary: the run's --summary-json document (scrubbed), kept with it.
function journal.end_run(outcome, exit_code, summary)
  if not db or fenced then return end
  if not run_id then return release() end
  -- the engine's own cleanup: a wait for the store's lock is not stopped
  local ok, err = tasks.shield(pcall, write, false, function()
    local last = take_logs() or {} -- (lines logged since write took its own)
    if log_dropped > 0 then
      log_seq = log_seq + 1
      last[#last + 1] = {seq = log_seq, at = now(), level = "WARN",
        text = string.format("%d more log lines were not kept (a run keeps %d)", log_dropped, LOG_LINES)}
    end
    store.insert_logs(db, run_id, last)
    store.end_run(db, run_id, now(), outcome, exit_code, summary)
  end)
  if not ok then log_failure_once(err) end
  release()
end

-- A run's arguments as the journal keeps them (JSON), and as a line.
function journal.encode_args(args) return encode(args) end

function journal.show_args(text)
  local ok, args = pcall(json.decode, text or "")
  if not ok or type(args) ~= "table" or #args == 0 then return "no arguments" end
  local shown = {}
  for i, a in ipairs(args) do shown[i] = string.format("%q", tostring(a)) end
  return table.concat(shown, " ")
end

-- Whether an earlier run is this one's: the same parameters when the flow
-- has them, else the same arguments.
function journal.same_identity(r, args, params)
  if params then return r.params == params end
  return r.params == nil and r.args == encode(args)
end

-- The run `id`, or the latest run of flow with this identity (parameters,
-- else arguments) that did not succeed; else nil, the reason, and the
-- latest run of the flow with another identity that did not succeed.
function journal.resume_target(flow, args, params, id)
  if not db then return nil, "--resume needs the journal (it cannot be used with --no-state)" end
  if id then
    local r = store.run(db, id)
    if not r then return nil, string.format("there is no run %d in %s", id, path) end
    if r.flow ~= flow then
      return nil, string.format("run %d ran %s, not %s", id, r.flow, flow)
    end
    return r
  end
  local last = store.last_run(db, flow, params, encode(args))
  local what = params and "these parameters" or "these arguments"
  if last and last.outcome == "ok" then
    return nil, string.format("its last run with %s (%d) succeeded; nothing to resume", what, last.id)
  end
  if last then return last end
  local other = store.last_failed_run(db, flow)
  return nil, string.format("this flow never ran with %s", what), other
end

-- Steps --------------------------------------------------------------------

local function next_occurrence(counts, key)
  counts[key] = (counts[key] or 0) + 1
  return counts[key]
end

-- Counts the step and returns its occurrence; when resuming, also the
-- results the resumed run recorded for it (a table with n) if it completed
-- there, else nil and a note for the log when the step cannot be matched.
local resumed_steps -- names of the resumed run's steps, in start order
function journal.step_occurrence(name)
  identified()
  local occurrence = next_occurrence(occurrences.steps, name)
  occurrences.started = (occurrences.started or 0) + 1
  if not db or not resumed then return occurrence end
  local row = store.step(db, resumed, name, occurrence)
  if row and row.status == "ok" then
    local results = decode_results(row.results)
    if results then return occurrence, results end
    return occurrence, nil, string.format("step %s completed in engine run %d but what it returned " ..
      "could not be recorded exactly (docs/state.md says what can); running it again", name, resumed)
  end
  if not row then
    resumed_steps = resumed_steps or store.step_names(db, resumed)
    local then_name = resumed_steps[occurrences.started] and resumed_steps[occurrences.started].name
    if then_name and then_name ~= name then
      return occurrence, nil, string.format("the flow changed since engine run %d: its step %d was %q, " ..
        "now it is %q; running %q as a fresh step", resumed, occurrences.started, then_name, name, name)
    end
  end
  return occurrence
end

local function run_recorded()
  local ok, err = pcall(ensure_run)
  if not ok then log_failure_once(err) end
  return ok and run_id ~= nil
end

-- This engine's run id, its row written now if it was not yet (nil
-- without a journal).
function journal.recorded_run_id()
  if db then run_recorded() end
  return run_id
end

-- origin: "recorded" for a step taken from the resumed run, not run.
function journal.step_started(name, occurrence, origin)
  if not db or not run_recorded() then return end
  -- written at once: later writes name its row
  local ok, id = pcall(write, false, function()
    return store.insert_step(db, run_id, name, occurrence, now(), origin)
  end)
  if not ok then log_failure_once(id) return nil end
  return id
end

-- results: a table with n (what the step returned), kept when JSON can
-- hold it so --resume can hand it back.
function journal.step_finished(id, status, err, results)
  if not db or not id then return end
  note(function()
    store.finish_step(db, id, status, now(), scrub(err), results and encode_results(results))
  end)
end

-- Remote jobs --------------------------------------------------------------
-- A job is a provider's resource (a sync, a connection, a job, as the
-- vendor calls it) and the remote run this engine started or adopted for it,
-- counted by occurrence as steps are.

function journal.job_occurrence(provider, resource)
  identified()
  return next_occurrence(occurrences.jobs, provider .. "\0" .. tostring(resource))
end

-- When resuming: the result the resumed run recorded for this job and
-- occurrence if it succeeded, the engine run that started it, and its
-- remote run; else nil.
function journal.recorded_job(provider, resource, occurrence)
  if not db or not resumed then return nil end
  local row = store.recorded_job(db, resumed, provider, tostring(resource), occurrence)
  if row and row.result then
    local ok, result = pcall(json.decode, row.result)
    if ok and type(result) == "table" then return result, row.started_by, row.remote_run end
  end
end

-- When resuming: the resumed run's row for this job and occurrence when
-- its run ended without success ({status, remote_run}), else nil.
function journal.resumed_job(provider, resource, occurrence)
  if not db or not resumed then return nil end
  return store.resumed_job(db, resumed, provider, tostring(resource), occurrence)
end

-- A row as the machinery reads it: the intent decoded.
local function open_row(row)
  if row and row.intent then
    local ok, intent = pcall(json.decode, row.intent)
    row.intent = ok and type(intent) == "table" and intent or nil
  end
  return row
end

-- One row by id (nil once it is final): {id, run, occurrence, remote_run
-- (or nil: only the intent), sent_at, intent, started_by, pid, host,
-- ended_at (of the engine run)}.
function journal.open_row(row_id)
  if not db then return nil end
  return open_row(store.open_job(db, row_id))
end

-- Whether the engine run that wrote a row still lives (on this host; a
-- run of another host is taken to live until it records its end).
function journal.row_owner_alive(row)
  if row.ended_at then return false end
  local alive = engine_alive(row, live_engines())
  if alive == nil then return true end
  return alive
end

-- The runs --resume continues: the resumed run and the runs it resumed in
-- turn, as a set.
local chain
function journal.resume_chain()
  if chain then return chain end
  chain = {}
  local id = resumed
  while db and id and not chain[id] do
    chain[id] = true
    id = store.resumed_from(db, id)
  end
  return chain
end

local function new_job(provider, resource, occurrence, intent, label)
  local t = now()
  return store.insert_job(db, {run = run_id, provider = provider, resource = tostring(resource),
    occurrence = occurrence, label = label, sent_at = t, intent = intent and encode(intent),
    status = "triggering", started_at = t, origin = "started", started_by = run_id})
end

-- Before the trigger, atomically (one immediate transaction, so of
-- engines racing for one resource exactly one triggers): the rows of
-- earlier runs still open for it, or, when there are none, the intent
-- (durable, with what the provider read before: intent). Returns the
-- intent's row id, or nil and the open rows; nil, nil without a journal.
function journal.claim(provider, resource, occurrence, intent, label)
  if not db then return nil, nil end
  ensure_run() -- raises kind "journal": then nothing is triggered
  if not run_id then return nil, nil end
  local row, open = queue(true, function()
    db:guard(provider .. "\0" .. tostring(resource)) -- engines on other hosts claim it one at a time
    local rows = store.open_jobs(db, provider, tostring(resource), run_id)
    if #rows > 0 then return false, rows end
    return new_job(provider, resource, occurrence, intent, label)
  end)
  if row then return row end
  for _, r in ipairs(open) do open_row(r) end
  return nil, open
end

-- Before the trigger, unconditionally (force): the intent, durable.
function journal.intent(provider, resource, occurrence, intent, label)
  if not db then return end
  ensure_run() -- raises kind "journal": then nothing is triggered
  if not run_id then return end
  return (queue(true, new_job, provider, resource, occurrence, intent, label))
end

-- An earlier row is settled: its run reached `status`, or was adopted.
function journal.settle(row_id, status, note_text)
  if not db or not row_id then return end
  note(function() store.settle_job(db, row_id, status, scrub(note_text), now()) end)
end

-- The run id, durable, before the wait starts. Without a row (adopted from
-- an earlier run, recorded in the resumed one, or a run the flow named),
-- one is made, saying so: origin ("adopted", "recorded", "waited") and
-- started_by (the engine run that started the remote run, when known).
-- The run has started by now, so a failure to record it is logged, not
-- raised: the wait goes on either way.
function journal.run_started(row_id, provider, resource, occurrence, remote_run, link, origin, started_by, label)
  if not db or (row_id == nil and resource == nil) or not run_recorded() then return end
  local ok, id = pcall(queue, true, function()
    if row_id then
      store.job_started(db, row_id, remote_run ~= nil and tostring(remote_run) or nil, link)
      return row_id
    end
    local t = now()
    return store.insert_job(db, {run = run_id, provider = provider, resource = tostring(resource),
      occurrence = occurrence or 0, label = label, remote_run = remote_run ~= nil and tostring(remote_run) or nil,
      status = "triggered", started_at = t, link = link, origin = origin or "waited", started_by = started_by})
  end)
  if ok then return id end
  log_failure_once(id)
  return row_id
end

-- A trigger failed and may have started a run (its answer was lost, the
-- retries ran out): the error is kept, the intent stays open for the next
-- run's lost-trigger search.
function journal.trigger_failed(row_id, err)
  if not db or not row_id then return end
  note(function() store.trigger_failed(db, row_id, scrub(err), now()) end)
end

function journal.job_status(row_id, status)
  if not db or not row_id then return end
  note(function() store.job_status(db, row_id, status, now()) end)
end

-- The wait ended. final: the remote run reached a final state (a wait that
-- was interrupted and left the run going is not final); ok: it succeeded.
function journal.job_finished(row_id, f)
  if not db or not row_id then return end
  note(function()
    store.job_finished(db, row_id, {status = f.status, final = f.final, ok = f.ok,
      counts = f.counts and next(f.counts) and encode(f.counts) or nil, ended_at = now(), link = f.link,
      error = scrub(f.error), result = f.result and encode(f.result),
      rejected = f.rejected and scrub(encode(f.rejected))})
  end)
end

-- History --------------------------------------------------------------------

-- A run's outcome as shown: its own, "running" while its engine lives, or
-- "crashed" when the engine died without ending it.
local function shown_outcome(r, live)
  if r.outcome then return r.outcome end
  if engine_alive(r, live) then
    return "running"
  end
  return "crashed"
end

-- The latest runs (newest first), filtered (store.runs's filters; an
-- outcome "running" or "crashed" keeps the runs shown so).
function journal.runs(limit, filters)
  local live = live_engines()
  local rows = store.runs(db, limit, filters)
  if filters and (filters.outcome == "running" or filters.outcome == "crashed") then
    local kept = {}
    for _, r in ipairs(rows) do
      if shown_outcome(r, live) == filters.outcome then kept[#kept + 1] = r end
    end
    rows = kept
  end
  for _, r in ipairs(rows) do
    r.outcome = shown_outcome(r, live)
    local ok, args = pcall(json.decode, r.args)
    r.args = ok and args or {}
  end
  return rows
end

function journal.run(id)
  local r = store.run(db, id)
  if not r then return nil end
  r.outcome = shown_outcome(r, live_engines())
  local ok, args = pcall(json.decode, r.args)
  r.args = ok and args or {}
  r.steps = store.steps(db, id)
  r.jobs = store.jobs(db, id)
  r.summary = function() return store.summary(db, id) end
  r.has_summary = function() return store.has_summary(db, id) end
  r.logs = function() return store.logs(db, id) end
  r.statuses = function() return store.job_statuses(db, id) end
  -- (a run may have ten thousand jobs: nothing decoded that is not there,
  -- and no error raised and caught for each that has none)
  local null = json.null
  for _, j in ipairs(r.jobs) do
    local decoded, counts = false, nil
    if j.counts and j.counts ~= "" then decoded, counts = pcall(json.decode, j.counts) end
    j.counts = decoded and type(counts) == "table" and counts or {}
    for k, v in pairs(j.counts) do
      if v == null then j.counts[k] = nil end
    end
    local read, rows = false, nil
    if j.rejected and j.rejected ~= "" then read, rows = pcall(json.decode, j.rejected) end
    j.rejected = read and type(rows) == "table" and rows or nil
  end
  return r
end

-- Deletes runs that started more than `days` days ago; returns how many.
-- A run is kept while its engine lives or any of its jobs is open (its
-- intent is what keeps a later run from triggering twice). With `daily`,
-- only when the last prune was a day ago or more.
function journal.prune(days, daily)
  if not db then return 0 end
  local t = now()
  -- (most runs: one read, no write transaction; the write checks again)
  if daily and store.pruned_today(db, t) then return 0 end
  local live = live_engines()
  return (write(false, function()
    return store.prune(db, t - days * 86400, t, daily, function(r)
      return engine_alive(r, live) == false
    end)
  end))
end

-- Raises unless this engine can write to the journal (engine doctor): a
-- transaction that changes nothing.
function journal.check_writable()
  write(false, function() store.touch(db) end)
end

-- Whether a write failed during this run (the record is incomplete).
function journal.write_failed() return write_failed end

-- For the UI: the flows and hosts runs name, each job's outcome tally per
-- run, and one resource's jobs across runs.
function journal.flows_and_hosts() return store.flows_and_hosts(db) end
function journal.job_tallies(ids) return store.job_tallies(db, ids) end
function journal.resource_jobs(provider, resource, limit)
  return store.resource_jobs(db, provider, tostring(resource), limit)
end

return journal
