-- lua/help.lua: one line for every module function, shown by help() in the
-- REPL, and the environment variables of --help that belong to providers;
-- a test checks that every global module function is listed. A provider
-- (lua/provider_*.lua) brings its own lines (P.help).
local help = {}

help.modules = {
  {"flow", "tasks: spawn, parallel, timeout, retry, steps, commands, on_finish, params"},
  {"http", "non-blocking HTTP requests"},
  {"json", "JSON encode and decode"},
  {"log", "timestamped log lines on stderr"},
}

help.functions = {
  flow = {
    spawn = "flow.spawn(fn, ...) -> task: start fn(...) as a task now (h:wait(), h:cancel(), h:status())",
    parallel = "flow.parallel(fns [, {limit = N}]) -> results: run functions as tasks, wait for all",
    sleep = "flow.sleep(seconds): wait without blocking other tasks",
    now = "flow.now() -> seconds: monotonic clock",
    timeout = "flow.timeout(seconds, fn, ...): run fn, raise kind \"timeout\" if it takes longer",
    retry = "flow.retry({attempts, delay, backoff, max_delay, jitter, retry_if}, fn, ...): retry fn",
    error = "flow.error(kind, message [, fields]) -> error object to raise with error()",
    is_error = "flow.is_error(value [, kind]) -> boolean: is it an error object (of that kind)",
    step = "flow.step(name, fn, ...): run fn as a named step (logs, progress, summary)",
    exec = "flow.exec{cmd, arg..., env, inherit_env, cwd, timeout, stdin, check, name, max_output} -> {code, stdout, stderr}",
    sh = "flow.sh(script [, options]) -> {code, stdout, stderr}: flow.exec of /bin/sh -c script",
    on_finish = "flow.on_finish(fn [, {timeout}]): fn(summary) runs once when the run ends, however it ends",
    params = "flow.params{name = {type, default, help, env, required}} -> values: the flow's --parameters",
  },
  http = {
    request = "http.request{method, url, headers, body, timeout, follow_redirects, compressed, max_bytes} -> {status, headers, body}",
    get = "http.get(url [, options]) -> response",
    post = "http.post(url, body [, options]) -> response",
  },
  json = {
    encode = "json.encode(value) -> text",
    decode = "json.decode(text) -> value (null is json.null)",
  },
  log = {
    debug = "log.debug(fmt, ...): a DEBUG line (shown with -v)",
    info = "log.info(fmt, ...): an INFO line",
    warn = "log.warn(fmt, ...): a WARN line",
    error = "log.error(fmt, ...): an ERROR line",
  },
}

-- Each provider's help, after flow in the list.
local provider_names = require "engine.c.providers"
local providers = {}
for i, name in ipairs(provider_names) do
  require("engine." .. name)
  local P = require("engine.jobs").provider(name)
  providers[i] = P
  table.insert(help.modules, 1 + i, {name, P.help.summary})
  help.functions[name] = P.help.functions
end

-- The variables every provider reads, after its own (P.help.environment).
local function common_environment(P)
  local e = P.env
  return {
    {e .. "_POLL", string.format("default poll interval in seconds (%g)", P.poll or 60)},
    {e .. "_MIN_POLL", string.format("lower the %g s poll floor (tests, simulators)", P.poll_floor or 5)},
    {e .. "_REQUEST_TIMEOUT", string.format("seconds per %s request (30)", P.vendor)},
    {e .. "_RETRY_DELAY", "first retry delay in seconds (1)"},
    {e .. "_RETRY_BUDGET", "seconds of retries per request (300)"},
    {e .. "_THROTTLE_WAIT", P.throttle_wait and string.format("seconds a 429 without Retry-After pauses (%g)",
      P.throttle_wait) or "seconds a 429 without Retry-After pauses (backoff)"},
    {e .. "_CANCEL_ON_STOP", P.cancel and string.format("0: stopping leaves %s runs going (default 1)", P.vendor)},
    {e .. "_MAX_ANSWER_BYTES", string.format("the largest %s answer read (4 MiB)", P.vendor)},
    {e .. "_ALLOW_HTTP", string.format("1: allow plain http to a non-local %s_BASE_URL", e)},
    {e .. "_MAX_REQUESTS_PER_SECOND", (P.max_rate or 0) > 0 and string.format("the account's request budget (%.3g; 0: none)",
      P.max_rate) or "the account's request budget (0: none, the default)"},
  }
end

-- The providers' part of --help.
function help.environment()
  local lines = {}
  for _, P in ipairs(providers) do
    lines[#lines + 1] = string.format("\n%s (%s):", P.name, P.help.summary)
    for _, list in ipairs{P.help.environment, common_environment(P)} do
      for _, v in ipairs(list) do
        if not v[2] then -- (nothing to say: a provider that cannot cancel)
        elseif #v[1] < 23 then
          lines[#lines + 1] = string.format("  %-23s %s", v[1], v[2])
        else
          lines[#lines + 1] = string.format("  %s  %s", v[1], v[2])
        end
      end
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- The help text for nothing (the overview), a module name or table, or a
-- function value.
function help.text(topic)
  local lines = {}
  if topic == nil then
    lines[1] = "modules (help(\"flow\") or help(flow.step) for more):"
    for _, m in ipairs(help.modules) do
      lines[#lines + 1] = string.format("  %-7s %s", m[1], m[2])
    end
    lines[#lines + 1] = "Enter runs a statement or prints an expression; Tab completes; " ..
      "Ctrl-C cancels the running line; Ctrl-D leaves."
    return table.concat(lines, "\n")
  end
  for name, fns in pairs(help.functions) do
    local module = require("engine." .. name)
    if topic == name or topic == module then
      for _, fname in ipairs(sorted_keys(fns)) do lines[#lines + 1] = "  " .. fns[fname] end
      return table.concat(lines, "\n")
    end
    for fname, line in pairs(fns) do
      if topic == module[fname] then return line end
    end
  end
  return "no help for " .. tostring(topic) .. "; help() lists the modules"
end

return help
