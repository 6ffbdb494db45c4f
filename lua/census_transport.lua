-- lua/census_transport.lua: how the engine talks to Census. Connections
-- (token, base URL, API version, timeouts), one Bearer-auth request
-- classified as ok / retry / fail, and the one retry loop (backoff with
-- jitter, Retry-After, a time budget) with a hook that lets the trigger
-- look for a run its lost answer may have started before it sends again.
-- Tokens never leave this layer in text: every message is redacted.
local timer = require "engine.c.timer"
local errors = require "engine.c.error"
local rules = require "engine.c.rules"
local options = require "engine.c.options"
local files = require "engine.c.files"
local http = require "engine.http"
local json = require "engine.json"
local log = require "engine.log"

local transport = {}

local HOSTS = {us = "https://app.getcensus.com", eu = "https://app-eu.getcensus.com"}
transport.CONNECTION_OPTIONS = {"token", "region", "api_version"}
local MAX_ANSWER_BYTES = 4 * 1024 * 1024 -- a Census answer is a few KiB
local MIN_ANSWER_BYTES = 16 * 1024

-- Raises an error object; the arguments (never the fixed text) are made
-- printable (a NUL from an answer shows as \x00) and redacted.
function transport.raise(kind, fields, fmt, ...)
  local args = table.pack(...)
  for i = 1, args.n do
    if type(args[i]) == "string" then args[i] = rules.redact(rules.printable(args[i])) end
  end
  error(errors.error(kind, string.format(fmt, table.unpack(args, 1, args.n)), fields), 0)
end

function transport.invalid(fmt, ...) transport.raise("invalid_argument", nil, fmt, ...) end
local invalid = transport.invalid

-- An environment variable, with empty meaning unset.
function transport.env(name)
  local v = os.getenv(name)
  if v ~= "" then return v end
end
local env = transport.env

function transport.env_seconds(name)
  local v = env(name)
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n < 0 or n ~= n then
    invalid("%s must be a number of seconds, got %q", name, v)
  end
  return n
end
local env_seconds = transport.env_seconds

-- opts or {}, after checking every key is one of the names (the lists).
local option_names = {} -- what -> its sorted names (a call site passes the same lists)
function transport.check_options(what, opts, ...)
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

-- Where and how to reach Census: token, base URL, API version.
-- The token from CENSUS_API_KEY, or read from CENSUS_API_KEY_FILE (how
-- systemd credentials and Kubernetes secrets arrive).
local function env_token()
  local file = env("CENSUS_API_KEY_FILE")
  if not file then return env("CENSUS_API_KEY") end
  if env("CENSUS_API_KEY") then
    invalid("census: both CENSUS_API_KEY and CENSUS_API_KEY_FILE are set: keep one")
  end
  local token, err = files.read_secret(file, env("CENSUS_API_KEY_FILE_ANY_MODE") == "1")
  if not token then invalid("census: CENSUS_API_KEY_FILE: %s", err) end
  return token
end

-- Connections already made, by token, region and API version: ten
-- thousand syncs share one (the environment does not change in a run).
local connections = {}

