-- tests/providers/file_jobs.lua: a provider for tests only, the proof that
-- a provider is one file and no edit to generic code (docs/internals.md,
-- "Adding a provider"). Its "vendor" is a directory (FILE_JOBS_DIR): a
-- trigger of job NAME writes NAME.N (N counts up) holding "queued"; the
-- test moves it on by writing "running", "succeeded", "failed <why>" or
-- "canceled" into the file; cancel writes "canceled". A line "counts a b"
-- after the state gives records_processed and records_failed.
local jobs = require "engine.jobs"
local api = require "engine.api"

local P = {
  name = "file_jobs", vendor = "File jobs", env = "FILE_JOBS", kind = "job", noun = "job",
  poll_floor = 0.01, poll = 0.05, run_verb = "run",
  connection_options = {"dir"},
  trigger_options = {"job"},
  counts = {"records_processed", "records_failed"},
  resource_title = "FILE JOB",
  columns = {{"PROCESSED", "records_processed"}, {"FAILED", "records_failed"}},
}

local function path(conn, job, n) return string.format("%s/%s.%d", conn.dir, job, n) end

local function read(file)
  local f = io.open(file)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

-- whole or not at all: a test may read the file at any moment
local function write(file, text)
  local f = assert(io.open(file .. ".tmp", "w"))
  f:write(text)
  f:close()
  assert(os.rename(file .. ".tmp", file))
end

function P.connection(opts)
  local dir = opts.dir or os.getenv("FILE_JOBS_DIR")
  if type(dir) ~= "string" then api.invalid("file_jobs: set FILE_JOBS_DIR") end
  -- what the machinery reads of any connection: its time bounds
  return {dir = dir, retry_budget = 1, request_timeout = 1}
end

function P.spec(spec, what)
  api.check_options(what, spec, P.connection_options, P.trigger_option_list)
  if type(spec.job) ~= "string" or not spec.job:match("^%w+$") then api.invalid("%s: job must be a word", what) end
  return {resource = spec.job, label = spec.label, force = spec.force, conn = P.connection(spec)}
end

function P.describe(job, n) return n and ("file job " .. job .. " #" .. n) or ("file job " .. job) end
function P.link(conn, job, n) return "file://" .. path(conn, job, n or 0) end
function P.handle(job, n, label) return {job = job, n = math.tointeger(tonumber(n)), label = label} end
function P.handle_of(h, what)
  if type(h) ~= "table" or not h.job or not h.n then api.invalid("%s: not a file job", what) end
  return h.job, h.n
end

function P.trigger(conn, t)
  local n = 1
  while read(path(conn, t.resource, n)) do n = n + 1 end -- (its .tmp is never left)
  write(path(conn, t.resource, n), "queued")
  return n
end

local function data_of(conn, job, n)
  local text = read(path(conn, job, n))
  if not text then return nil end
  local state, why = text:match("^(%a+)%s*([^\n]*)")
  local processed, failed = text:match("\ncounts (%d+) (%d+)")
  return {state = state, why = why, records_processed = math.tointeger(tonumber(processed)),
    records_failed = math.tointeger(tonumber(failed))}
end

-- The run a row stands for: the file it names (this vendor never loses
-- a trigger's answer).
function P.find(conn, job, row)
  local n = math.tointeger(tonumber(row.remote_run))
  local d = n and data_of(conn, job, n)
  if d then return d, n end
end

function P.read(conn, w)
  return data_of(conn, w.resource, w.remote_run) or api.raise("not_found", nil, "%s is gone", w.what)
end

function P.judge(d)
  if d.state == "queued" or d.state == "running" then return "wait" end
  if d.state == "succeeded" then return "ok" end
  if d.state == "failed" then return "failed", "failed: " .. d.why end
  if d.state == "canceled" then return "canceled", "was canceled" end
  return "unknown_status", "reported " .. tostring(d.state)
end

function P.status(d) return d.state end
function P.counts_of(d) return {records_processed = d.records_processed, records_failed = d.records_failed} end
function P.result(_, w, d) return {job = w.resource, n = w.remote_run, status = d.state} end

function P.cancel(conn, w)
  write(path(conn, w.resource, w.remote_run), "canceled")
end

return jobs.define(P)
