-- lua/provider_fivetran.lua: the fivetran module, Fivetran connection syncs
-- on the remote-job machinery (lua/jobs.lua). Fivetran gives a sync no id:
-- a sync is known by the connection's succeeded_at / failed_at read before
-- the trigger (the baseline, kept in the intent and in the run's name,
-- "after:<time>"): it succeeded when succeeded_at moved past the baseline
-- and is later than failed_at; it failed when failed_at did. Rescheduled
-- and paused connections end a wait (they would never sync); the engine
-- never changes a connection's schedule or pause state. Fivetran has no
-- cancel for a running sync.
local rules = require "engine.c.rules"
local tasks = require "engine.c.task"
local api = require "engine.api"
local jobs = require "engine.jobs"

local raise, invalid = api.raise, api.invalid
local request, check_options = api.request, api.check_options
local strip_nulls = api.strip_nulls

local CONNECTION_OPTIONS = {"key", "secret"}
local DASHBOARD = "https://fivetran.com/dashboard/connections/"

local P = {
  name = "fivetran", vendor = "Fivetran", env = "FIVETRAN", kind = "sync", noun = "sync",
  done_word = "succeeded", poll_floor = 5, poll = 30, throttle_wait = 60,
  max_rate = 20000 / 3600, -- the published limit: 20,000 requests an hour per account
  connection_options = CONNECTION_OPTIONS,
  success_statuses = {succeeded = true}, -- (a row with one of them that failed says so)
  trigger_options = {"connection_id", "group_id", "resync", "scope"},
  wait_options = {"allow_rescheduled"},
  no_cancel = "no cancel endpoint",
  resource_title = "CONNECTION",
  help = {
    summary = "Fivetran connection syncs: trigger, wait, sync, list",
    functions = {
      trigger = "fivetran.trigger{connection_id | name, group_id, label, force, resync, scope, key, secret} -> handle",
      wait = "fivetran.wait(handle [, {poll, timeout, allow_rescheduled, ...}]) -> result",
      sync = "fivetran.sync(spec [, wait options]) -> result: trigger, then wait",
      connection = "fivetran.connection(id) -> the connection's data",
      connections = "fivetran.connections([{group_id}]) -> every connection (of a group)",
    },
    environment = {
      {"FIVETRAN_API_KEY", "Fivetran API key when a flow gives none"},
      {"FIVETRAN_API_SECRET", "its secret"},
      {"FIVETRAN_API_KEY_FILE", "files holding them (not readable by others;"},
      {"FIVETRAN_API_SECRET_FILE", "..._FILE_ANY_MODE=1 accepts any mode)"},
      {"FIVETRAN_BASE_URL", "scheme://host[:port] (https://api.fivetran.com)"},
    },
  },
}

