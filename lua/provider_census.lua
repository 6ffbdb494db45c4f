-- lua/provider_census.lua: the census module, Census syncs on the remote-job
-- machinery (lua/jobs.lua). What is Census's own lives here: connections
-- (token, region, API version), trigger URLs, finding a sync by name, the
-- run statuses and what each means (lua/census_answers.lua), thresholds,
-- the run a lost trigger started, cancel, and the read-only calls.
local tasks = require "engine.c.task"
local errors = require "engine.c.error"
local rules = require "engine.c.rules"
local api = require "engine.api"
local jobs = require "engine.jobs"
local answers = require "engine.census_answers"

local raise, invalid = api.raise, api.invalid
local request, check_options, env = api.request, api.check_options, api.env
local strip_nulls = api.strip_nulls
local has_data, has_run_status = answers.has_data, answers.has_run_status
local run_id_of, has_run_id = answers.run_id_of, answers.has_run_id

local HOSTS = {us = "https://app.getcensus.com", eu = "https://app-eu.getcensus.com"}
local CONNECTION_OPTIONS = {"token", "region", "api_version"}
local TRIGGER_FORM = "https://bearer:secret-token:<token>@app.getcensus.com" ..
  "/api/v1/syncs/<sync id>/trigger (app-eu.getcensus.com for EU workspaces)"

