-- lua/census.lua: the census module. Triggers Census syncs and waits for
-- their runs: validation, Bearer-auth transport with retries, the rules that
-- turn a run's status into a result or an error, and the log lines a person
-- reads. The pure rules (URL grammar, redaction, status classes, backoff,
-- dates) live in engine/rules.c.
local timer = require "engine.c.timer"
local errors = require "engine.c.error"
local rules = require "engine.c.rules"
local http = require "engine.http"
local json = require "engine.json"
local log = require "engine.log"
local report = require "engine.report"

local census = {}

local HOSTS = {us = "https://app.getcensus.com", eu = "https://app-eu.getcensus.com"}
local TRIGGER_FORM = "https://bearer:secret-token:<token>@app.getcensus.com" ..
  "/api/v1/syncs/<sync id>/trigger (app-eu.getcensus.com for EU workspaces)"
local POLL_FLOOR = 5

-- Connections and task defaults hold tokens: they live here, keyed weakly by
-- the objects users see, so printing a run or a task never shows a token.
local private = setmetatable({}, {__mode = "k"})

-- Raises an error object; the arguments (never the fixed text) are redacted.
local function raise(kind, fields, fmt, ...)
  local args = table.pack(...)
  for i = 1, args.n do
    if type(args[i]) == "string" then args[i] = rules.redact(args[i]) end
  end
  error(errors.error(kind, string.format(fmt, table.unpack(args, 1, args.n)), fields), 0)
end

local function invalid(fmt, ...) raise("invalid_argument", nil, fmt, ...) end

-- An environment variable, with empty meaning unset.
local function env(name)
  local v = os.getenv(name)
  if v ~= "" then return v end
end

local function env_seconds(name)
  local v = env(name)
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n < 0 or n ~= n then
    invalid("%s must be a number of seconds, got %q", name, v)
  end
  return n
end

