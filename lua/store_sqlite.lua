-- lua/store_sqlite.lua: the journal's store on SQLite (engine/sqlite.c): one
-- file in WAL mode, every SQL statement the journal runs, the schema and
-- its migrations (docs/state.md). lua/journal.lua is the only caller: it
-- decides what to write and when; this file only knows how.
--
-- The loop is never blocked long: SQLite waits for a lock at most
-- BUSY_MS at a time, and a transaction that meets a lock held longer
-- yields (a timer sleep, inside a task) and tries again, up to WAIT_MAX
-- seconds in all. Outside a task (opening the journal, the daily prune at
-- start, before any job runs) it waits at most BLOCKING_MS. A commit's
-- fsync runs on the loop thread, once per group commit (lua/journal.lua):
-- a thousand intents written together cost one.
local sqlite = require "engine.c.sqlite"
local tasks = require "engine.c.task"
local timer = require "engine.c.timer"

local store = {}

store.SCHEMA_VERSION = 2
local BUSY_MS = 20
local BLOCKING_MS = 2000
local WAIT_MAX = 30

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
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  provider TEXT NOT NULL, resource TEXT NOT NULL, occurrence INTEGER NOT NULL,
  label TEXT, sent_at REAL, intent TEXT, remote_run TEXT, status TEXT NOT NULL,
  final INTEGER NOT NULL DEFAULT 0, ok INTEGER NOT NULL DEFAULT 0, counts TEXT,
  started_at REAL NOT NULL, ended_at REAL, link TEXT, error TEXT, result TEXT,
  origin TEXT, started_by INTEGER);
CREATE INDEX IF NOT EXISTS jobs_by_run ON jobs (run, provider, resource, occurrence);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (provider, resource) WHERE final = 0;
CREATE TABLE IF NOT EXISTS job_statuses (
  job INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  at REAL NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_statuses_by_job ON job_statuses (job);
]]

-- Version 1 (the first two releases, one provider): its syncs in `syncs`,
-- with columns added while it shipped. Its journal is moved into version 2
-- in one transaction: the syncs become jobs of that provider with the same
-- ids, so an intent or a run in flight there is still found (and adopted).
local V1_ADDED = {
  {"steps", "origin", "TEXT"}, {"syncs", "origin", "TEXT"},
  {"syncs", "started_by", "INTEGER"}, {"runs", "params", "TEXT"},
}

local MIGRATE_V1 = [[
INSERT INTO jobs (id, run, provider, resource, occurrence, sent_at, remote_run, status, final, ok,
  counts, started_at, ended_at, link, error, result, origin, started_by)
SELECT id, run, 'census', CAST(sync_id AS TEXT), occurrence, sent_at, CAST(sync_run_id AS TEXT), status,
  final, CASE WHEN status IN ('completed', 'skipped') AND error IS NULL THEN 1 ELSE 0 END,
  json_object('records_processed', records_processed, 'records_updated', records_updated,
    'records_failed', records_failed, 'records_invalid', records_invalid),
  started_at, ended_at, link, error, result, origin, started_by FROM syncs;
INSERT INTO job_statuses (job, at, status) SELECT sync, at, status FROM statuses;
DROP TABLE statuses;
DROP TABLE syncs;
]]

local function columns(h, tbl)
  local have = {}
  for _, col in ipairs(h:rows("PRAGMA table_info(" .. tbl .. ")")) do have[col.name] = true end
  return have
end

local function migrate_v1(h)
  local have = {}
  for _, c in ipairs(V1_ADDED) do
    have[c[1]] = have[c[1]] or columns(h, c[1])
    if not have[c[1]][c[2]] then h:exec(string.format("ALTER TABLE %s ADD COLUMN %s %s", c[1], c[2], c[3])) end
  end
  h:exec(SCHEMA)
  h:exec(MIGRATE_V1)
end

local function version(h)
  local ok, rows = pcall(h.rows, h, "SELECT value FROM meta WHERE key = 'schema_version'")
  return ok and rows[1] and tonumber(rows[1].value) or nil
end

-- Runs fn(h) in one immediate transaction. A lock another engine holds
-- longer than BUSY_MS is waited for off the loop (a sleep, in a task).
function store.transaction(h, durable, fn, ...)
  local give_up = timer.now() + WAIT_MAX
  if durable then h:exec("PRAGMA synchronous = FULL") end -- (not allowed inside one)
  local in_task = tasks.current() ~= nil
  if not in_task then h:busy_timeout(BLOCKING_MS) end
  while true do
    local ok, err = pcall(h.exec, h, "BEGIN IMMEDIATE")
    if ok then break end
    if not tostring(err):find("locked", 1, true) or not in_task or timer.now() > give_up then
      if not in_task then h:busy_timeout(BUSY_MS) end
      error(err, 0)
    end
    timer.sleep(0.005 + math.random() * 0.02)
  end
  if not in_task then h:busy_timeout(BUSY_MS) end
  local ok, a, b = pcall(fn, ...)
  if ok then
    local committed, err = pcall(h.exec, h, "COMMIT")
    if not committed then ok, a = false, err end
  end
  if not ok then pcall(h.exec, h, "ROLLBACK") end
  if durable then pcall(h.exec, h, "PRAGMA synchronous = NORMAL") end
  if not ok then error(a, 0) end
  return a, b
