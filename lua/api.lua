-- lua/api.lua: the one API client every provider talks through. A
-- connection (base URL, auth header, timeouts, size cap) is made by a
-- provider from its settings; one request is classified as ok / retry /
-- fail, and the one retry loop (backoff with jitter, Retry-After, a time
-- budget) has a hook that lets a trigger look for the run its lost answer
-- may have started before it sends again. Secrets never leave this layer
-- in text: every message is redacted. Nothing here knows a vendor: what
-- differs (the error body's message, hints for 401/404) comes with the
-- connection.
local timer = require "engine.c.timer"
local errors = require "engine.c.error"
local rules = require "engine.c.rules"
local options = require "engine.c.options"
local files = require "engine.c.files"
local http = require "engine.http"
local json = require "engine.json"
local log = require "engine.log"

local api = {}

local MAX_ANSWER_BYTES = 4 * 1024 * 1024 -- an API answer is a few KiB
local MIN_ANSWER_BYTES = 16 * 1024

-- Raises an error object; the arguments (never the fixed text) are made
-- printable (a NUL from an answer shows as \x00) and redacted.
function api.raise(kind, fields, fmt, ...)
  local args = table.pack(...)
  for i = 1, args.n do
    if type(args[i]) == "string" then args[i] = rules.redact(rules.printable(args[i])) end
  end
  error(errors.error(kind, string.format(fmt, table.unpack(args, 1, args.n)), fields), 0)
end

function api.invalid(fmt, ...) api.raise("invalid_argument", nil, fmt, ...) end
local invalid = api.invalid

-- An environment variable, with empty meaning unset.
function api.env(name)
  local v = os.getenv(name)
  if v ~= "" then return v end
end
local env = api.env

function api.env_seconds(name)
  local v = env(name)
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n < 0 or n ~= n then
    invalid("%s must be a number of seconds, got %q", name, v)
  end
  return n
end
local env_seconds = api.env_seconds

-- opts or {}, after checking every key is one of the names (the lists).
local option_names = {} -- what -> its sorted names (a call site passes the same lists)
function api.check_options(what, opts, ...)
  local names = option_names[what]
  if not names then
    names = {}
    for _, list in ipairs{...} do
      for _, name in ipairs(list) do names[#names + 1] = name end
    end
    table.sort(names)
    option_names[what] = names
  end
  local ok, err = pcall(options.check_options, what, opts, names)
  if not ok then invalid("%s", err) end
  return err
end

-- A secret is hidden in everything the process prints from now on.
function api.add_secret(value)
  if type(value) == "string" and value ~= "" then rules.add_secret(value) end
end

-- A secret from the environment: VAR, or read from VAR_FILE (how systemd
-- credentials and Kubernetes secrets arrive; not readable by others unless
-- VAR_FILE_ANY_MODE=1). who: the module, for messages. nil when neither.
function api.secret_env(var, who)
  local file = env(var .. "_FILE")
  if not file then
    local v = env(var)
    api.add_secret(v)
    return v
  end
  if env(var) then invalid("%s: both %s and %s_FILE are set: keep one", who, var, var) end
  local value, err = files.read_secret(file, env(var .. "_FILE_ANY_MODE") == "1", var .. "_FILE_ANY_MODE=1")
  if not value then invalid("%s: %s_FILE: %s", who, var, err) end
  api.add_secret(value)
  return value
end

local function loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- A base URL (scheme://host[:port], no path) from `given` (an option) or
-- the variable var; plain http only to this machine unless
-- PREFIX_ALLOW_HTTP=1. Returns the URL, or nil when neither gives one.
function api.base_url(given, var, allow_var)
  local base, from = given, "base_url"
  if base == nil then base, from = env(var), var end
  if base == nil then return nil end
  if type(base) ~= "string" then invalid("%s must be a URL string, got a %s", from, type(base)) end
  base = base:gsub("/+$", "")
  if not base:match("^https?://[%w%.%-]+$") and not base:match("^https?://[%w%.%-]+:%d+$")
    and not base:match("^https?://%[[%x:]+%]:%d+$") then
    invalid("%s must be scheme://host[:port] with no path, got %q", from, base)
  end
  local host = base:match("^http://%[?([^%]/]*)%]?") or ""
  host = host:gsub(":%d+$", "")
  if base:match("^http://") and not loopback(host) and env(allow_var) ~= "1" then
    invalid("%s %s is plain http to a host that is not this machine: the credentials " ..
      "would cross the network in clear; use https, or set %s=1", from, base, allow_var)
  end
  return base
end

-- The settings every connection of a provider shares, from PREFIX_*
-- variables: request timeout, answer cap, retry delay and budget, how
-- long a 429 without Retry-After pauses (the vendor's documented cooldown
-- by default: throttle_wait), and the account's request budget
-- (PREFIX_MAX_REQUESTS_PER_SECOND; by default max_rate, the vendor's
-- published limit, or none).
function api.settings(prefix, throttle_wait, max_rate)
  -- a 429's cooldown fits in the retries' budget with room for one more try
  local max_answer = env(prefix .. "_MAX_ANSWER_BYTES")
  local max_bytes = MAX_ANSWER_BYTES
  if max_answer then
    -- below a few KiB every answer is cut, and every trigger is lost
    max_bytes = max_answer:match("^%s*%d+%s*$") and math.tointeger(tonumber(max_answer))
    if not max_bytes or max_bytes < MIN_ANSWER_BYTES then
      invalid("%s_MAX_ANSWER_BYTES must be a whole number of bytes >= %d, got %q", prefix,
        MIN_ANSWER_BYTES, max_answer)
    end
  end
  local request_timeout = env_seconds(prefix .. "_REQUEST_TIMEOUT") or 30
  if request_timeout < 0.001 then
    invalid("%s_REQUEST_TIMEOUT must be at least 0.001 seconds, got %q", prefix, env(prefix .. "_REQUEST_TIMEOUT"))
  end
  local rate = env(prefix .. "_MAX_REQUESTS_PER_SECOND")
  if rate ~= nil then
    local n = tonumber(rate)
    if not n or n ~= n or n < 0 or n > 1e6 then
      invalid("%s_MAX_REQUESTS_PER_SECOND must be a number of requests a second (0: no budget), got %q", prefix, rate)
    end
    rate = n
  else
    rate = max_rate or 0
  end
  return {
    request_timeout = request_timeout, max_bytes = max_bytes, max_rate = rate,
    retry_delay = env_seconds(prefix .. "_RETRY_DELAY") or 1,
    retry_budget = env_seconds(prefix .. "_RETRY_BUDGET") or (300 + (throttle_wait or 0)),
    throttle_wait = env_seconds(prefix .. "_THROTTLE_WAIT") or throttle_wait,
    env = prefix,
  }
end

-- A connection: fields (name, vendor, base, prefix, auth, headers,
-- message_of(body), hint(status, conn) -> kind, hint, throttle_wait) over
-- the provider's settings.
function api.connection(fields, settings)
  local conn = {}
  for k, v in pairs(settings) do conn[k] = v end
  for k, v in pairs(fields) do conn[k] = v end
  conn.prefix = conn.prefix or ""
  return conn
end

-- A copy of conn for a stop's cleanup: each request bounded by budget,
-- retries included.
function api.bounded(conn, budget)
  local c = {}
  for k, v in pairs(conn) do c[k] = v end
  c.request_timeout = math.min(conn.request_timeout, budget)
  c.retry_budget = math.min(conn.retry_budget, budget)
  c.unbudgeted = true -- a stop's cancels go out at once
  return c
end

-- text percent-encoded for a query string (every byte but the unreserved).
function api.escape(text)
  return (text:gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- JSON null -> nil, recursively, so results read naturally.
local c_strip_nulls = require("engine.c.json").strip_nulls
function api.strip_nulls(v) return c_strip_nulls(v, json.null) end

function api.excerpt(body)
  local text = (body or ""):gsub("<[^>]*>", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if #text > 120 then text = text:sub(1, 117) .. "..." end
  return rules.redact(text)
end
local excerpt = api.excerpt

-- A decoded answer, shown in a message: never raises (numbers JSON cannot
-- write, such as 1e400 read back as infinity, are shown by Lua).
function api.show(value)
  if type(value) ~= "table" then return excerpt(tostring(value)) end -- inf for 1e400
  local ok, text = pcall(json.encode, value)
  if not ok then
    local parts = {}
    for k, v in pairs(value) do
      parts[#parts + 1] = tostring(k) .. "=" .. (type(v) == "table" and "{...}" or tostring(v))
    end
    table.sort(parts)
    text = "{" .. table.concat(parts, ", ") .. "}"
  end
  return excerpt(text)
end

local function decode(body)
  local ok, v = pcall(json.decode, body or "")
  if ok and type(v) == "table" then return v end
  return nil
end

-- The vendor's own words for an error answer: its message_of, else the
-- body's "message".
local function message_of(conn, body)
  local text = body and conn.message_of and conn.message_of(body)
  if type(text) ~= "string" and body then text = body.message end
  if type(text) == "string" and text ~= "" then return text end
end

-- One request, classified: returns "ok", payload | "retry", err | "fail", err.
-- A retryable outcome of a POST means its effect is unknown (except 429).
local function attempt(conn, req)
  local url = conn.base .. conn.prefix .. req.path .. (req.query or "")
  local post = req.method ~= "GET"
  local body = req.body
  if type(body) == "table" then body = json.encode(body) end
  local headers = {Authorization = conn.auth, Accept = conn.accept or "application/json",
    ["Content-Type"] = post and "application/json" or nil}
  local ok, res = pcall(http.request, {
    method = req.method, url = url, timeout = conn.request_timeout, compressed = true,
    max_bytes = conn.max_bytes, headers = headers, body = post and (body or "") or nil,
  })
  local what = req.what
  if not ok then
    if errors.is_error(res, "canceled") or not errors.is_error(res) then error(res, 0) end
    -- sent = false: it never left this machine (resolve, connect, TLS)
    local e = errors.error(res.kind, string.format("%s: %s", what, res.message), {sent = res.sent})
    return "retry", e
  end
  local status, decoded = res.status, decode(res.body)
  local server_time = rules.parse_time(res.headers.date)
  local fields = {http_status = status}
  if status >= 200 and status < 300 then
    if req.raw then return "ok", {body = res.body, raw = true} end
    if not decoded then
      return "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: %s answered HTTP %d with a body that is not JSON: %q", what, conn.vendor, status,
        excerpt(res.body))), fields)
    end
    -- A decoder keeps one of two equal keys silently ("canceled": false,
    -- "canceled": true): an answer that says two things is not read.
    local twice = rules.duplicate_key(res.body)
    if twice then
      return "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: the answer has the key %q twice: %s", what, twice, excerpt(res.body))), fields)
    end
    return "ok", {body = decoded, server_skew = server_time and server_time - rules.wallclock()}
  end
  -- one line, whatever the body holds (a message with newlines, pretty JSON)
  local detail = excerpt(message_of(conn, decoded) or res.body)
  if status == 429 or status >= 500 then
    fields.retry_after = rules.retry_after(res.headers["retry-after"])
    if status == 429 and not fields.retry_after then fields.retry_after = conn.throttle_wait end
    return "retry", errors.error("http", rules.redact(string.format(
      "%s: %s answered HTTP %d: %s", what, conn.vendor, status, detail)), fields)
  end
  local kind, hint = "http", ""
  if conn.hint then kind, hint = conn.hint(status, conn, req) end
  if not kind then kind, hint = "http", "" end
  return "fail", errors.error(kind, rules.redact(string.format(
    "%s: %s answered HTTP %d: %s%s", what, conn.vendor, status, detail, hint or "")), fields)
