-- tests/lua/test_sqlite_away.lua: the journal's SQLite work that runs off
-- the loop (engine/sqlite.c's exec_away and run_away: a COMMIT, a large
-- value) and the driver's turns (lua/store_sqlite.lua): while a statement
-- runs on the thread pool the loop goes on, the connection refuses other
-- calls instead of racing, and a close or a cancel meanwhile is safe
-- (these also run on the ASan build).
local t = require "tests.lua.testing"
local sqlite = require "engine.c.sqlite"
local store = require "engine.store"

-- A statement that keeps a pool thread busy for a while (a few hundred ms).
local SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) " ..
  "SELECT count(*) FROM c"

-- A directory of the journal's test state (ENGINE_STATE_DIR, the suite's
-- per-case scratch), and a connection to a file there.
local made = 0
local function scratch()
  made = made + 1
  local dir = assert(os.getenv("ENGINE_STATE_DIR"), "ENGINE_STATE_DIR is set by the suite") .. "/away" .. made
  assert(require("engine.c.files").mkdirs(dir))
  for _, f in ipairs{"x.db", "journal.db", "journal.db-wal", "journal.db-shm"} do os.remove(dir .. "/" .. f) end
  return dir, assert(sqlite.open(dir .. "/x.db"))
end

-- Turns of the loop another task saw while fn(h) ran; fn's results.
local function while_away(h, fn)
  local running, turns, busy = true, 0, nil
  local watcher = flow.spawn(function()
    while running do
      turns = turns + 1
      local ok, err = pcall(h.rows, h, "SELECT 1 AS one")
      if not ok then busy = err end
      flow.sleep(0)
    end
  end)
  local r = table.pack(pcall(fn, h))
  running = false
  watcher:wait()
  return turns, busy, table.unpack(r, 1, r.n)
end

t.test("a statement run away leaves the loop turning and the connection refusing", function()
  local _, h = scratch()
  local turns, busy, ok = while_away(h, function() h:exec_away(SLOW) end)
  t.eq(ok, true)
  t.ok(turns > 2, "the loop turned while the statement ran")
  t.match(busy, "the connection is busy %(a statement runs off the loop%)")
  t.eq(h:rows("SELECT 1 AS one")[1].one, 1, "usable again after")
  h:close()
end)

t.test("run_away binds here and returns the changes and the row id", function()
  local _, h = scratch()
  h:exec("CREATE TABLE v (id INTEGER PRIMARY KEY, text TEXT)")
  local big = string.rep("x", 1 << 20)
  local changes, id = h:run_away("INSERT INTO v (text) VALUES (?)", big)
  t.eq(changes, 1); t.eq(id, 1)
  t.eq(h:rows("SELECT length(text) AS n FROM v")[1].n, 1 << 20)
  local err = t.raises(h.run_away, h, "INSERT INTO v (id, text) VALUES (?, ?)", 1, "again")
  t.match(err, "UNIQUE constraint failed: v.id %(.*x.db%)")
  h:close()
end)

t.test("an error off the loop names the file, as one here does", function()
  local _, h = scratch()
  local err = t.raises(h.exec_away, h, "COMMIT")
  t.match(err, "^cannot commit %- no transaction is active %(.*x.db%)$")
  h:close()
end)

t.test("a close while a statement runs away waits for its end", function()
  local _, h = scratch()
  local closer = flow.spawn(function() flow.sleep(0) h:close() end)
  h:exec_away(SLOW) -- closed meanwhile: the thread finished with it first
  closer:wait()
  t.match(t.raises(h.rows, h, "SELECT 1"), "the database is closed")
end)

t.test("a task cancelled while its statement runs away leaves nothing behind", function()
  local _, h = scratch()
  local w = flow.spawn(function() h:exec_away(SLOW) end)
  flow.sleep(0)
  w:cancel()
  t.eq(select(2, pcall(w.wait, w)).kind, "canceled")
  -- the statement runs to its end; then the connection is free again
  local deadline = os.time() + 30
  while not pcall(h.rows, h, "SELECT 1") and os.time() < deadline do flow.sleep(0.01) end
  t.eq(h:rows("SELECT 2 AS two")[1].two, 2)
  h:close()
end)

t.test("a coroutine inside a task waits as the task does", function()
  local _, h = scratch()
  local co = coroutine.wrap(function() return h:run_away("SELECT 1") end)
  t.eq(co(), 0)
  h:close()
end)

t.test("store transactions of several tasks take the connection in turn", function()
  local dir = scratch()
  local db = assert(store.open({dir = dir}))
  db:exec("CREATE TABLE n (task INTEGER, i INTEGER)")
  local order, readers = {}, {}
  local function writer(k)
    return function()
      db:transaction(false, function()
        for i = 1, 3 do
          db:run("INSERT INTO n (task, i) VALUES (?, ?)", k, i)
          order[#order + 1] = k
          flow.sleep(0) -- others run meanwhile, but not on the connection
        end
      end)
    end
  end
  local hs = {flow.spawn(writer(1)), flow.spawn(writer(2))}
  hs[3] = flow.spawn(function() readers[1] = db:rows("SELECT count(*) AS n FROM n")[1].n end)
  for _, h in ipairs(hs) do h:wait() end
  t.eq(table.concat(order, ","), "1,1,1,2,2,2", "one transaction at a time")
  t.eq(readers[1] % 3, 0, "a read waited for a whole transaction")
  t.eq(db:rows("SELECT count(*) AS n FROM n")[1].n, 6)
  db:close()
end)

t.run()