local function check_options(what, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then invalid("%s: expected an options table, got a %s", what, type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for name in pairs(allowed) do names[#names + 1] = name end
      table.sort(names)
      invalid("%s: unknown option '%s' (expected %s)", what, tostring(k), table.concat(names, ", "))
    end
  end
  return opts
end

local CONNECTION_OPTIONS = {token = true, region = true, api_version = true}

local function set_of(...)
  local s = {}
  for _, t in ipairs{...} do for k in pairs(t) do s[k] = true end end
  return s
end

-- Where and how to reach Census: token, base URL, API version.
local function connection(opts, token)
  token = token or opts.token or env("CENSUS_API_KEY")
  if type(token) ~= "string" or token == "" then
    invalid("census: no API token: pass token = ... or set CENSUS_API_KEY " ..
      "(a workspace key for API v1, a personal access token for v2)")
  end
  if token:find("[%c ]") then invalid("census: the API token contains spaces or control characters") end
  local region = opts.region or "us"
  if not HOSTS[region] then invalid("census: region must be \"us\" or \"eu\", got %s", tostring(region)) end
  local given = opts.api_version or env("CENSUS_API_VERSION") or 1
  local version = math.tointeger(tonumber(given))
  if version ~= 1 and version ~= 2 then
    invalid("census: api_version (or CENSUS_API_VERSION) must be 1 or 2, got %s", tostring(given))
  end
  local base = env("CENSUS_BASE_URL")
  if base then
    if not base:match("^https?://[%w%.%-]+$") and not base:match("^https?://[%w%.%-]+:%d+$")
      and not base:match("^https?://%[[%x:]+%]:%d+$") then
      invalid("CENSUS_BASE_URL must be scheme://host[:port] with no path, got %q", base)
    end
  else
    base = HOSTS[region]
  end
  return {
    token = token, base = base, version = version,
    request_timeout = env_seconds("CENSUS_REQUEST_TIMEOUT") or 30,
    retry_delay = env_seconds("CENSUS_RETRY_DELAY") or 1,
    retry_budget = env_seconds("CENSUS_RETRY_BUDGET") or 300,
  }
end

local function history_url(conn, sync_id)
  return string.format("%s/syncs/%s/sync-history", conn.base, sync_id)
end

-- JSON null -> nil, recursively, so results read naturally.
local function strip_nulls(v)
  if type(v) == "table" then
    for k, x in pairs(v) do
      if x == json.null then v[k] = nil else strip_nulls(x) end
    end
  end
  return v
end

local function excerpt(body)
  local text = (body or ""):gsub("<[^>]*>", " "):gsub("%s+", " "):gsub("^ ", "")
  if #text > 120 then text = text:sub(1, 117) .. "..." end
  return rules.redact(text)
end

local function decode(body)
  local ok, v = pcall(json.decode, body or "")
  if ok and type(v) == "table" then return v end
  return nil
end

-- One request, classified: returns "ok", payload | "retry", err | "fail", err.
-- A retryable outcome of a POST means its effect is unknown (except 429).
local function attempt(conn, method, path, query, what)
  local url = conn.base .. "/api/v" .. conn.version .. path .. (query or "")
  local ok, res = pcall(http.request, {
    method = method, url = url, timeout = conn.request_timeout,
    headers = {Authorization = "Bearer " .. conn.token, Accept = "application/json",
               ["Content-Type"] = method == "POST" and "application/json" or nil},
    body = method == "POST" and "" or nil,
  })
  if not ok then
    if errors.is_error(res, "canceled") or not errors.is_error(res) then error(res, 0) end
    local e = errors.error(res.kind, string.format("%s: %s", what, res.message))
    return "retry", e
  end
  local status, body = res.status, decode(res.body)
  local server_time = rules.parse_time(res.headers.date)
  local fields = {http_status = status}
  local detail = body and type(body.message) == "string" and body.message or excerpt(res.body)
  if status >= 200 and status < 300 then
    if not body then
      return "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: Census answered HTTP %d with a body that is not JSON: %q", what, status, excerpt(res.body))), fields)
    end
    return "ok", {body = body, server_skew = server_time and server_time - rules.wallclock()}
  end
  if status == 429 or status >= 500 then
    fields.retry_after = rules.retry_after(res.headers["retry-after"])
    return "retry", errors.error("http", rules.redact(string.format(
      "%s: Census answered HTTP %d: %s", what, status, detail)), fields)
  end
  local kind, hint = "http", ""
  if status == 401 or status == 403 then
    kind = "auth"
    hint = conn.version == 2 and "; API v2 takes a personal access token"
      or "; check CENSUS_API_KEY or the token in the trigger URL and its workspace"
  elseif status == 404 then
    kind = "not_found"
    hint = "; check the id and the region (us or eu)"
  end
  return "fail", errors.error(kind, rules.redact(string.format(
    "%s: Census answered HTTP %d: %s%s", what, status, detail, hint)), fields)
end

-- The wait before retry `n + 1` after `err`: backoff with jitter, at least
-- its Retry-After; raises err (with the attempts made) when waiting would
-- pass budget_end.
local function retry_wait(conn, n, err, budget_end)
  local wait = rules.backoff(n, conn.retry_delay, 2, 90, 0.2)
  if err.retry_after and err.retry_after > wait then wait = err.retry_after end
  if timer.now() + wait > budget_end then
    err.attempts = n
    error(err, 0)
  end
  return wait
end

-- GETs (and idempotent POSTs) retried on network errors, 5xx, 429 and bad
-- bodies, with backoff and jitter, honouring Retry-After, within a budget
-- that never passes `deadline` (a flow.now() value).
local function request(conn, method, path, query, what, check, deadline)
  local budget_end = timer.now() + conn.retry_budget
  if deadline and deadline < budget_end then budget_end = deadline end
  local n = 0
  while true do
    n = n + 1
    local outcome, v = attempt(conn, method, path, query, what)
    if outcome == "ok" then
      local problem = check and check(v.body)
      if not problem then return v.body, v end
      outcome, v = "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: %s", what, problem)))
    end
    if outcome == "fail" then error(v, 0) end
    local wait = retry_wait(conn, n, v, budget_end)
    log.warn("census: %s, retrying in %.1f s (attempt %d)", v.message, wait, n + 1)
    timer.sleep(wait)
  end
end

local function has_data(body)
  if type(body.data) ~= "table" then
    return "the answer has no data object: " .. excerpt(json.encode(body))
  end
end

