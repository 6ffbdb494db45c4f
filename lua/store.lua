-- lua/store.lua: the journal's store, the one interface lua/journal.lua
-- writes and reads through: the schema (docs/state.md) and every query,
-- written once in SQL that SQLite and PostgreSQL both run. Where rows live
-- is a driver's: lua/store_sqlite.lua (one file in WAL mode, the default)
-- or lua/store_postgres.lua (a server several hosts share). A driver
-- opens a database and hands back a handle with rows, run (changes),
-- insert (the new id), exec, transaction and guard, and brings the schema
-- to this version; the queries below never know which one it is.
local store = {}

store.SCHEMA_VERSION = 3

-- The schema, in each driver's words for an id, a reference and a float
-- (SQLite's INTEGER PRIMARY KEY is its rowid; PostgreSQL's is an identity).
local SCHEMA = [[
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
  id $ID, flow TEXT NOT NULL, args TEXT NOT NULL,
  pid INTEGER NOT NULL, host TEXT NOT NULL, started_at $REAL NOT NULL,
  ended_at $REAL, outcome TEXT, exit_code INTEGER, resumed_from $REF, params TEXT, summary TEXT);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow, args, id);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_by_host ON runs (host, id);
CREATE TABLE IF NOT EXISTS steps (
  id $ID, run $REF NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  name TEXT NOT NULL, occurrence INTEGER NOT NULL, status TEXT NOT NULL,
  started_at $REAL NOT NULL, ended_at $REAL, error TEXT, results TEXT, origin TEXT);
CREATE INDEX IF NOT EXISTS steps_by_run ON steps (run, name, occurrence);
CREATE TABLE IF NOT EXISTS jobs (
  id $ID, run $REF NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  provider TEXT NOT NULL, resource TEXT NOT NULL, occurrence INTEGER NOT NULL,
  label TEXT, sent_at $REAL, intent TEXT, remote_run TEXT, status TEXT NOT NULL,
  final INTEGER NOT NULL DEFAULT 0, ok INTEGER NOT NULL DEFAULT 0, counts TEXT,
  started_at $REAL NOT NULL, ended_at $REAL, link TEXT, error TEXT, result TEXT,
  origin TEXT, started_by $REF, rejected TEXT);
CREATE INDEX IF NOT EXISTS jobs_by_run ON jobs (run, provider, resource, occurrence);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (provider, resource) WHERE final = 0;
CREATE TABLE IF NOT EXISTS job_statuses (
  job $REF NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  at $REAL NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_statuses_by_job ON job_statuses (job);
CREATE TABLE IF NOT EXISTS logs (
  run $REF NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL, at $REAL NOT NULL, level TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_run ON logs (run, seq);
]]