function transport.connection(opts, token)
  token = token or opts.token or env_token()
  local key = type(token) == "string" and table.concat({token, tostring(opts.region),
    tostring(opts.api_version)}, "\0")
  if key and connections[key] then return connections[key] end
  if type(token) == "string" then
    -- hidden in everything the process prints from now on
    rules.add_secret(token)
    local bare = token:match("^secret%-token:(.+)$")
    if bare then rules.add_secret(bare) end
  end
  if type(token) ~= "string" or token == "" then
    invalid("census: no API token: pass token = ..., or set CENSUS_API_KEY or CENSUS_API_KEY_FILE " ..
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
    local host = base:match("^http://%[?([^%]/]*)%]?") or ""
    host = host:gsub(":%d+$", "")
    local loopback = host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$")
    if base:match("^http://") and not loopback and env("CENSUS_ALLOW_HTTP") ~= "1" then
      invalid("CENSUS_BASE_URL %s is plain http to a host that is not this machine: the token " ..
        "would cross the network in clear; use https, or set CENSUS_ALLOW_HTTP=1", base)
    end
  else
    base = HOSTS[region]
  end
  local max_answer = env("CENSUS_MAX_ANSWER_BYTES")
  local max_bytes = MAX_ANSWER_BYTES
  if max_answer then
    -- below a few KiB every answer is cut, and every trigger is lost
    max_bytes = max_answer:match("^%s*%d+%s*$") and math.tointeger(tonumber(max_answer))
    if not max_bytes or max_bytes < MIN_ANSWER_BYTES then
      invalid("CENSUS_MAX_ANSWER_BYTES must be a whole number of bytes >= %d, got %q", MIN_ANSWER_BYTES, max_answer)
    end
  end
  local request_timeout = env_seconds("CENSUS_REQUEST_TIMEOUT") or 30
  if request_timeout < 0.001 then
    invalid("CENSUS_REQUEST_TIMEOUT must be at least 0.001 seconds, got %q", env("CENSUS_REQUEST_TIMEOUT"))
  end
  local conn = {
    token = token, base = base, version = version,
    request_timeout = request_timeout, max_bytes = max_bytes,
    retry_delay = env_seconds("CENSUS_RETRY_DELAY") or 1,
    retry_budget = env_seconds("CENSUS_RETRY_BUDGET") or 300,
  }
  connections[key] = conn
  return conn
end

function transport.history_url(conn, sync_id)
  return string.format("%s/syncs/%s/sync-history", conn.base, sync_id)
end

-- JSON null -> nil, recursively, so results read naturally.
local c_strip_nulls = require("engine.c.json").strip_nulls
function transport.strip_nulls(v) return c_strip_nulls(v, json.null) end

function transport.excerpt(body)
  local text = (body or ""):gsub("<[^>]*>", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if #text > 120 then text = text:sub(1, 117) .. "..." end
  return rules.redact(text)
end

local excerpt = transport.excerpt

-- A decoded answer, shown in a message: never raises (numbers JSON cannot
-- write, such as 1e400 read back as infinity, are shown by Lua).
function transport.show(value)
  if type(value) ~= "table" then return excerpt(tostring(value)) end -- inf for 1e400
  local ok, text = pcall(json.encode, value)
  if not ok then
    local parts = {}
    for k, v in pairs(type(value) == "table" and value or {}) do
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

-- One request, classified: returns "ok", payload | "retry", err | "fail", err.
-- A retryable outcome of a POST means its effect is unknown (except 429).
local function attempt(conn, method, path, query, what)
  local url = conn.base .. "/api/v" .. conn.version .. path .. (query or "")
  local ok, res = pcall(http.request, {
    method = method, url = url, timeout = conn.request_timeout, compressed = true,
    max_bytes = conn.max_bytes,
    headers = {Authorization = "Bearer " .. conn.token, Accept = "application/json",
               ["Content-Type"] = method == "POST" and "application/json" or nil},
    body = method == "POST" and "" or nil,
  })
  if not ok then
    if errors.is_error(res, "canceled") or not errors.is_error(res) then error(res, 0) end
    -- sent = false: it never left this machine (resolve, connect, TLS)
    local e = errors.error(res.kind, string.format("%s: %s", what, res.message), {sent = res.sent})
    return "retry", e
  end
  local status, body = res.status, decode(res.body)
  local server_time = rules.parse_time(res.headers.date)
  local fields = {http_status = status}
  if status >= 200 and status < 300 then
    if not body then
      return "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: Census answered HTTP %d with a body that is not JSON: %q", what, status, excerpt(res.body))), fields)
    end
    -- A decoder keeps one of two equal keys silently ("canceled": false,
    -- "canceled": true): an answer that says two things is not read.
    local twice = rules.duplicate_key(res.body)
    if twice then
      return "retry", errors.error("bad_response", rules.redact(string.format(
        "%s: the answer has the key %q twice: %s", what, twice, excerpt(res.body))), fields)
    end
    return "ok", {body = body, server_skew = server_time and server_time - rules.wallclock()}
  end
  -- one line, whatever the body holds (a message with newlines, pretty JSON)
  local detail = excerpt(body and type(body.message) == "string" and body.message or res.body)
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
function transport.retry_wait(conn, n, err, budget_end)
  local wait = rules.backoff(n, conn.retry_delay, 2, 90, 0.2)
  if err.retry_after and err.retry_after > wait then wait = err.retry_after end
  if timer.now() + wait > budget_end then
    err.attempts = n
    error(err, 0)
  end
  return wait
end

-- The one retry loop. Retries network errors, 5xx, 429 and bad answers with
-- backoff and jitter, honouring Retry-After, within the connection's budget
-- (never past req.deadline, a flow.now() value). req: method, path, query,
-- what (for messages), check(body) -> problem | nil, and for requests that
-- must not simply be sent again, unknown(err, sent_at, deadline) -> value |
-- nil: called when the request may have taken effect (an answer that
-- cannot be read, or none from a request that left: not a 429, not a
-- resolve or connect failure); a value ends the loop with it, nil means
-- it took none, so the request is sent again. Returns body, meta
-- (server_skew) or raises an error object.
function transport.request(conn, req)
  local budget_end = timer.now() + conn.retry_budget
  if req.deadline and req.deadline < budget_end then budget_end = req.deadline end
  local n = 0
  while true do
    n = n + 1
    local sent_at = rules.wallclock()
    local outcome, v = attempt(conn, req.method, req.path, req.query, req.what)
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
        local wait = transport.retry_wait(conn, n, v, budget_end)
        log.warn("census: %s; Census started a run: looking for it again in %.1f s", v.message, wait)
        timer.sleep(wait)
        n = n + 1
      end
    end
    if req.unknown and v.http_status ~= 429 and v.sent ~= false then
      -- It may have taken effect: say why first, then look, within the
      -- same budget; a look that fails leaves it unknown: look again,
      -- never send it again.
      log.warn("census: %s; looking for a run it may have started", v.message)
      while true do
        local ok, value = pcall(req.unknown, v, sent_at, budget_end)
        if ok and value ~= nil then return value end
        if ok then break end -- Census answered: it started none
        if errors.is_error(value, "canceled") or not errors.is_error(value) then error(value, 0) end
        local wait = transport.retry_wait(conn, n, v, budget_end)
        log.warn("census: %s; it may have started a run: looking again in %.1f s", value.message, wait)
        timer.sleep(wait)
        n = n + 1
      end
      local wait = transport.retry_wait(conn, n, v, budget_end)
      log.warn("census: %s: no run was started, sending it again in %.1f s", req.what, wait)
      timer.sleep(wait)
    else
      local wait = transport.retry_wait(conn, n, v, budget_end)
      log.warn("census: %s%s, retrying in %.1f s (attempt %d)", v.message,
        v.sent == false and " (the request never left)" or "", wait, n + 1)
      timer.sleep(wait)
    end
  end
end

return transport