local function has_run_status(body)
  local problem = has_data(body)
  if problem then return problem end
  if type(body.data.status) ~= "string" then
    return "the sync run has no status: " .. excerpt(json.encode(body))
  end
end

local function sync_id_of(v, what)
  local id = math.tointeger(tonumber(v))
  if not id or id <= 0 or (type(v) == "string" and not v:match("^%d+$")) then
    invalid("%s: sync_id must be a positive whole number, got %s", what, tostring(v))
  end
  return id
end

local TRIGGER_OPTIONS = set_of(CONNECTION_OPTIONS, {sync_id = true, force_full_sync = true})

-- The sync, the connection and the force_full_sync flag a trigger means.
local function trigger_spec(spec)
  if spec == nil or spec == "" then
    invalid("census.trigger: a trigger URL must be provided: copy the API trigger URL " ..
      "from the sync's configuration page in Census, or pass {sync_id = N} with CENSUS_API_KEY set")
  end
  if type(spec) == "string" then
    local t = rules.parse_trigger(spec)
    if not t then
      invalid("census.trigger: invalid trigger URL %q: paste it directly from the sync's " ..
        "configuration page in Census; it must look like " .. TRIGGER_FORM .. " and is case-sensitive", spec)
    end
    return {sync_id = t.sync_id, force_full_sync = t.force_full_sync,
            conn = connection({region = t.eu and "eu" or "us"}, t.token)}
  end
  if type(spec) ~= "table" then
    invalid("census.trigger: expected a trigger URL or {sync_id = N, ...}, got a %s", type(spec))
  end
  check_options("census.trigger", spec, TRIGGER_OPTIONS)
  if spec.force_full_sync ~= nil and type(spec.force_full_sync) ~= "boolean" then
    invalid("census.trigger: force_full_sync must be true or false")
  end
  return {sync_id = sync_id_of(spec.sync_id, "census.trigger"),
          force_full_sync = spec.force_full_sync, conn = connection(spec)}
end

local function new_run(conn, sync_id, run_id)
  local run = {sync_id = sync_id, sync_run_id = run_id}
  private[run] = conn
  return run
end

-- The sync's newest run, when it was created at or after `since` (our clock).
local function run_created_since(conn, sync_id, since)
  local body, meta = request(conn, "GET", "/syncs/" .. sync_id .. "/sync_runs",
    "?per_page=1&order=desc", "sync " .. sync_id .. ": looking for the run of a lost trigger", has_data)
  local latest = body.data[1]
  if type(latest) ~= "table" then return nil end
  local created = rules.parse_time(latest.created_at)
  if not created then return nil end
  -- Compare on the server's clock (from its Date header) with 2 s of slack
  -- for the header's one-second resolution.
  local skew = meta.server_skew or 0
  if created >= since + skew - 2 then return latest end
end

function census.trigger(spec)
  local t = trigger_spec(spec)
  local conn, id = t.conn, t.sync_id
  local query = t.force_full_sync ~= nil and ("?force_full_sync=" .. tostring(t.force_full_sync)) or nil
  local what = "sync " .. id .. ": trigger"
  local budget_end = timer.now() + conn.retry_budget
  local n = 0
  while true do
    n = n + 1
    local sent_at = rules.wallclock()
    local outcome, v = attempt(conn, "POST", "/syncs/" .. id .. "/trigger", query, what)
    if outcome == "ok" then
      local run_id = type(v.body.data) == "table" and math.tointeger(v.body.data.sync_run_id)
      if run_id then
        log.info("census: sync %d triggered: run %d%s", id, run_id,
          t.force_full_sync and " (full sync)" or "")
        return new_run(conn, id, run_id)
      end
      outcome, v = "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: the answer has no data.sync_run_id: %s", what, excerpt(json.encode(v.body)))))
    end
    if outcome == "fail" then
      v.sync_id = id
      error(v, 0)
    end
    -- 429 means the trigger was refused; anything else leaves it unknown
    -- whether a run started, so look before triggering again.
    if v.http_status ~= 429 then
      local run = run_created_since(conn, id, sent_at)
      if run and math.tointeger(run.id) then
        log.warn("census: %s; adopting run %d, which Census created after the trigger was sent",
          v.message, math.tointeger(run.id))
        return new_run(conn, id, math.tointeger(run.id))
      end
    end
    v.sync_id = id
    local wait = retry_wait(conn, n, v, budget_end)
    log.warn("census: %s; no run was started, triggering again in %.1f s", v.message, wait)
    timer.sleep(wait)
  end
