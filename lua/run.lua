-- lua/run.lua: one engine run of a flow, start to end. Before the flow: the
-- state directory and the journal, the lock that keeps a second engine off
-- the same flow and arguments, what --resume continues. During it: the
-- journal observes the run report's steps and the remote jobs' waits. After it:
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
local values = require "engine.values"

local run = {}
local flow_name -- the flow's absolute path (or how it was given)
local flow_label, flow_args = "FLOW.lua", {} -- as given on the command line
local metrics_labels -- --metrics-label NAME=VALUE: {{name, value}, ...}

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
  local location, why = journal.location(state)
  if why then return nil, why, "usage" end
  local dir = location and location.dir
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
  local location, why, code = journal.location(state)
  if why then return nil, why, code end
  if not location then
    return nil, "no state directory: set HOME, ENGINE_STATE_DIR, ENGINE_STATE_URL or --state DIR|URL"
  end
  if location.dir and files.absolute(location.dir) == "/" then
    return nil, "the state directory cannot be / (the journal would be /journal.db): " ..
      "give a directory of its own, such as /var/lib/engine"
  end
  return journal.open(location, create)
end

local function subscribe()
  events.on("report.started", function(entry)
    if entry.kind == "step" then
      entry.journal_id = journal.step_started(entry.name, entry.occurrence, entry.recorded and "recorded" or nil)
    end
  end)
  events.on("report.finished", function(entry)
    if entry.kind == "step" then
      journal.step_finished(entry.journal_id, entry.status, entry.error, entry.results)
    end
  end)
  events.on("job.wait_started", function(w)
    if not w.journal_id then
      w.journal_id = journal.run_started(nil, w.provider.name, w.resource, w.occurrence, w.remote_run, w.url,
        w.recorded and "recorded" or "waited", w.started_by, w.label)
    end
  end)
  events.on("job.status", function(w, data)
    local status = w.provider.status(data, w)
    if status ~= w.journal_status then
      w.journal_status = status
      journal.job_status(w.journal_id, status)
    end
  end)
  events.on("job.wait_ended", function(w, ok, result)
    local P = w.provider
    local data = ok and result or (type(result) == "table" and type(result.result) == "table" and result.result) or nil
    journal.job_finished(w.journal_id, {
      status = ok and tostring(result.status) or (type(result) == "table" and (result.cause or result.kind)) or "failed",
      final = w.final == true, ok = ok,
      counts = data and P.counts_of and P.counts_of(data) or nil,
      link = data and data.link, error = not ok and require("engine.c.error").describe(result) or nil,
      rejected = data and data.rejected,
      result = ok and result or nil,
    })
  end)
end

-- The run's identity as far as it is known (fix_identity makes it final).
local identity = {fixed = false}

-- Takes the run lock for key in the lock directory; true, or nil, the
-- line and the exit code (75 when another engine holds it).
local function take_lock(key, what)
  if journal.shared() then -- a lease on the server: the lock across hosts
    local held, holder = journal.lease("run:" .. hash(key))
    if held == nil then return nil, "cannot take the run lock: " .. holder, 1 end
    if not held then
      return nil, string.format("%s is already running with %s (host %s, pid %d, started %s; its lease " ..
        "runs to %s unless renewed); --allow-overlap runs it anyway", flow_label, what, holder.host, holder.pid,
        iso(holder.started_at), iso(holder.expires_at)), EXIT_OVERLAP
    end
    if holder then
      log.warn("took over the run lock of host %s, pid %d (started %s), whose lease ran out at %s: " ..
        "that engine stopped renewing it; --resume continues its run", holder.host, holder.pid,
        iso(holder.started_at), iso(holder.expires_at))
    end
    return true
  end
  local pid = files.whoami()
  local held, holder = files.lock(string.format("%s/%s.lock", identity.lock_dir, hash(key)),
    string.format("pid %d, started %s", pid, iso(rules.wallclock())))
  if held == nil then return nil, "cannot take the run lock: " .. holder, 1 end
  if not held then
    return nil, string.format("%s is already running with %s (%s); --allow-overlap runs it anyway",
      flow_label, what, holder ~= "" and holder or "pid unknown"), EXIT_OVERLAP
  end
  return true
end