local P = {
  name = "census", vendor = "Census", env = "CENSUS", kind = "sync", noun = "sync",
  done_word = "completed", poll_floor = 5,
  connection_options = CONNECTION_OPTIONS,
  success_statuses = {completed = true, skipped = true}, -- (a row with one of them that failed says so)
  trigger_options = {"sync_id", "force_full_sync"},
  wait_options = {"max_records_failed", "max_failed_ratio", "allow_skipped", "records_sample",
    "records_sample_payload"},
  counts = {"records_processed", "records_updated", "records_failed", "records_invalid"},
  -- engine runs ID: the table's columns, and the "syncs" rows of
  -- --json, as they were before there were several providers
  resource_title = "SYNC",
  columns = {{"PROCESSED", "records_processed"}, {"UPDATED", "records_updated"},
             {"FAILED", "records_failed"}, {"INVALID", "records_invalid"}},
  help = {
    summary = "Census syncs: trigger, wait, sync, cancel, list",
    functions = {
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
    environment = {
      {"CENSUS_API_KEY", "Census token when a flow gives none"},
      {"CENSUS_API_KEY_FILE", "a file holding it (not readable by others)"},
      {"CENSUS_API_KEY_FILE_ANY_MODE", "1: accept a key file others may read"},
      {"CENSUS_API_VERSION", "1 (default) or 2"},
      {"CENSUS_RECORDS_SAMPLE", "rejected records read after a run with failures (5; 0: none)"},
      {"CENSUS_BASE_URL", "scheme://host[:port] for every Census request"},
    },
  },
  legacy = {key = "syncs", fields = {"sync_id", "run_id", "status", "records_processed", "records_updated",
    "records_failed", "records_invalid", "started_at", "ended_at", "link", "error", "origin", "started_by"},
    row = function(f, j)
      local row = {sync_id = math.tointeger(tonumber(j.resource)), run_id = math.tointeger(tonumber(j.remote_run)),
        status = j.status, started_at = f.started_at, ended_at = f.ended_at, link = j.link, error = j.error,
        origin = j.origin, started_by = j.started_by}
      for k, v in pairs(j.counts) do row[k] = v end
      return row
    end},
}

-- Connections ------------------------------------------------------------

-- API v1's retirement: Census announced 2027-01-15. The date is the
-- engine's wall clock (ENGINE_TEST_TODAY, YYYY-MM-DD, sets it for tests).
local V1_RETIRES, V1_WARN_FROM = "2027-01-15", "2026-12-15"
local V1_FIX = "set api_version = 2 (CENSUS_API_VERSION=2) with a personal access token"

local function today()
  local given = env("ENGINE_TEST_TODAY")
  if given and given:match("^%d%d%d%d%-%d%d%-%d%d$") then return given end
  return os.date("!%Y-%m-%d", math.floor(rules.wallclock()))
end

-- Days from date a to date b (YYYY-MM-DD).
local function days(a, b)
  local function t(d)
    local y, m, dd = d:match("^(%d+)%-(%d+)%-(%d+)$")
    return os.time{year = tonumber(y), month = tonumber(m), day = tonumber(dd), hour = 12}
  end
  return math.floor((t(b) - t(a)) / 86400 + 0.5)
end

-- What the retirement means today for API v1: nil before the warning
-- starts, else the line.
function P.v1_retirement(date)
  date = date or today()
  if date >= V1_RETIRES then
    return string.format("Census API v1 was retired on %s: %s", V1_RETIRES, V1_FIX), true
  elseif date >= V1_WARN_FROM then
    local n = days(date, V1_RETIRES)
    return string.format("Census API v1 retires on %s (in %d day%s): %s", V1_RETIRES, n, n == 1 and "" or "s", V1_FIX)
  end
end

local function hint(status, conn)
  if (status == 404 or status == 410) and conn.version == 1 and today() >= V1_RETIRES then
    -- not a missing sync: the whole API version is gone
    return "retired", "; " .. P.v1_retirement()
  end
  if status == 401 or status == 403 then
    return "auth", conn.version == 2 and "; API v2 takes a personal access token"
      or "; check CENSUS_API_KEY or the token in the trigger URL and its workspace"
  elseif status == 404 then
    return "not_found", "; check the id and the region (us or eu)"
  end
end

-- Connections already made, by token, region and API version: ten
-- thousand syncs share one (the environment does not change in a run).
local connections = {}
local warned_v1 = false

function P.connection(opts, token)
  token = token or opts.token or api.secret_env("CENSUS_API_KEY", "census")
  local key = type(token) == "string" and table.concat({token, tostring(opts.region),
    tostring(opts.api_version)}, "\0")
  if key and connections[key] then return connections[key] end
  if type(token) == "string" then
    -- hidden in everything the process prints from now on
    api.add_secret(token)
    local bare = token:match("^secret%-token:(.+)$")
    if bare then api.add_secret(bare) end
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
  local base = api.base_url(nil, "CENSUS_BASE_URL", "CENSUS_ALLOW_HTTP") or HOSTS[region]
  local conn = api.connection({name = "census", vendor = "Census", base = base, prefix = "/api/v" .. version,
    auth = "Bearer " .. token, token = token, version = version, hint = hint}, api.settings("CENSUS"))
  connections[key] = conn
  if version == 1 and not warned_v1 then -- once a run, from a month before
    warned_v1 = true
    local line = P.v1_retirement()
    if line then require("engine.log").warn("census: %s", line) end
  end
  return conn
end

function P.link(conn, sync_id)
  return string.format("%s/syncs/%s/sync-history", conn.base, sync_id or "?")
end

-- Triggers -----------------------------------------------------------------

local function sync_id_of(v, what)
  local id = math.tointeger(tonumber(v))
  if not id or id <= 0 or (type(v) == "string" and not v:match("^%d+$")) then
    invalid("%s: sync_id must be a positive whole number, got %s", what, tostring(v))
  end
  return id
end

-- A Census trigger URL, exactly https://bearer:secret-token:<token>@<app|
-- app-eu>.getcensus.com/api/v1/syncs/<digits>/trigger[?force_full_sync=
-- true|false] (case-sensitive): {token, eu, sync_id, force_full_sync}, or
-- nil. (tests/fuzz/fuzz_trigger_url.c runs it on any bytes.)
function P.parse_trigger(url)
  if type(url) ~= "string" then return nil end
  local token, host, digits, rest = url:match(
    "^https://bearer:(secret%-token:[%w%-_.~]+)@([%w.%-]+)/api/v1/syncs/(%d+)/trigger(.*)$")
  if not token or (host ~= "app.getcensus.com" and host ~= "app-eu.getcensus.com") or #digits > 18 then
    return nil
  end
  local id = math.tointeger(tonumber(digits))
  local full
  if rest == "?force_full_sync=true" then
    full = true
  elseif rest == "?force_full_sync=false" then
    full = false
  elseif rest ~= "" then
    return nil
  end
  if not id or id <= 0 then return nil end
  return {token = token, eu = host == "app-eu.getcensus.com", sync_id = id, force_full_sync = full}
end

-- An invalid trigger URL as a message may show it: whatever stands before
-- its last "@" (the credentials, whatever they hold) is never echoed.
local function without_credentials(url)
  local at = url:match(".*()@")
  if at then return (url:match("^%a[%w+.-]*://") or "") .. "***" .. url:sub(at) end
  return (url:gsub("secret%-token:.*", "secret-token:***"))
end

-- The sync, the connection and the force_full_sync flag a trigger means.
function P.spec(spec, what)
  what = "census.trigger"
  if spec == nil or spec == "" then
    invalid("census.trigger: a trigger URL must be provided: copy the API trigger URL " ..
      "from the sync's configuration page in Census, or pass {sync_id = N} with CENSUS_API_KEY set")
  end
  if type(spec) == "string" then
    local t = P.parse_trigger(spec)
    if not t then
      invalid("census.trigger: invalid trigger URL %q: paste it directly from the sync's " ..
        "configuration page in Census; it must look like " .. TRIGGER_FORM .. " and is case-sensitive",
        without_credentials(spec))
    end
    return {resource = t.sync_id, force_full_sync = t.force_full_sync,
            conn = P.connection({region = t.eu and "eu" or "us"}, t.token)}
  end
  if type(spec) ~= "table" then
    invalid("census.trigger: expected a trigger URL or {sync_id = N, ...}, got a %s", type(spec))
  end
  check_options(what, spec, CONNECTION_OPTIONS, P.trigger_option_list)
  for _, k in ipairs{"force_full_sync", "force"} do
    if spec[k] ~= nil and type(spec[k]) ~= "boolean" then
      invalid("census.trigger: %s must be true or false", k)
    end
  end
  local label = jobs.check_label(spec.label, what, "label")
  local name = jobs.check_label(spec.name, what, "name")
  if name and spec.sync_id ~= nil then invalid("census.trigger: give sync_id or name, not both") end
  local conn = P.connection(spec)
  -- a name is resolved with the job's other work (the machinery's
  -- trigger), so a name not found is a row of the run, like a refused trigger
  return {resource = not name and sync_id_of(spec.sync_id, what) or nil, name = name,
          force = spec.force, force_full_sync = spec.force_full_sync, conn = conn, label = label or name}