-- From version 2 to 3: each run's log lines and its summary document, a
-- job's rejected records, and runs by host (engine ui filters by host).
-- The columns are added where they are missing (a journal moved up from
-- version 1 in the same transaction has them already).
local V2_TO_V3_COLUMNS = {{"runs", "summary", "TEXT"}, {"jobs", "rejected", "TEXT"}}
local V2_TO_V3 = [[
CREATE INDEX IF NOT EXISTS runs_by_host ON runs (host, id);
CREATE TABLE IF NOT EXISTS logs (
  run $REF NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL, at $REAL NOT NULL, level TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_run ON logs (run, seq);
]]

-- What brings a journal of version v (2 or later) to this one, in a
-- driver's words: the SQL, and the columns ({table, column, type}) to add
-- where they are missing; nil when it is current.
function store.migration(v, words)
  if v == 2 then return (V2_TO_V3:gsub("%$(%u+)", words)), V2_TO_V3_COLUMNS end
end

-- The schema with a driver's words ({ID =, REF =, REAL =}).
function store.schema(words)
  return (SCHEMA:gsub("%$(%u+)", words))
end

-- The tables in the order a copy writes them (each one's references
-- before it): their columns, and those that name another row.
local TABLES = {
  {name = "runs", id = true, columns = {"flow", "args", "pid", "host", "started_at", "ended_at", "outcome",
    "exit_code", "resumed_from", "params", "summary"}, refs = {resumed_from = "runs"}},
  {name = "steps", id = true, columns = {"run", "name", "occurrence", "status", "started_at", "ended_at", "error",
    "results", "origin"}, refs = {run = "runs"}},
  {name = "jobs", id = true, columns = {"run", "provider", "resource", "occurrence", "label", "sent_at", "intent",
    "remote_run", "status", "final", "ok", "counts", "started_at", "ended_at", "link", "error", "result", "origin",
    "started_by", "rejected"}, refs = {run = "runs", started_by = "runs"}},
  {name = "job_statuses", columns = {"job", "at", "status"}, refs = {job = "jobs"}},
  {name = "logs", columns = {"run", "seq", "at", "level", "text"}, refs = {run = "runs"}},
}

-- The driver for a location: {url = ...} is a server, {dir = ...} a
-- directory.
local function driver(location)
  if location.url then return require "engine.store_postgres" end
  return require "engine.store_sqlite"
end

-- Opens the journal at location, creating it unless create is false, with
-- its schema brought to this version. Returns the handle, or nil, a
-- one-line message and, when it does not exist and create is false,
-- "missing".
function store.open(location, create)
  return driver(location).open(location, create, store)
end

-- Runs --------------------------------------------------------------------

function store.insert_run(h, r)
  return h:insert("INSERT INTO runs (flow, args, pid, host, started_at, resumed_from, params) " ..
    "VALUES (?, ?, ?, ?, ?, ?, ?)", r.flow, r.args, r.pid, r.host, r.started_at, r.resumed_from, r.params)
end

function store.end_run(h, id, ended_at, outcome, exit_code, summary)
  h:run_large("UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ?, summary = ? WHERE id = ?",
    ended_at, outcome, exit_code, summary, id)
end

-- A run's row without its summary (which can be large): RUN_COLUMNS.
local RUN_COLUMNS = "id, flow, args, pid, host, started_at, ended_at, outcome, exit_code, resumed_from, params"
local RUNS = "SELECT " .. RUN_COLUMNS .. " FROM runs "

function store.run(h, id)
  return h:rows(RUNS .. "WHERE id = ?", id)[1]
end

function store.has_summary(h, id)
  local row = h:rows("SELECT count(*) AS n FROM runs WHERE id = ? AND summary IS NOT NULL", id)[1]
  return row ~= nil and row.n > 0
end

-- The run's --summary-json document (text), or nil.
function store.summary(h, id)
  local row = h:rows("SELECT summary FROM runs WHERE id = ?", id)[1]
  return row and row.summary
end

-- The latest run of flow with these parameters (else these arguments).
function store.last_run(h, flow, params, args)
  if params then
    return h:rows(RUNS .. "WHERE flow = ? AND params = ? ORDER BY id DESC LIMIT 1", flow, params)[1]
  end
  return h:rows(RUNS .. "WHERE flow = ? AND args = ? AND params IS NULL ORDER BY id DESC LIMIT 1",
    flow, args)[1]
end

function store.last_failed_run(h, flow)
  return h:rows(RUNS .. "WHERE flow = ? AND (outcome IS NULL OR outcome != 'ok') " ..
    "ORDER BY id DESC LIMIT 1", flow)[1]
end

function store.resumed_from(h, id)
  local row = h:rows("SELECT resumed_from FROM runs WHERE id = ?", id)[1]
  return row and row.resumed_from
end

-- The latest runs, newest first: up to limit, older than `before` (an
-- id) when given, of flow / with outcome / on host when given. An outcome
-- "running" or "crashed" is a run without one (which it is, is the
-- caller's to tell).
function store.runs(h, limit, f)
  f = f or {}
  local where, args = {}, {}
  local function add(clause, v)
    where[#where + 1] = clause
    args[#args + 1] = v
  end
  if f.before then add("id < ?", f.before) end
  if f.flow then add("flow = ?", f.flow) end
  if f.host then add("host = ?", f.host) end
  if f.outcome == "running" or f.outcome == "crashed" then
    where[#where + 1] = "outcome IS NULL"
  elseif f.outcome then
    add("outcome = ?", f.outcome)
  end
  args[#args + 1] = limit
  return h:rows(RUNS .. (#where > 0 and ("WHERE " .. table.concat(where, " AND ") .. " ") or "") ..
    "ORDER BY id DESC LIMIT ?", table.unpack(args))
end

-- The distinct flows and hosts of the runs (for filters), each sorted.
-- (A walk from one value to the next along the column's index: as many
-- index lookups as distinct values, not a scan of every run.)
local function distinct(h, column)
  local rows = h:rows(string.format("WITH RECURSIVE v(x) AS (SELECT min(%s) FROM runs UNION ALL " ..
    "SELECT (SELECT min(%s) FROM runs WHERE %s > v.x) FROM v WHERE v.x IS NOT NULL) " ..
    "SELECT x FROM v WHERE x IS NOT NULL", column, column, column))
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.x end
  return out
end

function store.flows_and_hosts(h)
  return distinct(h, "flow"), distinct(h, "host")
end

-- Per run of ids: how many of its jobs ended well, ended badly, are open.
function store.job_tallies(h, ids)
  local out = {}
  if #ids == 0 then return out end
  for _, id in ipairs(ids) do out[id] = {ok = 0, failed = 0, running = 0, total = 0} end
  local rows = h:rows("SELECT run, ok, final, count(*) AS n FROM jobs WHERE run IN (" ..
    string.rep("?", #ids, ", ") .. ") GROUP BY run, ok, final", table.unpack(ids))
  for _, r in ipairs(rows) do
    local t = out[r.run]
    local key = r.ok == 1 and "ok" or r.final == 1 and "failed" or "running"
    t[key] = t[key] + r.n
    t.total = t.total + r.n
  end
  return out
end

-- One resource's jobs across runs, newest first (up to limit).
function store.resource_jobs(h, provider, resource, limit)
  return h:rows("SELECT j.run, j.status, j.ok, j.final, j.counts, j.started_at, j.ended_at, j.remote_run, j.link " ..
    "FROM jobs j WHERE j.provider = ? AND j.resource = ? ORDER BY j.id DESC LIMIT ?", provider, resource, limit)
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
  return h:insert("INSERT INTO steps (run, name, occurrence, status, started_at, origin) " ..
    "VALUES (?, ?, ?, 'running', ?, ?)", run, name, occurrence, t, origin)
end

function store.finish_step(h, id, status, t, err, results)
  h:note("UPDATE steps SET status = ?, ended_at = ?, error = ?, results = ? WHERE id = ?",
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
  return h:insert("INSERT INTO jobs (run, provider, resource, occurrence, label, sent_at, intent, " ..
    "remote_run, status, started_at, link, origin, started_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    j.run, j.provider, j.resource, j.occurrence, j.label, j.sent_at, j.intent, j.remote_run, j.status,
    j.started_at, j.link, j.origin, j.started_by)
end

function store.job_started(h, id, remote_run, link)
  h:note("UPDATE jobs SET remote_run = ?, status = 'triggered', link = ? WHERE id = ?", remote_run, link, id)
end

function store.settle_job(h, id, status, note, t)
  h:note("UPDATE jobs SET final = 1, status = ?, error = coalesce(?, error), ended_at = coalesce(ended_at, ?) " ..
    "WHERE id = ?", status, note, t, id)
end

function store.trigger_failed(h, id, err, t)
  h:note("UPDATE jobs SET status = 'trigger_failed', error = ?, ended_at = ? WHERE id = ?", err, t, id)
end

function store.job_status(h, id, status, t)
  h:note("UPDATE jobs SET status = ? WHERE id = ?", status, id)
  h:note("INSERT INTO job_statuses (job, at, status) VALUES (?, ?, ?)", id, t, status)
end

-- f: status, final, ok, counts (JSON), ended_at, link, error, result (JSON).
function store.job_finished(h, id, f)
  h:note("UPDATE jobs SET status = ?, final = ?, ok = ?, counts = coalesce(?, counts), ended_at = ?, " ..
    "link = coalesce(?, link), error = ?, result = ?, rejected = ? WHERE id = ?",
    f.status, f.final and 1 or 0, f.ok and 1 or 0, f.counts, f.ended_at, f.link, f.error, f.result, f.rejected, id)
end

function store.jobs(h, run)
  return h:rows("SELECT id, provider, resource, remote_run, label, status, ok, final, counts, started_at, ended_at, " ..
    "link, error, origin, started_by, rejected FROM jobs WHERE run = ? ORDER BY id", run)
end

-- Every status change of a run's jobs, in order: {job, at, status}.
function store.job_statuses(h, run)
  return h:rows("SELECT s.job, s.at, s.status FROM job_statuses s JOIN jobs j ON j.id = s.job " ..
    "WHERE j.run = ? ORDER BY s.job, s.at", run)
end

-- Logs ----------------------------------------------------------------------

-- lines: {{seq, at, level, text}, ...} of run, written a few per statement.
function store.insert_logs(h, run, lines)
  local per = 12 -- rows per statement: 60 parameters
  for first = 1, #lines, per do
    local last = math.min(#lines, first + per - 1)
    local values, args = {}, {}
    for i = first, last do
      local l = lines[i]
      values[#values + 1] = "(?, ?, ?, ?, ?)"
      for _, v in ipairs{run, l.seq, l.at, l.level, l.text} do args[#args + 1] = v end
    end
    h:note("INSERT INTO logs (run, seq, at, level, text) VALUES " .. table.concat(values, ", "), table.unpack(args))
    h:pause()
  end
end

function store.logs(h, run)
  return h:rows("SELECT seq, at, level, text FROM logs WHERE run = ? ORDER BY seq", run)
end

-- A write that changes nothing: whether this engine may write (doctor).
function store.touch(h)
  h:run("UPDATE meta SET value = value WHERE key = 'schema_version'")
end

-- Pruning -----------------------------------------------------------------

-- Deletes runs that started before cutoff, ended or dead (alive(pid, host)
-- false), with no job open; with `daily`, only when the last prune was a
-- day or more before now. Returns how many.
-- Whether the last prune was less than a day before now.
function store.pruned_today(h, now)
  local last = h:rows("SELECT value FROM meta WHERE key = 'pruned_at'")[1]
  return last ~= nil and now - (tonumber(last.value) or 0) < 86400
end

function store.prune(h, cutoff, now, daily, dead)
  if daily and store.pruned_today(h, now) then return 0 end
  h:run("INSERT INTO meta (key, value) VALUES ('pruned_at', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    tostring(now))
  local nothing_open = "NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.run = runs.id AND jobs.final = 0)"
  local n = h:run("DELETE FROM runs WHERE started_at < ? AND ended_at IS NOT NULL AND " .. nothing_open, cutoff)
  for _, r in ipairs(h:rows("SELECT id, pid, host FROM runs WHERE started_at < ? AND ended_at IS NULL AND " ..
    nothing_open, cutoff)) do
    if dead(r) then n = n + h:run("DELETE FROM runs WHERE id = ?", r.id) end
  end
  return n
end


-- Copying ----------------------------------------------------------------

-- Copies every run of `from` into `to` in one transaction of `to`, with
-- its steps, jobs and statuses. Runs already there (same host, pid, start
-- and flow: an earlier copy) are skipped. Ids are kept when `to` has no
-- runs yet (so run numbers mean the same), else new ones are given and
-- every reference follows. Returns {runs =, steps =, jobs =, skipped =,
-- kept_ids =}.
function store.copy(from, to, deadline)
  local rows = {}
  for _, t in ipairs(TABLES) do
    rows[t.name] = from:rows("SELECT " .. (t.id and "id, " or "") .. table.concat(t.columns, ", ") ..
      " FROM " .. t.name .. (t.id and " ORDER BY id" or ""))
  end
  local out = {runs = 0, steps = 0, jobs = 0, skipped = 0}
  local function key(r) return table.concat({r.host, tostring(r.pid), string.format("%.6f", r.started_at), r.flow}, "\0") end
  to:transaction_until(deadline, function()
    local there = {}
    for _, r in ipairs(to:rows("SELECT id, host, pid, started_at, flow FROM runs")) do there[key(r)] = r.id end
    local keep = next(there) == nil
    out.kept_ids = keep
    local map = {runs = {}, steps = {}, jobs = {}}
    local skip = {runs = {}, steps = {}, jobs = {}}
    for _, r in ipairs(rows.runs) do
      local id = there[key(r)]
      if id then
        map.runs[r.id], skip.runs[r.id] = id, true
        out.skipped = out.skipped + 1
      end
    end
    for _, t in ipairs(TABLES) do
      local cols = table.concat(t.columns, ", ")
      local marks = string.rep("?, ", #t.columns):sub(1, -3)
      local with_id = "INSERT INTO " .. t.name .. " (id, " .. cols .. ") VALUES (?, " .. marks .. ")"
      local without = "INSERT INTO " .. t.name .. " (" .. cols .. ") VALUES (" .. marks .. ")"
      for _, r in ipairs(rows[t.name]) do
        local owner = t.refs.run and "runs" or t.refs.job and "jobs"
        local parent = r.run or r.job
        local skipped = (t.id and skip[t.name][r.id]) or (owner and skip[owner][parent])
        if skipped then
          if t.id then skip[t.name][r.id] = true end
        else
          local values = {}
          for i, c in ipairs(t.columns) do
            local v = r[c]
            local ref = t.refs[c]
            if ref and v ~= nil and not keep then v = map[ref][v] end
            values[i] = v
          end
          if not t.id then
            to:run(without, table.unpack(values, 1, #t.columns))
          elseif keep then
            to:run(with_id, r.id, table.unpack(values, 1, #t.columns))
            map[t.name][r.id] = r.id
          else
            map[t.name][r.id] = to:insert(without, table.unpack(values, 1, #t.columns))
          end
          if out[t.name] then out[t.name] = out[t.name] + 1 end
        end
      end
    end
    if keep and to.ids_copied then to:ids_copied() end
  end)
  return out
end

return store
