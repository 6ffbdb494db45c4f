-- lua/store_sqlite.lua: the journal's store in one SQLite file in WAL mode
-- (engine/sqlite.c), the default: the driver lua/store.lua opens for a
-- directory. It opens the file, brings its schema to the current version
-- (moving a version-1 journal in one transaction), and runs transactions.
--
-- The loop is never held long: SQLite waits for a lock at most BUSY_MS
-- at a time, and a transaction that meets a lock held longer yields (a
-- timer sleep, inside a task) and tries again, up to WAIT_MAX seconds in
-- all; a commit (its fsync, once per group commit: lua/journal.lua) runs
-- on libuv's thread pool, and a long transaction lets the loop turn every
-- PAUSE_AFTER.
local sqlite = require "engine.c.sqlite"
local tasks = require "engine.c.task"
local timer = require "engine.c.timer"
local mutex = require "engine.c.mutex"

local driver = {}

local BUSY_MS = 20
local BLOCKING_MS = 2000
local WAIT_MAX = 30

local WORDS = {ID = "INTEGER PRIMARY KEY", REF = "INTEGER", REAL = "REAL"}

local db = {}
db.__index = db

-- Tasks take the connection in turn: a transaction lets the loop turn
-- (its COMMIT runs off the loop, a long one pauses), and meanwhile the
-- connection is its task's. A single statement waits for the turn only
-- while another task holds it: it never yields itself.
local function wait_turn(self)
  local holder, me = self.holder, tasks.current()
  if holder and me and holder ~= me then
    self.lock:lock()
    self.lock:unlock()
  end
end

function db:rows(sql, ...) wait_turn(self) return self.h:rows(sql, ...) end
function db:run(sql, ...) wait_turn(self) return (self.h:run(sql, ...)) end
function db:note(sql, ...) wait_turn(self) self.h:run(sql, ...) end -- (a write nobody reads back)
function db:insert(sql, ...) wait_turn(self) return select(2, self.h:run(sql, ...)) end
function db:exec(sql) wait_turn(self) return self.h:exec(sql) end
-- A statement writing a large value (the run's summary): run off the loop.
function db:run_large(sql, ...) wait_turn(self) return (self.h:run_away(sql, ...)) end
function db:close() self.h:close() end
-- Claims of one resource are one at a time already: a write transaction
-- holds the file's lock (BEGIN IMMEDIATE).
function db:guard() end

-- Inside a long transaction (a group commit of a thousand claims): once
-- it has held the loop PAUSE_AFTER seconds, the loop turns once.
local PAUSE_AFTER = 0.0005
function db:pause()
  if self.holder and timer.now() - self.since > PAUSE_AFTER then
    timer.sleep(0)
    self.since = timer.now()
  end
end

function db:transaction_until(_, fn, ...) return self:transaction(false, fn, ...) end

-- BEGIN IMMEDIATE (a lock another engine holds longer than BUSY_MS is
-- waited for off the loop: a sleep, in a task), fn(...), COMMIT (in a
-- task on libuv's thread pool: its fsync, and a checkpoint now and then,
-- take milliseconds).
local function attempt(self, durable, in_task, fn, ...)
  local h = self.h
  local give_up = timer.now() + WAIT_MAX
  if durable then h:exec("PRAGMA synchronous = FULL") end -- (not allowed inside one)
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
  self.since = timer.now()
  local changes = h:total_changes()
  local ok, a, b = pcall(fn, ...)
  if ok then
    -- (one that changed nothing has nothing to sync: no thread for it)
    local committed, err = pcall(h:total_changes() == changes and h.exec or h.exec_away, h, "COMMIT")
    if not committed then ok, a = false, err end
  end
  if not ok then pcall(h.exec, h, "ROLLBACK") end
  if durable then pcall(h.exec, h, "PRAGMA synchronous = NORMAL") end
  if not ok then error(a, 0) end
  return a, b
end

-- Runs fn(...) in one immediate transaction, holding the connection; the
-- engine's own work: a stop does not cut it short.
function db:transaction(durable, fn, ...)
  local me = tasks.current()
  if not me then return attempt(self, durable, false, fn, ...) end
  return tasks.shield(function(...)
    self.lock:lock()
    self.holder = me
    local r = table.pack(pcall(attempt, self, durable, true, fn, ...))
    self.holder = nil
    self.lock:unlock()
    if not r[1] then error(r[2], 0) end
    return table.unpack(r, 2, r.n)
  end, ...)
end

-- Version 1 (the first two releases, one provider): its syncs in `syncs`,
-- with columns added while it shipped. Its journal is moved into version 2
-- (then on to the current one, lua/store.lua) in one transaction: the syncs become jobs of that provider with the same
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

local function migrate_v1(h, schema)
  local have = {}
  for _, c in ipairs(V1_ADDED) do
    have[c[1]] = have[c[1]] or columns(h, c[1])
    if not have[c[1]][c[2]] then h:exec(string.format("ALTER TABLE %s ADD COLUMN %s %s", c[1], c[2], c[3])) end
  end
  h:exec(schema)
  h:exec(MIGRATE_V1)
end

local function version(h)
  local ok, rows = pcall(h.rows, h, "SELECT value FROM meta WHERE key = 'schema_version'")
  return ok and rows[1] and tonumber(rows[1].value) or nil
end

-- Opens DIR/journal.db (location.dir), creating it and DIR unless create
-- is false.
function driver.open(location, create, store)
  local path = location.dir .. "/journal.db"
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
      h:exec_away(store.schema(WORDS)) -- (a new file: SQLite syncs it)
      h:run("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", tostring(store.SCHEMA_VERSION))
    elseif v < store.SCHEMA_VERSION then
      if v == 1 then
        migrate_v1(h, store.schema(WORDS))
        h:exec("DELETE FROM meta WHERE key = 'added_columns'")
        v = 2
      end
      local sql, added = store.migration(v, WORDS)
      for _, c in ipairs(added) do
        if not columns(h, c[1])[c[2]] then h:exec(string.format("ALTER TABLE %s ADD COLUMN %s %s", c[1], c[2], c[3])) end
      end
      h:exec(sql)
      h:run("UPDATE meta SET value = ? WHERE key = 'schema_version'", tostring(store.SCHEMA_VERSION))
    elseif v > store.SCHEMA_VERSION then
      error(string.format("it has schema version %d; this engine knows %d (upgrade the engine)",
        v, store.SCHEMA_VERSION), 0)
    end
    h:exec_away("COMMIT")
  end)
  if not ok then
    pcall(h.exec, h, "ROLLBACK")
    h:close()
    return nil, (tostring(err):gsub(" %(" .. path:gsub("%p", "%%%0") .. "%)$", ""))
  end
  h:busy_timeout(BUSY_MS)
  return setmetatable({h = h, where = path, kind = "sqlite", lock = mutex.new()}, db)
end

return driver
