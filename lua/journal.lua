-- lua/journal.lua: the journal, the one storage interface for durable runs
-- (docs/state.md has the schema). Today it is SQLite in WAL mode, one file
-- in the state directory (engine/sqlite.c); a shared server store would
-- implement these same functions. Without a state directory (--no-state,
-- the REPL) every function is a cheap no-op and every lookup finds nothing.
--
-- Writes that must precede an action (a trigger's intent before the POST,
-- the run id before the wait) are durable: they commit with an fsync. Other
-- writes (status changes, results) commit without one: they survive the
-- engine dying, if not the machine.
local sqlite = require "engine.c.sqlite"
local files = require "engine.c.files"
local rules = require "engine.c.rules"
local json = require "engine.json"
local values = require "engine.values"

local journal = {}

local SCHEMA_VERSION = 1
local SCHEMA = [[
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY, flow TEXT NOT NULL, args TEXT NOT NULL,
  pid INTEGER NOT NULL, host TEXT NOT NULL, started_at REAL NOT NULL,
  ended_at REAL, outcome TEXT, exit_code INTEGER, resumed_from INTEGER, params TEXT);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow, args, id);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE TABLE IF NOT EXISTS steps (
  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  name TEXT NOT NULL, occurrence INTEGER NOT NULL, status TEXT NOT NULL,
  started_at REAL NOT NULL, ended_at REAL, error TEXT, results TEXT, origin TEXT);
CREATE INDEX IF NOT EXISTS steps_by_run ON steps (run, name, occurrence);
CREATE TABLE IF NOT EXISTS syncs (
  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  sync_id INTEGER NOT NULL, occurrence INTEGER NOT NULL, sent_at REAL,
  sync_run_id INTEGER, status TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0,
  records_processed INTEGER, records_updated INTEGER, records_failed INTEGER,
  records_invalid INTEGER, started_at REAL NOT NULL, ended_at REAL, link TEXT,
  error TEXT, result TEXT, origin TEXT, started_by INTEGER);
CREATE INDEX IF NOT EXISTS syncs_by_run ON syncs (run, sync_id, occurrence);
CREATE INDEX IF NOT EXISTS syncs_open ON syncs (sync_id) WHERE final = 0;
CREATE TABLE IF NOT EXISTS statuses (
  sync INTEGER NOT NULL REFERENCES syncs (id) ON DELETE CASCADE,
  at REAL NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS statuses_by_sync ON statuses (sync);
]]

-- Columns added to version 1 since it first shipped: nullable, so an older
-- engine that shares the file ignores them (no version change for it to
-- refuse). An older journal gets them when an engine opens it.
local ADDED_COLUMNS = {
  {"steps", "origin", "TEXT"},       -- "recorded": taken from the resumed run, not run
  {"syncs", "origin", "TEXT"},       -- "started", "adopted", "recorded" or "waited"
  {"syncs", "started_by", "INTEGER"}, -- the engine run that started the remote run
  {"runs", "params", "TEXT"},         -- the flow's parameters as flow.params parsed them
}

