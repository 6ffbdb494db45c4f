-- flows/census_fanout.lua: several syncs in parallel, at most 3 at a time.
--   CENSUS_API_KEY=secret-token:... engine flows/census_fanout.lua 11 12 13 14 15
-- If some fail, the others still finish; the error then lists every failure.
local ids = {}
for i = 1, math.max(#arg, 1) do ids[i] = tonumber(arg[i] or 1) end

local jobs = {}
for i, id in ipairs(ids) do
  jobs[i] = function() return census.sync({sync_id = id}) end
end

local results = flow.parallel(jobs, {limit = 3})
for _, r in ipairs(results) do
  log.info("sync %d: %s, %d records updated", r.sync_id, r.status, r.records_updated or 0)
end
