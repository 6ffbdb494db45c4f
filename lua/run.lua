-- lua/run.lua: one engine run of a flow, start to end. Before the flow: the
-- state directory and the journal, the lock that keeps a second engine off
-- the same flow and arguments, what --resume continues. During it: the
-- journal observes the run report's steps and the Census waits. After it:
-- the journal's record of how it ended, and the summary.
local files = require "engine.c.files"
local rules = require "engine.c.rules"
local journal = require "engine.journal"
local events = require "engine.events"
local report = require "engine.report"
local log = require "engine.log"

local run = {}

local EXIT_OVERLAP = 75
local EXIT_USAGE = 2
local DEFAULT_KEEP_DAYS = 90

local iso = report.iso

-- FNV-1a, for a lock file name per flow and arguments.
local function hash(text)
  local h = 0xcbf29ce484222325
  for i = 1, #text do
    h = (h ~ text:byte(i)) * 0x100000001b3
  end
  return string.format("%016x", h)
end

function run.keep_days()
  local v = os.getenv("ENGINE_STATE_KEEP_DAYS")
  if v == nil or v == "" then return DEFAULT_KEEP_DAYS end
  local n = tonumber(v)
  if not n or n <= 0 then
    return nil, string.format("ENGINE_STATE_KEEP_DAYS must be a number of days > 0, got %q", v)
  end
  return n
end

-- Where locks live without a state directory.
local function runtime_dir()
  local xdg = os.getenv("XDG_RUNTIME_DIR")
  if xdg and xdg ~= "" then return xdg .. "/engine" end
  local _, _, uid = files.whoami()
  return string.format("/tmp/engine-%d", uid)
end

-- The journal alone (engine runs): nil and a message when it cannot open.
function run.open_journal(state)
  local dir = journal.state_dir(state)
  if not dir then return nil, "no state directory: set HOME, ENGINE_STATE_DIR or --state DIR" end
  return journal.open(dir)
end

local function subscribe()
  events.on("report.started", function(entry)
    if entry.kind == "step" then entry.journal_id = journal.step_started(entry.name, entry.occurrence) end
  end)
  events.on("report.finished", function(entry)
    if entry.kind == "step" then
      journal.step_finished(entry.journal_id, entry.status, entry.error, entry.results)
    end
  end)
  events.on("census.wait_started", function(w)
    if not w.journal_id then
      w.journal_id = journal.run_started(nil, w.sync_id, nil, w.sync_run_id, w.url)
    end
  end)
  events.on("census.status", function(w, data)
    if data.status ~= w.journal_status then
      w.journal_status = data.status
      journal.sync_status(w.journal_id, data.status)
    end
  end)
  events.on("census.wait_ended", function(w, ok, result)
    local data = ok and result or (type(result) == "table" and result.result) or {}
    journal.sync_finished(w.journal_id, {
      status = ok and result.status or (type(result) == "table" and result.kind) or "failed",
      final = w.final == true,
      records_processed = math.tointeger(data.records_processed),
      records_updated = math.tointeger(data.records_updated),
      records_failed = math.tointeger(data.records_failed),
      records_invalid = math.tointeger(data.records_invalid),
      link = data.url, error = not ok and require("engine.c.error").describe(result) or nil,
      result = ok and result or nil,
    })
  end)
end

-- o: state (DIR or nil), no_state, flow (a file path, or nil for -e code,
-- stdin and the REPL), args, resume (true, a run id, or nil),
-- allow_overlap. Returns true, or nil, a one-line message and an exit code.
function run.begin(o)
  local flow = o.flow and files.absolute(o.flow) or o.label or "(command line)"
  local args = o.args or {}
  if not o.no_state then
    local ok, err = run.open_journal(o.state)
    if not ok then return nil, err, 1 end
  elseif o.resume then
    return nil, "--resume needs the journal: it cannot be used with --no-state", EXIT_USAGE
  end
  local keep, keep_err = run.keep_days()
  if not keep then return nil, keep_err, EXIT_USAGE end
  if o.flow and not o.allow_overlap then
    local dir = (journal.enabled() and journal.path():match("^(.*)/[^/]*$") or runtime_dir()) .. "/locks"
    local ok, err = files.mkdirs(dir)
    if not ok then return nil, "cannot create the lock directory: " .. err, 1 end
    local key = flow .. "\0" .. table.concat(args, "\0")
    local pid = files.whoami()
    local held, holder = files.lock(string.format("%s/%s.lock", dir, hash(key)),
      string.format("pid %d, started %s", pid, iso(rules.wallclock())))
    if held == nil then return nil, "cannot take the run lock: " .. holder, 1 end
    if not held then
      return nil, string.format("%s is already running with these arguments (%s); " ..
        "--allow-overlap runs it anyway", o.flow, holder ~= "" and holder or "pid unknown"), EXIT_OVERLAP
    end
  end
  if not journal.enabled() then return true end
  local resume_from
  if o.resume then
    local target, why = journal.resume_target(flow, args, o.resume ~= true and o.resume or nil)
    if not target then
      if o.resume ~= true then return nil, "--resume=" .. o.resume .. ": " .. why, EXIT_USAGE end
      log.warn("--resume: %s; running it anew", why)
    else
      resume_from = target.id
      log.info("resuming run %d (started %s, %s): what completed in it is not run again",
        target.id, iso(target.started_at), target.outcome or "ended without a record: crashed or killed")
    end
  end
  journal.prune(keep, true)
  journal.begin_run(flow, args, resume_from)
  subscribe()
  return true
end

-- Called by the engine when the run ends: records how it ended, then the
-- summary. stop: "signal", "exit" or nil. Returns false when the summary
-- could not be written.
function run.finish(exit_code, stop, json_path, summary)
  local outcome = stop == "signal" and "interrupted" or stop == "exit" and "exited"
    or (exit_code == 0 and "ok" or "failed")
  journal.end_run(outcome, exit_code)
  if not summary then return true end
  return report.finish_run(exit_code, stop ~= nil, json_path)
end

return run