end

function P.trigger_note(t)
  return t.force_full_sync and " (full sync)" or ""
end

local list_pages -- below

-- Every sync of a workspace, listed once per run and connection; calls
-- made at once share the one listing.
local sync_lists = {}

local function workspace_syncs(conn)
  local key = table.concat({conn.base, conn.version, conn.token}, "\0")
  local listing = sync_lists[key]
  if not listing then
    listing = tasks.spawn(function() return pcall(list_pages, conn, "/syncs", "census: listing the syncs") end)
    sync_lists[key] = listing
  end
  local ok, syncs = listing:wait()
  if not ok then
    if sync_lists[key] == listing then sync_lists[key] = nil end
    error(syncs, 0)
  end
  return syncs
end

-- The id of the one sync named `name` (its label in Census).
function P.resolve(conn, name)
  local candidates = {}
  for i, sync in ipairs(workspace_syncs(conn)) do
    local id = math.tointeger(tonumber(sync.id))
    candidates[i] = {name = sync.label or sync.name, id = id, text = "id " .. tostring(id), listed = tostring(id)}
  end
  return jobs.pick_by_name(candidates, name, {what = "census.trigger", noun = "sync", nouns = "syncs", listed = "ids ",
    several = "pass sync_id instead", none = "census.syncs() lists them, or pass sync_id"})
