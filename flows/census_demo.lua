-- flows/census_demo.lua: the demo `./dev demo` runs against the bundled
-- Census simulator: a sync that feeds the others, then five syncs fanned
-- out three at a time, each polled while the others run.
local started = flow.now()
local opts = {poll = 0.5}

census.sync({sync_id = 100}, opts)          -- the upstream sync, first

local ids = {101, 102, 103, 104, 105}
local jobs = {}
for i, id in ipairs(ids) do
  jobs[i] = function() return census.sync({sync_id = id}, opts) end
end
local results = flow.parallel(jobs, {limit = 3})

local updated = 0
for _, r in ipairs(results) do updated = updated + (r.records_updated or 0) end
log.info("demo: 6 syncs completed, %d records updated, in %.1f s", updated, flow.now() - started)
