-- lua/state_copy.lua: `engine state copy FROM TO`, a run history copied
-- from one store to another (a directory or a postgresql:// URL, either
-- way): how a team moves its SQLite history onto a shared server.
local journal = require "engine.journal"
local store = require "engine.store"
local timer = require "engine.c.timer"

local state = {}

local USAGE = "usage: engine state copy FROM TO (each a state directory or a postgresql:// URL)"

local function fail(code, fmt, ...)
  io.stderr:write("engine: ", string.format(fmt, ...), "\n")
  os.exit(code)
end

-- A store's location from an argument, and how it is shown.
local function location(text, what)
  if text == nil or text == "" then fail(2, "state copy: %s is missing (%s)", what, USAGE) end
  local where, why = journal.location(text)
  if not where then fail(2, "state copy: %s", why) end
  local shown = where.url and require("engine.store_postgres").redact(where.url) or where.dir
  return where, shown
end

function state.main(args)
  if args[1] ~= "copy" then
    fail(2, "state: %s (%s)", args[1] and ("unknown command '" .. args[1] .. "'") or "a command is missing", USAGE)
  end
  if #args > 3 then fail(2, "state copy: unexpected '%s' (%s)", args[4], USAGE) end
  local from, from_shown = location(args[2], "FROM")
  local to, to_shown = location(args[3], "TO")
  if from_shown == to_shown then fail(2, "state copy: FROM and TO are the same store (%s)", from_shown) end
  local src, err = store.open(from, false)
  if not src then fail(1, "state copy: cannot read %s: %s", from_shown, err) end
  if to.dir then require("engine.c.files").mkdirs(to.dir) end
  local dst
  dst, err = store.open(to, true)
  if not dst then fail(1, "state copy: cannot write %s: %s", to_shown, err) end
  local ok, out = pcall(store.copy, src, dst, timer.now() + 3600)
  if not ok then
    fail(1, "state copy: nothing was copied: %s", tostring(type(out) == "table" and out.message or out))
  end
  io.stdout:write(string.format("copied %d run(s), %d step(s), %d job(s) from %s to %s%s%s\n", out.runs, out.steps,
    out.jobs, from_shown, to_shown, out.kept_ids and "; run ids kept" or "; new run ids given",
    out.skipped > 0 and string.format("; %d run(s) were there already", out.skipped) or ""))
  src:close()
  dst:close()
end

return state