end

-- Opens the file, creating it unless create is false, and brings its
-- schema to this version (in one transaction). Returns the handle, or nil
-- and a message (kind "missing" when it does not exist and create is false).
function store.open(path, create)
  local h, err = sqlite.open(path, create ~= false)
  if not h then
    return nil, err, create == false and err:find("does not exist", 1, true) and "missing" or nil
  end
  local ok
  ok, err = pcall(function()
    h:exec("PRAGMA foreign_keys = ON")
    if version(h) == store.SCHEMA_VERSION then return end -- the usual case: one query
    -- engines that open a new journal at once (before any job runs): one
    -- creates or migrates it, the others wait for the lock (sqlite.c's
    -- open-time busy timeout)
    h:exec("BEGIN IMMEDIATE")
    local v = version(h)
    if v == nil then
      h:exec(SCHEMA)
      h:run("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", tostring(store.SCHEMA_VERSION))
    elseif v == 1 then
      migrate_v1(h)
      h:run("UPDATE meta SET value = ? WHERE key = 'schema_version'", tostring(store.SCHEMA_VERSION))
      h:exec("DELETE FROM meta WHERE key = 'added_columns'")
    elseif v > store.SCHEMA_VERSION then
      error(string.format("it has schema version %d; this engine knows %d (upgrade the engine)",
        v, store.SCHEMA_VERSION), 0)
    end
    h:exec("COMMIT")
  end)
  if not ok then
    pcall(h.exec, h, "ROLLBACK")
    h:close()
    return nil, (tostring(err):gsub(" %(" .. path:gsub("%p", "%%%0") .. "%)$", ""))
  end
  h:busy_timeout(BUSY_MS)
  return h
end

-- Runs --------------------------------------------------------------------

function store.insert_run(h, r)
  return select(2, h:run("INSERT INTO runs (flow, args, pid, host, started_at, resumed_from, params) " ..
    "VALUES (?, ?, ?, ?, ?, ?, ?)", r.flow, r.args, r.pid, r.host, r.started_at, r.resumed_from, r.params))
end

function store.end_run(h, id, ended_at, outcome, exit_code)
  h:run("UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ? WHERE id = ?", ended_at, outcome, exit_code, id)
end

function store.run(h, id)
  return h:rows("SELECT * FROM runs WHERE id = ?", id)[1]
end

-- The latest run of flow with these parameters (else these arguments).
function store.last_run(h, flow, params, args)
  if params then
    return h:rows("SELECT * FROM runs WHERE flow = ? AND params = ? ORDER BY id DESC LIMIT 1", flow, params)[1]
  end
  return h:rows("SELECT * FROM runs WHERE flow = ? AND args = ? AND params IS NULL ORDER BY id DESC LIMIT 1",
    flow, args)[1]
end

function store.last_failed_run(h, flow)
  return h:rows("SELECT * FROM runs WHERE flow = ? AND (outcome IS NULL OR outcome != 'ok') " ..
    "ORDER BY id DESC LIMIT 1", flow)[1]
end

function store.resumed_from(h, id)
  local row = h:rows("SELECT resumed_from FROM runs WHERE id = ?", id)[1]
  return row and row.resumed_from
end

function store.runs(h, limit)
  return h:rows("SELECT * FROM runs ORDER BY id DESC LIMIT ?", limit)
end

-- Steps -------------------------------------------------------------------

function store.step(h, run, name, occurrence)
  return h:rows("SELECT status, results FROM steps WHERE run = ? AND name = ? AND occurrence = ?",
    run, name, occurrence)[1]
end

function store.step_names(h, run)
  return h:rows("SELECT name FROM steps WHERE run = ? ORDER BY id", run)
end

function store.insert_step(h, run, name, occurrence, t, origin)
  return select(2, h:run("INSERT INTO steps (run, name, occurrence, status, started_at, origin) " ..
    "VALUES (?, ?, ?, 'running', ?, ?)", run, name, occurrence, t, origin))
end

function store.finish_step(h, id, status, t, err, results)
  h:run("UPDATE steps SET status = ?, ended_at = ?, error = ?, results = ? WHERE id = ?",
    status, t, err, results, id)
end

function store.steps(h, run)
  return h:rows("SELECT name, occurrence, status, started_at, ended_at, error, origin FROM steps " ..
    "WHERE run = ? ORDER BY id", run)
