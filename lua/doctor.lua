-- lua/doctor.lua: `engine doctor [FLOW.lua] [--json]`, the checks to run
-- at 16:00 before the first night: for each provider the environment
-- configures (or the flow names), its token, one cheap read, what the
-- provider adds (an API version, say), and the resources the flow
-- names literally (without running it); then the journal. One line per
-- check, ok / warn / fail with what to do; exit 0 unless one failed.
local api = require "engine.api"
local json = require "engine.json"
local jobs = require "engine.jobs"
local journal = require "engine.journal"
local run = require "engine.run"
local errors = require "engine.c.error"
local rules = require "engine.c.rules"

local doctor = {}

local USAGE = "usage: engine [--state DIR|URL] doctor [FLOW.lua] [--json]"
local PROBE_SECONDS = 4 -- each check's requests, retries included

local function fail_usage(fmt, ...)
  io.stderr:write("engine: ", string.format(fmt, ...), "\n")
  os.exit(2)
end

-- An error as one line, without the flow position the engine's errors
-- start with.
local function line(err)
  local text = errors.describe(err):gsub("\n.*", "")
  return (text:gsub("^[^:]*%.lua:%d+: ", ""))
end

local function read_flow(path)
  local f, err = io.open(path, "rb")
  if not f then fail_usage("doctor: cannot read %s: %s (%s)", path, err, USAGE) end
  local source = f:read("a")
  f:close()
  local chunk, why = load(source, "@" .. path, "t")
  if not chunk then fail_usage("doctor: %s does not compile: %s", path, why) end
  return source
end

local function configured(P)
  for _, var in ipairs(P.doctor.variables or {}) do
    if api.env(var) then return var end
  end
end

function doctor.main(args, state)
  local flow, as_json
  for _, a in ipairs(args) do
    if a == "--json" then
      as_json = true
    elseif a:sub(1, 1) == "-" or flow then
      fail_usage("doctor: unexpected '%s' (%s)", a, USAGE)
    else
      flow = a
    end
  end
  local source = flow and read_flow(flow)
  local results = {}
  local function add(status, check, detail)
    results[#results + 1] = {status = status, check = check, detail = rules.redact(detail)}
  end

  for _, name in ipairs(require("engine.c.providers")) do
    local P = jobs.provider(name)
    local named = source and source:find(name .. "%.[%a_]") ~= nil
    local var = P and P.doctor and configured(P)
    if P and P.doctor and (var or named) then
      local ok, conn = pcall(P.connection, {})
      if not ok then
        add("fail", name .. ": token", line(conn))
      else
        add("ok", name .. ": token", var and ("from " .. var) or "given")
        local c = api.bounded(conn, PROBE_SECONDS)
        c.unbudgeted = nil
        local reached, what = pcall(P.doctor.probe, c)
        local detail = reached and what or line(what)
        if not reached and (errors.is_error(what, "network") or errors.is_error(what, "timeout")) then
          detail = detail .. string.format("; check the network, a proxy (HTTPS_PROXY) or %s_BASE_URL", conn.env)
        end
        add(reached and "ok" or "fail", name .. ": API", detail)
        for _, note in ipairs(reached and P.doctor.notes and P.doctor.notes(conn) or {}) do
          add(note[1], name .. ": API version", note[2])
        end
        for _, ref in ipairs(reached and source and P.doctor.refs and P.doctor.refs(source) or {}) do
          local found, detail = pcall(ref.check, c)
          add(found and "ok" or "fail", name .. ": " .. ref.what, found and detail or line(detail))
        end
      end
    end
  end
  if #results == 0 then
    local vars = {}
    for _, name in ipairs(require("engine.c.providers")) do
      local P = jobs.provider(name)
      if P and P.doctor and P.doctor.variables then vars[#vars + 1] = P.doctor.variables[1] end
    end
    add("warn", "providers", string.format("no provider is configured (%s) and no flow was given: nothing to check",
      table.concat(vars, ", ")))
  end

  -- the journal: where it is, that it opens (and is brought to this
  -- engine's schema), and that this engine may write to it
  local opened, err, code = run.open_journal(state, false)
  if opened then
    local wrote, why = pcall(journal.check_writable)
    add(wrote and "ok" or "fail", "journal", wrote and (journal.path() .. ": schema current, writable")
      or (journal.path() .. ": " .. line(why)))
  elseif code == "usage" then
    add("fail", "journal", err)
  elseif tostring(err):find("no journal at", 1, true) then
    local location = journal.location(state)
    local dir = location and location.dir
    local made, why = true, nil
    if dir then made, why = require("engine.c.files").mkdirs(dir) end
    add(made and "ok" or "fail", "journal", made and (tostring(err):gsub(": no run.*", "") ..
      " yet: the first run makes it") or (dir .. ": " .. tostring(why)))
  else
    add("fail", "journal", err)
  end

  local failed = 0
  for _, r in ipairs(results) do
    if r.status == "fail" then failed = failed + 1 end
  end
  if as_json then
    io.stdout:write(json.encode({ok = failed == 0, checks = results}), "\n")
  else
    for _, r in ipairs(results) do
      io.stdout:write(string.format("%-4s  %s: %s\n", r.status, r.check, r.detail))
    end
  end
  os.exit(failed == 0 and 0 or 1)
end

return doctor
