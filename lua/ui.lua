-- lua/ui.lua: `engine ui`, a read-only web UI over the journal, and its
-- JSON API. engine/httpd.c carries each request here, in a task of its
-- own; this file decides what is allowed (loopback, or a token; GET and
-- HEAD), reads the journal (never writes it) and answers with a page from
-- lua/ui_pages.lua or a document from lua/run_docs.lua.
--   engine [--state DIR|URL] ui [--listen HOST:PORT]
local httpd = require "engine.c.httpd"
local timer = require "engine.c.timer"
local json = require "engine.json"
local journal = require "engine.journal"
local run = require "engine.run"
local run_docs = require "engine.run_docs"
local pages = require "engine.ui_pages"
local rules = require "engine.c.rules"
local escape = require("engine.api").escape -- percent-encoding: every byte but the unreserved

local ui = {}

local USAGE = "usage: engine [--state DIR|URL] ui [--listen HOST:PORT]"
local DEFAULT_LISTEN = "127.0.0.1:8080"
local PAGE_RUNS, MAX_RUNS = 50, 500
local OUTCOMES = {"ok", "failed", "interrupted", "exited", "running", "crashed"}
local COOKIE = "engine_ui_token"
local MIN_TOKEN = 16

local iso = require("engine.report").iso

local function fail(code, fmt, ...)
  io.stderr:write("engine: ", string.format(fmt, ...), "\n")
  os.exit(code)
end

-- Every answer carries these: nothing runs but our own script, nothing
-- is framed, sniffed or sent elsewhere.
local SECURITY = {
  "Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; " ..
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "X-Content-Type-Options", "nosniff",
  "Referrer-Policy", "no-referrer",
  "X-Frame-Options", "DENY",
}

