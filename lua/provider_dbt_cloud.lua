-- lua/provider_dbt_cloud.lua: the dbt_cloud module, dbt Cloud job runs on
-- the remote-job machinery (lua/jobs.lua), through the Administrative API
-- v2 at the account's access URL. A trigger's cause carries a marker unique
-- to its intent, so a lost answer or a kill -9 is resolved by finding the
-- run with that marker, never by triggering again. Statuses are read as
-- integers: 1, 2, 3 wait, 10 succeeds, 20 fails, 30 is cancelled, any other
-- is unknown and never a success. After a run, its run_results.json gives
-- counts by status and names the failing nodes.
local rules = require "engine.c.rules"
local tasks = require "engine.c.task"
local errors = require "engine.c.error"
local api = require "engine.api"
local jobs = require "engine.jobs"
local json = require "engine.json"
local events = require "engine.events"

local raise, invalid = api.raise, api.invalid
local request, check_options, env = api.request, api.check_options, api.env
local strip_nulls = api.strip_nulls

local CONNECTION_OPTIONS = {"token", "account_id", "base_url"}
local OVERRIDES = {git_branch = "string", git_sha = "string", target_name_override = "string",
  schema_override = "string", threads_override = "integer", timeout_seconds_override = "integer",
  steps_override = "list"}
