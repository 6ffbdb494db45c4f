-- lua/help.lua: one line for every module function, shown by help() in the
-- REPL; a test checks that every global module function is listed here.
local help = {}

help.modules = {
  {"flow", "tasks: spawn, parallel, timeout, retry, steps, commands, on_finish, params"},
  {"census", "Census syncs: trigger, wait, sync, cancel, list"},
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
  census = {
    trigger = "census.trigger(url | {sync_id | name, label, token, region, force_full_sync, api_version}) -> run",
    wait = "census.wait(run [, {poll, timeout, cancel_on_timeout, max_records_failed, ...}]) -> result",
    sync = "census.sync(url | table [, wait options]) -> result: trigger, then wait",
    task = "census.task{api_trigger = URL, ...} -> job; job:run{...}: defaults like Prefect's task",
    cancel = "census.cancel(run): ask Census to cancel a running sync run",
    get_run = "census.get_run(id) -> the sync run's data",
    get_sync = "census.get_sync(id) -> the sync's data",
    syncs = "census.syncs([{page, per_page, order}]) -> syncs, pagination",
    runs = "census.runs(sync_id [, {page, per_page, order}]) -> runs, pagination (newest first)",
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
    lines[1] = "modules (help(\"census\") or help(census.sync) for more):"
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
