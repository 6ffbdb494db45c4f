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
local tasks = require "engine.c.task"
local clog = require "engine.c.log"
local errors = require "engine.c.error"
local options = require "engine.c.options"

local run = {}
local flow_name -- the flow's absolute path (or how it was given)
local flow_label, flow_args = "FLOW.lua", {} -- as given on the command line

-- The flow's arguments (a copy) and its name as given, for flow.params.
function run.args() return table.move(flow_args, 1, #flow_args, 1, {}) end
function run.flow_label() return flow_label end

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
  local n = v:match("^%s*%d+%s*$") and math.tointeger(tonumber(v))
  if not n or n < 1 then
    return nil, string.format("ENGINE_STATE_KEEP_DAYS must be a whole number of days >= 1, got %q", v)
  end
  return n
end

-- Where the run lock lives without a journal, as a directory that exists
-- (made when missing), the private directories the engine keeps under it,
-- and what else the user can do when one of them is not private: the
-- per-user runtime directory, else the state directory (only the lock goes
-- there), and only without either the shared temporary directory, where
-- another user may have made engine-<uid> first. Or nil and a message.
local function runtime_dir(state)
  local xdg = os.getenv("XDG_RUNTIME_DIR")
  if xdg and xdg ~= "" then return xdg, {"engine", "locks"} end
  local dir = journal.state_dir(state)
  if dir then
    local ok, err = files.mkdirs(dir)
    if not ok then return nil, err end
    return dir, {"locks"}
  end
  local tmp = os.getenv("TMPDIR")
  local _, _, uid = files.whoami()
  return (tmp and tmp ~= "" and tmp or "/tmp"), {"engine-" .. uid, "locks"}, "set XDG_RUNTIME_DIR"
end

-- The journal alone (engine runs, with create false: reading never makes
-- one): nil and a message when it cannot open.
function run.open_journal(state, create)
  local dir = journal.state_dir(state)
  if not dir then return nil, "no state directory: set HOME, ENGINE_STATE_DIR or --state DIR" end
  if files.absolute(dir) == "/" then
    return nil, "the state directory cannot be / (the journal would be /journal.db): " ..
      "give a directory of its own, such as /var/lib/engine"
  end
  return journal.open(dir, create)
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
      w.journal_id = journal.run_started(nil, w.sync_id, w.occurrence, w.sync_run_id, w.url)
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
  flow_name, flow_label, flow_args = flow, o.flow or o.label, args
  -- what each log line of the flow says in --log-format=json
  local context = {flow = flow}
  clog.set_context(function()
    context.run = journal.run_id()
    context.step = report.current_step()
    local retry = report.current_retry()
    context.attempt = retry and retry.attempt or nil
    return context
  end)
  if o.flow and not o.allow_overlap then
    local base, parts, alternative
    if journal.enabled() then
      base, parts = journal.path():match("^(.*)/[^/]*$"), {"locks"}
    else
      base, parts, alternative = runtime_dir(o.state)
      if not base then return nil, "cannot take the run lock: " .. parts, 1 end
    end
    -- made or checked in C: a directory another user made or can write
    -- would let them plant the lock file (a symlink to overwrite) or hold it
    local dir, err = files.private_dir(base, parts, alternative)
    if not dir then return nil, "cannot take the run lock: " .. err, 1 end
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
    if target and target.args ~= journal.encode_args(args) then
      return nil, string.format("--resume=%d: run %d ran %s with other arguments (%s, not %s); " ..
        "rerun it with the same arguments, or without --resume", target.id, target.id, o.flow,
        journal.show_args(target.args), journal.show_args(journal.encode_args(args))), EXIT_USAGE
    end
    if not target then
      if o.resume ~= true then return nil, "--resume=" .. o.resume .. ": " .. why, EXIT_USAGE end
      log.warn("--resume: %s; running it anew", why)
    else
      resume_from = target.id
      log.info("resuming run %d (started %s, %s): what completed in it is not run again",
        target.id, iso(target.started_at), target.outcome or "ended without a record: crashed or killed")
    end
  end
  local pruned, prune_err = pcall(journal.prune, keep, true)
  if not pruned then
    log.warn("cannot prune the journal: %s; the run goes on", errors.describe(prune_err))
  end
  journal.begin_run(flow, args, resume_from)
  subscribe()
  return true
end

-- flow.on_finish handlers, in the order given.
local handlers = {}
local ON_FINISH_TIMEOUT = 30
local summary -- the run's summary, once it ended

function run.on_finish(fn, opts)
  if type(fn) ~= "function" then error("flow.on_finish: expected a function", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("flow.on_finish: options must be a table", 2) end
  options.check_options("flow.on_finish", opts, {"timeout"})
  local timeout = opts and opts.timeout or ON_FINISH_TIMEOUT
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 or timeout > 86400 then
    error("flow.on_finish: timeout must be a number of seconds from 0 to 86400", 2)
  end
  handlers[#handlers + 1] = {fn = fn, timeout = timeout}
end

-- A handler's copy of the summary, every text scrubbed as the terminal's
-- (the documented example posts run.error to a webhook).
local function copy(v)
  if type(v) == "string" then return rules.redact(v) end
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return c
end

-- Called by the engine when the flow's tasks have ended: entries still
-- running get their final status and the summary is made. stop: "signal",
-- "exit" or nil; ending: the error that ended the run, as a line. Returns
-- the function that runs the flow.on_finish handlers (the engine runs it
-- as a task), or nil when there are none.
function run.ending(exit_code, stop, ending)
  report.settle(stop ~= nil)
  summary = report.summary(exit_code, stop == "signal", ending)
  summary.flow = flow_name
  if #handlers == 0 then return nil end
  return function()
    for i, h in ipairs(handlers) do
      local child = tasks.spawn(h.fn, copy(summary))
      tasks.set_deadline(child, h.timeout) -- stops a handler that never waits
      local ok, finished = pcall(tasks.join, child, h.timeout)
      if not ok then -- a handler called os.exit: later handlers do not run
        child:cancel()
        pcall(tasks.join, child)
        break
      elseif not finished then
        child:cancel()
        pcall(tasks.join, child)
        log.error("flow.on_finish: handler %d did not finish within %g s; stopped it", i, h.timeout)
      else
        local done, err = pcall(child.wait, child)
        if not done and type(err) == "table" and err.deadline then
          log.error("flow.on_finish: handler %d did not finish within %g s; stopped it", i, h.timeout)
        elseif not done and not errors.is_error(err, "canceled") then
          log.error("flow.on_finish: handler %d failed: %s", i, (errors.describe(err):gsub("\n.*", "")))
        end
      end
    end
  end
end

-- Called by the engine last: records how the run ended, then the summary
-- (text, --summary-json, --metrics). Returns false when a file could not
-- be written.
function run.finish(exit_code, stop, json_path, metrics_path, show)
  summary.exit_code = exit_code -- a flow.on_finish handler may have called os.exit
  local outcome = stop == "signal" and "interrupted" or stop == "exit" and "exited"
    or (summary.exit_code == 0 and "ok" or "failed")
  journal.end_run(outcome, summary.exit_code) -- after what is still queued
  local ok = true
  if journal.write_failed() then
    -- what keeps a later run from triggering twice is missing: not a success
    io.stderr:write("engine: the journal could not be written during this run (the first error is above); ",
      "its record is incomplete, so the run fails\n")
    ok = false
  end
  if metrics_path then ok = require("engine.metrics").write(summary, metrics_path) end
  if not show then return ok end
  return report.write(summary, json_path) and ok
end

return run
