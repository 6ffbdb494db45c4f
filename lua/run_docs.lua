-- lua/run_docs.lua: runs as JSON documents, one shape for `engine runs
-- --json` and `engine ui`'s API (/api/runs, /api/runs/ID): every field
-- present (null when missing), lists as arrays, ids as numbers when they
-- are whole numbers.
local json = require "engine.json"
local jobs = require "engine.jobs"

local run_docs = {}

local iso = require("engine.report").iso

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

function run_docs.run_fields(r)
  return nulls({id = r.id, flow = r.flow, started_at = iso(r.started_at), ended_at = iso(r.ended_at),
                outcome = r.outcome, exit_code = r.exit_code, resumed_from = r.resumed_from,
                pid = r.pid, host = r.host},
               {"ended_at", "exit_code", "resumed_from"})
end

local function run_json(r)
  local doc = json.encode(run_docs.run_fields(r))
  return doc:sub(1, -2) .. ',"arguments":' .. array(r.args, json.encode) .. "}"
end

local STEP_FIELDS = {"name", "occurrence", "status", "started_at", "ended_at", "error", "origin"}
local JOB_FIELDS = {"provider", "resource", "remote_run", "label", "outcome", "ok", "link", "error", "counts",
  "started_at", "ended_at", "origin", "started_by", "rejected"}

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


-- Runs (journal.runs's rows) as a JSON array.
function run_docs.list_json(rows)
  return array(rows, run_json)
end

-- One run (journal.run's) with its steps and jobs, as a JSON object.
function run_docs.one_json(r)
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
  return doc .. "}"
end

-- One run (journal.run's) as the UI's pages show it (lua/ui_pages.lua):
-- times as ISO text and epoch seconds (a job's and a status change's as
-- epoch seconds only: a run may have ten thousand jobs), each job with its
-- provider's words and its status changes, the run's log lines. r's rows
-- become the document's (r is not used after).
function run_docs.page(r)
  local doc = {id = r.id, flow = r.flow, arguments = r.args, params = r.params, started_at = iso(r.started_at),
    ended_at = iso(r.ended_at), start = r.started_at, finish = r.ended_at, outcome = r.outcome,
    exit_code = r.exit_code, resumed_from = r.resumed_from, pid = r.pid, host = r.host,
    live = r.outcome == "running", steps = {}, jobs = {}, logs = {}, logs_dropped = 0,
    has_summary = r.has_summary()}
  for i, e in ipairs(r.steps) do
    doc.steps[i] = {name = e.name, occurrence = e.occurrence, status = e.status, started_at = iso(e.started_at),
      ended_at = iso(e.ended_at), start = e.started_at, finish = e.ended_at, error = e.error, origin = e.origin}
  end
  -- (a run may have ten thousand jobs and three times as many status
  -- changes: a change's row is its entry, its time stays Unix seconds,
  -- and a job's row becomes its entry)
  local statuses = {}
  for _, s in ipairs(r.statuses()) do
    local list = statuses[s.job]
    if not list then
      list = {}
      statuses[s.job] = list
    end
    s.job = nil
    list[#list + 1] = s
  end
  local none = {}
  for i, j in ipairs(r.jobs) do
    local P = jobs.provider(j.provider)
    j.vendor, j.kind = P and P.vendor or j.provider, P and P.kind or "job"
    j.outcome, j.ok, j.final = j.status, j.ok == 1, j.final == 1
    j.start, j.finish, j.statuses = j.started_at, j.ended_at, statuses[j.id] or none
    j.status, j.started_at, j.ended_at = nil, nil, nil
    doc.jobs[i] = j
  end
  for i, l in ipairs(r.logs()) do doc.logs[i] = {at = iso(l.at), level = l.level, text = l.text} end
  return doc
end

run_docs.id_value = id_value
run_docs.shown_status = shown_status

return run_docs
