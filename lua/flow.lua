-- lua/flow.lua: the flow module. Task primitives, timers and child
-- processes come from the C modules; parallel, timeout, retry, named steps
-- and the checks on a command's outcome are policy written on top of them.
local tasks = require "engine.c.task"
local timer = require "engine.c.timer"
local errors = require "engine.c.error"
local exec = require "engine.c.exec"
local rules = require "engine.c.rules"
local options = require "engine.c.options"
local log = require "engine.log"
local clog = require "engine.c.log"
local run = require "engine.run"
local report = require "engine.report"
local journal = require "engine.journal"

local flow = {}

-- Tasks inherit the step and the retry attempt they were started in, so
-- their logs and report rows belong to them.
function flow.spawn(fn, ...)
  if type(fn) ~= "function" then error("flow.spawn: expected a function", 2) end
  local step, retry = report.current_step(), report.current_retry()
  if step == nil and retry == nil then return tasks.spawn_visible(fn, ...) end
  return tasks.spawn_visible(function(...)
    report.set_step(step)
    report.set_retry(retry)
    return fn(...)
  end, ...)
end

flow.sleep = timer.sleep
flow.now = timer.now
flow.error = errors.error
flow.is_error = errors.is_error
flow.on_finish = run.on_finish
function flow.params(...) return require("engine.params").parse(...) end

-- The first line of an error value, as lua prints it (never raises).
local function message_of(err)
  return (errors.describe(err):gsub("\n.*", ""))
end

local function check_seconds(what, value)
  if type(value) ~= "number" or value ~= value or value < 0 or value > 1e9 then
    error(string.format("%s: seconds must be a number from 0 to 1e9, got %s",
      what, tostring(value)), 3)
  end
end

-- True once the running task has been asked to stop, delivered or not.
local function was_canceled()
  local _, canceled = tasks.current()
  return canceled
end

-- Cancels the handles and waits for them to end; used when the caller itself
-- is cancelled, so the original error is re-raised afterwards.
local function cancel_and_join(handles)
  for _, h in ipairs(handles) do h:cancel() end
  for _, h in ipairs(handles) do pcall(tasks.join, h) end
end

function flow.timeout(seconds, fn, ...)
  check_seconds("flow.timeout", seconds)
  if type(fn) ~= "function" then
    error("flow.timeout: expected a function as the second argument", 2)
  end
  local child = flow.spawn(fn, ...)
  local ok, finished = pcall(tasks.join, child, seconds)
  if not ok then
    cancel_and_join({child})
    error(finished, 0)
  end
  if not finished then
    -- what the child waits on (a job) reads "timeout", not a bare cancel
    tasks.cancel(child, "timeout", string.format("timed out after %g s (flow.timeout)", seconds))
    pcall(tasks.join, child)
    error(errors.error("timeout", string.format("timed out after %g s", seconds),
      {seconds = seconds}), 2)
  end
  return child:wait()
end

-- How many distinct messages a parallel failure shows, and how long each.
local SHOWN_MESSAGES, MESSAGE_MAX = 3, 300