end

local WAIT_OPTIONS = set_of(CONNECTION_OPTIONS, {poll = true, timeout = true,
  cancel_on_timeout = true, max_records_failed = true, max_failed_ratio = true,
  allow_skipped = true})

-- Each distinct warning once per process: 500 parallel waits share it.
local warned = {}
local function warn_once(fmt, ...)
  local line = string.format(fmt, ...)
  if not warned[line] then
    warned[line] = true
    log.warn("%s", line)
  end
end

local function poll_interval(opts)
  local poll = opts.poll or env_seconds("CENSUS_POLL") or 60
  if type(poll) ~= "number" or poll ~= poll or poll <= 0 then
    invalid("census.wait: poll must be a number of seconds > 0, got %s", tostring(poll))
  end
  local floor = POLL_FLOOR
  local min_poll = env_seconds("CENSUS_MIN_POLL")
  if min_poll then
    floor = min_poll
    warn_once("census: CENSUS_MIN_POLL=%g lowers the poll floor from %d s; meant for tests and simulators",
      min_poll, POLL_FLOOR)
  end
  if poll < floor then
    warn_once("census: poll every %g s is below the %g s floor; polling every %g s", poll, floor, floor)
    poll = floor
  end
  return poll
end

local function check_wait_options(opts)
  check_options("census.wait", opts, WAIT_OPTIONS)
  local timeout = opts.timeout or 86400
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
    invalid("census.wait: timeout must be a number of seconds > 0, got %s", tostring(opts.timeout))
  end
  for _, k in ipairs{"max_records_failed", "max_failed_ratio"} do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] < 0) then
      invalid("census.wait: %s must be a number >= 0, got %s", k, tostring(opts[k]))
    end
  end
  return timeout
end

local function run_of(run, what)
  if type(run) ~= "table" then
    invalid("%s: expected a run from census.trigger (or {sync_id =, sync_run_id =}), got a %s", what, type(run))
  end
  local run_id = math.tointeger(tonumber(run.sync_run_id))
  if not run_id or run_id <= 0 then
    invalid("%s: the run has no sync_run_id; pass what census.trigger returned", what)
  end
  return run_id, math.tointeger(tonumber(run.sync_id))
end

local function describe(sync_id, run_id)
  return sync_id and string.format("sync %d run %d", sync_id, run_id) or ("run " .. run_id)
end

local function records_summary(d)
  return string.format("%s processed, %s updated, %s failed",
    tostring(d.records_processed or 0), tostring(d.records_updated or 0), tostring(d.records_failed or 0))
end

local function finish(conn, data, sync_id, run_id, started)
  local result = strip_nulls(data)
  result.sync_id = math.tointeger(result.sync_id) or sync_id
  result.sync_run_id = run_id
  result.elapsed = timer.now() - started
  result.url = history_url(conn, result.sync_id or "?")
  return result
end

local function cancel_run(conn, run_id, what)
  request(conn, "POST", "/sync_runs/" .. run_id .. "/cancel", nil, what .. ": cancel")
end

local wait_loop

function census.wait(run, opts)
  local run_id, sync_id = run_of(run, "census.wait")
  opts = opts or {}
  local timeout = check_wait_options(opts)
  local poll = poll_interval(opts)
  local conn = private[run] or connection(opts)
  local entry = report.start("sync", sync_id and ("sync " .. sync_id) or ("run " .. run_id),
    {sync_id = sync_id, sync_run_id = run_id, url = sync_id and history_url(conn, sync_id)})
  local ok, result = pcall(wait_loop, run_id, sync_id, opts, timeout, poll, conn, entry)
  local data = ok and result or (type(result) == "table" and result.result) or {}
  report.finish(entry, ok and result.status or (errors.is_error(result) and result.kind or "failed"), {
    records_processed = data.records_processed, records_updated = data.records_updated,
    records_failed = data.records_failed, url = data.url or entry.url,
    error = not ok and (tostring(result):gsub("\n.*", "")) or nil})
  if not ok then error(result, 0) end
  return result