-- o: state (DIR or nil), no_state, flow (a file path, or nil for -e code,
-- stdin and the REPL), args, resume (true, a run id, or nil),
-- allow_overlap. Returns true, or nil, a one-line message and an exit code.
function run.begin(o)
  metrics_labels = o.metrics_labels
  local flow = o.flow and files.absolute(o.flow) or o.label or "(command line)"
  local args = o.args or {}
  if not o.no_state then
    local ok, err, code = run.open_journal(o.state)
    if not ok then return nil, err, code == "usage" and EXIT_USAGE or 1 end
  elseif o.resume then
    return nil, "--resume needs the journal: it cannot be used with --no-state", EXIT_USAGE
  end
  local keep, keep_err = run.keep_days()
  if not keep then return nil, keep_err, EXIT_USAGE end
  local stop_timeout = os.getenv("ENGINE_STOP_TIMEOUT")
  if stop_timeout and stop_timeout ~= "" then
    local n = tonumber(stop_timeout)
    if not n or n ~= n or n <= 0 or n > 86400 then
      return nil, string.format("ENGINE_STOP_TIMEOUT must be a number of seconds from 0 to 86400 " ..
        "(default 20), got %q", stop_timeout), EXIT_USAGE
    end
    tasks.stop_budget(n)
  end
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
  journal.on_fenced(function()
    clog.final(string.format("%s: this engine lost its lease on the journal %s (not renewed in time, or " ..
      "another engine took it): another engine may run this flow now and adopts its jobs; stopping without " ..
      "triggering, cancelling or writing anything more", flow_label, journal.path()))
    os.exit(EXIT_OVERLAP)
  end)
  if o.flow and not o.allow_overlap and journal.shared() then
    local ok, why, code = take_lock(flow .. "\0" .. table.concat(args, "\0"), "these arguments")
    if not ok then
      journal.abandon()
      return nil, why, code
    end
    identity.lock_dir = "shared"
  elseif o.flow and not o.allow_overlap then
    local base, parts, alternative
    if journal.enabled() then
      base, parts = journal.path():match("^(.*)/[^/]*$"), {"locks"}
    else
      base, parts, alternative = runtime_dir(o.state)
      if not base and alternative == "usage" then return nil, parts, EXIT_USAGE end
      if not base then return nil, "cannot take the run lock: " .. parts, 1 end
    end
    -- made or checked in C: a directory another user made or can write
    -- would let them plant the lock file (a symlink to overwrite) or hold it
    local dir, err = files.private_dir(base, parts, alternative)
    if not dir then return nil, "cannot take the run lock: " .. err, 1 end
    identity.lock_dir = dir
    local ok, why, code = take_lock(flow .. "\0" .. table.concat(args, "\0"), "these arguments")
    if not ok then return nil, why, code end
  end
  if not journal.enabled() then return true end
  identity.resume, identity.keep = o.resume, keep
  if o.resume and o.resume ~= true then -- a run that is not there stops the start
    local target, why = journal.resume_target(flow, nil, nil, o.resume)
    if not target then
      journal.abandon()
      return nil, "--resume=" .. o.resume .. ": " .. why, EXIT_USAGE
    end
  end
  local pruned, prune_err = pcall(journal.prune, keep, true)
  if not pruned then
    log.warn("cannot prune the journal: %s; the run goes on", errors.describe(prune_err))
  end
  -- the first step or sync fixes the identity, if flow.params did not
  journal.begin_run(flow, args, function() run.fix_identity(nil) end)
  subscribe()
  return true
end