local OVERRIDE_NAMES = {}
for k in pairs(OVERRIDES) do OVERRIDE_NAMES[#OVERRIDE_NAMES + 1] = k end
table.sort(OVERRIDE_NAMES)

local P = {
  name = "dbt_cloud", vendor = "dbt Cloud", env = "DBT_CLOUD", kind = "job", noun = "job run",
  done_word = "succeeded", poll_floor = 5, poll = 30, throttle_wait = 300, run_verb = "run",
  max_rate = 5000 / 60, -- the published limit: 5,000 requests a minute per account
  connection_options = CONNECTION_OPTIONS,
  success_statuses = {success = true}, -- (a row with one of them that failed says so)
  trigger_options = {"job_id", "project_id", "environment_id", "reuse_existing", table.unpack(OVERRIDE_NAMES)},
  counts = {"passed", "failed", "errored", "skipped", "warned"},
  resource_title = "JOB",
  help = {
    summary = "dbt Cloud job runs: trigger, wait, run, cancel, list",
    functions = {
      trigger = "dbt_cloud.trigger{job_id | name, label, reuse_existing, git_branch, steps_override, ...} -> run",
      wait = "dbt_cloud.wait(run [, {poll, timeout, cancel_on_timeout, ...}]) -> result",
      run = "dbt_cloud.run(spec [, wait options]) -> result: trigger, then wait",
      cancel = "dbt_cloud.cancel(run): ask dbt Cloud to cancel a job run",
      jobs = "dbt_cloud.jobs([{project_id, environment_id, name}]) -> jobs",
      runs = "dbt_cloud.runs{job_id [, limit]} -> the job's latest runs (newest first)",
    },
    environment = {
      {"DBT_CLOUD_API_TOKEN", "dbt Cloud token when a flow gives none"},
      {"DBT_CLOUD_API_TOKEN_FILE", "a file holding it (not readable by others)"},
      {"DBT_CLOUD_ACCOUNT_ID", "the account's id"},
      {"DBT_CLOUD_BASE_URL", "the account's access URL (no default)"},
    },
  },
  columns = {{"PASSED", "passed"}, {"FAILED", "failed"}, {"ERRORED", "errored"}, {"SKIPPED", "skipped"},
    {"WARNED", "warned"}},
}

-- What the provider adds to an answer (P.add_results), and the results it
-- made, by table: weak, so they go with the answer.
local added = setmetatable({}, {__mode = "k"})
local results = setmetatable({}, {__mode = "k"})

local STATUS = {[1] = "queued", [2] = "starting", [3] = "running", [10] = "success", [20] = "error",
  [30] = "cancelled"}

-- Connections ------------------------------------------------------------

local function hint(status)
  if status == 401 or status == 403 then
    return "auth", "; check DBT_CLOUD_API_TOKEN (a service account token allowed to run jobs) and that " ..
      "DBT_CLOUD_BASE_URL is your account's access URL"
  elseif status == 404 then
    return "not_found", "; check the id, DBT_CLOUD_ACCOUNT_ID and DBT_CLOUD_BASE_URL"
  end
end

-- dbt Cloud's words for an error: status.user_message, or a bare detail.
local function message_of(body)
  if type(body.status) == "table" and type(body.status.user_message) == "string" then
    return body.status.user_message
  end
  if type(body.detail) == "string" then return body.detail end
end

local function whole(v)
  local n = math.tointeger(tonumber(v))
  if n and n > 0 and (type(v) ~= "string" or v:match("^%d+$")) then return n end
end

local connections = {}

function P.connection(opts)
  local token = opts.token or api.secret_env("DBT_CLOUD_API_TOKEN", "dbt_cloud")
  api.add_secret(type(token) == "string" and token or nil)
  if type(token) ~= "string" or token == "" then
    invalid("dbt_cloud: no API token: pass token = ..., or set DBT_CLOUD_API_TOKEN or DBT_CLOUD_API_TOKEN_FILE " ..
      "(a service account token with the Job Runner permission)")
  end
  if token:find("[%c ]") then invalid("dbt_cloud: the API token contains spaces or control characters") end
  local given = opts.account_id or env("DBT_CLOUD_ACCOUNT_ID")
  local account = whole(given)
  if not account then
    invalid("dbt_cloud: %s: set DBT_CLOUD_ACCOUNT_ID (or account_id = ...) to the account's id, the number " ..
      "after /accounts/ in dbt Cloud's URLs", given == nil and "no account id" or
      string.format("the account id must be a whole number, got %q", tostring(given)))
  end
  local base = api.base_url(opts.base_url, "DBT_CLOUD_BASE_URL", "DBT_CLOUD_ALLOW_HTTP")
  if not base then
    invalid("dbt_cloud: no access URL: set DBT_CLOUD_BASE_URL (or base_url = ...) to the account's access " ..
      "URL, such as https://ab123.us1.dbt.com; dbt Cloud shows it under Account settings, Account information " ..
      "(the legacy cloud.getdbt.com answers 401 for accounts that moved)")
  end
  local key = table.concat({token, account, base}, "\0")
  if connections[key] then return connections[key] end
  local conn = api.connection({name = "dbt_cloud", vendor = "dbt Cloud", base = base,
    prefix = "/api/v2/accounts/" .. account, auth = "Token " .. token, hint = hint, message_of = message_of,
    account = account}, api.settings("DBT_CLOUD", P.throttle_wait, P.max_rate))
  connections[key] = conn
  return conn
end

function P.link(conn, job_id, run_id)
  if run_id then return string.format("%s/deploy/%d/runs/%s/", conn.base, conn.account, tostring(run_id)) end
  return string.format("%s/deploy/%d/jobs/%s/", conn.base, conn.account, tostring(job_id or "?"))
end

function P.describe(job_id, run_id)
  if job_id and run_id then return string.format("job %s run %s", tostring(job_id), tostring(run_id)) end
  if job_id then return "job " .. tostring(job_id) end
  return "run " .. tostring(run_id)
end

function P.handle(job_id, run_id, label)
  return {job_id = job_id, run_id = math.tointeger(tonumber(run_id)), label = label}
end

function P.handle_of(h, what)
  if type(h) ~= "table" then
    invalid("%s: expected a run from dbt_cloud.trigger (or {job_id =, run_id =}), got a %s", what, type(h))
  end
  local run_id = whole(h.run_id)
  if not run_id then invalid("%s: the run has no run_id; pass what dbt_cloud.trigger returned", what) end
  return whole(h.job_id), run_id
end

function P.fields(job_id, run_id) return {job_id = job_id, run_id = run_id} end

-- Answers ------------------------------------------------------------------

local function show(v) return api.show(v) end

-- A run: a whole id > 0 and an integer status (never the humanized text).
local function has_run(body)
  local d = body.data
  if type(d) ~= "table" then return "the answer has no data object: " .. show(body) end
  if math.type(d.id) ~= "integer" or d.id <= 0 then return "the run has no usable id: " .. show(body) end
  if math.type(d.status) ~= "integer" then return "the run's status is not a whole number: " .. show(body) end
end
P.has_run = has_run -- (the fuzzer reads answers as the engine does)

local function has_list(body)
  if type(body.data) ~= "table" then return "the answer has no data list: " .. show(body) end
end

-- A run_results.json document: {results = [{unique_id, status, message}]}.
function P.results_of(doc)
  if type(doc) ~= "table" or type(doc.results) ~= "table" then return nil end
  local counts = {passed = 0, failed = 0, errored = 0, skipped = 0, warned = 0}
  local failing, warnings = {}, {}
  local CLASS = {success = "passed", pass = "passed", fail = "failed", error = "errored",
    ["runtime error"] = "errored", skipped = "skipped", warn = "warned"}
  for _, r in ipairs(doc.results) do
    if type(r) == "table" then
      local class = CLASS[r.status]
      if class then counts[class] = counts[class] + 1 end
      local id = type(r.unique_id) == "string" and r.unique_id or "?"
      local message = type(r.message) == "string" and r.message or nil
      if class == "failed" or class == "errored" then failing[#failing + 1] = {id = id, message = message} end
      if class == "warned" then warnings[#warnings + 1] = {id = id, message = message} end
    end
  end
  return counts, failing, warnings
end

-- What a run's answer means to a wait. A status dbt Cloud does not
-- document is unknown and never read as success.
function P.judge(d, w, opts)
  local status = d.status
  if status == 1 or status == 2 or status == 3 then return "wait" end
  if status == 10 then return "ok" end
  if status == 30 then return "canceled", "was cancelled in dbt Cloud" end
  if status == 20 then
    local parts = {}
    -- one line: dbt's messages span lines ("Database Error in model x\n  relation ...")
    local message = type(d.status_message) == "string" and
      d.status_message:gsub("%s*\n%s*", " "):gsub("^%s+", ""):gsub("%s+$", "") or ""
    if message == "" then message = nil end
    parts[1] = "failed: " .. (message or "no status message")
    local a = added[d] or {}
    if a.failing_steps and #a.failing_steps > 0 then parts[#parts + 1] = "in " .. table.concat(a.failing_steps, ", ") end
    if a.failing_nodes and #a.failing_nodes > 0 then
      local names = {}
      for i = 1, math.min(#a.failing_nodes, 5) do names[i] = a.failing_nodes[i].id end
      parts[#parts + 1] = "failing: " .. table.concat(names, ", ") ..
        (#a.failing_nodes > 5 and string.format(" and %d more", #a.failing_nodes - 5) or "")
    end
    return "failed", table.concat(parts, "; ")
  end
  if opts.adopting then return nil end
  return "unknown_status", string.format("reported status %s, which is not a known dbt Cloud status; " ..
    "treating it as a failure, not a success", tostring(status))
end

function P.status(d)
  if type(d.status) == "string" then return d.status end -- a result
  return STATUS[d.status] or ("status " .. tostring(d.status))
end

-- The counts of a result this provider made, or of an answer P.finished
-- added them to (never a field of dbt Cloud's answer: it is not ours).
function P.counts_of(d)
  if results[d] then return d.counts end
  return added[d] and added[d].counts
end

-- What P.finished learned of a run that ended, kept beside its answer
-- (never in it: a field of the same name in the answer is not read).
function P.add_results(d, failing_steps, counts, failing_nodes)
  local a = added[d] or {}
  added[d] = a
  a.failing_steps = failing_steps or a.failing_steps
  if counts then a.counts, a.failing_nodes = counts, failing_nodes end
end

-- Once a run ended: its failing steps (a run with an error) and its
-- run_results.json (counts, failing nodes, warnings). Reading them never
-- changes the run's outcome: a failure is one WARN.
function P.finished(conn, w, d, verdict)
  if verdict ~= "ok" and verdict ~= "failed" then return d end
  local c = api.bounded(conn, math.min(conn.retry_budget, 30))
  if verdict == "failed" then
    local ok, body = pcall(request, c, {method = "GET", path = "/runs/" .. w.remote_run .. "/",
      query = "?include_related=" .. '%5B%22run_steps%22%5D', what = w.what .. ": reading its steps", check = has_run})
    if ok and type(body.data.run_steps) == "table" then
      local steps = {}
      for _, step in ipairs(body.data.run_steps) do
        if type(step) == "table" and step.status == 20 and type(step.name) == "string" then
          steps[#steps + 1] = step.name
        end
      end
      P.add_results(d, steps)
    end
  end
  local ok, doc = pcall(request, c, {method = "GET", path = "/runs/" .. w.remote_run .. "/artifacts/run_results.json",
    what = w.what .. ": reading run_results.json", check = function(b)
      if type(b.results) ~= "table" then return "run_results.json has no results list" end
    end})
  if ok then
    local counts, failing, warnings = P.results_of(doc)
    P.add_results(d, nil, counts, failing)
    for _, warning in ipairs(warnings or {}) do
      events.emit("job.warning", string.format("dbt_cloud: %s: warning in %s%s", w.what, warning.id,
        warning.message and (": " .. rules.printable(warning.message):sub(1, 200)) or ""))
    end
  elseif errors.is_error(doc, "canceled") then
    error(doc, 0)
  elseif not errors.is_error(doc, "not_found") then -- none is normal (a job that writes none)
    events.emit("job.warning", string.format("dbt_cloud: %s: could not read run_results.json: %s", w.what,
      (errors.describe(doc):gsub("\n.*", ""))))
  end
  return d
end

function P.result(conn, w, d)
  local data = strip_nulls(d)
  local verdict = P.judge(d, w, {})
  local a = added[d] or {}
  local result = {job_id = w.resource or math.tointeger(data.job_definition_id), run_id = w.remote_run,
    status = verdict == "ok" and "success" or (STATUS[data.status] or verdict),
    status_message = type(data.status_message) == "string" and data.status_message or nil,
    counts = a.counts, started_at = data.started_at, finished_at = data.finished_at,
    link = type(data.href) == "string" and data.href or P.link(conn, w.resource, w.remote_run),
    failing_steps = a.failing_steps}
  results[result] = true
  return result
end

function P.summary(result)
  local c = result.counts
  if not c then return "no run_results.json" end
  return string.format("%d passed, %d failed, %d errored, %d skipped, %d warned", c.passed, c.failed,
    c.errored, c.skipped, c.warned)
end

function P.warns(result) return result.counts ~= nil and result.counts.warned > 0 end

-- Triggers ---------------------------------------------------------------

function P.spec(spec, what)
  if math.type(spec) == "integer" then spec = {job_id = spec} end
  if type(spec) ~= "table" then
    invalid("%s: expected {job_id = N} or {name = \"...\"}, got a %s", what, type(spec))
  end
  check_options(what, spec, CONNECTION_OPTIONS, P.trigger_option_list)
  for _, k in ipairs{"force", "reuse_existing"} do
    if spec[k] ~= nil and type(spec[k]) ~= "boolean" then invalid("%s: %s must be true or false", what, k) end
  end
  local label = jobs.check_label(spec.label, what, "label")
  local name = jobs.check_label(spec.name, what, "name")
  if name and spec.job_id ~= nil then invalid("%s: give job_id or name, not both", what) end
  local id = not name and whole(spec.job_id)
  if not name and not id then
    invalid("%s: job_id must be a positive whole number, got %s", what, tostring(spec.job_id))
  end
  for _, k in ipairs{"project_id", "environment_id"} do
    if spec[k] ~= nil and not whole(spec[k]) then invalid("%s: %s must be a positive whole number", what, k) end
  end
  local overrides = {}
  for k, kind in pairs(OVERRIDES) do
    local v = spec[k]
    if v ~= nil then
      local ok = (kind == "string" and type(v) == "string" and v ~= "")
        or (kind == "integer" and math.type(v) == "integer" and v > 0)
      if kind == "list" and type(v) == "table" and #v > 0 then
        ok = true
        for i = 1, #v do ok = ok and type(v[i]) == "string" end
      end
      if not ok then
        invalid("%s: %s must be %s", what, k, kind == "list" and "a list of dbt commands (strings)" or
          kind == "integer" and "a whole number > 0" or "a non-empty string")
      end
      overrides[k] = v
    end
  end
  return {resource = id or nil, name = name, label = label or name, force = spec.force == true,
    reuse_existing = spec.reuse_existing == true, project_id = whole(spec.project_id),
    environment_id = whole(spec.environment_id), overrides = overrides, conn = P.connection(spec)}
end

-- Every item of a list endpoint, by limit and offset.
local function list_all(conn, path, query, what)
  local items, offset = {}, 0
  while true do
    local body = request(conn, {method = "GET", path = path,
      query = "?limit=100&offset=" .. offset .. (query or ""), what = what, check = has_list})
    for _, item in ipairs(body.data) do items[#items + 1] = strip_nulls(item) end
    local total = type(body.extra) == "table" and type(body.extra.pagination) == "table"
      and math.tointeger(body.extra.pagination.total_count)
    offset = offset + #body.data
    if #body.data == 0 or not total or offset >= total then break end
    tasks.check_stop()
  end
  return items
end

local function filters(t)
  return (t.project_id and ("&project_id=" .. t.project_id) or "") ..
    (t.environment_id and ("&environment_id=" .. t.environment_id) or "")
end

-- The id of the one job named `name` (with the project and environment
-- filters given).
function P.resolve(conn, name, t)
  local candidates = {}
  for i, job in ipairs(list_all(conn, "/jobs/", filters(t), "dbt_cloud: listing the jobs")) do
    local id = math.tointeger(job.id)
    candidates[i] = {name = job.name, id = id, text = "id " .. tostring(id), listed = tostring(id)}
  end
  return jobs.pick_by_name(candidates, name, {what = "dbt_cloud.trigger", noun = "job", nouns = "jobs", listed = "ids ",
    several = "pass project_id, environment_id or job_id",
    none = "dbt_cloud.jobs{} lists them, or pass job_id"})
end

local function marker()
  local bytes = {}
  local f = io.open("/dev/urandom", "rb")
  local raw = f and f:read(8)
  if f then f:close() end
  for i = 1, 8 do bytes[i] = string.format("%02x", raw and raw:byte(i) or math.random(0, 255)) end
  return "engine:" .. table.concat(bytes)
end

local MAX_CAUSE = 255 -- dbt Cloud's limit, in characters (bytes here: never more)

-- The flow as the cause names it: valid UTF-8 without control characters
-- (dbt Cloud refuses a body that is not UTF-8), at most max bytes; a
-- longer one keeps its end (the file's name), cut on a character's start.
local function flow_for_cause(flow, max)
  flow = tostring(flow)
  if not utf8.len(flow) then flow = flow:gsub("[\128-\255]", "?") end
  flow = flow:gsub("%c", "?")
  if #flow <= max then return flow end
  local start = #flow - (max - 3) + 1
  while start <= #flow and flow:byte(start) & 0xC0 == 0x80 do start = start + 1 end
  return "..." .. flow:sub(start)
end

-- Before the trigger: the cause with its marker (what finds this intent's
-- run again), and under reuse_existing a queued or running run to adopt.
function P.prepare(conn, t)
  local run = require "engine.run"
  local journal = require "engine.journal"
  local intent = {marker = marker()}
  local head = "Triggered by engine flow "
  local tail = string.format(" (engine run %s) [%s]", tostring(journal.recorded_run_id() or "-"), intent.marker)
  local flow = run.flow_label and run.flow_label() or "a flow"
  intent.cause = head .. flow_for_cause(flow, MAX_CAUSE - #head - #tail) .. tail
  -- --resume after this job's run failed: dbt Cloud retries that run from
  -- its failure (rerun/), while it is still the job's latest run. Once
  -- another run came after it, rerun/ would start the job afresh without
  -- this trigger's overrides or marker: trigger it as asked instead.
  local failed = t.resumed and t.resumed.status == "failed" and whole(t.resumed.remote_run)
  if failed then
    local body = request(conn, {method = "GET", path = "/runs/",
      query = "?job_definition_id=" .. t.resource .. "&order_by=-id&limit=1",
      what = "job " .. t.resource .. ": reading its latest run (--resume)", check = has_list})
    local latest = body.data[1]
    if type(latest) == "table" and latest.id == failed and latest.status == 20 then
      intent.rerun, t.rerun_of = true, failed
    else
      t.not_rerun = string.format("run %d, which failed, is no longer the job's latest run", failed)
    end
  end
  if t.reuse_existing then
    local body = request(conn, {method = "GET", path = "/runs/",
      query = "?job_definition_id=" .. t.resource .. "&status__in=%5B1%2C2%2C3%5D&order_by=-id&limit=1",
      what = "job " .. t.resource .. ": looking for a run in progress (reuse_existing)", check = has_list})
    local found = body.data[1]
    if type(found) == "table" and math.type(found.id) == "integer" then
      intent.in_flight = found.id
      intent.in_flight_note = string.format("run %d is already queued or running (reuse_existing = true)", found.id)
    end
  end
  return intent
end

-- What the trigger's log line adds: a rerun, or why --resume made none.
function P.trigger_note(t)
  if t.rerun_of then return string.format(" (a rerun of run %d from its failure: --resume)", t.rerun_of) end
  if t.not_rerun then return string.format(" (not a rerun: %s)", t.not_rerun) end
  return ""
end

function P.trigger(conn, t, intent, unknown)
  local id = t.resource
  local req = {method = "POST", path = "/jobs/" .. id .. "/run/", what = "job " .. id .. ": trigger",
    check = has_run, unknown = unknown, fields = {job_id = id, provider = "dbt_cloud", resource = id}}
  if intent.rerun then
    -- --resume after this job failed: dbt Cloud retries from the failure
    req.path, req.what, req.body = "/jobs/" .. id .. "/rerun/", "job " .. id .. ": rerun from the failure", {}
  else
    local body = {cause = intent.cause}
    for k, v in pairs(t.overrides) do body[k] = v end
    req.body = body
  end
  local answer = request(conn, req)
  return type(answer) == "table" and answer.data and answer.data.id
end

-- The run a row stands for: by its id, else the job's recent run whose
-- cause holds the intent's marker (a rerun, which takes no cause: the
-- newest run created after the trigger was sent). nil when none.
function P.find(conn, id, row, deadline)
  local run_id = whole(row.remote_run)
  if run_id then
    local ok, body = pcall(request, conn, {method = "GET", path = "/runs/" .. run_id .. "/",
      what = "job " .. id .. " run " .. run_id, check = has_run, deadline = deadline})
    if ok then return body.data, run_id end
    if errors.is_error(body, "not_found") then return nil end
    error(body, 0)
  end
  local intent = row.intent or {}
  if not intent.marker then return nil end
  local body, meta = request(conn, {method = "GET", path = "/runs/",
    query = "?job_definition_id=" .. id .. "&order_by=-id&limit=50&include_related=%5B%22trigger%22%5D",
    what = "job " .. id .. ": looking for the run of a lost trigger", check = has_list, deadline = deadline})
  for _, r in ipairs(body.data) do
    if type(r) == "table" and math.type(r.id) == "integer" and math.type(r.status) == "integer" then
      local cause = type(r.trigger) == "table" and r.trigger.cause
      if type(cause) == "string" and cause:find(intent.marker, 1, true) then return r, r.id end
      if intent.rerun and row.sent_at then
        local created = rules.parse_time(r.created_at)
        if created and created >= row.sent_at + (meta.server_skew or 0) - 0.5 then return r, r.id end
      end
    end
  end
end

function P.cancel(conn, w, deadline)
  -- a run that already ended (cancelled in dbt Cloud, read as kind
  -- "canceled") has nothing to cancel
  if w.final then return end
  request(conn, {method = "POST", path = "/runs/" .. w.remote_run .. "/cancel/", body = {},
    what = w.what .. ": cancel", deadline = deadline})
end

function P.read(conn, w, deadline)
  local body = request(conn, {method = "GET", path = "/runs/" .. w.remote_run .. "/", what = w.what,
    check = has_run, deadline = deadline, fields = {job_id = w.resource, run_id = w.remote_run}})
  local d = body.data
  -- a run the flow named by its id alone: its job (the machinery says so)
  if not w.resource then w.resource = math.tointeger(d.job_definition_id) end
  return d
end

-- The module ---------------------------------------------------------------

local dbt_cloud = jobs.define(P)

function dbt_cloud.jobs(opts)
  opts = check_options("dbt_cloud.jobs", opts, CONNECTION_OPTIONS, {"project_id", "environment_id", "name"})
  for _, k in ipairs{"project_id", "environment_id"} do
    if opts[k] ~= nil and not whole(opts[k]) then invalid("dbt_cloud.jobs: %s must be a positive whole number", k) end
  end
  local query = filters({project_id = whole(opts.project_id), environment_id = whole(opts.environment_id)})
  if opts.name ~= nil then
    if type(opts.name) ~= "string" then invalid("dbt_cloud.jobs: name must be a string") end
    query = query .. "&name__icontains=" .. api.escape(opts.name)
  end
  return list_all(P.connection(opts), "/jobs/", query, "dbt_cloud.jobs")
end

function dbt_cloud.runs(opts)
  opts = check_options("dbt_cloud.runs", opts, CONNECTION_OPTIONS, {"job_id", "limit"})
  local job = whole(opts.job_id)
  if not job then invalid("dbt_cloud.runs: job_id must be a positive whole number, got %s", tostring(opts.job_id)) end
  local limit = opts.limit or 10
  if math.type(limit) ~= "integer" or limit < 1 or limit > 100 then
    invalid("dbt_cloud.runs: limit must be a whole number from 1 to 100")
  end
  local body = request(P.connection(opts), {method = "GET", path = "/runs/",
    query = "?job_definition_id=" .. job .. "&order_by=-id&limit=" .. limit, what = "dbt_cloud.runs", check = has_list})
  local runs = {}
  for i, r in ipairs(body.data) do runs[i] = strip_nulls(r) end
  return runs
end

-- engine doctor ------------------------------------------------------------
-- What configures dbt Cloud, one cheap read that proves the token and the
-- account, and the jobs a flow names literally.
P.doctor = {variables = {"DBT_CLOUD_API_TOKEN", "DBT_CLOUD_API_TOKEN_FILE"}}

function P.doctor.probe(conn)
  request(conn, {method = "GET", path = "/jobs/", query = "?limit=1", what = "listing the jobs", check = has_list})
  return string.format("the API answered and accepts the token for account %s", tostring(conn.account))
end

function P.doctor.refs(source)
  local refs, add = jobs.doctor_refs()
  for id in source:gmatch("job_id%s*=%s*(%d+)") do
    add("job " .. id, function(conn)
      local job = request(conn, {method = "GET", path = "/jobs/" .. id .. "/", what = "job " .. id,
        check = function(body) return type(body) ~= "table" or type(body.data) ~= "table" and "no job" or nil end}).data
      return string.format("job %s exists (%s)", id, tostring(job.name or "no name"))
    end)
  end
  for name in jobs.names_in(source, "dbt_cloud") do
    add(string.format("job named %q", name), function(conn)
      return string.format("job %q is id %s", name, tostring(P.resolve(conn, name, {})))
    end)
  end
  return refs
end

return dbt_cloud
