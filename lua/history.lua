-- lua/history.lua: `engine runs`, the run history from the journal.
--   engine [--state DIR|URL] runs [--json] [--limit N]   recent flow runs (every host's)
--   engine [--state DIR|URL] runs ID [--json]            one run's steps and jobs
--   engine [--state DIR|URL] runs --prune                delete old runs now
local json = require "engine.json"
local journal = require "engine.journal"
local run = require "engine.run"
local rules = require "engine.c.rules"
local jobs = require "engine.jobs"

local history = {}

local USAGE = "usage: engine [--state DIR|URL] runs [--json] [--limit N] [--prune] [ID]"

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

-- cjson writes an empty table as {}; lists in our documents are arrays.
local function array(items, encode_item)
  local parts = {}
  for i, item in ipairs(items) do parts[i] = encode_item(item) end
  return "[" .. table.concat(parts, ",") .. "]"
end

-- Missing values are JSON null, so every document has every field.
local function nulls(t, names)
  for _, k in ipairs(names) do
    if t[k] == nil then t[k] = json.null end
  end
  return t
end

local function run_fields(r)
  return nulls({id = r.id, flow = r.flow, started_at = iso(r.started_at), ended_at = iso(r.ended_at),
                outcome = r.outcome, exit_code = r.exit_code, resumed_from = r.resumed_from,
                pid = r.pid, host = r.host},
               {"ended_at", "exit_code", "resumed_from"})
end

local function run_json(r)
  local doc = json.encode(run_fields(r))
  return doc:sub(1, -2) .. ',"arguments":' .. array(r.args, json.encode) .. "}"
end

local STEP_FIELDS = {"name", "occurrence", "status", "started_at", "ended_at", "error", "origin"}
local JOB_FIELDS = {"provider", "resource", "remote_run", "label", "outcome", "ok", "link", "error", "counts",
  "started_at", "ended_at", "origin", "started_by"}

-- A row's status as shown: with how the run came by it when it did not
-- do the work itself ("ok (recorded)", "completed (adopted from run 3)").
local function shown_status(row)
  if row.origin == "recorded" then return row.status .. " (recorded)" end
  if row.origin == "adopted" and row.started_by then
    return string.format("%s (adopted from run %d)", row.status, row.started_by)
  end
  if row.origin == "adopted" then return row.status .. " (adopted)" end
  return row.status
end

local function entry_fields(e, names)
  local out = {}
  for _, k in ipairs(names) do out[k] = e[k] end
  out.started_at, out.ended_at = iso(e.started_at), iso(e.ended_at)
  return nulls(out, names)
end

-- A job as documents show it (JOB_FIELDS): outcome is its last status.
-- An id the journal keeps as text, as the summary gives it: a whole number
-- when it is one (most vendors' ids are), else the text.
local function id_value(text)
  if type(text) == "string" and text:match("^%d+$") and #text <= 18 then return math.tointeger(tonumber(text)) end
  return text
end

local function job_fields(j)
  local out = entry_fields(j, JOB_FIELDS)
  out.resource, out.remote_run = id_value(j.resource), id_value(j.remote_run) or json.null
  out.outcome, out.ok = j.status, j.ok == 1
  out.counts = j.counts
  return out
end

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
    print(array(rows, run_json))
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
  end
end

local function one(id, as_json)
  local r = journal.run(id)
  if not r then fail(1, "there is no run %d in %s (engine runs lists them)", id, journal.path()) end
  if as_json then
    local doc = run_json(r)
    doc = doc:sub(1, -2)
      .. ',"steps":' .. array(r.steps, function(e) return json.encode(entry_fields(e, STEP_FIELDS)) end)
      .. ',"jobs":' .. array(r.jobs, function(j) return json.encode(job_fields(j)) end)
    -- what a provider's jobs were called before there were several (its legacy key)
    local legacy = {}
    for _, j in ipairs(r.jobs) do
      local P = jobs.provider(j.provider)
      if P and P.legacy then
        if not legacy[P.legacy.key] then
          legacy[P.legacy.key] = {}
          legacy[#legacy + 1] = P.legacy.key
        end
        table.insert(legacy[P.legacy.key], json.encode(nulls(P.legacy.row(entry_fields(j, JOB_FIELDS), j),
          P.legacy.fields)))
      end
    end
    for _, key in ipairs(legacy) do doc = doc .. ',"' .. key .. '":[' .. table.concat(legacy[key], ",") .. "]" end
    print(doc .. "}")
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

function history.main(args, state)
  local as_json, limit, prune, id = false, 20, false, nil
  local i = 1
  while args[i] do
    local a = args[i]
    if a == "--json" then
      as_json = true
    elseif a == "--prune" then
      prune = true
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
  elseif id then
    one(id, as_json)
  else
    list(limit, as_json)
  end
end

return history