end

-- The wait before retry `n + 1` after `err`: backoff with jitter, at least
-- its Retry-After; raises err (with the attempts made) when waiting would
-- pass budget_end.
function api.retry_wait(conn, n, err, budget_end)
  local wait = rules.backoff(n, conn.retry_delay, 2, 90, 0.2)
  local asked = err.retry_after and err.retry_after > wait
  if asked then wait = err.retry_after end
  if timer.now() + wait > budget_end then
    err.attempts = n
    if asked and conn.env and not err.message:find("retry budget", 1, true) then
      err.message = string.format("%s (the vendor asks to wait %g s, more than the retry budget left; " ..
        "%s_RETRY_BUDGET sets it)", err.message, wait, conn.env)
    end
    error(err, 0)
  end
  return wait
end

-- One request budget per account ------------------------------------------
-- Every request to one account (a provider's base URL and credentials)
-- shares a budget: at most max_rate a second, spaced evenly (the
-- generic cell rate algorithm: each request reserves the next slot, so a
-- thousand waits polling at once queue in order instead of bursting), and
-- a 429's Retry-After pauses every request of the account until then, not
-- only the one that got it. A stop's cancels skip the budget.

local accounts = {} -- key -> {rate, tat, paused_until, held, held_seconds, throttled}

local function account(conn)
  local key = conn.name .. "\0" .. conn.base .. "\0" .. (conn.auth or "")
  local a = accounts[key]
  if not a then
    a = {name = conn.name, vendor = conn.vendor, env = conn.env, rate = conn.max_rate or 0, tat = 0,
      paused_until = 0, held = 0, longest = 0, throttled = 0}
    accounts[key] = a
  end
  return a
end

-- Waits (if it must) for the account's next slot, within budget_end.
local function take_slot(conn, budget_end)
  if conn.unbudgeted then return end
  local a = account(conn)
  local first = timer.now()
  while true do
    local now = timer.now()
    local at = math.max(now, a.paused_until)
    if a.rate > 0 then
      -- slots 5 % further apart than the rate: a request the network or a
      -- connection's set-up holds back a little never puts one more into
      -- a second at the vendor
      local slot = math.max(at, a.tat)
      a.tat = slot + 1.05 / a.rate -- reserved, even if a pause comes meanwhile
      at = slot
    end
    if at > now and at > budget_end then -- (no wait: the request's own deadline decides)
      error(errors.error("throttled", string.format("%s: the request budget for %s (%s) cannot fit this " ..
        "request before its deadline", conn.name, conn.vendor, a.paused_until > now and "paused after a 429" or
        (a.rate .. " a second")), {}), 0)
    end
    -- (a timer may fire a little early: sleep until the slot by this clock)
    while true do
      local left = at - timer.now()
      if left <= 0 then break end
      timer.sleep(left)
    end
    if a.paused_until <= timer.now() then break end -- a 429 meanwhile: a new slot after it
  end
  local waited = timer.now() - first
  if waited >= 0.01 then -- (a wait of a few milliseconds is not held back)
    a.held = a.held + 1
    if waited > a.longest then a.longest = waited end
  end
end

-- A 429 (with its Retry-After, or the vendor's cooldown) pauses the account.
local function pause(conn, seconds)
  if conn.unbudgeted or not seconds or seconds <= 0 then return end
  local a = account(conn)
  a.throttled = a.throttled + 1
  local ends = timer.now() + seconds
  if ends > a.paused_until then a.paused_until = ends end
end

-- What the budgets held back during the run, for the summary: one entry
-- per account that waited ({provider, vendor, rate, held, longest (the
-- longest wait, seconds), throttled (429s)}), in name order.
function api.budget_report()
  local out = {}
  for _, a in pairs(accounts) do
    if a.held > 0 or a.throttled > 0 then
      out[#out + 1] = {provider = a.name, vendor = a.vendor, env = a.env, rate = a.rate, held = a.held,
        longest = a.longest, throttled = a.throttled}
    end
  end
  table.sort(out, function(x, y) return x.provider < y.provider end)
  return out
end

-- The one retry loop. Retries network errors, 5xx, 429 and bad answers with
-- backoff and jitter, honouring Retry-After, within the connection's budget
-- (never past req.deadline, a flow.now() value). req: method, path, query,
-- body (a table is sent as JSON), what (for messages), raw (a 2xx body is
-- returned as text), check(body) -> problem | nil, fields (added to an
-- error), and for requests that must not simply be sent again,
-- unknown(err, sent_at, deadline) -> value | nil: called when the request
-- may have taken effect (an answer that cannot be read, or none from a
-- request that left: not a 429, not a resolve or connect failure); a value
-- ends the loop with it, nil means it took none, so the request is sent
-- again. Returns body, meta (server_skew) or raises an error object.
function api.request(conn, req)
  local budget_end = timer.now() + conn.retry_budget
  if req.deadline and req.deadline < budget_end then budget_end = req.deadline end
  local name = conn.name
  local n = 0
  while true do
    n = n + 1
    take_slot(conn, budget_end)
    local sent_at = rules.wallclock()
    local outcome, v = attempt(conn, req)
    if outcome == "retry" and v.http_status == 429 then pause(conn, v.retry_after) end
    local answered = outcome == "ok" -- a 2xx: the request took effect
    if outcome == "ok" then
      local problem = req.check and req.check(v.body)
      if not problem then return v.body, v end
      outcome, v = "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: %s", req.what, problem)))
    end
    for k, x in pairs(req.fields or {}) do v[k] = x end
    if outcome == "fail" then error(v, 0) end
    if req.unknown and answered then
      -- It took effect but the answer is unusable: never send it again;
      -- look for what it started until the budget runs out.
      while true do
        local value = req.unknown(v, sent_at, budget_end)
        if value ~= nil then return value end
        local wait = api.retry_wait(conn, n, v, budget_end)
        log.warn("%s: %s; %s started a run: looking for it again in %.1f s", name, v.message, conn.vendor, wait)
        timer.sleep(wait)
        n = n + 1
      end
    end
    if req.unknown and v.http_status ~= 429 and v.sent ~= false then
      -- It may have taken effect: say why first, then look, within the
      -- same budget; a look that fails leaves it unknown: look again,
      -- never send it again.
      log.warn("%s: %s; looking for a run it may have started", name, v.message)
      while true do
        local ok, value = pcall(req.unknown, v, sent_at, budget_end)
        if ok and value ~= nil then return value end
        if ok then break end -- the vendor answered: it started none
        if errors.is_error(value, "canceled") or not errors.is_error(value) then error(value, 0) end
        local wait = api.retry_wait(conn, n, v, budget_end)
        log.warn("%s: %s; it may have started a run: looking again in %.1f s", name, value.message, wait)
        timer.sleep(wait)
        n = n + 1
      end
      local wait = api.retry_wait(conn, n, v, budget_end)
      log.warn("%s: %s: no run was started, sending it again in %.1f s", name, req.what, wait)
      timer.sleep(wait)
    else
      local wait = api.retry_wait(conn, n, v, budget_end)
      log.warn("%s: %s%s, retrying in %.1f s (attempt %d)", name, v.message,
        v.sent == false and " (the request never left)" or "", wait, n + 1)
      timer.sleep(wait)
    end
  end
end

return api