end

-- Jobs --------------------------------------------------------------------

function store.recorded_job(h, run, provider, resource, occurrence)
  return h:rows("SELECT status, result, run, started_by, remote_run FROM jobs WHERE run = ? AND provider = ? " ..
    "AND resource = ? AND occurrence = ? AND ok = 1 AND final = 1 AND error IS NULL",
    run, provider, resource, occurrence)[1]
end

function store.resumed_job(h, run, provider, resource, occurrence)
  return h:rows("SELECT status, remote_run FROM jobs WHERE run = ? AND provider = ? AND resource = ? " ..
    "AND occurrence = ? AND ok = 0 AND final = 1 ORDER BY id DESC LIMIT 1", run, provider, resource, occurrence)[1]
end

local OPEN = "SELECT j.id, j.run, j.occurrence, j.remote_run, j.sent_at, j.intent, j.started_by, " ..
  "r.pid, r.host, r.ended_at FROM jobs j JOIN runs r ON r.id = j.run "

-- Rows of other runs whose remote run of (provider, resource) has not
-- reached a final state, newest first.
function store.open_jobs(h, provider, resource, except_run)
  return h:rows(OPEN .. "WHERE j.provider = ? AND j.resource = ? AND j.final = 0 AND j.run != ? ORDER BY j.id DESC",
    provider, resource, except_run)
end

function store.open_job(h, id)
  return h:rows(OPEN .. "WHERE j.id = ? AND j.final = 0", id)[1]
end

-- j: run, provider, resource, occurrence, label, sent_at, intent,
-- remote_run, status, started_at, link, origin, started_by.
function store.insert_job(h, j)
  return select(2, h:run("INSERT INTO jobs (run, provider, resource, occurrence, label, sent_at, intent, " ..
    "remote_run, status, started_at, link, origin, started_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    j.run, j.provider, j.resource, j.occurrence, j.label, j.sent_at, j.intent, j.remote_run, j.status,
    j.started_at, j.link, j.origin, j.started_by))
end

function store.job_started(h, id, remote_run, link)
  h:run("UPDATE jobs SET remote_run = ?, status = 'triggered', link = ? WHERE id = ?", remote_run, link, id)
end

function store.settle_job(h, id, status, note, t)
  h:run("UPDATE jobs SET final = 1, status = ?, error = coalesce(?, error), ended_at = coalesce(ended_at, ?) " ..
    "WHERE id = ?", status, note, t, id)
end

function store.trigger_failed(h, id, err, t)
  h:run("UPDATE jobs SET status = 'trigger_failed', error = ?, ended_at = ? WHERE id = ?", err, t, id)
end

function store.job_status(h, id, status, t)
  h:run("UPDATE jobs SET status = ? WHERE id = ?", status, id)
  h:run("INSERT INTO job_statuses (job, at, status) VALUES (?, ?, ?)", id, t, status)
end

-- f: status, final, ok, counts (JSON), ended_at, link, error, result (JSON).
function store.job_finished(h, id, f)
  h:run("UPDATE jobs SET status = ?, final = ?, ok = ?, counts = coalesce(?, counts), ended_at = ?, " ..
    "link = coalesce(?, link), error = ?, result = ? WHERE id = ?",
    f.status, f.final and 1 or 0, f.ok and 1 or 0, f.counts, f.ended_at, f.link, f.error, f.result, id)
end

function store.jobs(h, run)
  return h:rows("SELECT id, provider, resource, remote_run, label, status, ok, counts, started_at, ended_at, " ..
    "link, error, origin, started_by FROM jobs WHERE run = ? ORDER BY id", run)
end

-- Pruning -----------------------------------------------------------------

-- Deletes runs that started before cutoff, ended or dead (alive(pid, host)
-- false), with no job open; with `daily`, only when the last prune was a
-- day or more before now. Returns how many.
function store.prune(h, cutoff, now, daily, dead)
  if daily then
    local last = h:rows("SELECT value FROM meta WHERE key = 'pruned_at'")[1]
    if last and now - (tonumber(last.value) or 0) < 86400 then return 0 end
  end
  h:run("INSERT OR REPLACE INTO meta (key, value) VALUES ('pruned_at', ?)", tostring(now))
  local nothing_open = "NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.run = runs.id AND jobs.final = 0)"
  local n = h:run("DELETE FROM runs WHERE started_at < ? AND ended_at IS NOT NULL AND " .. nothing_open, cutoff)
  for _, r in ipairs(h:rows("SELECT id, pid, host FROM runs WHERE started_at < ? AND ended_at IS NULL AND " ..
    nothing_open, cutoff)) do
    if dead(r) then n = n + h:run("DELETE FROM runs WHERE id = ?", r.id) end
  end
  return n
end


return store