local function headers(content_type, extra)
  local h = {"Content-Type", content_type}
  for _, v in ipairs(SECURITY) do h[#h + 1] = v end
  for _, v in ipairs(extra or {}) do h[#h + 1] = v end
  return h
end

local HTML, JSON = "text/html; charset=utf-8", "application/json"

local function page(status, body, extra)
  return status, body, headers(HTML, extra)
end

local function not_found(what)
  return page(404, pages.error(404, "Not found", what))
end

local function api(status, doc)
  return status, doc, headers(JSON, {"Cache-Control", "no-store"})
end

-- Query parameters ---------------------------------------------------------

local function positive(text)
  local n = text and text:match("^%d+$") and math.tointeger(tonumber(text))
  return n and n > 0 and n or nil
end

local function filters(q)
  local f = {}
  for _, k in ipairs{"flow", "outcome", "host"} do
    if q[k] and q[k] ~= "" then f[k] = q[k] end
  end
  f.before = positive(q.before)
  return f
end

-- The flows and hosts for the filter lists, read at most every few
-- seconds (a DISTINCT over every run is the page's largest cost).
local known = {at = -math.huge}
local function flows_and_hosts()
  if timer.now() - known.at > 10 then
    known.flows, known.hosts = journal.flows_and_hosts()
    known.at = timer.now()
  end
  return known.flows, known.hosts
end

-- Runs (journal.runs's rows) as the pages list them.
local function items(rows)
  local ids = {}
  for i, r in ipairs(rows) do ids[i] = r.id end
  local tallies = journal.job_tallies(ids)
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = {id = r.id, flow = r.flow, arguments = r.args, params = r.params, started_at = iso(r.started_at),
      ended_at = iso(r.ended_at), start = r.started_at,
      duration = r.ended_at and (r.ended_at - r.started_at) or nil, outcome = r.outcome,
      exit_code = r.exit_code, host = r.host, pid = r.pid, resumed_from = r.resumed_from,
      jobs = tallies[r.id] or {ok = 0, failed = 0, running = 0, total = 0}}
  end
  return out
end

-- A page of runs: up to limit, and the id the next page starts before.
local function runs_page(q, limit)
  local f = filters(q)
  local rows = journal.runs(limit + 1, f)
  local next_before
  if #rows > limit then
    next_before = rows[limit].id
    rows[limit + 1] = nil
  end
  return rows, f, next_before
end

-- Routes -------------------------------------------------------------------

local routes = {}

routes[#routes + 1] = {"^/$", function(req)
  local rows, f, next_before = runs_page(req.query, PAGE_RUNS)
  local flows, hosts = flows_and_hosts()
  return page(200, pages.runs(items(rows), {flow = f.flow, outcome = f.outcome, host = f.host, before = f.before,
    next_before = next_before, flows = flows, hosts = hosts, outcomes = OUTCOMES}))
end}

routes[#routes + 1] = {"^/runs/(%d+)$", function(_, id)
  local r = journal.run(math.tointeger(tonumber(id)) or -1)
  if not r then return not_found("There is no run " .. id .. ".") end
  return page(200, pages.run(run_docs.page(r)))
end}

routes[#routes + 1] = {"^/runs/(%d+)/summary%.json$", function(_, id)
  local r = journal.run(math.tointeger(tonumber(id)) or -1)
  local doc = r and r.summary()
  if not doc then return not_found("Run " .. id .. " kept no summary (it is running, or an older engine ran it).") end
  return 200, doc, headers(JSON, {"Content-Disposition", string.format('attachment; filename="run-%s-summary.json"', id)})
end}

routes[#routes + 1] = {"^/flows/(.+)$", function(_, flow)
  local rows = journal.runs(PAGE_RUNS, {flow = flow})
  if #rows == 0 then return not_found("No run of this flow is recorded.") end
  return page(200, pages.flow(flow, items(rows)))
end}

routes[#routes + 1] = {"^/jobs/([%w_]+)/(.+)$", function(_, provider, resource)
  local rows = journal.resource_jobs(provider, resource, PAGE_RUNS)
  if #rows == 0 then return not_found("No job of this resource is recorded.") end
  local P = require("engine.jobs").provider(provider)
  local out = {}
  for i, j in ipairs(rows) do
    local ok, counts = pcall(json.decode, j.counts or "")
    counts = ok and type(counts) == "table" and counts or {}
    for k, v in pairs(counts) do
      if type(v) ~= "number" then counts[k] = nil end
    end
    out[i] = {run = j.run, started_at = iso(j.started_at), start = j.started_at, finish = j.ended_at,
      outcome = j.status, ok = j.ok == 1, counts = counts}
  end
  return page(200, pages.job(provider, P and P.vendor or provider, resource, out))
end}

routes[#routes + 1] = {"^/api/runs$", function(req)
  local limit = math.min(positive(req.query.limit) or 20, MAX_RUNS)
  local rows = runs_page(req.query, limit)
  return api(200, run_docs.list_json(rows))
end}

routes[#routes + 1] = {"^/api/runs/(%d+)$", function(_, id)
  local r = journal.run(math.tointeger(tonumber(id)) or -1)
  if not r then return api(404, json.encode({error = "there is no run " .. id})) end
  return api(200, run_docs.one_json(r))
end}

routes[#routes + 1] = {"^(/assets/[%w_.-]+)$", function(_, path)
  local asset = pages.assets[path]
  if not asset then return not_found("There is no such file.") end
  return 200, asset.body, headers(asset.type, {"Cache-Control", "max-age=300"})
end}

-- Access -------------------------------------------------------------------

-- Whether two texts are equal, in a time that does not depend on where
-- they differ.
local function same(a, b)
  if type(a) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #b do diff = diff | (a:byte(i) ~ b:byte(i)) end
  return diff == 0
end

local function cookie_token(cookie)
  for name, value in (cookie or ""):gmatch("([^=;%s]+)=([^;]*)") do
    if name == COOKIE then return value end
  end
end

-- The query string without token=..., for the redirect that drops it.
local function without_token(req)
  local parts = {}
  local names = {}
  for k in pairs(req.query) do
    if k ~= "token" then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do
    parts[#parts + 1] = escape(k) .. "=" .. escape(req.query[k])
  end
  return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

local function encode_path(path)
  return (path:gsub("[^/]+", escape))
end

-- The answer to req: status, body, headers.
local function answer(req, token)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return page(405, pages.error(405, "Method not allowed", "This server only reads: GET and HEAD."),
      {"Allow", "GET, HEAD"})
  end
  if token then
    local bearer = (req.authorization or ""):match("^[Bb]earer%s+(%S+)$")
    if same(req.query.token, token) then -- from a link: into a cookie, out of the address bar
      return page(303, "", {"Location", encode_path(req.path) .. without_token(req),
        "Set-Cookie", COOKIE .. "=" .. token .. "; Path=/; HttpOnly; SameSite=Strict"})
    end
    if not same(bearer, token) and not same(cookie_token(req.cookie), token) then
      return page(401, pages.error(401, "Unauthorized", "This server needs its token: open the address it " ..
        "printed with ?token=..., or send Authorization: Bearer ..."), {"WWW-Authenticate", 'Bearer realm="engine"'})
    end
  end
  for _, route in ipairs(routes) do
    local captures = table.pack(req.path:match(route[1]))
    if captures[1] ~= nil then return route[2](req, table.unpack(captures, 1, captures.n)) end
  end
  return not_found("There is no page at this address.")
end

-- Starting -----------------------------------------------------------------

local function loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- HOST:PORT, [V6]:PORT: host, port; or nil.
local function parse_listen(text)
  local host, port = text:match("^%[([%x:.]+)%]:(%d+)$")
  if not host then host, port = text:match("^([^:]+):(%d+)$") end
  port = port and math.tointeger(tonumber(port))
  if not host or not port or port > 65535 then return nil end
  return host, port
end

function ui.main(args, state)
  local listen = DEFAULT_LISTEN
  local i = 1
  while args[i] do
    local a = args[i]
    if a == "--listen" then
      i = i + 1
      listen = args[i]
      if not listen then fail(2, "--listen needs HOST:PORT (%s)", USAGE) end
    elseif a:match("^%-%-listen=") then
      listen = a:sub(10)
    else
      fail(2, "ui: unexpected '%s' (%s)", a, USAGE)
    end
    i = i + 1
  end
  local host, port = parse_listen(listen)
  if not host then fail(2, "--listen %s: expected HOST:PORT, such as %s or [::1]:0 (%s)", listen, DEFAULT_LISTEN, USAGE) end
  local token = os.getenv("ENGINE_UI_TOKEN")
  if token == "" then token = nil end
  if not loopback(host) and not token then
    fail(2, "--listen %s is not a loopback address: set ENGINE_UI_TOKEN (%d or more characters) so that " ..
      "every request must carry it, or listen on 127.0.0.1", listen, MIN_TOKEN)
  end
  if token and (#token < MIN_TOKEN or token:find("[^%w%-._~]")) then
    fail(2, "ENGINE_UI_TOKEN must be %d or more letters, digits or -._~ (such as the output of " ..
      "`openssl rand -hex 16`)", MIN_TOKEN)
  end
  local ok, err, code = run.open_journal(state, false)
  if not ok then fail(code == "usage" and 2 or 1, "%s", err) end
  local server
  server, err = httpd.start(host, tostring(port), function(req)
    local done, status, body, h = pcall(answer, req, token)
    if not done then
      require("engine.log").error("ui: %s %s: %s", req.method, req.path,
        require("engine.c.error").describe(status))
      status, body, h = page(500, pages.error(500, "Server error", "This page could not be made; the log says why."))
    end
    -- the journal may hold what an older engine stored unscrubbed: every
    -- page and document is scrubbed on the way out, as engine runs does
    server:respond(req.id, status, rules.redact(body), h)
  end)
  if not server then fail(1, "ui: %s", err) end
  local shown = host:find(":", 1, true) and ("[" .. host .. "]") or host
  io.stdout:write(string.format("http://%s:%d/\n", shown, server:port()))
  io.stdout:flush()
  -- until SIGINT or SIGTERM, which cancel this wait: a server stopped as
  -- asked has done what it should (exit 0, as a service manager expects)
  pcall(timer.sleep, 1e9)
  server:stop()
  os.exit(0)
end

return ui