end

function P.trigger(conn, t, _, unknown)
  local id = t.resource
  local body = request(conn, {method = "POST", path = "/syncs/" .. id .. "/trigger",
    query = t.force_full_sync ~= nil and ("?force_full_sync=" .. tostring(t.force_full_sync)) or nil,
    what = "sync " .. id .. ": trigger", check = has_run_id, unknown = unknown,
    fields = {sync_id = id, url = P.link(conn, id)}})
  return type(body) == "table" and body.data and body.data.sync_run_id
end

-- The sync's newest run, when it was created at or after `since` (our clock).
local function run_created_since(conn, sync_id, since, deadline)
  local body, meta = request(conn, {method = "GET", path = "/syncs/" .. sync_id .. "/sync_runs",
    query = "?per_page=1&order=desc", check = has_data, deadline = deadline,
    what = "sync " .. sync_id .. ": looking for the run of a lost trigger"})
  local latest = body.data[1]
  if type(latest) ~= "table" then return nil end
  local created = rules.parse_time(latest.created_at)
  if not created then return nil end
  -- Compare on the server's clock (from its Date header). The header has
  -- one-second resolution, so the skew read is at most the true one (never
  -- later): half a second of slack covers the rest, and a run made more
  -- than 1.5 s before the trigger is never taken for its run.
  local skew = meta.server_skew or 0
  if created >= since + skew - 0.5 then return latest end
end

-- The run a row (or a trigger sent at sent_at) stands for: its data and
-- run id, or nil when Census knows none.
function P.find(conn, id, row, deadline)
  local run_id = math.tointeger(tonumber(row.remote_run))
  local data
  if run_id then
    local ok, body = pcall(request, conn, {method = "GET", path = "/sync_runs/" .. run_id,
      what = "sync " .. id .. " run " .. run_id, check = has_run_status, deadline = deadline})
    if ok then
      data = body.data
    elseif not errors.is_error(body, "not_found") then
      error(body, 0)
    end
  elseif row.sent_at then
    data = run_created_since(conn, id, row.sent_at, deadline)
  end
  if data then return data, run_id_of(data.id) or run_id end
end

function P.cancel(conn, w, deadline)
  request(conn, {method = "POST", path = "/sync_runs/" .. w.remote_run .. "/cancel",
    what = w.what .. ": cancel", deadline = deadline})
end

-- Runs --------------------------------------------------------------------

function P.describe(sync_id, run_id)
  if sync_id and run_id then return string.format("sync %d run %d", sync_id, run_id) end
  if sync_id then return "sync " .. sync_id end
  return "run " .. tostring(run_id)
end

function P.handle(sync_id, run_id, label)
  return {sync_id = sync_id, sync_run_id = math.tointeger(tonumber(run_id)), label = label}
end

function P.handle_of(run, what)
  if type(run) ~= "table" then
    invalid("%s: expected a run from census.trigger (or {sync_id =, sync_run_id =}), got a %s", what, type(run))
  end
  local run_id = math.tointeger(tonumber(run.sync_run_id))
  if not run_id or run_id <= 0 then
    invalid("%s: the run has no sync_run_id; pass what census.trigger returned", what)
  end
  return math.tointeger(tonumber(run.sync_id)), run_id
end

function P.fields(sync_id, run_id)
  return {sync_id = sync_id, sync_run_id = run_id, run_id = run_id}
end

-- Rejected records ---------------------------------------------------------
-- A run that ended with failed or invalid records: up to records_sample of
-- them (option, CENSUS_RECORDS_SAMPLE, default 5; 0: none), each with its
-- identifier and Census's reason. Their payloads are the customer's data:
-- kept only when records_sample_payload = true.
local RECORDS_SAMPLE = 5

local function records_sample(opts)
  if opts.records_sample ~= nil then return opts.records_sample end
  local v = env("CENSUS_RECORDS_SAMPLE")
  if v == nil then return RECORDS_SAMPLE end
  local n = v:match("^%s*%d+%s*$") and math.tointeger(tonumber(v))
  if not n or n > 100 then invalid("CENSUS_RECORDS_SAMPLE must be a whole number from 0 to 100, got %q", v) end
  return n