-- Connections ------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local quad = {}
    for k = 1, 4 do
      local v = (n >> (6 * (4 - k))) & 63
      quad[k] = B64:sub(v + 1, v + 1)
    end
    if not b then quad[3] = "=" end
    if not c then quad[4] = "=" end
    out[#out + 1] = table.concat(quad)
  end
  return table.concat(out)
end

local function hint(status)
  if status == 401 or status == 403 then
    return "auth", "; check FIVETRAN_API_KEY and FIVETRAN_API_SECRET (an API key and its secret, " ..
      "allowed to sync this connection)"
  elseif status == 404 then
    return "not_found", "; check the connection id (fivetran.connections{} lists them)"
  end
end

local connections = {}

function P.connection(opts)
  local key = opts.key or api.secret_env("FIVETRAN_API_KEY", "fivetran")
  local secret = opts.secret or api.secret_env("FIVETRAN_API_SECRET", "fivetran")
  -- both are secrets, however they came (an option too)
  api.add_secret(type(key) == "string" and key or nil)
  api.add_secret(type(secret) == "string" and secret or nil)
  if type(key) ~= "string" or key == "" or type(secret) ~= "string" or secret == "" then
    invalid("fivetran: no API key and secret: pass key = and secret = , or set FIVETRAN_API_KEY and " ..
      "FIVETRAN_API_SECRET (or FIVETRAN_API_KEY_FILE and FIVETRAN_API_SECRET_FILE)")
  end
  if (key .. secret):find("[%c ]") then invalid("fivetran: the API key or secret contains spaces or control characters") end
  local cache = key .. "\0" .. secret
  if connections[cache] then return connections[cache] end
  local auth = base64(key .. ":" .. secret)
  api.add_secret(auth) -- the header is the secret, encoded
  local base = api.base_url(nil, "FIVETRAN_BASE_URL", "FIVETRAN_ALLOW_HTTP") or "https://api.fivetran.com"
  local conn = api.connection({name = "fivetran", vendor = "Fivetran", base = base, prefix = "/v1",
    auth = "Basic " .. auth, accept = "application/json;version=2", hint = hint, key = cache},
    api.settings("FIVETRAN", P.throttle_wait, P.max_rate))
  connections[cache] = conn
  return conn
end

function P.link(_, id) return DASHBOARD .. tostring(id or "?") .. "/status" end

-- A time Fivetran wrote (ISO 8601), or nil for null or anything else.
local function time_of(v)
  return type(v) == "string" and rules.parse_time(v) or nil
end

-- A sync's name: the baseline it must end after.
local function run_of(baseline) return "after:" .. (baseline or "never") end
local function baseline_of(remote_run)
  local text = type(remote_run) == "string" and remote_run:match("^after:(.+)$")
  if text == "never" then return 0, text end
  return time_of(text), text
end

function P.describe(id) return "connection " .. tostring(id) end

function P.run_name(remote_run)
  local _, text = baseline_of(remote_run)
  if not text or text == "never" then return "its first sync" end
  return "the sync after " .. text
end

function P.handle(id, remote_run, label)
  return {connection_id = id, after = select(2, baseline_of(remote_run)), label = label}
end

function P.handle_of(h, what)
  if type(h) ~= "table" or type(h.connection_id) ~= "string" or type(h.after) ~= "string" then
    invalid("%s: expected what fivetran.trigger returned ({connection_id =, after =}), got %s", what,
      type(h) == "table" and "a table without them" or ("a " .. type(h)))
  end
  local remote_run = run_of(h.after)
  if not baseline_of(remote_run) then
    invalid("%s: after must be the time the sync must end after, as fivetran.trigger gives it", what)
  end
  return h.connection_id, remote_run
end

function P.fields(id) return {connection_id = id} end

-- Answers ------------------------------------------------------------------

local function has_connection(body)
  local d = body.data
  if type(d) ~= "table" or type(d.id) ~= "string" then
    return "the answer has no connection in data: " .. api.show(body)
  end
  if type(d.status) ~= "table" or type(d.status.sync_state) ~= "string" then
    return "the connection has no status.sync_state: " .. api.show(body)
  end
  if d.paused ~= nil and type(d.paused) ~= "boolean" then
    return "the connection's paused is not true or false: " .. api.show(body)
  end
  for _, k in ipairs{"succeeded_at", "failed_at"} do
    local v = d[k]
    if v ~= nil and v ~= require("engine.json").null and not time_of(v) then
      return string.format("the connection's %s is not a time: %s", k, api.show(v))
    end
  end
end
P.has_connection = has_connection -- (the fuzzer reads answers as the engine does)

local function has_code(body)
  if type(body.code) ~= "string" then return "the answer has no code: " .. api.show(body) end
end

-- The connection's latest end: max(succeeded_at, failed_at), as a time
-- and as Fivetran wrote it.
local function latest_end(d)
  local s, f = time_of(d.succeeded_at), time_of(d.failed_at)
  if s and (not f or s >= f) then return s, d.succeeded_at end
  if f then return f, d.failed_at end
end

local function read_connection(conn, id, what, deadline)
  return request(conn, {method = "GET", path = "/connections/" .. id, what = what or ("connection " .. id),
    check = has_connection, deadline = deadline, fields = {connection_id = id}}).data
end

-- What an answer means to a wait: "wait", "ok", or the kind of the error
-- it ends with and what to say. baseline: the end the sync must pass.
function P.judge(d, w, opts)
  local baseline = baseline_of(w.remote_run) or 0
  local s, f = time_of(d.succeeded_at), time_of(d.failed_at)
  if s and s > baseline and (not f or s > f) then return "ok" end
  if f and f > baseline and (not s or f >= s) then
    local task = type(d.status.tasks) == "table" and d.status.tasks[1]
    local why = type(task) == "table" and type(task.message) == "string" and task.message or "no message"
    return "failed", "failed: " .. why
  end
  if d.paused == true or d.status.sync_state == "paused" then
    return "paused", "is paused in Fivetran: it will not sync until it is unpaused there " ..
      "(the engine never changes a connection's pause state)"
  end
  local state = d.status.sync_state
  if state == "rescheduled" then
    if opts.allow_rescheduled then return "wait" end
    local at = d.status.rescheduled_for
    return "rescheduled", string.format("was rescheduled by Fivetran%s: it is not syncing now; " ..
      "allow_rescheduled = true waits for it", type(at) == "string" and (" for " .. at) or "")
  end
  if state == "syncing" or state == "scheduled" then return "wait" end
  return "unknown_status", string.format("reported sync_state %q, which is not a known Fivetran state; " ..
    "treating it as a failure, not a success", tostring(state))
end

-- The wait option only Fivetran's waits take, checked with the others
-- (before any trigger, so a typo never leaves a sync nobody waits for).
function P.check_wait(opts, what)
  if opts.allow_rescheduled ~= nil and type(opts.allow_rescheduled) ~= "boolean" then
    invalid("%s: allow_rescheduled must be true or false, got %s", what, tostring(opts.allow_rescheduled))
  end
end

-- A connection's state as a status: "succeeded" or "failed" once the
-- sync a wait follows (w) has ended, else its sync_state.
function P.status(d, w)
  if type(d.status) == "string" then return d.status end -- a result
  if w and w.remote_run then
    local verdict = P.judge(d, w, {allow_rescheduled = true})
    if verdict == "ok" then return "succeeded" end
    if verdict == "failed" then return "failed" end
  end
  if d.paused == true then return "paused" end
  return tostring(d.status.sync_state)
end

function P.result(conn, w, d)
  local data = strip_nulls(d)
  local verdict = P.judge(d, w, {allow_rescheduled = true})
  return {connection_id = w.resource, status = verdict == "ok" and "succeeded" or verdict,
    succeeded_at = data.succeeded_at, failed_at = data.failed_at, sync_state = data.status.sync_state,
    schema = data.schema, service = data.service, group_id = data.group_id, after = select(2, baseline_of(w.remote_run)),
    url = P.link(conn, w.resource)}
end

function P.summary(result)
  return result.succeeded_at and ("synced at " .. result.succeeded_at) or "no row counts from the API"
end

-- Triggers ---------------------------------------------------------------

function P.spec(spec, what)
  if type(spec) == "string" then spec = {connection_id = spec} end
  if type(spec) ~= "table" then
    invalid("%s: expected {connection_id = \"...\"} or {name = \"...\"}, got a %s", what, type(spec))
  end
  check_options(what, spec, CONNECTION_OPTIONS, P.trigger_option_list)
  for _, k in ipairs{"force", "resync"} do
    if spec[k] ~= nil and type(spec[k]) ~= "boolean" then invalid("%s: %s must be true or false", what, k) end
  end
  local label = jobs.check_label(spec.label, what, "label")
  local name = jobs.check_label(spec.name, what, "name")
  local id = spec.connection_id
  if name and id ~= nil then invalid("%s: give connection_id or name, not both", what) end
  if not name and (type(id) ~= "string" or not id:match("^[%w_%-]+$")) then
    invalid("%s: connection_id must be a Fivetran connection id such as \"decisive_bloom\", got %s", what,
      type(id) == "string" and string.format("%q", id:sub(1, 40)) or tostring(id))
  end
  if spec.group_id ~= nil and (type(spec.group_id) ~= "string" or not spec.group_id:match("^[%w_%-]+$")) then
    invalid("%s: group_id must be a Fivetran group id, got %s", what, tostring(spec.group_id))
  end
  if spec.scope ~= nil then
    if not spec.resync then invalid("%s: scope goes with resync = true", what) end
    if type(spec.scope) ~= "table" then invalid("%s: scope must be {schema = {\"table\", ...}}", what) end
    for schema, tables in pairs(spec.scope) do
      if type(schema) ~= "string" or type(tables) ~= "table" then
        invalid("%s: scope must be {schema = {\"table\", ...}}", what)
      end
      for _, t in pairs(tables) do
        if type(t) ~= "string" then invalid("%s: scope's tables must be names (strings)", what) end
      end
    end
  end
  return {resource = id, name = name, label = label or name, force = spec.force == true, resync = spec.resync == true,
    scope = spec.scope, group_id = spec.group_id, conn = P.connection(spec)}
end

-- Every connection (of a group when given), following next_cursor.
local function list_connections(conn, group_id, what)
  local items, cursor = {}, nil
  repeat
    local query = "?limit=1000" .. (group_id and ("&group_id=" .. group_id) or "") ..
      (cursor and ("&cursor=" .. api.escape(cursor)) or "")
    local body = request(conn, {method = "GET", path = "/connections", query = query, what = what,
      check = function(b)
        if type(b.data) ~= "table" or type(b.data.items) ~= "table" then
          return "the answer has no data.items: " .. api.show(b)
        end
      end})
    for _, item in ipairs(body.data.items) do items[#items + 1] = strip_nulls(item) end
    local next_cursor = type(body.data.next_cursor) == "string" and body.data.next_cursor ~= "" and body.data.next_cursor or nil
    if next_cursor and (next_cursor == cursor or #body.data.items == 0) then
      raise("bad_response", nil, "%s: Fivetran keeps answering the same page (cursor %s)", what, next_cursor:sub(1, 40))
    end
    cursor = next_cursor
    if #items % 5000 == 0 then tasks.check_stop() end
  until not cursor
  return items
end

-- The id of the one connection whose schema (its name) is `name`.
function P.resolve(conn, name, t)
  local candidates = {}
  for i, c in ipairs(list_connections(conn, t.group_id, "fivetran: listing the connections")) do
    candidates[i] = {name = c.schema, id = type(c.id) == "string" and c.id or nil, text = tostring(c.id),
      listed = tostring(c.id) .. (c.group_id and (" in group " .. tostring(c.group_id)) or "")}
  end
  return jobs.pick_by_name(candidates, name, {what = "fivetran.trigger", noun = "connection", nouns = "connections",
    several = "pass group_id or connection_id", none = "fivetran.connections{} lists them, or pass connection_id"})
end

-- Before the trigger: the baseline, and refusals (a paused connection, one
-- not set up). A sync already running is adopted unless force or resync.
function P.prepare(conn, t)
  local d = read_connection(conn, t.resource, "connection " .. t.resource .. ": reading its state")
  if d.paused == true then
    raise("paused", {connection_id = t.resource, provider = "fivetran", resource = t.resource},
      "fivetran: connection %s is paused in Fivetran, so it would never sync: unpause it there " ..
      "(the engine never changes a connection's pause state) (%s)", t.resource, P.link(conn, t.resource))
  end
  local setup = type(d.status.setup_state) == "string" and d.status.setup_state or "connected"
  if setup ~= "connected" then
    raise("failed", {connection_id = t.resource, provider = "fivetran", resource = t.resource},
      "fivetran: connection %s is not ready (setup_state %q): finish or repair its setup in Fivetran (%s)",
      t.resource, setup, P.link(conn, t.resource))
  end
  local _, text = latest_end(d)
  local intent = {baseline = text or "never"}
  if d.status.sync_state == "syncing" and not t.force and not t.resync then
    intent.in_flight = run_of(intent.baseline)
    intent.in_flight_note = "a sync is already running (force = false)"
  end
  return intent
end

function P.trigger(conn, t, intent, unknown)
  local id = t.resource
  local path, body, what = "/connections/" .. id .. "/sync", {force = t.force}, "connection " .. id .. ": trigger"
  if t.resync then
    path, what = "/connections/" .. id .. "/resync", "connection " .. id .. ": re-sync"
    body = t.scope and {scope = t.scope} or {}
  end
  local ok, answer = pcall(request, conn, {method = "POST", path = path, body = body, what = what,
    check = has_code, unknown = unknown, fields = {connection_id = id, provider = "fivetran", resource = id}})
  if not ok then
    if type(answer) == "table" and answer.http_status == 409 then
      raise("conflict", {connection_id = id, provider = "fivetran", resource = id, http_status = 409},
        "fivetran: connection %s: Fivetran refused the %s (HTTP 409): a sync is running that it " ..
        "cannot finish first; wait for it and run again (%s)", id, t.resync and "re-sync" or "sync",
        P.link(conn, id))
    end
    error(answer, 0)
  end
  return run_of(intent.baseline)
end

-- The sync a row (or a trigger sent at sent_at) stands for, from the
-- connection's state: one that ended after the baseline, or is running;
-- nil when a trigger whose answer was lost started none.
function P.find(conn, id, row, deadline)
  local d = read_connection(conn, id, "connection " .. id .. ": looking for its sync", deadline)
  local baseline = row.remote_run or (row.intent and run_of(row.intent.baseline))
  if not baseline then return d, nil end
  local ended = latest_end(d)
  if (ended and ended > (baseline_of(baseline) or 0)) or d.status.sync_state == "syncing" or row.remote_run then
    return d, baseline
  end
end

function P.read(conn, w, deadline)
  return read_connection(conn, w.resource, w.what, deadline)
end

-- The module ---------------------------------------------------------------

local fivetran = jobs.define(P)

function fivetran.connection(id, opts)
  if type(id) ~= "string" or not id:match("^[%w_%-]+$") then
    invalid("fivetran.connection: expected a connection id such as \"decisive_bloom\", got %s", tostring(id))
  end
  local conn = P.connection(check_options("fivetran.connection", opts, CONNECTION_OPTIONS))
  return strip_nulls(read_connection(conn, id))
end

function fivetran.connections(opts)
  opts = check_options("fivetran.connections", opts, CONNECTION_OPTIONS, {"group_id"})
  if opts.group_id ~= nil and (type(opts.group_id) ~= "string" or not opts.group_id:match("^[%w_%-]+$")) then
    invalid("fivetran.connections: group_id must be a Fivetran group id, got %s", tostring(opts.group_id))
  end
  return list_connections(P.connection(opts), opts.group_id, "fivetran.connections")
end

-- engine doctor ------------------------------------------------------------
-- What configures Fivetran, one cheap read that proves the key, and the
-- connections a flow names literally.
P.doctor = {variables = {"FIVETRAN_API_KEY", "FIVETRAN_API_KEY_FILE"}}

function P.doctor.probe(conn)
  request(conn, {method = "GET", path = "/connections", query = "?limit=1", what = "listing the connections",
    check = function(body) return type(body) ~= "table" and "no JSON object" or nil end})
  return "the API answered and accepts the key"
end

function P.doctor.refs(source)
  local refs, add = jobs.doctor_refs()
  for id in source:gmatch("connection_id%s*=%s*[\"']([^\"']+)[\"']") do
    add("connection " .. id, function(conn)
      local c = read_connection(conn, id)
      return string.format("connection %s exists (%s)", id, tostring(c.schema or "no schema"))
    end)
  end
  for name in jobs.names_in(source, "fivetran") do
    add(string.format("connection named %q", name), function(conn)
      return string.format("connection %q is %s", name, tostring(P.resolve(conn, name, {})))
    end)
  end
  return refs
end

return fivetran