-- Differences between two runs' parameters, as "target prod (run 12: dev)".
local function differences(mine, theirs, id)
  local a, b = values.decode(mine or "") or {}, values.decode(theirs or "") or {}
  local pa, pb = a.params or {}, b.params or {}
  local names, seen = {}, {}
  for _, t in ipairs{pa, pb} do
    for k in pairs(t) do
      if not seen[k] then seen[k] = true names[#names + 1] = k end
    end
  end
  table.sort(names)
  local function show(v)
    if v == nil then return "unset" end
    if type(v) == "table" then return table.concat(v, ",") end
    return tostring(v)
  end
  local out = {}
  for _, k in ipairs(names) do
    if not values.same(pa[k], pb[k]) then
      out[#out + 1] = string.format("%s %s (run %d: %s)", k, show(pa[k]), id, show(pb[k]))
    end
  end
  if not values.same(a.args or {}, b.args or {}) then
    out[#out + 1] = string.format("arguments %s (run %d: %s)", show(a.args or {}), id, show(b.args or {}))
  end
  return table.concat(out, ", ")
end

-- Ends the run before it did anything, with one line (from the flow's
-- main task: the lock another engine holds, a --resume that does not fit).
local function stop_start(code, fmt, ...)
  clog.final(string.format(fmt, ...))
  os.exit(code)
end

-- Fixes the run's identity, once: the flow and its parameters as
-- flow.params parsed them (params: their canonical text), or, when the
-- flow does not call it before its first step or sync, its arguments. Then
-- the lock for the identity (two spellings of one set of parameters are
-- one run) and what --resume continues.
function run.fix_identity(params)
  if identity.fixed then return end
  identity.fixed = true
  local label = flow_label
  if params and identity.lock_dir then
    local ok, why, code = take_lock(flow_name .. "\0params\0" .. params, "these parameters")
    if not ok then stop_start(code, "%s", why) end
  end
  if not journal.enabled() then return end
  local resume_from
  if identity.resume then
    local id = identity.resume ~= true and identity.resume or nil
    local target, why, other = journal.resume_target(flow_name, flow_args, params, id)
    if target and not journal.same_identity(target, flow_args, params) then
      stop_start(EXIT_USAGE, "--resume=%d: run %d ran %s with other %s: %s; run it with the same ones, or " ..
        "without --resume", target.id, target.id, label, params and "parameters" or "arguments",
        params and differences(params, target.params, target.id) or string.format("%s, not %s",
          journal.show_args(target.args), journal.show_args(journal.encode_args(flow_args))))
    end
    if target then
      resume_from = target.id
      log.info("resuming run %d (started %s, %s): what completed in it is not run again",
        target.id, iso(target.started_at), target.outcome or "ended without a record: crashed or killed")
    elseif other and params then
      log.warn("--resume: %s; run %d (%s) differs in %s: to continue it, run it with its parameters " ..
        "and --resume=%d; running this one anew", why, other.id, other.outcome or "crashed",
        differences(params, other.params, other.id), other.id)
    else
      log.info("--resume: %s; running it anew", why)
    end
  end
  journal.set_identity(params, resume_from)
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
  -- another engine runs the flow now: its handlers will tell how it ends
  if #handlers == 0 or journal.fenced() then return nil end
  return function()
    for i, h in ipairs(handlers) do
      -- after a stop, every handler fits in what is left of its budget
      local timeout = h.timeout
      local left = tasks.stop_left()
      if left then timeout = math.max(0.05, math.min(timeout, left - 0.25)) end
      local child = tasks.spawn(h.fn, copy(summary))
      tasks.set_deadline(child, timeout) -- stops a handler that never waits
      local ok, finished = pcall(tasks.join, child, timeout)
      if not ok then -- a handler called os.exit: later handlers do not run
        child:cancel()
        pcall(tasks.join, child)
        break
      elseif not finished then
        child:cancel()
        pcall(tasks.join, child)
        log.error("flow.on_finish: handler %d did not finish within %g s; stopped it", i, timeout)
      else
        local done, err = pcall(child.wait, child)
        if not done and type(err) == "table" and err.deadline then
          log.error("flow.on_finish: handler %d did not finish within %g s; stopped it", i, timeout)
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
  -- after what is still queued; the summary document kept with the run
  -- (for engine ui) is scrubbed as the file is
  local kept = journal.enabled() and not journal.fenced() and rules.redact(report.summary_json(summary)) or nil
  journal.end_run(outcome, summary.exit_code, kept)
  local ok = true
  if journal.write_failed() and not journal.fenced() then
    -- what keeps a later run from triggering twice is missing: not a success
    clog.final("the journal could not be written during this run (the first error is above); " ..
      "its record is incomplete, so the run fails")
    ok = false
  end
  if metrics_path then ok = require("engine.metrics").write(summary, metrics_path, metrics_labels) and ok end
  if not show then return ok end
  return report.write(summary, json_path, kept) and ok
end

return run
