-- lua/history.lua: `engine runs`, the run history from the journal.
--   engine [--state DIR|URL] runs [--json] [--limit N]   recent flow runs (every host's)
--   engine [--state DIR|URL] runs ID [--json]            one run's steps and jobs
--   engine [--state DIR|URL] runs ID --logs              its log lines
--   engine [--state DIR|URL] runs ID --html FILE         one self-contained page of it
--   engine [--state DIR|URL] runs --prune                delete old runs now
local json = require "engine.json"
local journal = require "engine.journal"
local run = require "engine.run"
local rules = require "engine.c.rules"
local jobs = require "engine.jobs"
local run_docs = require "engine.run_docs"
local shown_status = run_docs.shown_status

local history = {}

local USAGE = "usage: engine [--state DIR|URL] runs [--json] [--limit N] [--prune] [ID [--logs] [--html FILE]]"

local function fail(code, fmt, ...)
  io.stderr:write("engine: ", string.format(fmt, ...), "\n")
  os.exit(code)
end

local iso = require("engine.report").iso

-- Every line goes out through here: the journal may hold what an older
-- engine stored unscrubbed, so secrets are hidden again on the way out.
local function print(text)
  io.stdout:write(rules.redact(rules.printable(text)), "\n")
end

local function printable(v) return rules.printable(tostring(v)) end

local function show(v)
  if v == nil then return "-" end
  return tostring(v)
end

local function width(rows, least, text)
  local w = least
  for _, row in ipairs(rows) do w = math.max(w, #text(row)) end
  return w
end

local function list(limit, as_json)
  local rows = journal.runs(limit)
  if as_json then
    print(run_docs.list_json(rows))
    return
  end
  if #rows == 0 then
    print("no runs recorded in " .. journal.path())
    return
  end
  local fmt = "%-6s %-24s %-12s %-4s %-8s %-" .. width(rows, 4, function(r) return printable(r.host) end) .. "s %s"
  print(string.format(fmt, "ID", "STARTED", "OUTCOME", "EXIT", "RESUMES", "HOST", "FLOW"))
  for _, r in ipairs(rows) do
    local flow = r.flow
    if #r.args > 0 then flow = flow .. " " .. table.concat(r.args, " ") end
    print(string.format(fmt, tostring(r.id), iso(r.started_at), r.outcome, show(r.exit_code), show(r.resumed_from),
      printable(r.host), flow))
  end
end

-- The jobs of one provider as a table: its resource, the remote run, the
-- status, the counts the provider names (P.columns), the link.
local function job_table(P, rows)
  local title = P and P.resource_title or ((rows[1].provider or "job"):upper())
  local columns = P and P.columns or {}
  local res_w = width(rows, math.max(8, #title), function(j) return printable(j.resource) end)
  local run_w = width(rows, 10, function(j) return show(j.remote_run) end)
  local fmt = "  %-" .. res_w .. "s %-" .. run_w .. "s %-" .. width(rows, 12, shown_status) .. "s"
  local head = {title, "RUN", "STATUS"}
  for _, c in ipairs(columns) do
    fmt = fmt .. " %" .. (#c[1] + 1) .. "s"
    head[#head + 1] = c[1]
  end
  fmt = fmt .. "  %s"
  head[#head + 1] = "LINK"
  print(string.format(fmt, table.unpack(head)))
  for _, j in ipairs(rows) do
    local cells = {printable(j.resource), show(j.remote_run), printable(shown_status(j))}
    for _, c in ipairs(columns) do cells[#cells + 1] = show(j.counts[c[2]]) end
    cells[#cells + 1] = j.link or ""
    print((string.format(fmt, table.unpack(cells)):gsub("%s+$", "")))
    if j.error then print("    " .. j.error) end
    for _, r in ipairs(j.rejected or {}) do
      print("    rejected " .. printable(r.identifier or "(no identifier)") .. ": " .. printable(r.message or r.status or ""))
    end
  end
end

local function one(id, as_json)
  local r = journal.run(id)
  if not r then fail(1, "there is no run %d in %s (engine runs lists them)", id, journal.path()) end
  if as_json then
    print(run_docs.one_json(r))
    return
  end
  print(string.format("run %d: %s%s", r.id, r.flow, #r.args > 0 and (" " .. table.concat(r.args, " ")) or ""))
  print(string.format("  started %s on %s (pid %d), ended %s, %s, exit %s%s", iso(r.started_at),
    printable(r.host), r.pid, show(iso(r.ended_at)), r.outcome, show(r.exit_code),
    r.resumed_from and (", resumes run " .. r.resumed_from) or ""))
  if #r.steps > 0 then
    local row = "  %-28s %-" .. width(r.steps, 10, shown_status) .. "s %s"
    print(string.format(row, "STEP", "STATUS", "ERROR"))
    for _, s in ipairs(r.steps) do
      print((string.format(row, printable(s.name) .. (s.occurrence > 1 and ("#" .. s.occurrence) or ""),
        printable(shown_status(s)), printable(s.error or "")):gsub("%s+$", "")))
    end
  end
  -- one table per provider, in the order they first appear
  local order, by = {}, {}
  for _, j in ipairs(r.jobs) do
    if not by[j.provider] then
      by[j.provider] = {}
      order[#order + 1] = j.provider
    end
    table.insert(by[j.provider], j)
  end
  for _, name in ipairs(order) do job_table(jobs.provider(name), by[name]) end
end

-- The run's log lines, as the terminal showed them.
local function logs(id)
  local r = journal.run(id)
  if not r then fail(1, "there is no run %d in %s (engine runs lists them)", id, journal.path()) end
  local lines = r.logs()
  if #lines == 0 then
    io.stderr:write(string.format("engine: run %d kept no log lines (it logged none, or an engine older " ..
      "than the journal's schema 3 ran it)\n", id))
  end
  for _, l in ipairs(lines) do print(string.format("%s %-5s %s", iso(l.at), l.level, l.text)) end
end

-- One self-contained HTML page of the run (lua/ui_pages.lua), to attach.
local function html(id, path)
  local r = journal.run(id)
  if not r then fail(1, "there is no run %d in %s (engine runs lists them)", id, journal.path()) end
  local page = rules.redact(require("engine.ui_pages").run_file(run_docs.page(r)))
  local ok, err = require("engine.c.files").write_file(path, page)
  if not ok then fail(1, "cannot write %s: %s", path, err) end
end

function history.main(args, state)
  local as_json, limit, prune, id = false, 20, false, nil
  local show_logs, html_path = false, nil
  local i = 1
  while args[i] do
    local a = args[i]
    if a == "--json" then
      as_json = true
    elseif a == "--prune" then
      prune = true
    elseif a == "--logs" then
      show_logs = true
    elseif a == "--html" then
      i = i + 1
      html_path = args[i]
      if not html_path or html_path == "" then fail(2, "--html needs a file name (%s)", USAGE) end
    elseif a == "--limit" then
      i = i + 1
      limit = math.tointeger(tonumber(args[i]))
      if not limit or limit < 1 then fail(2, "--limit needs a whole number >= 1 (%s)", USAGE) end
    elseif a:match("^%d+$") and not id then
      id = math.tointeger(tonumber(a))
      if not id or id < 1 then fail(2, "runs: %s is not a run id (engine runs lists them)", a) end
    else
      fail(2, "runs: unexpected '%s' (%s)", a, USAGE)
    end
    i = i + 1
  end
  if prune and id then fail(2, "runs: --prune takes no run id (%s)", USAGE) end
  if (show_logs or html_path) and not id then
    fail(2, "runs: %s needs a run id (%s)", show_logs and "--logs" or "--html", USAGE)
  end
  local days, days_err = run.keep_days()
  if prune and not days then fail(2, "%s", days_err) end
  local ok, err, code = run.open_journal(state, false)
  if not ok then fail(code == "usage" and 2 or 1, "%s", err) end
  if prune then
    local pruned_ok, n = pcall(journal.prune, days)
    if not pruned_ok then fail(1, "cannot prune the journal: %s", require("engine.c.error").describe(n)) end
    if as_json then
      print(json.encode({pruned = n, days = days}))
    else
      print(string.format("pruned %d run(s) that started more than %d days ago and have nothing open", n, days))
    end
  elseif id and html_path then
    html(id, html_path)
    if show_logs then logs(id) end
  elseif id and show_logs then
    logs(id)
  elseif id then
    one(id, as_json)
  else
    list(limit, as_json)
  end
end

return history