end

function wait_loop(run_id, sync_id, opts, timeout, poll, conn, entry)
  local what = describe(sync_id, run_id)
  local started = timer.now()
  local deadline = started + timeout
  log.info("census: %s: waiting, polling every %g s", what, poll)
  local last
  while true do
    local body = request(conn, "GET", "/sync_runs/" .. run_id, nil, what, has_run_status, deadline)
    local data = body.data
    sync_id = sync_id or math.tointeger(data.sync_id)
    what = describe(sync_id, run_id)
    entry.run_status = data.status
    entry.records_processed = math.tointeger(data.records_processed) or entry.records_processed
    if data.status ~= last then
      log.info("census: %s: %s%s", what, data.status,
        data.current_step and data.current_step ~= json.null and (" (" .. tostring(data.current_step) .. ")") or "")
      last = data.status
    end
    local class = rules.run_status(data.status)
    local function fail(kind, fmt, ...)
      local result = finish(conn, data, sync_id, run_id, started)
      raise(kind, {sync_id = sync_id, sync_run_id = run_id, result = result,
        error_code = result.error_code, error_message = result.error_message,
        error_detail = result.error_detail}, "%s " .. fmt .. " (%s)", what, ...)
    end
    if data.canceled == true then
      fail("canceled", "was canceled in Census", history_url(conn, sync_id))
    elseif class == "failed" then
      fail("failed", "failed: %s", tostring(strip_nulls(data).error_message or "no error message"),
        history_url(conn, sync_id))
    elseif class == "skipped" and not opts.allow_skipped then
      fail("skipped", "was skipped: an earlier run of the sync was still running",
        history_url(conn, sync_id))
    elseif class == "unknown" then
      fail("unknown_status", "reported status %q, which is not a known Census status; " ..
        "treating it as a failure, not a success", tostring(data.status), history_url(conn, sync_id))
    elseif class ~= "waiting" then
      local result = finish(conn, data, sync_id, run_id, started)
      local failed = math.tointeger(result.records_failed) or 0
      local processed = tonumber(result.records_processed) or 0
      if opts.max_records_failed and failed > opts.max_records_failed then
        fail("threshold", "completed with %d failed records, more than max_records_failed = %d",
          failed, opts.max_records_failed, result.url)
      end
      if opts.max_failed_ratio and failed > 0 and
        (processed == 0 or failed / processed > opts.max_failed_ratio) then
        fail("threshold", "completed with %d of %d records failed, more than max_failed_ratio = %g",
          failed, processed, opts.max_failed_ratio, result.url)
      end
      log.info("census: %s %s: %s in %.1f s (%s)", what, data.status, records_summary(result),
        result.elapsed, result.url)
      if failed > 0 then
        log.warn("census: %s completed with %d failed records (%s)", what, failed, result.url)
      end
      return result
    end
    local now = timer.now()
    if now >= deadline then
      if opts.cancel_on_timeout then
        log.warn("census: %s: timed out after %g s; cancelling the run", what, timeout)
        local ok, err = pcall(cancel_run, conn, run_id, what)
        if not ok then log.error("census: %s", tostring(err)) end
      end
      raise("timeout", {sync_id = sync_id, sync_run_id = run_id, seconds = timeout},
        "%s: still %s after the %g s timeout%s (%s)", what, data.status, timeout,
        opts.cancel_on_timeout and "; cancelled it" or "", history_url(conn, sync_id))
    end
    timer.sleep(math.min(poll, deadline - now))
  end
end

function census.sync(spec, opts)
  check_options("census.sync", opts, WAIT_OPTIONS)
  return census.wait(census.trigger(spec), opts)
end

function census.cancel(run, opts)
  local run_id, sync_id = run_of(run, "census.cancel")
  local conn = private[run] or connection(check_options("census.cancel", opts, CONNECTION_OPTIONS))
  cancel_run(conn, run_id, describe(sync_id, run_id))
  log.info("census: %s: cancel requested", describe(sync_id, run_id))
end

local function id_of(v, what)
  local id = math.tointeger(tonumber(v))
  if not id or id <= 0 then invalid("%s: expected a positive whole-number id, got %s", what, tostring(v)) end
  return id