-- The failures as a short line at any count: identical messages grouped
-- ("[sync 2, orders, branch 9 and 997 more] message"; a branch is named by
-- the job or step row that shows its error, else by its place), the first
-- few kinds, then how many more; the full list stays in the error's
-- .errors.
local function failure_list(failures)
  local groups, by_message = {}, {}
  for _, f in ipairs(failures) do
    local g = by_message[f.message]
    if not g then
      g = {message = f.message, names = {}}
      by_message[f.message] = g
      groups[#groups + 1] = g
    end
    g.names[#g.names + 1] = f
  end
  local parts = {}
  for i = 1, math.min(#groups, SHOWN_MESSAGES) do
    local g = groups[i]
    local shown = {}
    for k = 1, math.min(#g.names, 3) do
      local f = g.names[k]
      shown[k] = report.shown_where(f.error) or ("branch " .. f.index)
    end
    local where = table.concat(shown, ", ")
    if #g.names > 3 then where = string.format("%s and %d more", where, #g.names - 3) end
    local message = #g.message > MESSAGE_MAX and (g.message:sub(1, MESSAGE_MAX) .. "...") or g.message
    parts[i] = string.format("[%s] %s", where, message)
  end
  local text = table.concat(parts, "; ")
  if #groups > SHOWN_MESSAGES then
    text = string.format("%s; and %d more different errors (see .errors)", text, #groups - SHOWN_MESSAGES)
  end
  return text
end

function flow.parallel(fns, opts)
  if type(fns) ~= "table" then
    error("flow.parallel: expected a list of functions", 2)
  end
  local n = #fns
  for i = 1, n do
    if type(fns[i]) ~= "function" then
      error(string.format("flow.parallel: item %d is a %s, expected a function",
        i, type(fns[i])), 2)
    end
  end
  opts = opts or {}
  local limit = opts.limit or math.max(n, 1)
  if math.type(limit) ~= "integer" or limit < 1 then
    error("flow.parallel: limit must be a whole number >= 1", 2)
  end
  local results, failures = {n = n}, {}
  local next_index = 0
  -- Each worker runs one function at a time, so at most `limit` run at once.
  local function worker()
    while not was_canceled() do
      next_index = next_index + 1
      local i = next_index
      if i > n then return end
      local ok, value = pcall(fns[i])
      if ok then
        results[i] = value
      else
        failures[#failures + 1] = {index = i, error = value, message = message_of(value)}
      end
    end
  end
  local workers = {}
  for w = 1, math.min(limit, n) do workers[w] = flow.spawn(worker) end
  for w = 1, #workers do
    local ok, err = pcall(tasks.join, workers[w])
    if not ok then
      cancel_and_join(workers)
      error(err, 0)
    end
  end
  if #failures > 0 then
    table.sort(failures, function(a, b) return a.index < b.index end)
    error(errors.error("parallel", string.format("%d of %d branches failed: %s",
      #failures, n, failure_list(failures)), {errors = failures}), 2)
  end
  return results
end

local function last_line(text)
  local last
  for line in (text or ""):gmatch("[^\n]+") do last = line end
  return last
end

-- Runs a command (no shell) and waits for it; raises kind "exec" when it
-- fails (unless check = false) and "timeout" when it runs out of time.
function flow.exec(spec)
  if type(spec) ~= "table" then
    error("flow.exec: expected {\"command\", \"arg\", ..., options}", 2)
  end
  if spec.name == nil and report.current_step() then
    local named = {name = report.current_step()}
    for k, v in pairs(spec) do named[k] = v end
    spec = named
  end
  local res = exec.run(spec)
  local fields = {code = res.code, signal = res.signal, stdout = res.stdout,
    stderr = res.stderr, command = res.command}
  if res.timed_out then
    error(errors.error("timeout", string.format("%s: timed out after %g s and was stopped",
      res.command, spec.timeout), fields), 2)
  end
  if spec.check ~= false and (res.code ~= 0 or res.signal) then
    local why = res.signal and ("was killed by signal " .. res.signal)
      or ("exited with code " .. res.code)
    local hint = last_line(res.stderr) or last_line(res.stdout)
    error(errors.error("exec", string.format("%s %s%s", res.command, why,
      hint and (": " .. rules.redact(hint)) or ""), fields), 2)
  end
  return res
end

-- flow.sh("script", options): flow.exec of /bin/sh -c script.
function flow.sh(script, opts)
  if type(script) ~= "string" then error("flow.sh: expected a shell script string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("flow.sh: options must be a table", 2) end
  local spec = {"/bin/sh", "-c", script}
  for k, v in pairs(opts or {}) do spec[k] = v end
  return flow.exec(spec)
end

-- flow.step(name, fn, ...): runs fn(...) as a named step of the run: its
-- start, end and outcome are logged, shown in the progress view and the
-- summary, and commands it runs are logged under its name.
function flow.step(name, fn, ...)
  if type(name) ~= "string" or name == "" then
    error("flow.step: expected a name, then a function", 2)
  end
  if type(fn) ~= "function" then error("flow.step: expected a function after the name", 2) end
  -- --resume: a step that completed in the resumed run (same name, same
  -- occurrence) returns what it returned then, without running again.
  local occurrence, recorded, why_not = journal.step_occurrence(name)
  if why_not then log.warn("--resume: %s", why_not) end
  if recorded then
    local entry = report.start("step", name, {occurrence = occurrence, recorded = true})
    report.finish(entry, "ok", {detail = "recorded", results = recorded})
    clog.info({step = name}, "step %s: done in engine run %d; not run again (--resume)", name, journal.resumed())
    return table.unpack(recorded, 1, recorded.n)
  end
  local parent = report.current_step()
  local entry = report.start("step", name, {occurrence = occurrence})
  report.set_step(name)
  log.info("step %s: started", name)
  local r = table.pack(pcall(fn, ...))
  report.set_step(parent)
  if r[1] then
    local results = table.pack(table.unpack(r, 2, r.n))
    report.finish(entry, "ok", {results = results})
    clog.info({step = name}, "step %s: done in %.1f s", name, entry.duration)
    return table.unpack(r, 2, r.n)
  end
  local err = r[2]
  local status = errors.is_error(err, "canceled") and "canceled" or "failed"
  -- An error a sync's row (or an inner step's) already shows is named,
  -- not repeated.
  local shown = report.shown_where(err)
  if shown then
    report.finish(entry, status, {detail = "see " .. shown})
    clog.error({step = name}, "step %s: %s after %.1f s (see %s)", name, status, entry.duration, shown)
  else
    report.finish(entry, status, {error = message_of(err), failure = err})
    clog.error({step = name}, "step %s: %s after %.1f s: %s", name, status, entry.duration, message_of(err))
  end
  error(err, 0)
end

local RETRY_OPTIONS = {"attempts", "delay", "backoff", "max_delay", "jitter", "retry_if"}

function flow.retry(opts, fn, ...)
  if type(opts) ~= "table" then
    error("flow.retry: expected an options table, then a function", 2)
  end
  options.check_options("flow.retry", opts, RETRY_OPTIONS)
  if type(fn) ~= "function" then error("flow.retry: expected a function", 2) end
  local o = {
    attempts = opts.attempts or 3, delay = opts.delay or 1,
    backoff = opts.backoff or 2, max_delay = opts.max_delay or 60,
    jitter = opts.jitter or 0.2, retry_if = opts.retry_if,
  }
  if math.type(o.attempts) ~= "integer" or o.attempts < 1 then
    error("flow.retry: attempts must be a whole number >= 1", 2)
  end
  for _, k in ipairs{"delay", "max_delay"} do
    if type(o[k]) ~= "number" or o[k] < 0 then
      error("flow.retry: " .. k .. " must be a number of seconds >= 0", 2)
    end
  end
  if type(o.backoff) ~= "number" or o.backoff < 1 then
    error("flow.retry: backoff must be a number >= 1", 2)
  end
  if type(o.jitter) ~= "number" or o.jitter < 0 or o.jitter > 1 then
    error("flow.retry: jitter must be a fraction from 0 to 1", 2)
  end
  if o.retry_if ~= nil and type(o.retry_if) ~= "function" then
    error("flow.retry: retry_if must be a function", 2)
  end
  -- Rows the attempts start in the run report are one row per unit.
  local scope, outer = report.retry_scope(), report.current_retry()
  local attempt = 0
  while true do
    attempt = attempt + 1
    scope.next()
    report.set_retry(scope)
    local r = table.pack(pcall(fn, ...))
    report.set_retry(outer)
    if r[1] then return table.unpack(r, 2, r.n) end
    local err = r[2]
    local give_up = attempt >= o.attempts or errors.is_error(err, "canceled")
      or (o.retry_if and not o.retry_if(err))
    if give_up then
      if not errors.is_error(err) then
        err = errors.error("error", message_of(err), {cause = err})
        err.where = ""
      end
      err.attempts = attempt
      if attempt > 1 and not errors.is_error(err, "canceled") then
        err.message = string.format("%s (gave up after %d attempts)", err.message, attempt)
      end
      error(err, 0)
    end
    local wait = rules.backoff(attempt, o.delay, o.backoff, o.max_delay, o.jitter)
    clog.warn({attempt = attempt}, "attempt %d/%d failed: %s; retrying in %.1f s",
      attempt, o.attempts, message_of(err), wait)
    timer.sleep(wait)
  end
end

-- os.execute, as the flow sees it: in a task that can wait, the shell
-- runs as a child the loop waits on (no other task, timer or poll stops
-- meanwhile), with the engine's own stdin, stdout and stderr, and the same
-- results as stock Lua: true|nil, "exit"|"signal", code. Anywhere else
-- (a metamethod, no task), and os.execute() itself, are stock.
local flow_os = require "os" -- the flow's own os table (the library's)
local stock_execute = flow_os.execute
flow_os.execute = function(command)
  if command == nil or not tasks.can_wait() then
    return stock_execute(command)
  end
  if type(command) ~= "string" and type(command) ~= "number" then
    return stock_execute(command) -- stock's own argument error
  end
  local res = exec.run({"/bin/sh", "-c", tostring(command), stdio = "inherit", name = "os.execute"})
  if res.signal then return nil, "signal", res.signal end
  if res.code == 0 then return true, "exit", 0 end
  return nil, "exit", res.code
end

return flow
