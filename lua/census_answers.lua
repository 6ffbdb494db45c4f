-- lua/census_answers.lua: what a Census answer means, and whether it can be
-- believed: the run statuses and what each means to a wait, the checks on
-- a run (status, canceled, counts) and on a trigger's run id. Pure: no
-- requests, no logs, so the fuzzer (tests/fuzz) can run it on any bytes.
local json = require "engine.json"
local api = require "engine.api"

local answers = {}
local show = api.show

-- A run's status as Census reports it, and what it means to a wait. Any
-- other status is unknown and never read as success.
answers.STATUS = {
  queued = "waiting", working = "waiting", preparing = "waiting", new = "waiting",
  retrying = "waiting",
  completed = "completed", failed = "failed", skipped = "skipped",
}


function answers.has_data(body)
  if type(body.data) ~= "table" then
    return "the answer has no data object: " .. show(body)
  end
end

-- Counts Census reports: null, or a whole number >= 0. Anything else (a
-- fraction, a negative number, 1e400, NaN) is a bad answer, never 0.
local COUNTS = {"records_processed", "records_updated", "records_failed", "records_invalid",
  "source_record_count", "source_record_updates", "source_record_deletes", "source_record_invalids"}

function answers.has_run_status(body)
  local problem = answers.has_data(body)
  if problem then return problem end
  local d = body.data
  if type(d.status) ~= "string" then
    return "the sync run has no status: " .. show(body)
  end
  if d.canceled ~= nil and d.canceled ~= json.null and type(d.canceled) ~= "boolean" then
    return string.format("the sync run's canceled is %s, not true or false: %s", show(d.canceled), show(body))
  end
  for _, k in ipairs(COUNTS) do
    local v = d[k]
    if v ~= nil and v ~= json.null and not (math.type(v) == "integer" and v >= 0) then
      return string.format("the sync run's %s is %s, not a whole number >= 0: %s",
        k, show(v), show(body))
    end
  end
end

-- A run id: a whole JSON number > 0 (not a string, a fraction, 1e400).
function answers.run_id_of(v)
  if math.type(v) == "integer" and v > 0 then return v end
end

function answers.has_run_id(body)
  if type(body.data) ~= "table" or not answers.run_id_of(body.data.sync_run_id) then
    return "the answer has no usable data.sync_run_id: " .. show(body)
  end
end


-- What a run's answer means to a wait: "waiting", "completed", "failed",
-- "skipped", "canceled" or "unknown" (never read as success).
function answers.meaning(data)
  if data.canceled == true then return "canceled" end
  return answers.STATUS[data.status] or "unknown"
end

return answers
