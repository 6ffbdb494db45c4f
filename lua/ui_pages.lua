-- lua/ui_pages.lua: the web UI's pages as HTML, from plain tables the
-- router hands in: the runs list, one run (timeline, jobs, steps, log), a
-- flow's recent runs, one job resource across runs, an error page, and the
-- one-file copy of a run (`engine runs ID --html FILE`). Pure rendering:
-- no I/O, no journal.
-- What a flow, a vendor or the journal said passes esc() once, in text and
-- in attribute values (always double-quoted). An href is one of our own
-- paths with each segment percent-encoded, or a vendor's http(s) URL. The
-- pages are served under a CSP without inline script, handlers or style:
-- geometry is SVG attributes, colour is classes in /assets/ui.css.
local assets = require "engine.ui_assets"

local pages = {}

local concat, format, floor, max, min = table.concat, string.format, math.floor, math.max, math.min
local find, gsub = string.find, string.gsub

-- Values -------------------------------------------------------------------
-- A run page may have ten thousand jobs. What costs there is calls into C
-- (a pattern scan costs per byte, a number turned into text costs like a
-- printf), so repeated strings and small numbers come from memos.

local ENTITIES = {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;"}

-- A value the router may leave out: nil, or a JSON null (a userdata).
local function given(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean"
end

-- Whole numbers 0..4095 as text, made once each: pixels, seconds, counts.
local SMALL = setmetatable({}, {__index = function(t, i)
  local text = tostring(i)
  if math.type(i) == "integer" and i >= 0 and i < 4096 then t[i] = text end
  return text
end})

-- Escaped values, dropped wholesale when many (the memo never grows past
-- a page's worth); the lookup comes first, before any type test. Long
-- strings are scanned with five plain finds (memchr) rather than one class
-- pattern, which costs per byte.
local memo, memo_n = {}, 0
local function esc(v)
  local e = memo[v]
  if e then return e end
  local t = type(v)
  if t == "string" then
    local bad
    if #v > 12 then
      bad = find(v, "&", 1, true) or find(v, "<", 1, true) or find(v, ">", 1, true) or find(v, '"', 1, true)
        or find(v, "'", 1, true)
    else
      bad = find(v, "[&<>\"']")
    end
    e = bad and gsub(v, "[&<>\"']", ENTITIES) or v
  elseif t == "number" then
    if math.type(v) ~= "integer" then return tostring(v) end -- (2.0 and 2 are one key)
    e = tostring(v)
  elseif t == "boolean" then
    e = tostring(v)
  else
    return ""
  end
  if memo_n >= 50000 then memo, memo_n = {}, 0 end
  memo[v], memo_n = e, memo_n + 1
  return e
end
pages.escape = esc

-- A path segment or query value: everything but the unreserved characters.
local function seg(v)
  v = tostring(v)
  if not find(v, "[^A-Za-z0-9%-%._~]") then return v end
  return (gsub(v, "[^A-Za-z0-9%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end
pages.encode = seg

-- A vendor's page, only as http(s): never javascript: or data:.
local function vendor_url(u)
  if type(u) == "string" and find(u, "^https?://") then return u end
end

-- 1234567 as "1,234,567".
local THOUSANDS = setmetatable({}, {__index = function(t, i)
  t[i] = format("%03d", i)
  return t[i]
end})
local function grouped(i)
  if i < 1000 then return SMALL[i] end
  return grouped(i // 1000) .. "," .. THOUSANDS[i % 1000]
end
local function num(v)
  local i = math.tointeger(v)
  if not i then return type(v) == "number" and format("%.6g", v) or esc(v) end
  if i < 0 then return i == math.mininteger and tostring(i) or "-" .. grouped(-i) end
  return grouped(i)
end

-- At most n bytes, not cutting a UTF-8 sequence; the whole text goes in a title.
local function clip(s, n)
  if #s <= n then return s end
  return (s:sub(1, n):gsub("[\xC0-\xFF][\x80-\xBF]*$", "")) .. "…"
end

-- Durations and times ------------------------------------------------------

local function two(a, ua, b, ub)
  if b > 0 then return SMALL[a] .. ua .. " " .. SMALL[b] .. ub end
  return SMALL[a] .. ua
end

-- "0.4 s", "12 s", "1 m 12 s", "2 h 5 m": the two largest units.
local function dur(s)
  if type(s) ~= "number" or s ~= s then return nil end
  if s < 10 then
    local tenths = floor(max(s, 0) * 10 + 0.5)
    if tenths % 10 == 0 then return SMALL[tenths // 10] .. " s" end
    return SMALL[tenths // 10] .. "." .. SMALL[tenths % 10] .. " s"
  end
  s = floor(s + 0.5)
  if s < 60 then return SMALL[s] .. " s" end
  if s < 3600 then return two(s // 60, " m", s % 60, " s") end
  if s < 86400 then return two(s // 3600, " h", s % 3600 // 60, " m") end
  return two(s // 86400, " d", s % 86400 // 3600, " h")
end

-- "2024-05-01T12:00:01.234Z" as "2024-05-01 12:00:01" (the page says UTC).
local function short_time(iso)
  local d, t = tostring(iso):match("^(%d%d%d%d%-%d%d%-%d%d)T(%d%d:%d%d:%d%d)")
  return d and (d .. " " .. t) or tostring(iso)
end

-- "12:00:01" of a time as Unix seconds (UTC), made once per second of the
-- day: a run's ten thousand jobs have thirty thousand status changes.
local TWO = {}
for i = 0, 59 do TWO[i] = format("%02d", i) end
local CLOCK = setmetatable({}, {__index = function(t, s)
  local text = TWO[s // 3600] .. ":" .. TWO[s // 60 % 60] .. ":" .. TWO[s % 60]
  t[s] = text
  return text
end})

-- The clock time of ISO text, or of Unix seconds (nil for a number that is
-- not a time).
local function clock(iso)
  if type(iso) == "number" then
    if iso == iso and iso > -1e15 and iso < 1e15 then return CLOCK[iso // 1 % 86400] end
    return nil
  end
  iso = tostring(iso)
  if #iso >= 19 and iso:byte(11) == 84 then return iso:sub(12, 19) end -- "T": the usual case
  return iso:match("T(%d%d:%d%d:%d%d)") or iso
end

local function time_el(iso)
  if not given(iso) then return '<span class="muted">—</span>' end
  return '<time datetime="' .. esc(iso) .. '">' .. esc(short_time(iso)) .. "</time>"
end

local function plural(n, word)
  return n .. " " .. word .. (n == 1 and "" or "s")
end

local function span(a, b)
  if type(a) == "number" and type(b) == "number" then return b - a end
end

-- Outcomes -----------------------------------------------------------------

-- Every outcome is one of four classes, the only values a class attribute
-- gets from them: ok, fail, run, neutral.
local WORDS = {}
for w in ("ok completed complete success succeeded successful passed done"):gmatch("%S+") do WORDS[w] = "ok" end
for w in ("failed failure error errored cancelled canceled cancel timeout timed_out crashed interrupted aborted lost")
    :gmatch("%S+") do WORDS[w] = "fail" end
for w in ("running working queued pending scheduled starting started triggering triggered syncing in_progress waiting")
    :gmatch("%S+") do WORDS[w] = "run" end
for w in ("skipped recorded exited paused"):gmatch("%S+") do WORDS[w] = "neutral" end

local function word_class(w)
  return given(w) and WORDS[tostring(w):lower()] or nil
end

local function run_class(outcome) return word_class(outcome) or "neutral" end

-- A recorded row did its work in an earlier run: neutral here.
local function step_class(s)
  if s.origin == "recorded" then return "neutral" end
  return word_class(s.status) or (s.finish and "fail" or "run")
end

-- A job's ok and final say more than its vendor's word: a vendor's "completed"
-- with rejected records is not ok.
local function job_class(j)
  if j.origin == "recorded" then return "neutral" end
  if j.ok == true then return "ok" end
  if j.final == true then return "fail" end
  if j.final == false then return "run" end
  local c = word_class(j.outcome)
  if c == "ok" and j.ok == false then return "fail" end
  return c or (j.finish and "fail" or "run")
end

local function badge(text, class)
  return '<span class="badge ' .. class .. '">' .. esc(text) .. "</span>"
end

local function or_dash(html)
  if html == nil or html == "" then return '<span class="muted">—</span>' end
  return html
end

-- Links: in the one-file copy of a run, ids and names are text -------------

local function link(ctx, path, text)
  if ctx.file then return text end
  return '<a href="' .. esc(path) .. '">' .. text .. "</a>"
end

local function run_ref(ctx, id, text)
  return link(ctx, "/runs/" .. seg(id), text or ("run " .. esc(id)))
end

local function flow_ref(ctx, name)
  return link(ctx, "/flows/" .. seg(name), esc(name))
end

-- How a row came by its status when the run did not do the work itself.
local function origin_note(e)
  if e.origin == "recorded" then return "recorded" end
  if e.origin == "adopted" then
    return given(e.started_by) and ("adopted from run " .. tostring(e.started_by)) or "adopted"
  end
end

-- The page -----------------------------------------------------------------

-- body: the list of strings a page's content was written into; the head
-- goes in at [0] and all of it is concatenated once (a run page of ten
-- thousand jobs is six megabytes).
local function page(title, body, opts)
  opts = opts or {}
  local b = {'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
    '<meta name="color-scheme" content="light dark">\n<link rel="icon" href="data:,">\n',
    "<title>", esc(title), " — engine</title>\n"}
  if opts.file then
    b[#b + 1] = "<style>\n" .. assets.css .. "</style>\n</head>\n<body>\n"
    b[#b + 1] = '<header class="top"><span class="home">engine</span></header>\n'
  else
    b[#b + 1] = '<link rel="stylesheet" href="/assets/ui.css">\n<script src="/assets/ui.js" defer></script>\n'
    b[#b + 1] = "</head>\n<body" .. (opts.live and ' data-live="3"' or "") .. ">\n"
    b[#b + 1] = '<header class="top"><a class="home" href="/">engine</a><nav><a href="/">Runs</a></nav></header>\n'
  end
  b[#b + 1] = "<main>\n"
  body[0] = concat(b)
  body[#body + 1] = '\n<footer>Times are UTC.</footer>\n</main>\n</body>\n</html>\n'
  return concat(body, "", 0)
end

local function scroll_table(head, rows)
  return '<div class="scroll"><table>\n<thead><tr>' .. head .. "</tr></thead>\n<tbody>\n" .. concat(rows)
    .. "</tbody>\n</table></div>\n"
end

-- Runs ---------------------------------------------------------------------

-- Parameters: the params JSON on one line, else the arguments, else a dash.
local function parameters(r)
  local text
  if type(r.params) == "string" and r.params:find("%S") then
    text = r.params:gsub("%s+", " ")
  elseif type(r.arguments) == "table" and #r.arguments > 0 then
    local parts = {}
    for i, a in ipairs(r.arguments) do parts[i] = tostring(a) end
    text = concat(parts, " ")
  end
  if not text then return or_dash() end
  return '<code title="' .. esc(text) .. '">' .. esc(clip(text, 60)) .. "</code>"
end

-- A run's jobs as one small stacked bar: ok, failed, running, the rest.
local function jobs_bar(j)
  if type(j) ~= "table" then return or_dash() end
  local function n(v) return math.tointeger(v) or 0 end
  local ok, failed, running = n(j.ok), n(j.failed), n(j.running)
  local total = max(n(j.total), ok + failed + running)
  if total == 0 then return or_dash() end
  local parts, words, x = {}, {}, 0
  for _, s in ipairs({{ok, "ok", "ok"}, {failed, "fail", "failed"}, {running, "run", "running"},
      {total - ok - failed - running, "neutral", "other"}}) do
    if s[1] > 0 then
      local w = 100 * s[1] / total
      parts[#parts + 1] = format('<rect class="%s" x="%.1f" y="0" width="%.1f" height="10"/>', s[2], x, w)
      words[#words + 1] = s[1] .. " " .. s[3]
      x = x + w
    end
  end
  local title = concat(words, ", ")
  return '<svg class="jobs" width="100" height="10" viewBox="0 0 100 10" role="img" aria-label="' .. title
    .. '"><title>' .. title .. "</title>" .. concat(parts) .. "</svg> " .. total
end

local function runs_rows(items, ctx)
  local rows = {}
  for i, r in ipairs(items) do
    rows[i] = concat({'<tr><td class="num">', run_ref(ctx, r.id, esc(r.id)), "</td><td>", flow_ref(ctx, r.flow),
      "</td><td>", parameters(r), "</td><td>", time_el(r.started_at), '</td><td class="num">',
      esc(dur(r.duration) or (r.outcome == "running" and "running") or "—"), "</td><td>",
      badge(r.outcome, run_class(r.outcome)), '</td><td class="num">', given(r.exit_code) and esc(r.exit_code) or or_dash(),
      "</td><td>", esc(r.host), "</td><td>", jobs_bar(r.jobs), "</td></tr>\n"})
  end
  return scroll_table('<th class="num">Run</th><th>Flow</th><th>Parameters</th><th>Started</th>'
    .. '<th class="num">Duration</th><th>Outcome</th><th class="num">Exit</th><th>Host</th><th>Jobs</th>', rows)
end

local OUTCOMES = {"ok", "failed", "interrupted", "exited", "running", "crashed"}

local function select_list(name, label, values, current)
  local b = {'<label>', label, ' <select name="', name, '"><option value="">any</option>'}
  local seen = false
  for _, v in ipairs(values or {}) do
    local on = v == current
    seen = seen or on
    b[#b + 1] = '<option value="' .. esc(v) .. '"' .. (on and " selected" or "") .. ">" .. esc(v) .. "</option>"
  end
  -- a value from the address the list does not hold stays chosen
  if given(current) and current ~= "" and not seen then
    b[#b + 1] = '<option value="' .. esc(current) .. '" selected>' .. esc(current) .. "</option>"
  end
  b[#b + 1] = "</select></label>"
  return concat(b)
end

function pages.runs(items, q)
  items, q = items or {}, q or {}
  local filtered = (given(q.flow) and q.flow ~= "") or (given(q.outcome) and q.outcome ~= "")
    or (given(q.host) and q.host ~= "")
  local b = {"<h1>Runs</h1>\n", '<form class="filters" method="get" action="/">',
    select_list("flow", "Flow", q.flows, q.flow), select_list("outcome", "Outcome", q.outcomes or OUTCOMES, q.outcome),
    select_list("host", "Host", q.hosts, q.host), '<button type="submit">Filter</button>',
    filtered and ' <a href="/">Clear</a>' or "", "</form>\n"}
  if #items == 0 then
    local why = filtered and "No runs match these filters." or given(q.before) and "No older runs."
      or "No runs recorded yet."
    b[#b + 1] = '<p class="empty">' .. why .. "</p>\n"
  else
    b[#b + 1] = runs_rows(items, {})
  end
  if given(q.next_before) then
    local query = {"before=" .. seg(q.next_before)}
    for _, k in ipairs({"flow", "outcome", "host"}) do
      if given(q[k]) and q[k] ~= "" then query[#query + 1] = k .. "=" .. seg(q[k]) end
    end
    b[#b + 1] = '<p class="pager"><a href="' .. esc("/?" .. concat(query, "&")) .. '">Older runs</a></p>\n'
  end
  return page("Runs", b)
end

-- Timeline -----------------------------------------------------------------

local ROW, BAR_H, LABEL_W, PLOT_W, AXIS_H = 12, 9, 260, 720, 20
local STEPS = {0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
  43200, 86400, 172800, 604800}

-- A tick step that cuts the span into at most `most` parts.
local function tick_step(spanned, most)
  for _, s in ipairs(STEPS) do
    if spanned / s <= most then return s end
  end
  return spanned / most
end

local function by_start(list)
  local last = -math.huge
  for _, e in ipairs(list) do -- usually in order already
    local s = type(e.start) == "number" and e.start or math.huge
    if s < last then last = nil break end
    last = s
  end
  if last then return list end
  local order = {}
  for i, e in ipairs(list) do order[i] = {e = e, i = i, t = type(e.start) == "number" and e.start or math.huge} end
  table.sort(order, function(a, b) if a.t ~= b.t then return a.t < b.t end return a.i < b.i end)
  for i, o in ipairs(order) do order[i] = o.e end
  return order
end

-- Names as HTML, from escaped parts (the parts recur; a whole name would
-- be scanned byte by byte again).
local function step_name(s)
  local occ = math.tointeger(s.occurrence)
  return "step " .. esc(s.name) .. ((occ and occ > 1) and (" #" .. occ) or "")
end

local function job_name(j)
  local vendor, kind, resource, label = esc(j.vendor), esc(j.kind), esc(j.resource), esc(j.label)
  return (vendor ~= "" and (vendor .. " ") or "") .. (kind ~= "" and kind or "job") .. " " .. resource
    .. ((label ~= "" and label ~= resource) and (" (" .. label .. ")") or "")
end

-- A label for the left column: a long name cut (at 44 bytes of text).
local UNESCAPE = {}
for c, e in pairs(ENTITIES) do UNESCAPE[e] = c end
local function short_label(html)
  if #html <= 44 then return html end
  local text = gsub(html, "&#?%w+;", UNESCAPE)
  if #text <= 44 then return html end
  return esc(clip(text, 44))
end

-- The timeline: one row per step, then one per job, each in start order;
-- an unfinished bar runs to the run's end, or to now while it is live.
-- Ten thousand rows: one flat buffer, whole-pixel coordinates (formatting
-- floats costs more than the rest of a row).
local TIMELINE_ROWS = 1000 -- (12,000 px of bars: past it no one reads one row)

local function timeline(doc, out)
  local steps, jobs = by_start(doc.steps or {}), by_start(doc.jobs or {})
  local count = #steps + #jobs
  if count == 0 then
    out[#out + 1] = '<p class="empty">No steps or jobs.</p>\n'
    return
  end
  local first, last = math.huge, -math.huge
  for _, list in ipairs({steps, jobs}) do
    for i = 1, #list do
      local e = list[i]
      local s, f = e.start, e.finish
      if type(s) == "number" then
        if s < first then first = s end
        if s > last then last = s end
      end
      if type(f) == "number" and f > last then last = f end
    end
  end
  -- the axis spans every step and job; the rows are the first ones
  local shown_steps, shown_jobs = #steps, #jobs
  if count > TIMELINE_ROWS then
    shown_steps = min(#steps, TIMELINE_ROWS)
    shown_jobs = TIMELINE_ROWS - shown_steps
    count = TIMELINE_ROWS
  end
  local t0 = type(doc.start) == "number" and doc.start or first
  if t0 == math.huge then t0 = 0 end
  local t1 = type(doc.finish) == "number" and doc.finish or max(last, t0)
  if doc.live and not doc.finish then t1 = max(t1, type(doc.now) == "number" and doc.now or os.time()) end
  local spanned = max(t1 - t0, 1)
  local scale = PLOT_W / spanned
  local width, height = LABEL_W + PLOT_W + 32, AXIS_H + count * ROW + 4
  local function x_of(t) -- (comparisons, not math.min and max: this runs twice a row)
    t = t - t0
    if t < 0 then t = 0 elseif t > spanned then t = spanned end
    return floor(LABEL_W + t * scale + 0.5)
  end

  out[#out + 1] = format('<div class="scroll"><svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="%d" '
    .. 'height="%d" viewBox="0 0 %d %d" role="img" aria-label="Timeline of %s and %s">\n<g class="axis">',
    width, height, width, height, plural(#steps, "step"), plural(#jobs, "job"))
  local step = tick_step(spanned, 8)
  local k = 0
  while k * step <= spanned + 1e-9 do
    local x = x_of(t0 + k * step)
    out[#out + 1] = format('<line class="tick" x1="%d" y1="%d" x2="%d" y2="%d"/><text x="%d" y="12" '
      .. 'text-anchor="%s">+%s</text>', x, AXIS_H - 4, x, height, x, k == 0 and "start" or "middle", dur(k * step))
    k = k + 1
  end
  out[#out + 1] = "</g>\n"
  local n, labels, m = #out, {'<g class="labels" text-anchor="end">'}, 1
  local y = AXIS_H
  local text_at, bar_end = '<text x="' .. (LABEL_W - 6) .. '" dy="9" y="', '" height="' .. BAR_H .. '"/><title>'
  local opening = {} -- class -> outcome -> '<g class=... data-outcome=...><rect x="'
  local function row(e, name, outcome, class)
    local s = type(e.start) == "number" and e.start or t0
    local done = type(e.finish) == "number"
    local f = done and e.finish or t1
    local x, ys = x_of(s), SMALL[y]
    local said = esc(outcome)
    if said == "" then said = "unknown" end
    local how = done and (" in " .. dur(f - s)) or (", " .. dur(f - s) .. " so far")
    if e.origin then
      local note = origin_note(e)
      if note then how = how .. " (" .. esc(note) .. ")" end
    end
    labels[m + 1], labels[m + 2], labels[m + 3], labels[m + 4] = text_at, ys, '">', short_label(name)
    labels[m + 5] = "</text>"
    m = m + 5
    local by_class = opening[class] or {}
    opening[class] = by_class
    local open = by_class[said]
    if not open then
      open = '<g class="bar ' .. class .. '" data-outcome="' .. said .. '"><rect x="'
      by_class[said] = open
    end
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = open, SMALL[x], '" y="', ys
    local w = x_of(f) - x
    out[n + 5], out[n + 6], out[n + 7], out[n + 8] = '" width="', SMALL[w > 2 and w or 2], bar_end, name
    out[n + 9], out[n + 10], out[n + 11], out[n + 12] = ": ", said, how, "</title></g>\n"
    n = n + 12
    y = y + ROW
  end
  for i = 1, shown_steps do
    local e = steps[i]
    row(e, step_name(e), e.status, step_class(e))
  end
  for i = 1, shown_jobs do
    local e = jobs[i]
    row(e, job_name(e), e.outcome, job_class(e))
  end
  labels[m + 1] = "</g>\n</svg></div>\n"
  table.move(labels, 1, m + 1, n + 1, out)
  if shown_steps < #steps or shown_jobs < #jobs then
    local what = #steps == 0 and "jobs" or #jobs == 0 and "steps" or "steps and jobs"
    out[#out + 1] = format('<p class="muted">The timeline shows the first %s of %s %s, by start; '
      .. "the tables below list them all.</p>\n", num(TIMELINE_ROWS), num(#steps + #jobs), what)
  end
end

-- One run ------------------------------------------------------------------

-- "name value, name value" (a no-break space in each pair), names sorted; jobs of one provider share
-- their count names, so the last sorted list is tried first.
local last_names, last_set = {}, {}
local pieces = {} -- (one buffer for every row's text, joined once a row)
local NAMED = setmetatable({}, {__index = function(t, k) -- a count's name, escaped, and its no-break space
  local text = esc(k) .. "\u{A0}"
  if type(k) == "string" then t[k] = text end
  return text
end})
local function counts_text(counts)
  if type(counts) ~= "table" then return "" end
  local names, n = last_names, 0
  for k in next, counts do
    n = n + 1
    if not last_set[k] then names = nil break end
  end
  if not names or n ~= #names then
    names, last_set = {}, {}
    for k in next, counts do
      names[#names + 1] = k
      last_set[k] = true
    end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    last_names = names
  end
  local m = 0
  for i = 1, #names do
    local k = names[i]
    local v = counts[k]
    pieces[m + 1], pieces[m + 2] = i > 1 and ", " or "", NAMED[k]
    pieces[m + 3] = math.tointeger(v) and num(v) or esc(v)
    m = m + 3
  end
  return concat(pieces, "", 1, m)
end

-- "queued 12:00:01 → working 12:00:03 → completed 12:01:02"
local function statuses_text(list)
  if type(list) ~= "table" then return "" end
  local m = 0
  for i = 1, #list do
    local s = list[i]
    local at = s.at -- Unix seconds (a clock is digits: nothing to escape), or ISO text
    if type(at) == "number" then
      at = clock(at)
    elseif type(at) == "string" and at ~= "" then
      at = esc(clock(at))
    else
      at = nil
    end
    -- (a status and its time stay on one line)
    pieces[m + 1], pieces[m + 2] = i > 1 and " → " or "", esc(s.status)
    pieces[m + 3], pieces[m + 4] = at and "\u{A0}" or "", at or ""
    m = m + 4
  end
  return concat(pieces, "", 1, m)
end

local function jobs_table(jobs, ctx, b)
  if #jobs == 0 then
    b[#b + 1] = '<p class="empty">No jobs.</p>\n'
    return
  end
  local n = #b + 1
  -- (the columns of class opt give way on a phone)
  b[n] = '<div class="scroll"><table>\n<thead><tr><th>Job</th><th>Resource</th><th class="opt">Label</th>'
    .. '<th class="opt">Remote run</th><th>Outcome</th><th>Link</th><th class="opt">Status changes</th><th>Counts</th>'
    .. "</tr></thead>\n<tbody>\n"
  local paths = {} -- a provider's '<a href="/jobs/<provider>/', made once
  local firsts = {} -- vendor -> kind -> '<tr><td>Vendor kind</td><td>'
  local badges = {} -- class -> outcome -> badge
  for i = 1, #jobs do
    local j = jobs[i]
    local who = esc(j.vendor)
    if who == "" then who = esc(j.provider) end
    local by_vendor = firsts[who] or {}
    firsts[who] = by_vendor
    local kind = j.kind or ""
    local first = by_vendor[kind]
    if not first then
      first = "<tr><td>" .. who .. (esc(kind) ~= "" and (" " .. esc(kind)) or "") .. "</td><td>"
      by_vendor[kind] = first
    end
    local resource = esc(j.resource)
    if resource ~= "" and esc(j.provider) ~= "" and not ctx.file then
      local path = paths[j.provider]
      if not path then
        path = '<a href="/jobs/' .. seg(j.provider) .. "/"
        paths[j.provider] = path
      end
      resource = path .. seg(j.resource) .. '">' .. resource .. "</a>"
    end
    local url, open = vendor_url(j.link), ""
    if url then open = '<a href="' .. esc(url) .. '" rel="noopener noreferrer" target="_blank">open in ' .. who .. "</a>" end
    local class, outcome = job_class(j), esc(j.outcome)
    local by_class = badges[class] or {}
    badges[class] = by_class
    local shown = by_class[outcome]
    if not shown then
      shown = '<span class="badge ' .. class .. '">' .. (outcome ~= "" and outcome or "unknown") .. "</span>"
      by_class[outcome] = shown
    end
    if j.origin then
      local note = origin_note(j)
      if note then shown = shown .. ' <span class="muted">' .. esc(note) .. "</span>" end
    end
    b[n + 1], b[n + 2], b[n + 3], b[n + 4] = first, resource, '</td><td class="opt">', esc(j.label)
    b[n + 5], b[n + 6], b[n + 7], b[n + 8] = '</td><td class="opt">', esc(j.remote_run), "</td><td>", shown
    b[n + 9], b[n + 10], b[n + 11], b[n + 12] = "</td><td>", open, '</td><td class="statuses opt">',
      statuses_text(j.statuses)
    b[n + 13], b[n + 14], b[n + 15] = '</td><td class="counts">', counts_text(j.counts), "</td></tr>\n"
    n = n + 15
    -- an error is a row of its own under the job's, as wide as the table
    -- (a column of it made the table wider than a screen)
    local err = esc(j.error)
    if type(j.rejected) == "table" then -- the records the run rejected, with the vendor's reasons
      for _, r in ipairs(j.rejected) do
        err = err .. (err ~= "" and "<br>" or "") .. "rejected " .. esc(r.identifier or "(no identifier)") .. ": " ..
          esc(r.message or r.status)
      end
    end
    if err ~= "" then
      b[n + 1], b[n + 2], b[n + 3] = '<tr class="error-row"><td colspan="7" class="wrap">', err, "</td></tr>\n"
      n = n + 3
    end
  end
  b[n + 1] = "</tbody>\n</table></div>\n"
end

local function steps_table(steps)
  if #steps == 0 then return '<p class="empty">No steps.</p>\n' end
  local rows = {}
  for i, s in ipairs(steps) do
    local occ = math.tointeger(s.occurrence)
    rows[i] = concat({"<tr><td>", esc(s.name), (occ and occ > 1) and (" #" .. occ) or "", "</td><td>",
      badge(given(s.status) and s.status or "unknown", step_class(s)), "</td><td>", time_el(s.started_at),
      '</td><td class="num">', esc(dur(span(s.start, s.finish)) or ""), "</td><td>", esc(origin_note(s)),
      '</td><td class="wrap">', esc(s.error), "</td></tr>\n"})
  end
  return scroll_table('<th>Step</th><th>Status</th><th>Started</th><th class="num">Duration</th><th>Origin</th>'
    .. "<th>Error</th>", rows)
end

local LEVELS = {INFO = "info", WARN = "warn", ERROR = "error", DEBUG = "debug"}

local function log_lines(logs, dropped)
  local b = {}
  if #logs == 0 then
    b[1] = '<p class="empty">No log lines.</p>\n'
  else
    local lines = {}
    for i, l in ipairs(logs) do
      local level = given(l.level) and tostring(l.level) or "INFO"
      lines[i] = format('<span class="%s">%s %-5s %s</span>', LEVELS[level:upper()] or "info",
        esc(given(l.at) and clock(l.at) or ""), esc(level), esc(l.text))
    end
    b[1] = '<pre class="log">' .. concat(lines, "\n") .. "</pre>\n"
  end
  local n = math.tointeger(dropped)
  if n and n > 0 then b[#b + 1] = format('<p class="muted">… %s more lines were not kept</p>\n', num(n)) end
  return concat(b)
end

local function run_body(doc, ctx)
  local id = esc(doc.id)
  local b = {"<h1>Run ", id, " ", badge(doc.outcome, run_class(doc.outcome)), "</h1>\n",
    '<p class="sub">flow ', flow_ref(ctx, doc.flow), " ", parameters(doc), "</p>\n", '<dl class="facts">'}
  local function fact(name, html) b[#b + 1] = "<div><dt>" .. name .. "</dt><dd>" .. or_dash(html) .. "</dd></div>" end
  fact("Started", time_el(doc.started_at))
  fact("Ended", given(doc.ended_at) and time_el(doc.ended_at) or (doc.live and "running" or nil))
  fact("Duration", esc(dur(span(doc.start, doc.finish)) or (doc.live and "running" or "")))
  fact("Host", esc(doc.host))
  fact("PID", esc(doc.pid))
  fact("Exit status", esc(doc.exit_code))
  if given(doc.resumed_from) then fact("Resumes", run_ref(ctx, doc.resumed_from)) end
  b[#b + 1] = "</dl>\n"
  if not ctx.file then
    b[#b + 1] = '<p class="links"><a href="/api/runs/' .. seg(doc.id) .. '">JSON</a>'
    if doc.has_summary then
      b[#b + 1] = '<a href="/runs/' .. seg(doc.id) .. '/summary.json" download>summary JSON</a>'
    end
    b[#b + 1] = "</p>\n"
  end
  local jobs, steps = doc.jobs or {}, doc.steps or {}
  b[#b + 1] = "<section><h2>Timeline</h2>\n"
  timeline(doc, b)
  b[#b + 1] = "</section>\n<section><h2>Jobs (" .. #jobs .. ")</h2>\n"
  jobs_table(jobs, ctx, b)
  b[#b + 1] = "</section>\n"
  b[#b + 1] = "<section><h2>Steps (" .. #steps .. ")</h2>\n" .. steps_table(steps) .. "</section>\n"
  b[#b + 1] = "<section><h2>Log</h2>\n" .. log_lines(doc.logs or {}, doc.logs_dropped) .. "</section>\n"
  return b
end

function pages.run(doc)
  return page("Run " .. tostring(doc.id), run_body(doc, {}), {live = doc.live == true})
end

-- For a ticket: the stylesheet inline, no script, no link into the UI.
function pages.run_file(doc)
  return page("Run " .. tostring(doc.id), run_body(doc, {file = true}), {file = true})
end

-- Charts over runs ---------------------------------------------------------

local CHART_H, AXIS_W = 140, 64

-- Slot width per run, so a few runs are not a few huge bars.
local function slot_of(n) return max(4, min(24, floor(800 / max(n, 1)))) end

-- Horizontal grid lines with labels at nice values up to top.
local function grid(out, top, y0, h, x1, label)
  local step = top > 0 and label.step(top) or 1
  local v = 0
  while v <= top + 1e-9 do
    local y = y0 + h - v / top * h
    out[#out + 1] = format('<line class="tick" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/><text class="axis" x="%d" '
      .. 'y="%.1f" text-anchor="end">%s</text>', AXIS_W, y, x1, y, AXIS_W - 4, y + 3, esc(label.text(v)))
    v = v + step
  end
end

local function duration_of(r)
  if type(r.duration) == "number" then return r.duration, true end
  if r.outcome == "running" and type(r.start) == "number" then return max(os.time() - r.start, 0), false end
end

-- A flow's runs as bars: height the duration, colour the outcome, oldest
-- left. The finished runs set the scale; a running one is cut at its top.
local function flow_chart(items)
  local n = #items
  local top, running = 0, 0
  for _, r in ipairs(items) do
    local d, done = duration_of(r)
    if done then top = max(top, d) elseif d then running = max(running, d) end
  end
  if top == 0 then top = running end
  top = max(top, 1)
  local slot = slot_of(n)
  local width = AXIS_W + n * slot + 8
  local out = {format('<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
    .. 'viewBox="0 0 %d %d" role="img" aria-label="Duration of the last %d runs">\n', width, CHART_H + 16, width,
    CHART_H + 16, n)}
  grid(out, top, 8, CHART_H - 8, width, {step = function(t) return tick_step(t, 4) end, text = dur})
  out[#out + 1] = "\n"
  for i = n, 1, -1 do
    local r = items[i]
    local d, done = duration_of(r)
    local h = d and max(min(d, top) / top * (CHART_H - 8), 2) or 2
    local x = AXIS_W + (n - i) * slot + 1
    local words = tostring(given(r.outcome) and r.outcome or "unknown")
    if d then words = words .. ", " .. dur(d) .. (done and "" or " so far") end
    out[#out + 1] = format('<a href="/runs/%s"><g class="bar %s" data-outcome="%s"><rect x="%d" y="%.1f" '
      .. 'width="%d" height="%.1f"/><title>run %s: %s</title></g></a>\n', seg(r.id), run_class(r.outcome),
      esc(r.outcome), x, CHART_H - h, max(slot - 2, 2), h, esc(r.id), esc(words))
  end
  out[#out + 1] = "</svg>\n"
  return '<div class="scroll">' .. concat(out) .. "</div>\n"
end

function pages.flow(name, items)
  items = items or {}
  local b = {"<h1>Flow ", esc(name), "</h1>\n"}
  if #items == 0 then
    b[#b + 1] = '<p class="empty">No runs of this flow recorded yet.</p>\n'
  else
    b[#b + 1] = "<section><h2>Last " .. plural(#items, "run") .. "</h2>\n" .. flow_chart(items) .. "</section>\n"
    b[#b + 1] = "<section><h2>Runs</h2>\n" .. runs_rows(items, {}) .. "</section>\n"
  end
  b[#b + 1] = '<p class="pager"><a href="/?flow=' .. esc(seg(name)) .. '">All runs of this flow</a></p>\n'
  return page("Flow " .. tostring(name), b)
end

-- One strip per count name, each with its own scale: a handful of failed
-- records stays visible next to a million processed.
local STRIP_H = 56

local function counts_chart(rows, names)
  local n = #rows
  local slot = slot_of(n)
  local width = AXIS_W + n * slot + 8
  local height = #names * (STRIP_H + 20)
  local out = {format('<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
    .. 'viewBox="0 0 %d %d" role="img" aria-label="Counts of the last %d runs">\n', width, height, width, height, n)}
  for k, name in ipairs(names) do
    local y0 = (k - 1) * (STRIP_H + 20) + 14
    local class = "c" .. ((k - 1) % 6 + 1)
    local top = 0
    for _, r in ipairs(rows) do
      local v = type(r.counts) == "table" and r.counts[name]
      if type(v) == "number" then top = max(top, v) end
    end
    top = top > 0 and top or 1
    out[#out + 1] = format('<text class="%s" x="%d" y="%d">%s</text>', class, AXIS_W, y0 - 4, esc(name))
    out[#out + 1] = format('<line class="base" x1="%d" y1="%d" x2="%d" y2="%d"/><text class="axis" x="%d" y="%d" '
      .. 'text-anchor="end">%s</text>\n', AXIS_W, y0 + STRIP_H, width, y0 + STRIP_H, AXIS_W - 4, y0 + 8, num(top))
    for i = n, 1, -1 do
      local r = rows[i]
      local v = type(r.counts) == "table" and r.counts[name]
      if type(v) == "number" then
        local h = v > 0 and max(v / top * STRIP_H, 1) or 0
        out[#out + 1] = format('<a href="/runs/%s"><rect class="%s" x="%d" y="%.1f" width="%d" height="%.1f">'
          .. "<title>run %s: %s %s</title></rect></a>\n", seg(r.run), class, AXIS_W + (n - i) * slot + 1,
          y0 + STRIP_H - h, max(slot - 2, 2), h, esc(r.run), esc(name), esc(num(v)))
      end
    end
  end
  out[#out + 1] = "</svg>\n"
  return '<div class="scroll">' .. concat(out) .. "</div>\n"
end

function pages.job(provider, vendor, resource, rows)
  rows = rows or {}
  local who = given(vendor) and vendor or provider
  local title = tostring(who) .. " " .. tostring(resource)
  local b = {"<h1>", esc(title), "</h1>\n"}
  local seen, names = {}, {}
  for _, r in ipairs(rows) do
    for k, v in pairs(type(r.counts) == "table" and r.counts or {}) do
      if type(v) == "number" and not seen[k] then seen[k], names[#names + 1] = true, tostring(k) end
    end
  end
  table.sort(names)
  if #rows == 0 then
    b[#b + 1] = '<p class="empty">No runs of this job recorded yet.</p>\n'
    return page(title, b)
  end
  if #names > 0 then b[#b + 1] = "<section><h2>Counts</h2>\n" .. counts_chart(rows, names) .. "</section>\n" end
  local head = {'<th class="num">Run</th><th>Started</th><th class="num">Duration</th><th>Outcome</th>'}
  for _, k in ipairs(names) do head[#head + 1] = '<th class="num">' .. esc(k) .. "</th>" end
  local trs = {}
  for i, r in ipairs(rows) do
    local cells = {'<tr><td class="num">', run_ref({}, r.run, esc(r.run)), "</td><td>", time_el(r.started_at),
      '</td><td class="num">', esc(dur(span(r.start, r.finish)) or ""), "</td><td>",
      badge(given(r.outcome) and r.outcome or "unknown", job_class(r)), "</td>"}
    for _, k in ipairs(names) do
      local v = type(r.counts) == "table" and r.counts[k]
      cells[#cells + 1] = '<td class="num">' .. (given(v) and esc(num(v)) or "") .. "</td>"
    end
    cells[#cells + 1] = "</tr>\n"
    trs[i] = concat(cells)
  end
  b[#b + 1] = "<section><h2>Runs</h2>\n" .. scroll_table(concat(head), trs) .. "</section>\n"
  return page(title, b)
end

function pages.error(status, title, message)
  local b = {"<h1>", esc(status), " ", esc(title), "</h1>\n"}
  if given(message) then b[#b + 1] = "<p>" .. esc(message) .. "</p>\n" end
  b[#b + 1] = '<p><a href="/">All runs</a></p>\n'
  return page(tostring(title), b)
end

pages.assets = {
  ["/assets/ui.css"] = {type = "text/css; charset=utf-8", body = assets.css},
  ["/assets/ui.js"] = {type = "text/javascript; charset=utf-8", body = assets.js},
}

return pages
