-- tests/lua/test_ui_pages.lua: the web UI's HTML (lua/ui_pages.lua): hostile
-- values stay text, nothing the CSP forbids, one timeline bar per step and
-- job, vendor links only as http(s), the one-file copy, size and speed.
local t = require "tests.lua.testing"
local pages = require "engine.ui_pages"

local EVIL = "<img src=x onerror=alert(1)>"
local EVIL_TEXT = "&lt;img src=x onerror=alert(1)&gt;"
local QUOTE = [["'><script>alert(2)</script>]]

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

local function count_plain(s, text)
  local n, at = 0, 1
  while true do
    local i, j = s:find(text, at, true)
    if not i then return n end
    n, at = n + 1, j + 1
  end
end

-- What the CSP forbids and what escaping must prevent, checked on every
-- tag: attribute values are stripped first (they may hold escaped text).
local function check_markup(html, what)
  t.match(html, "^<!doctype html>", what)
  t.match(html, '<meta charset="utf%-8">', what)
  t.match(html, '<meta name="viewport" content="width=device%-width, initial%-scale=1">', what)
  t.match(html, "<title>[^<]* — engine</title>", what)
  t.match(html, "<main>", what)
  t.ok(not html:find(EVIL, 1, true), what .. ": raw hostile tag")
  t.ok(not html:find("<script>alert", 1, true), what .. ": raw hostile script")
  for tag in html:gmatch("<[^>]*>") do
    local bare = tag:gsub('"[^"]*"', '""')
    t.ok(not bare:find("[%s/][Oo][Nn]%a+%s*="), what .. ": event handler in " .. tag)
    t.ok(not bare:lower():find("[%s/]style%s*="), what .. ": style attribute in " .. tag)
    t.ok(not bare:find("=[^\"]"), what .. ": unquoted attribute value in " .. tag)
    if tag:lower():find("^<script") then
      t.eq(tag, '<script src="/assets/ui.js" defer>', what .. ": script")
    end
  end
  t.ok(count(html:lower(), "<script") <= 1, what .. ": one script at most")
  for href in html:gmatch('href="([^"]*)"') do
    t.ok(href:find("^/") or href:find("^%?") or href:find("^https?://") or href == "data:,",
      what .. ": href " .. href)
  end
end

local function run_doc(o)
  o = o or {}
  return {
    id = 12, flow = o.flow or "nightly", arguments = o.arguments or {"--day", "2024-05-01"}, params = o.params,
    started_at = "2024-05-01T12:00:00.000Z", ended_at = "2024-05-01T12:03:00.000Z", start = 1000, finish = 1180,
    outcome = "failed", exit_code = 1, resumed_from = 9, pid = 4242, host = o.host or "etl-1", live = o.live,
    has_summary = true,
    steps = o.steps or {
      {name = "extract", occurrence = 1, status = "ok", started_at = "2024-05-01T12:00:00.000Z", start = 1000,
        finish = 1060},
      {name = "load", occurrence = 2, status = "failed", start = 1060, finish = 1170, error = "boom"},
      {name = "done before", occurrence = 1, status = "ok", origin = "recorded", start = 1000, finish = 1000},
    },
    jobs = o.jobs or {
      {provider = "census", vendor = "Census", kind = "sync", resource = "12", label = "orders",
        outcome = "completed", ok = true, final = true, link = "https://app.getcensus.com/syncs/12?a=1&b=2",
        counts = {records_processed = 1200, records_failed = 0}, start = 1001, finish = 1063,
        statuses = {{at = "2024-05-01T12:00:01Z", status = "queued"}, {at = "2024-05-01T12:01:03Z", status = "completed"}}},
      {provider = "fivetran", vendor = "Fivetran", kind = "sync", resource = "conn_1", outcome = "failed", ok = false,
        final = true, link = "javascript:alert(1)", error = "broken", start = 1070, finish = 1100},
      {provider = "dbt_cloud", vendor = "dbt Cloud", kind = "job", resource = "77", outcome = "running", ok = false,
        final = false, link = "data:text/html,x", start = 1100},
    },
    logs = o.logs or {{at = "2024-05-01T12:00:00Z", level = "INFO", text = "started"},
      {at = "2024-05-01T12:02:00Z", level = "ERROR", text = "load failed"}},
    logs_dropped = o.logs_dropped,
  }
end

local function hostile_doc()
  return run_doc({
    flow = EVIL, host = EVIL, arguments = {EVIL, QUOTE},
    steps = {{name = EVIL, occurrence = 1, status = EVIL, start = 1000, finish = 1010, error = EVIL, origin = EVIL}},
    jobs = {{provider = EVIL, vendor = EVIL, kind = EVIL, resource = EVIL, remote_run = EVIL, label = QUOTE,
      outcome = EVIL, ok = false, final = true, link = "https://x.example/" .. QUOTE, error = EVIL,
      counts = {[EVIL] = 3}, started_by = EVIL, start = 1001, finish = 1002,
      statuses = {{at = EVIL, status = EVIL}}}},
    logs = {{at = EVIL, level = EVIL, text = EVIL}, {at = "2024-05-01T12:00:00Z", level = "WARN", text = QUOTE}},
  })
end

local function run_item(id, o)
  o = o or {}
  return {id = id, flow = o.flow or "nightly", arguments = o.arguments or {}, params = o.params,
    started_at = "2024-05-01T12:00:00.000Z", start = 1000 + id * 100, duration = o.duration,
    outcome = o.outcome or "ok", exit_code = o.exit_code, host = o.host or "etl-1", pid = 1, resumed_from = nil,
    jobs = o.jobs or {ok = 3, failed = 1, running = 0, total = 4}}
end

t.test("escape covers the five characters", function()
  t.eq(pages.escape([[<a href="x" title='y'>&amp;</a>]]),
    "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;")
  t.eq(pages.escape(nil), "")
  t.eq(pages.encode("a b/c?d&é~_.-"), "a%20b%2Fc%3Fd%26%C3%A9~_.-")
end)

t.test("hostile values are text on the run page", function()
  for _, html in ipairs({pages.run(hostile_doc()), pages.run_file(hostile_doc())}) do
    check_markup(html, "run")
    t.ok(count_plain(html, EVIL_TEXT) >= 12, "the hostile text shows, escaped")
    t.ok(html:find("&quot;&#39;&gt;&lt;script&gt;alert(2)&lt;/script&gt;", 1, true), "quote breakout escaped")
  end
  local html = pages.run(hostile_doc())
  t.ok(html:find('href="/flows/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"', 1, true), "flow path encoded")
  t.ok(html:find('href="https://x.example/&quot;&#39;&gt;&lt;script&gt;', 1, true), "vendor link escaped")
  t.ok(html:find('data-outcome="' .. EVIL_TEXT .. '"', 1, true), "outcome attribute escaped")
end)

t.test("hostile values are text on the other pages", function()
  local items = {run_item(3, {flow = EVIL, host = EVIL, arguments = {EVIL}, outcome = "failed"}),
    run_item(2, {params = '{"x": "' .. QUOTE .. '"}', duration = 3})}
  local q = {flow = EVIL, outcome = QUOTE, host = EVIL, next_before = 2, flows = {EVIL, "a"}, hosts = {QUOTE},
    outcomes = {"ok", EVIL}}
  check_markup(pages.runs(items, q), "runs")
  check_markup(pages.flow(EVIL, items), "flow")
  local rows = {{run = 3, started_at = EVIL, start = 1, finish = 5, outcome = EVIL, ok = false,
    counts = {[EVIL] = 5, records_processed = 10}}}
  check_markup(pages.job(EVIL, EVIL, EVIL, rows), "job")
  check_markup(pages.error(404, EVIL, EVIL), "error")
  local html = pages.runs(items, q)
  t.ok(html:find('<option value="' .. EVIL_TEXT .. '" selected>', 1, true), "current flow selected")
  t.ok(html:find('href="/?before=2&amp;flow=%3Cimg', 1, true), "older runs keep the filters")
end)

t.test("pages load only our script and stylesheet", function()
  local html = pages.run(run_doc())
  check_markup(html, "run")
  t.eq(count(html, "<script"), 1)
  t.ok(html:find('<link rel="stylesheet" href="/assets/ui.css">', 1, true), "stylesheet")
  t.ok(not html:find("<style", 1, true), "no inline style element")
  t.ok(not html:find("data%-live"), "not live")
  t.ok(html:find("<title>Run 12 — engine</title>", 1, true), "title")
  t.ok(html:find('href="/api/runs/12"', 1, true), "JSON link")
  t.ok(html:find('href="/runs/12/summary.json"', 1, true), "summary link")
  t.ok(html:find('href="/runs/9"', 1, true), "resumes link")
  t.ok(html:find("load #2", 1, true), "occurrence")
  local doc = run_doc()
  doc.has_summary = false
  t.ok(not pages.run(doc):find("summary.json", 1, true), "no summary link without a summary")
end)

t.test("one timeline bar per step and per job with its outcome", function()
  local html = pages.run(run_doc())
  t.eq(count(html, '<g class="bar '), 6)
  t.eq(count(html, '<g class="bar ok" data%-outcome="ok">'), 1)
  t.eq(count(html, '<g class="bar fail" data%-outcome="failed">'), 2)
  t.eq(count(html, '<g class="bar neutral" data%-outcome="ok">'), 1, "recorded step")
  t.eq(count(html, '<g class="bar ok" data%-outcome="completed">'), 1)
  t.eq(count(html, '<g class="bar run" data%-outcome="running">'), 1)
  t.ok(html:find("<title>Census sync 12 (orders): completed in 1 m 2 s</title>", 1, true), "job bar title")
  t.ok(html:find("<title>step load #2: failed in 1 m 50 s</title>", 1, true), "step bar title")
  t.ok(html:find(">+1 m</text>", 1, true), "axis tick")
  -- a job whose vendor says completed but that was not ok is a failure
  local doc = run_doc({jobs = {{provider = "census", resource = "1", outcome = "completed", ok = false, final = true,
    start = 1000, finish = 1001}}, steps = {}})
  t.eq(count(pages.run(doc), '<g class="bar fail" data%-outcome="completed">'), 1)
end)

t.test("the jobs table", function()
  local html = pages.run(run_doc())
  t.ok(html:find("queued\u{A0}12:00:01 → completed\u{A0}12:01:03", 1, true), "status changes")
  t.ok(html:find("records_failed\u{A0}0, records_processed\u{A0}1,200", 1, true), "counts")
  t.ok(html:find('<a href="/jobs/census/12">12</a>', 1, true), "resource link")
  t.ok(html:find('<span class="badge fail">failed</span>', 1, true), "outcome badge")
  t.ok(html:find(">broken<", 1, true), "error")
end)

t.test("vendor links only for http and https", function()
  local html = pages.run(run_doc())
  t.eq(count(html, "open in "), 1)
  t.ok(html:find('<a href="https://app.getcensus.com/syncs/12?a=1&amp;b=2" rel="noopener noreferrer" '
    .. 'target="_blank">open in Census</a>', 1, true), "census link")
  t.ok(not html:find("javascript:", 1, true), "no javascript: URL")
  t.ok(not html:find("data:text", 1, true), "no data: URL")
end)

t.test("the one-file copy stands alone", function()
  local html = pages.run_file(run_doc({live = true}))
  check_markup(html, "run_file")
  t.ok(not html:find("/assets/", 1, true), "no /assets/")
  t.ok(not html:lower():find("<script", 1, true), "no script")
  t.ok(not html:find('href="/', 1, true), "no link into the UI")
  t.ok(not html:find("data-live", 1, true), "not live")
  t.ok(html:find("<style>", 1, true), "inline stylesheet")
  t.ok(html:find("prefers-color-scheme", 1, true), "the whole stylesheet")
  t.eq(count(html, '<g class="bar '), 6, "the timeline")
  t.ok(html:find("open in Census", 1, true), "vendor links stay")
  t.ok(html:find("load failed", 1, true), "the log")
end)

t.test("a live run refreshes", function()
  local html = pages.run(run_doc({live = true}))
  t.ok(html:find('<body data-live="3">', 1, true), "data-live")
  t.eq(count(html, "data%-live"), 1)
end)

t.test("log lines and dropped lines", function()
  local html = pages.run(run_doc({logs_dropped = 1500}))
  t.ok(html:find('<span class="error">12:02:00 ERROR load failed</span>', 1, true), "error line")
  t.ok(html:find("… 1,500 more lines were not kept", 1, true), "dropped")
  t.ok(not pages.run(run_doc()):find("were not kept", 1, true), "none dropped")
end)

t.test("empty lists", function()
  local html = pages.runs({}, {})
  check_markup(html, "runs")
  t.ok(html:find("No runs recorded yet.", 1, true), "no runs")
  t.ok(not html:find("Older runs", 1, true), "no pager")
  t.ok(pages.runs({}, {outcome = "failed"}):find("No runs match these filters.", 1, true), "filtered")
  local doc = run_doc({steps = {}, jobs = {}, logs = {}})
  html = pages.run(doc)
  check_markup(html, "run")
  t.ok(html:find("No steps or jobs.", 1, true) and html:find("No jobs.", 1, true)
    and html:find("No steps.", 1, true) and html:find("No log lines.", 1, true), "empty sections")
  check_markup(pages.flow("nightly", {}), "flow")
  check_markup(pages.job("census", "Census", "12", {}), "job")
  -- a run the router knows little about
  check_markup(pages.run({id = 1, flow = "f", outcome = "crashed"}), "bare run")
end)

t.test("the runs list", function()
  local items = {run_item(3, {outcome = "running", params = '{ "day":  "2024-05-01" }'}),
    run_item(2, {duration = 72, exit_code = 0, arguments = {"a", "b"}}),
    run_item(1, {duration = 0.4, outcome = "failed", exit_code = 1, jobs = {ok = 0, failed = 0, running = 0, total = 0}})}
  local html = pages.runs(items, {flows = {"nightly"}, hosts = {"etl-1"}, next_before = 1})
  check_markup(html, "runs")
  t.ok(html:find("<title>Runs — engine</title>", 1, true), "title")
  t.ok(html:find('<a href="/runs/2">2</a>', 1, true), "run link")
  t.ok(html:find('<a href="/flows/nightly">nightly</a>', 1, true), "flow link")
  t.ok(html:find('{ "day": "2024-05-01" }', 1, true) or html:find("{ &quot;day&quot;: &quot;2024-05-01&quot; }", 1, true),
    "params compact")
  t.ok(html:find(">a b</code>", 1, true), "arguments")
  t.ok(html:find(">1 m 12 s<", 1, true) and html:find(">0.4 s<", 1, true) and html:find(">running<", 1, true),
    "durations")
  t.ok(html:find('<span class="badge fail">failed</span>', 1, true), "badge")
  t.ok(html:find("<title>3 ok, 1 failed</title>", 1, true), "jobs bar")
  t.ok(html:find('<a href="/?before=1">Older runs</a>', 1, true), "pager")
  t.ok(html:find('<form class="filters" method="get" action="/">', 1, true), "filter form")
  t.ok(html:find('<select name="outcome">', 1, true), "outcome filter")
end)

t.test("the flow and job pages", function()
  local items = {run_item(3, {duration = 182, outcome = "failed"}), run_item(2, {duration = 60}),
    run_item(1, {duration = 61})}
  local html = pages.flow("nightly", items)
  check_markup(html, "flow")
  t.ok(html:find("<title>run 3: failed, 3 m 2 s</title>", 1, true), "bar title")
  t.eq(count(html, '<a href="/runs/%d"><g class="bar'), 3)
  t.ok(html:find('/runs/1"><g', 1, true) < html:find('/runs/3"><g', 1, true), "oldest left")
  local rows = {{run = 3, started_at = "2024-05-01T12:00:00Z", start = 1, finish = 63, outcome = "completed", ok = true,
    counts = {records_processed = 1000, records_failed = 2}},
    {run = 2, start = 1, finish = 2, outcome = "failed", ok = false, counts = {records_processed = 5}}}
  html = pages.job("census", "Census", "12", rows)
  check_markup(html, "job")
  t.ok(html:find("<title>Census 12 — engine</title>", 1, true), "title")
  t.ok(html:find("<title>run 3: records_processed 1,000</title>", 1, true), "count title")
  t.ok(html:find("<title>run 3: records_failed 2</title>", 1, true), "count title")
  t.ok(html:find(">records_failed</text>", 1, true), "legend")
  local html404 = pages.error(404, "Not found", "There is no run 99.")
  t.ok(html404:find("<h1>404 Not found</h1>", 1, true) and html404:find("There is no run 99.", 1, true), "error")
end)

t.test("assets", function()
  t.eq(pages.assets["/assets/ui.css"].type, "text/css; charset=utf-8")
  t.eq(pages.assets["/assets/ui.js"].type, "text/javascript; charset=utf-8")
  t.match(pages.assets["/assets/ui.css"].body, "prefers%-color%-scheme")
  t.match(pages.assets["/assets/ui.js"].body, "DOMParser")
end)

t.test("10,000 jobs render in well under a second", function()
  local jobs, steps = {}, {}
  for i = 1, 10000 do
    jobs[i] = {provider = "census", vendor = "Census", kind = "sync", resource = tostring(i), label = "model_" .. i,
      remote_run = 5000 + i, outcome = i % 50 == 0 and "failed" or "completed", ok = i % 50 ~= 0, final = true,
      link = "https://app.getcensus.com/syncs/" .. i, counts = {records_processed = i * 10, records_failed = i % 3},
      start = 1000 + i * 0.01, finish = 1000 + i * 0.01 + 30, started_at = "2024-05-01T12:00:00Z",
      statuses = {{at = "2024-05-01T12:00:01Z", status = "queued"}, {at = "2024-05-01T12:00:03Z", status = "working"},
        {at = "2024-05-01T12:00:31Z", status = "completed"}}}
  end
  for i = 1, 200 do steps[i] = {name = "step " .. i, occurrence = 1, status = "ok", start = 1000 + i, finish = 1001 + i} end
  local logs = {}
  for i = 1, 2000 do logs[i] = {at = "2024-05-01T12:00:00Z", level = "INFO", text = "line " .. i} end
  local doc = run_doc({jobs = jobs, steps = steps, logs = logs})
  collectgarbage() -- the time is the page's, not the garbage of building its data
  local t0 = os.clock()
  local html = pages.run(doc)
  local took = os.clock() - t0
  t.ok(took < 1, string.format("took %.2f s", took))
  if os.getenv("UI_PAGES_TIMING") then print(string.format("rendered in %.3f s", took)) end
  -- the timeline: the first thousand rows by start (every step, then
  -- jobs), and a line saying so; the table: every job
  t.eq(count(html, '<g class="bar '), 1000)
  t.eq(count(html, '<g class="bar fail" data%-outcome="failed">'), 16)
  t.ok(html:find("The timeline shows the first 1,000 of 10,200 steps and jobs, by start; the tables below list "
    .. "them all.", 1, true), "the timeline says it is cut")
  t.eq(count(html, '<td class="statuses opt">'), 10000)
  t.ok(html:find("queued\u{A0}12:00:01 → working\u{A0}12:00:03 → completed\u{A0}12:00:31", 1, true), "status changes")
end)

t.test("status changes given as Unix seconds show as UTC clock times", function()
  local doc = run_doc({jobs = {{provider = "census", resource = "1", outcome = "completed", ok = true, final = true,
    start = 1000, finish = 1001, statuses = {{at = 1714564801.5, status = "queued"}, {at = 0 / 0, status = "odd"},
      {at = 1714651199, status = "completed"}}}}, steps = {}})
  t.ok(pages.run(doc):find("queued\u{A0}12:00:01 → odd → completed\u{A0}11:59:59", 1, true), "clock times")
end)

t.run()