end

function P.check_wait(opts, what)
  if opts.allow_skipped ~= nil and type(opts.allow_skipped) ~= "boolean" then
    invalid("%s: allow_skipped must be true or false, got %s", what, tostring(opts.allow_skipped))
  end
  if opts.records_sample_payload ~= nil and type(opts.records_sample_payload) ~= "boolean" then
    invalid("%s: records_sample_payload must be true or false, got %s", what, tostring(opts.records_sample_payload))
  end
  local sample = opts.records_sample
  if sample ~= nil and (math.type(sample) ~= "integer" or sample < 0 or sample > 100) then
    invalid("%s: records_sample must be a whole number from 0 to 100, got %s", what, tostring(sample))
  end
  records_sample(opts) -- (CENSUS_RECORDS_SAMPLE, checked before the wait too)
  for _, k in ipairs{"max_records_failed", "max_failed_ratio"} do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0 or v == math.huge) then
      invalid("%s: %s must be a number >= 0, got %s", what, k, tostring(opts[k]))
    end
  end
end

-- One poll of the run.
function P.read(conn, w, deadline)
  local run_id = w.remote_run
  local body = request(conn, {method = "GET", path = "/sync_runs/" .. run_id, what = w.what,
    check = has_run_status, deadline = deadline,
    fields = {sync_id = w.resource, sync_run_id = run_id, run_id = run_id, url = w.url}})
  local data = body.data
  -- a run the flow named by its id alone: its sync (the machinery says so)
  if not w.resource then w.resource = math.tointeger(data.sync_id) end
  return data
end

function P.status(data) return tostring(data.status) end

function P.status_note(data)
  local step = data.current_step
  if type(step) == "string" or type(step) == "number" then return " (" .. tostring(step) .. ")" end
  return ""
end

function P.progress(d)
  local n = math.tointeger(d.records_processed)
  return n and (n .. " records")
end

function P.counts_of(d)
  return {records_processed = math.tointeger(d.records_processed), records_updated = math.tointeger(d.records_updated),
    records_failed = math.tointeger(d.records_failed), records_invalid = math.tointeger(d.records_invalid)}
end

-- What a run's answer means to a wait: "wait", "ok", or the kind of the
-- error it ends with and what to say. Any status Census does not document
-- is unknown and never read as success.
function P.judge(data, w, opts)
  local meaning = answers.meaning(data)
  if meaning == "waiting" then return "wait" end
  if meaning == "canceled" then return "canceled", "was canceled in Census" end
  if meaning == "failed" then
    return "failed", "failed: " .. tostring(strip_nulls(data).error_message or "no error message")
  end
  if meaning == "skipped" and not (opts.allow_skipped or opts.adopting) then
    return "skipped", "was skipped: an earlier run of the sync was still running"
  end
  if meaning == "unknown" then
    return "unknown_status", string.format("reported status %q, which is not a known Census status; " ..
      "treating it as a failure, not a success", tostring(data.status))
  end
  local failed = math.tointeger(data.records_failed) or 0
  local processed = tonumber(data.records_processed) or 0
  if opts.max_records_failed and failed > opts.max_records_failed then
    return "threshold", string.format("completed with %d failed records, more than max_records_failed = %d",
      failed, opts.max_records_failed)
  end
  if opts.max_failed_ratio and failed > 0 and (processed == 0 or failed / processed > opts.max_failed_ratio) then
    return "threshold", string.format("completed with %d of %d records failed, more than max_failed_ratio = %g",
      failed, processed, opts.max_failed_ratio)
  end
  return "ok"
end

function P.result(conn, w, data)
  local result = strip_nulls(data)
  result.sync_id = math.tointeger(result.sync_id) or w.resource
  result.sync_run_id = w.remote_run
  result.url = P.link(conn, result.sync_id)
  return result
end