local function missing_columns(handle)
  local missing = {}
  local have = {}
  for _, c in ipairs(ADDED_COLUMNS) do
    if not have[c[1]] then
      have[c[1]] = {}
      for _, col in ipairs(handle:rows("PRAGMA table_info(" .. c[1] .. ")")) do have[c[1]][col.name] = true end
    end
    if not have[c[1]][c[2]] then missing[#missing + 1] = c end
  end
  return #missing > 0 and missing or nil
end

local function add_columns(handle)
  for _, c in ipairs(missing_columns(handle) or {}) do
    handle:exec(string.format("ALTER TABLE %s ADD COLUMN %s %s", c[1], c[2], c[3]))
  end
end

local db          -- the open journal, or nil
local path        -- its file
local run_id      -- this engine's flow run
local resumed     -- the run being resumed, or nil
local occurrences = {steps = {}, syncs = {}}
local write_failed = false

local now = rules.wallclock
local started_at = now() -- the run's start, recorded with its row

-- The state directory: --state DIR, else $ENGINE_STATE_DIR, else
-- $XDG_STATE_HOME/engine, else ~/.local/state/engine.
function journal.state_dir(given)
  if given and given ~= "" then return given end
  local function env(name)
    local v = os.getenv(name)
    if v and v ~= "" then return v end
  end
  if env("ENGINE_STATE_DIR") then return env("ENGINE_STATE_DIR") end
  if env("XDG_STATE_HOME") then return env("XDG_STATE_HOME") .. "/engine" end
  if env("HOME") then return env("HOME") .. "/.local/state/engine" end
  return nil
end

local function fail_open(message)
  return nil, string.format("cannot use the journal %s: %s; fix or move it, or run with --no-state",
    path, message)
end

-- Opens DIR/journal.db, creating it (and DIR) unless create is false (to
-- read the history). Returns true, or nil and a one-line error.
function journal.open(dir, create)
  path = dir .. "/journal.db"
  local ok, err = true, nil
  if create ~= false then ok, err = files.mkdirs(dir) end
  if not ok then return fail_open(err) end
  local handle
  handle, err = sqlite.open(path, create ~= false)
  if not handle and create == false and err:find("does not exist", 1, true) then
    return nil, string.format("no journal at %s: no run was recorded with this state directory yet", path)
  end
  if not handle then return fail_open(err) end
  ok, err = pcall(function()
    handle:exec("PRAGMA foreign_keys = ON")
    -- the schema version, and how many of ADDED_COLUMNS it has (one query:
    -- it is the whole cost of a journal that needs nothing)
    local function version()
      local ok_meta, rows = pcall(handle.rows, handle,
        "SELECT key, value FROM meta WHERE key IN ('schema_version', 'added_columns')")
      local found = {}
      for _, row in ipairs(ok_meta and rows or {}) do found[row.key] = tonumber(row.value) end
      return found.schema_version, found.added_columns or 0
    end
    local v, added = version()
    if v == SCHEMA_VERSION and added == #ADDED_COLUMNS then return end -- the usual case
    handle:exec("BEGIN IMMEDIATE")
    if v == SCHEMA_VERSION then add_columns(handle) end
    handle:exec(SCHEMA)
    v = version()
    if not v then
      handle:run("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", tostring(SCHEMA_VERSION))
    elseif v > SCHEMA_VERSION then
      error(string.format("it has schema version %d; this engine knows %d (upgrade the engine)",
        v, SCHEMA_VERSION), 0)
    end
    handle:run("INSERT OR REPLACE INTO meta (key, value) VALUES ('added_columns', ?)", tostring(#ADDED_COLUMNS))
    handle:exec("COMMIT")
  end)
  if not ok then
    pcall(handle.exec, handle, "ROLLBACK")
    handle:close()
    return fail_open((tostring(err):gsub(" %(" .. path:gsub("%p", "%%%0") .. "%)$", "")))
  end
  db = handle
  return true
end

function journal.enabled() return db ~= nil end
function journal.path() return path end
function journal.run_id() return run_id end -- nil until the run's row is written
function journal.resumed() return resumed end

local errors = require "engine.c.error"
local tasks = require "engine.c.task"
local timer = require "engine.c.timer"

-- Writes wait in `queued` for the end of the loop turn, when one
-- transaction commits them all: a thousand syncs triggered together cost
-- one fsync, not a thousand (group commit). A durable write's caller waits
-- for that commit before it acts; a note's caller does not wait at all.
local queued = {}
local committer -- the task that commits `queued`, while one is due

local function log_failure_once(err)
  if not write_failed then
    write_failed = true
    require("engine.log").error("%s (the run goes on; later journal errors are not shown)",
      tostring(type(err) == "table" and err.message or err))
  end
end

-- Runs the queued writes, then fn(...), in one transaction; durable (or a
-- queued durable write): the commit fsyncs. Raises an error object of kind
-- "journal" when the transaction cannot commit (each queued write then
-- holds the error too).
local function write(durable, fn, ...)
  local items = queued
  queued = {}
  for _, item in ipairs(items) do durable = durable or item.durable end
  if durable then db:exec("PRAGMA synchronous = FULL") end
  local ok, a, b = pcall(function(...)
    db:exec("BEGIN IMMEDIATE")
    for _, item in ipairs(items) do
      item.ok, item.a, item.b = pcall(item.fn, table.unpack(item, 1, item.n))
      if not item.ok and not item.durable then log_failure_once(item.a) end
    end
    local x, y
    if fn then x, y = fn(...) end
    db:exec("COMMIT")
    return x, y
  end, ...)
  if durable then pcall(db.exec, db, "PRAGMA synchronous = NORMAL") end
  if not ok then
    pcall(db.exec, db, "ROLLBACK")
    local err = errors.error("journal", string.format("cannot write the journal: %s", tostring(a)),
      {path = path})
    for _, item in ipairs(items) do
      if item.ok then item.ok, item.a = false, err end
    end
    error(err, 0)
  end
  return a, b
end

-- Commits what is queued, when the tasks that run in this loop turn have
-- queued theirs (a stop does not keep it from committing).
local function commit_queued()
  pcall(timer.sleep, 0)
  committer = nil
  if #queued > 0 then
    local ok, err = pcall(write, false)
    if not ok then log_failure_once(err) end
  end
end

-- fn(...) at the next group commit. durable: waits for the commit (fsync)
-- and returns fn's results or raises; else returns at once. Outside a task
-- (start, end) it writes at once.
local function queue(durable, fn, ...)
  if not tasks.current() then return write(durable, fn, ...) end
  local item = table.pack(...)
  item.fn, item.durable = fn, durable
  queued[#queued + 1] = item
  if not committer then committer = tasks.spawn(commit_queued) end
  if not durable then return end
  committer:wait()
  if not item.ok then error(item.a, 0) end
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
local function ensure_run()
  identified()
  if run_id or not pending_run then return run_id end
  local p = pending_run
  local pid, host = files.whoami()
  run_id = select(2, write(false, function()
    return db:run("INSERT INTO runs (flow, args, pid, host, started_at, resumed_from, params) " ..
      "VALUES (?, ?, ?, ?, ?, ?, ?)", p.flow, encode(p.args), pid, host, started_at, p.resume_from, p.params)
  end))
  pending_run = nil
  return run_id
end

function journal.end_run(outcome, exit_code)
  if not db or not run_id then return end
  local ok, err = pcall(write, false, function()
    db:run("UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ? WHERE id = ?",
      now(), outcome, exit_code, run_id)
  end)
  if not ok then log_failure_once(err) end
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
  local rows
  if id then
    rows = db:rows("SELECT * FROM runs WHERE id = ?", id)
    if not rows[1] then return nil, string.format("there is no run %d in %s", id, path) end
    if rows[1].flow ~= flow then
      return nil, string.format("run %d ran %s, not %s", id, rows[1].flow, flow)
    end
    return rows[1]
  end
  if params then
    rows = db:rows("SELECT * FROM runs WHERE flow = ? AND params = ? ORDER BY id DESC LIMIT 1", flow, params)
  else
    rows = db:rows("SELECT * FROM runs WHERE flow = ? AND args = ? AND params IS NULL ORDER BY id DESC LIMIT 1",
      flow, encode(args))
  end
  local last = rows[1]
  local what = params and "these parameters" or "these arguments"
  if last and last.outcome == "ok" then
    return nil, string.format("its last run with %s (%d) succeeded; nothing to resume", what, last.id)
  end
  if last then return last end
  local other = db:rows("SELECT * FROM runs WHERE flow = ? AND (outcome IS NULL OR outcome != 'ok') " ..
    "ORDER BY id DESC LIMIT 1", flow)[1]
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
  local row = db:rows("SELECT status, results FROM steps WHERE run = ? AND name = ? AND occurrence = ?",
    resumed, name, occurrence)[1]
  if row and row.status == "ok" then
    local results = decode_results(row.results)
    if results then return occurrence, results end
    return occurrence, nil, string.format("step %s completed in engine run %d but what it returned " ..
      "could not be recorded exactly (docs/state.md says what can); running it again", name, resumed)
  end
  if not row then
    resumed_steps = resumed_steps or db:rows("SELECT name FROM steps WHERE run = ? ORDER BY id", resumed)
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
    return select(2, db:run("INSERT INTO steps (run, name, occurrence, status, started_at, origin) " ..
      "VALUES (?, ?, ?, 'running', ?, ?)", run_id, name, occurrence, now(), origin))
  end)
  if not ok then log_failure_once(id) return nil end
  return id
end

-- results: a table with n (what the step returned), kept when JSON can
-- hold it so --resume can hand it back.
function journal.step_finished(id, status, err, results)
  if not db or not id then return end
  note(function()
    db:run("UPDATE steps SET status = ?, ended_at = ?, error = ?, results = ? WHERE id = ?",
      status, now(), scrub(err), results and encode_results(results), id)
  end)
end

-- Syncs --------------------------------------------------------------------

function journal.sync_occurrence(sync_id)
  identified()
  return next_occurrence(occurrences.syncs, sync_id)
end

-- When resuming: the result the resumed run recorded for this sync and
-- occurrence if it completed, else nil.
function journal.recorded_sync(sync_id, occurrence)
  if not db or not resumed then return nil end
  local rows = db:rows("SELECT status, result, run, started_by FROM syncs WHERE run = ? AND sync_id = ? " ..
    "AND occurrence = ? AND status IN ('completed', 'skipped') AND final = 1 AND error IS NULL",
    resumed, sync_id, occurrence)
  if rows[1] and rows[1].result then
    local ok, result = pcall(json.decode, rows[1].result)
    if ok and type(result) == "table" then return result, rows[1].started_by end
  end
end

-- Rows of earlier runs whose Census run of sync_id has not reached a final
-- state, newest first: {id, run, occurrence, sync_run_id (or nil: only
-- the intent), sent_at, pid, host, ended_at (of the engine run)}.
local OPEN_ROWS = "SELECT s.id, s.run, s.occurrence, s.sync_run_id, s.sent_at, s.started_by, r.pid, r.host, r.ended_at " ..
  "FROM syncs s JOIN runs r ON r.id = s.run WHERE s.sync_id = ? AND s.final = 0 AND s.run != ? ORDER BY s.id DESC"

function journal.open_syncs(sync_id)
  if not db then return {} end
  return db:rows(OPEN_ROWS, sync_id, run_id or -1)
end

-- One row by id, as open_syncs returns it (nil once it is final).
function journal.open_row(row_id)
  if not db then return nil end
  return db:rows("SELECT s.id, s.run, s.occurrence, s.sync_run_id, s.sent_at, s.started_by, r.pid, r.host, r.ended_at " ..
    "FROM syncs s JOIN runs r ON r.id = s.run WHERE s.id = ? AND s.final = 0", row_id)[1]
end

-- Whether the engine run that wrote a row still lives (on this host; a
-- run of another host is taken to live until it records its end).
function journal.row_owner_alive(row)
  if row.ended_at then return false end
  local _, host = files.whoami()
  if row.host ~= host then return true end
  return files.alive(row.pid)
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
    local row = db:rows("SELECT resumed_from FROM runs WHERE id = ?", id)[1]
    id = row and row.resumed_from
  end
  return chain
end

-- Before the POST, atomically (one immediate transaction, so of engines
-- racing for one sync exactly one triggers): the rows of earlier runs
-- still open for this sync, or, when there are none, the intent (durable).
-- Returns the intent's row id, or nil and the open rows; nil, nil without
-- a journal.
function journal.claim(sync_id, occurrence)
  if not db then return nil, nil end
  ensure_run() -- raises kind "journal": then nothing is triggered
  if not run_id then return nil, nil end
  local t = now()
  local row, open = queue(true, function()
    local rows = db:rows(OPEN_ROWS, sync_id, run_id)
    if #rows > 0 then return false, rows end
    return select(2, db:run("INSERT INTO syncs (run, sync_id, occurrence, sent_at, status, started_at, origin, " ..
      "started_by) VALUES (?, ?, ?, ?, 'triggering', ?, 'started', ?)", run_id, sync_id, occurrence, t, t, run_id))
  end)
  if row then return row end
  return nil, open
end

-- An earlier row is settled: its run reached `status`, or was adopted.
function journal.settle(row_id, status, note_text)
  if not db then return end
  note(function()
    db:run("UPDATE syncs SET final = 1, status = ?, error = coalesce(?, error), ended_at = coalesce(ended_at, ?) WHERE id = ?",
      status, scrub(note_text), now(), row_id)
  end)
end

-- Before the POST: the intent, durable. Returns the row id.
function journal.intent(sync_id, occurrence)
  if not db then return end
  ensure_run() -- raises kind "journal": then nothing is triggered
  if not run_id then return end
  local t = now()
  return select(2, queue(true, function()
    return db:run("INSERT INTO syncs (run, sync_id, occurrence, sent_at, status, started_at, origin, started_by) " ..
      "VALUES (?, ?, ?, ?, 'triggering', ?, 'started', ?)", run_id, sync_id, occurrence, t, t, run_id)
  end))
end

-- The run id, durable, before the wait starts. Without a row (adopted from
-- an earlier run, recorded in the resumed one, or a run the flow named),
-- one is made, saying so: origin ("adopted", "recorded", "waited") and
-- started_by (the engine run that started the remote run, when known).
-- The run has started by now, so a failure to record it is logged, not
-- raised: the wait goes on either way.
function journal.run_started(row_id, sync_id, occurrence, sync_run_id, link, origin, started_by)
  if not db or (row_id == nil and sync_id == nil) or not run_recorded() then return end
  local ok, id = pcall(queue, true, function()
    if row_id then
      db:run("UPDATE syncs SET sync_run_id = ?, status = 'triggered', link = ? WHERE id = ?",
        sync_run_id, link, row_id)
      return row_id
    end
    return select(2, db:run("INSERT INTO syncs (run, sync_id, occurrence, sync_run_id, status, started_at, link, " ..
      "origin, started_by) VALUES (?, ?, ?, ?, 'triggered', ?, ?, ?, ?)", run_id, sync_id, occurrence or 0,
      sync_run_id, now(), link, origin or "waited", started_by))
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
  note(function()
    db:run("UPDATE syncs SET status = 'trigger_failed', error = ?, ended_at = ? WHERE id = ?", scrub(err), now(), row_id)
  end)
end

function journal.sync_status(row_id, status)
  if not db or not row_id then return end
  note(function()
    db:run("UPDATE syncs SET status = ? WHERE id = ?", status, row_id)
    db:run("INSERT INTO statuses (sync, at, status) VALUES (?, ?, ?)", row_id, now(), status)
  end)
end

-- The wait ended. final: the Census run reached a final state (a wait that
-- was interrupted and left the run going is not final).
function journal.sync_finished(row_id, f)
  if not db or not row_id then return end
  note(function()
    db:run("UPDATE syncs SET status = ?, final = ?, records_processed = ?, records_updated = ?, " ..
      "records_failed = ?, records_invalid = ?, ended_at = ?, link = coalesce(?, link), error = ?, result = ? WHERE id = ?",
      f.status, f.final and 1 or 0, f.records_processed, f.records_updated, f.records_failed,
      f.records_invalid, now(), f.link, scrub(f.error), f.result and encode(f.result), row_id)
  end)
end

-- History --------------------------------------------------------------------

-- A run's outcome as shown: its own, "running" while its engine lives, or
-- "crashed" when the engine died without ending it.
local function shown_outcome(r, host)
  if r.outcome then return r.outcome end
  if r.host == host and files.alive(r.pid) then
    return "running"
  end
  return "crashed"
end

function journal.runs(limit)
  local _, host = files.whoami()
  local rows = db:rows("SELECT * FROM runs ORDER BY id DESC LIMIT ?", limit)
  for _, r in ipairs(rows) do
    r.outcome = shown_outcome(r, host)
    local ok, args = pcall(json.decode, r.args)
    r.args = ok and args or {}
  end
  return rows
end

function journal.run(id)
  local _, host = files.whoami()
  local r = db:rows("SELECT * FROM runs WHERE id = ?", id)[1]
  if not r then return nil end
  r.outcome = shown_outcome(r, host)
  local ok, args = pcall(json.decode, r.args)
  r.args = ok and args or {}
  r.steps = db:rows("SELECT name, occurrence, status, started_at, ended_at, error, origin FROM steps " ..
    "WHERE run = ? ORDER BY id", id)
  r.syncs = db:rows("SELECT sync_id, sync_run_id AS run_id, status, records_processed, records_updated, " ..
    "records_failed, records_invalid, started_at, ended_at, link, error, origin, started_by FROM syncs " ..
    "WHERE run = ? ORDER BY id", id)
  return r
end

-- Deletes runs that started more than `days` days ago; returns how many.
-- A run is kept while its engine lives or any of its syncs is open (its
-- intent is what keeps a later run from triggering twice). With `daily`,
-- only when the last prune was a day ago or more.
function journal.prune(days, daily)
  if not db then return 0 end
  local _, host = files.whoami()
  return (write(false, function()
    local t = now()
    if daily then
      local last = db:rows("SELECT value FROM meta WHERE key = 'pruned_at'")[1]
      if last and t - (tonumber(last.value) or 0) < 86400 then return 0 end
    end
    db:run("INSERT OR REPLACE INTO meta (key, value) VALUES ('pruned_at', ?)", tostring(t))
    local nothing_open = "NOT EXISTS (SELECT 1 FROM syncs WHERE syncs.run = runs.id AND syncs.final = 0)"
    local cutoff = t - days * 86400
    local n = db:run("DELETE FROM runs WHERE started_at < ? AND ended_at IS NOT NULL AND " .. nothing_open, cutoff)
    for _, r in ipairs(db:rows("SELECT id, pid, host FROM runs WHERE started_at < ? AND ended_at IS NULL AND " ..
      nothing_open, cutoff)) do
      if r.host == host and not files.alive(r.pid) then n = n + db:run("DELETE FROM runs WHERE id = ?", r.id) end
    end
    return n
  end))
end

-- Whether a write failed during this run (the record is incomplete).
function journal.write_failed() return write_failed end

return journal