end

function census.get_run(id, opts)
  id = id_of(id, "census.get_run")
  local conn = connection(check_options("census.get_run", opts, CONNECTION_OPTIONS))
  return strip_nulls(request(conn, "GET", "/sync_runs/" .. id, nil, "run " .. id, has_run_status).data)
end

function census.get_sync(id, opts)
  id = id_of(id, "census.get_sync")
  local conn = connection(check_options("census.get_sync", opts, CONNECTION_OPTIONS))
  return strip_nulls(request(conn, "GET", "/syncs/" .. id, nil, "sync " .. id, has_data).data)
end

local PAGE_OPTIONS = set_of(CONNECTION_OPTIONS, {page = true, per_page = true, order = true})

-- One page when `page` is given, else every page; returns the items and the
-- last pagination object.
local function list(path, what, opts)
  opts = check_options(what, opts, PAGE_OPTIONS)
  local per_page = opts.per_page or 100
  if math.type(per_page) ~= "integer" or per_page < 1 or per_page > 100 then
    invalid("%s: per_page must be a whole number from 1 to 100", what)
  end
  if opts.order ~= nil and opts.order ~= "asc" and opts.order ~= "desc" then
    invalid("%s: order must be \"asc\" or \"desc\"", what)
  end
  if opts.page ~= nil and (math.type(opts.page) ~= "integer" or opts.page < 1) then
    invalid("%s: page must be a whole number >= 1", what)
  end
  local conn = connection(opts)
  local items, page, pagination = {}, opts.page or 1, nil
  while true do
    local query = string.format("?page=%d&per_page=%d%s", page, per_page,
      opts.order and ("&order=" .. opts.order) or "")
    local body = request(conn, "GET", path, query, what, has_data)
    for _, item in ipairs(body.data) do items[#items + 1] = strip_nulls(item) end
    pagination = type(body.pagination) == "table" and strip_nulls(body.pagination) or nil
    local next_page = pagination and math.tointeger(pagination.next_page)
    if opts.page or not next_page or next_page <= page or #body.data == 0 then break end
    page = next_page
  end
  return items, pagination
end

function census.syncs(opts)
  return list("/syncs", "census.syncs", opts)
end

function census.runs(sync_id, opts)
  sync_id = id_of(sync_id, "census.runs")
  return list("/syncs/" .. sync_id .. "/sync_runs", "census.runs", opts)
end

-- census.task: defaults for later runs, like Prefect's CensusSyncTask.
local Task = {}
Task.__index = Task
local TASK_OPTIONS = set_of(WAIT_OPTIONS, {api_trigger = true, sync_id = true, force_full_sync = true})

function Task:run(overrides)
  local defaults = private[self]
  if not defaults then invalid("census task: call job:run{...} on a task made by census.task") end
  if type(overrides) == "string" then overrides = {api_trigger = overrides} end
  check_options("census task:run", overrides, TASK_OPTIONS)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(overrides or {}) do o[k] = v end
  local spec = o.api_trigger
  if spec == nil and o.sync_id ~= nil then
    spec = {sync_id = o.sync_id, token = o.token, region = o.region,
            api_version = o.api_version, force_full_sync = o.force_full_sync}
  end
  if spec == nil or spec == "" then
    invalid("census task: a value for api_trigger must be provided: copy the API trigger URL " ..
      "from the sync's configuration page in Census")
  end
  local wait_opts = {}
  for k in pairs(WAIT_OPTIONS) do wait_opts[k] = o[k] end
  return census.wait(census.trigger(spec), wait_opts)
end

function Task:__tostring()
  local d = private[self] or {}
  local id = d.sync_id
  if not id and type(d.api_trigger) == "string" then
    local t = rules.parse_trigger(d.api_trigger)
    id = t and t.sync_id
  end
  return id and ("census task (sync " .. id .. ")") or "census task"
end

function census.task(defaults)
  check_options("census.task", defaults, TASK_OPTIONS)
  local job = setmetatable({}, Task)
  local copy = {}
  for k, v in pairs(defaults or {}) do copy[k] = v end
  private[job] = copy
  return job
end

return census