function P.error_fields(result)
  return {error_code = result.error_code, error_message = result.error_message, error_detail = result.error_detail}
end

-- A run's counts as a person reads them; Census leaves them null for some
-- runs (a failed or skipped one, some destinations), which is not zero.
function P.summary(d)
  if d.records_processed == nil and d.records_updated == nil and d.records_failed == nil then
    return "counts not reported"
  end
  local function n(v) return v == nil and "?" or tostring(math.tointeger(v) or v) end
  local text = string.format("%s processed, %s updated, %s failed", n(d.records_processed),
    n(d.records_updated), n(d.records_failed))
  if (math.tointeger(d.records_invalid) or 0) > 0 then text = text .. ", " .. n(d.records_invalid) .. " invalid" end
  return text
end

function P.warns(result)
  return (math.tointeger(result.records_failed) or 0) > 0 or result.status ~= "completed"
end

-- The module ---------------------------------------------------------------

local census, check_wait = jobs.define(P)

local function id_of(v, what)
  local id = math.tointeger(tonumber(v))
  if not id or id <= 0 then invalid("%s: expected a positive whole-number id, got %s", what, tostring(v)) end
  return id
end

function census.get_run(id, opts)
  id = id_of(id, "census.get_run")
  local conn = P.connection(check_options("census.get_run", opts, CONNECTION_OPTIONS))
  return strip_nulls(request(conn, {method = "GET", path = "/sync_runs/" .. id, what = "run " .. id,
    check = has_run_status}).data)
end

function census.get_sync(id, opts)
  id = id_of(id, "census.get_sync")
  local conn = P.connection(check_options("census.get_sync", opts, CONNECTION_OPTIONS))
  return strip_nulls(request(conn, {method = "GET", path = "/syncs/" .. id, what = "sync " .. id,
    check = has_data}).data)
end

local PAGE_OPTIONS = {"page", "per_page", "order"}

-- One page when `page` is given, else every page; returns the items and the
-- last pagination object.
local function list(path, what, opts)
  opts = check_options(what, opts, CONNECTION_OPTIONS, PAGE_OPTIONS)
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
  return list_pages(P.connection(opts), path, what, per_page, opts.page, opts.order)
end

-- The items of one page (when given) or of every page, and the last
-- pagination object.
function list_pages(conn, path, what, per_page, only_page, order)
  local items, page, pagination = {}, only_page or 1, nil
  while true do
    local query = string.format("?page=%d&per_page=%d%s", page, per_page or 100,
      order and ("&order=" .. order) or "")
    local body = request(conn, {method = "GET", path = path, query = query, what = what, check = has_data})
    for _, item in ipairs(body.data) do items[#items + 1] = strip_nulls(item) end
    pagination = type(body.pagination) == "table" and strip_nulls(body.pagination) or nil
    local next_page = pagination and math.tointeger(pagination.next_page)
    if only_page or not next_page or next_page <= page or #body.data == 0 then break end
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
local private = setmetatable({}, {__mode = "k"}) -- job -> its defaults (they may hold a token)
local Task = {}
Task.__index = Task
local TASK_OPTIONS = {"api_trigger", "sync_id", "name", "force_full_sync"}

function Task:run(overrides)
  local defaults = private[self]
  if not defaults then invalid("census task: call job:run{...} on a task made by census.task") end
  if type(overrides) == "string" then overrides = {api_trigger = overrides} end
  check_options("census task:run", overrides, CONNECTION_OPTIONS, P.wait_option_list, TASK_OPTIONS)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(overrides or {}) do o[k] = v end
  local spec = o.api_trigger
  if spec == nil and (o.sync_id ~= nil or o.name ~= nil) then
    spec = {sync_id = o.sync_id, name = o.name, token = o.token, region = o.region,
            api_version = o.api_version, force_full_sync = o.force_full_sync}
  end
  if spec == nil or spec == "" then
    invalid("census task: a value for api_trigger must be provided: copy the API trigger URL " ..
      "from the sync's configuration page in Census")
  end
  local wait_opts = {}
  for _, k in ipairs(P.wait_option_list) do wait_opts[k] = o[k] end
  for _, k in ipairs(CONNECTION_OPTIONS) do wait_opts[k] = o[k] end
  check_wait(wait_opts)
  return census.wait(census.trigger(spec, wait_opts), wait_opts)
end

function Task:__tostring()
  local d = private[self] or {}
  local id = d.sync_id
  if not id and type(d.api_trigger) == "string" then
    local t = P.parse_trigger(d.api_trigger)
    id = t and t.sync_id
  end
  return id and ("census task (sync " .. id .. ")") or "census task"
end

function census.task(defaults)
  check_options("census.task", defaults, CONNECTION_OPTIONS, P.wait_option_list, TASK_OPTIONS)
  local job = setmetatable({}, Task)
  local copy = {}
  for k, v in pairs(defaults or {}) do copy[k] = v end
  private[job] = copy
  return job
end

local function is_list(body)
  if type(body) ~= "table" or type(body.data) ~= "table" then return "no data list in the answer" end
end

function P.rejected(conn, w, data, opts)
  local want = records_sample(opts)
  local bad = (math.tointeger(data.records_failed) or 0) + (math.tointeger(data.records_invalid) or 0)
  if want == 0 or bad <= 0 or not w.remote_run then return nil end
  local out = {}
  for _, status in ipairs{"rejected", "invalid"} do
    if #out >= want then break end
    local body = request(conn, {method = "GET", path = "/sync_runs/" .. w.remote_run .. "/records",
      query = "?status=" .. status .. "&per_page=" .. (want - #out), what = w.what .. ": its rejected records",
      check = is_list})
    for _, r in ipairs(body.data) do
      if #out >= want then break end
      if type(r) == "table" then
        out[#out + 1] = {identifier = type(r.identifier) == "string" and r.identifier or nil, status = r.status,
          message = type(r.status_message) == "string" and r.status_message or nil,
          payload = opts.records_sample_payload == true and type(r.record_payload) == "table" and
            strip_nulls(r.record_payload) or nil}
      end
    end
  end
  return out, bad
end

-- engine doctor ------------------------------------------------------------
-- What configures Census, one cheap read that proves the token, the API
-- version (and v1's retirement), and the syncs a flow names literally.
P.doctor = {variables = {"CENSUS_API_KEY", "CENSUS_API_KEY_FILE"}}

function P.doctor.probe(conn)
  local body = request(conn, {method = "GET", path = "/syncs", query = "?per_page=1", what = "listing the syncs",
    check = has_data})
  local total = type(body.pagination) == "table" and math.tointeger(body.pagination.total_records)
  return string.format("API v%d answered and accepts the token%s", conn.version,
    total and string.format(" (%d sync%s)", total, total == 1 and "" or "s") or "")
end

-- Further lines: {status, text}.
function P.doctor.notes(conn)
  if conn.version == 2 then return {{"ok", "API v2"}} end
  local line, retired = P.v1_retirement()
  return {{retired and "fail" or "warn", line or string.format("API v1 (it retires on %s): %s", V1_RETIRES, V1_FIX)}}
end

-- The syncs a flow's source names literally: {{what, check = fn(conn)}}.
function P.doctor.refs(source)
  local refs, add = jobs.doctor_refs()
  local function by_id(id)
    add("sync " .. id, function(conn)
      local sync = request(conn, {method = "GET", path = "/syncs/" .. id, what = "sync " .. id, check = has_data}).data
      return string.format("sync %s exists (%s)", id, tostring(sync.label or sync.name or "no name"))
    end)
  end
  for id in source:gmatch("sync_id%s*=%s*(%d+)") do by_id(id) end
  for id in source:gmatch("/syncs/(%d+)/trigger") do by_id(id) end
  for name in jobs.names_in(source, "census") do
    add(string.format("sync named %q", name), function(conn)
      return string.format("sync %q is id %s", name, tostring(P.resolve(conn, name)))
    end)
  end
  return refs
end

return census
