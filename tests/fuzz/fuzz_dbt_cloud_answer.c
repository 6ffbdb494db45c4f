/* fuzz_dbt_cloud_answer.c: a dbt Cloud answer on any bytes, the way the
 * engine reads one (lua/provider_dbt_cloud.lua): JSON decoding (lua/json.lua
 * over lua-cjson), then the input read both as a run answer (has_run, then
 * judge and status, before and after what finished adds: failing steps and
 * run_results.json) and as a run_results.json document (results_of). Never
 * a Lua error outside pcall, never a crash; for a run the check accepts,
 * judge says "wait" for 1, 2, 3, "ok" for 10 and only 10, "failed" for 20,
 * "canceled" for 30, "unknown_status" (nil when adopting) for any other;
 * counts_of gives nil or a table, and result, summary and warns work on
 * what finished leaves; results_of gives nil or five whole counts >= 0
 * summing to at most the number of results, with one failing entry per
 * failed or errored result and one warning per warned one. */
#include "lua_probe.h"

static const char probe[] =
    "local json, jobs = ...\n"
    "local P = assert(jobs.provider('dbt_cloud'), 'no dbt_cloud provider')\n"
    "local EXPECTED = {[1] = 'wait', [2] = 'wait', [3] = 'wait', [10] = 'ok', [20] = 'failed',\n"
    "  [30] = 'canceled'}\n"
    "local CONN = {base = 'https://ab123.us1.dbt.com', account = 1}\n"
    "local function check_results(doc)\n"
    "  local counts, failing, warnings = P.results_of(doc)\n"
    "  if counts == nil then\n"
    "    assert(type(doc) ~= 'table' or type(doc.results) ~= 'table', 'results_of: nil for a results list')\n"
    "    return nil\n"
    "  end\n"
    "  assert(type(doc) == 'table' and type(doc.results) == 'table', 'results_of: counts without results')\n"
    "  assert(type(counts) == 'table' and type(failing) == 'table' and type(warnings) == 'table',\n"
    "    'results_of: not three tables')\n"
    "  local sum = 0\n"
    "  for _, k in ipairs(P.counts) do\n"
    "    local n = counts[k]\n"
    "    assert(math.type(n) == 'integer' and n >= 0, 'results_of: count ' .. k .. ' is ' .. tostring(n))\n"
    "    sum = sum + n\n"
    "  end\n"
    "  local fields = 0\n"
    "  for _ in pairs(counts) do fields = fields + 1 end\n"
    "  assert(fields == 5, 'results_of: counts has ' .. fields .. ' fields')\n"
    "  assert(sum <= #doc.results, 'results_of: ' .. sum .. ' counted of ' .. #doc.results .. ' results')\n"
    "  assert(#failing == counts.failed + counts.errored, 'results_of: failing is not failed + errored')\n"
    "  assert(#warnings == counts.warned, 'results_of: warnings is not warned')\n"
    "  for _, list in ipairs{failing, warnings} do\n"
    "    for _, node in ipairs(list) do\n"
    "      assert(type(node.id) == 'string', 'results_of: a node without an id')\n"
    "      assert(node.message == nil or type(node.message) == 'string', 'results_of: a message not text')\n"
    "    end\n"
    "  end\n"
    "  return counts, failing\n"
    "end\n"
    "local function check_judge(d, w, expected)\n"
    "  local v, message = P.judge(d, w, {})\n"
    "  assert(v == expected, 'judge: status ' .. tostring(d.status) .. ' is ' .. tostring(v) .. ', not ' .. expected)\n"
    "  if v ~= 'ok' and v ~= 'wait' then assert(type(message) == 'string', 'judge: no message for ' .. v) end\n"
    "  local adopting = P.judge(d, w, {adopting = true})\n"
    "  assert(adopting == (expected ~= 'unknown_status' and expected or nil),\n"
    "    'judge (adopting): status ' .. tostring(d.status) .. ' is ' .. tostring(adopting))\n"
    "  return v\n"
    "end\n"
    "return function(text)\n"
    "  local ok, body = pcall(json.decode, text)\n"
    "  if not ok then return end\n"
    "  local counts, failing = check_results(body)\n"
    "  if type(body) ~= 'table' then return end\n"
    "  local problem = P.has_run(body)\n"
    "  assert(problem == nil or type(problem) == 'string', 'has_run: not text or nil')\n"
    "  if problem ~= nil then return end\n"
    "  local d = body.data\n"
    "  assert(math.type(d.id) == 'integer' and d.id > 0 and math.type(d.status) == 'integer', 'has_run: accepted')\n"
    "  local w = {remote_run = d.id, resource = 7, what = 'job 7 run ' .. d.id}\n"
    "  local expected = EXPECTED[d.status] or 'unknown_status'\n"
    "  local v = check_judge(d, w, expected)\n"
    "  assert(type(P.status(d)) == 'string', 'status: not text')\n"
    "  -- what every poll's report reads (lua/job_report.lua: pairs over it)\n"
    "  local c = P.counts_of(d)\n"
    "  assert(c == nil or type(c) == 'table', 'counts_of: a ' .. type(c) .. ' of the answer')\n"
    "  if v == 'ok' or v == 'failed' then\n"
    "    -- what finished adds before judging again: the failing steps (of\n"
    "    -- run_steps, read with the run) and run_results.json (the input too)\n"
    "    if v == 'failed' and type(d.run_steps) == 'table' then\n"
    "      local steps = {}\n"
    "      for _, step in ipairs(d.run_steps) do\n"
    "        if type(step) == 'table' and step.status == 20 and type(step.name) == 'string' then\n"
    "          steps[#steps + 1] = step.name\n"
    "        end\n"
    "      end\n"
    "      P.add_results(d, steps)\n"
    "    end\n"
    "    if counts then P.add_results(d, nil, counts, failing) end\n"
    "    check_judge(d, w, expected)\n"
    "  end\n"
    "  local result = P.result(CONN, w, d)\n"
    "  assert(type(result) == 'table' and type(result.status) == 'string', 'result: no status')\n"
    "  assert((result.status == 'success') == (d.status == 10), 'result: success is not status 10')\n"
    "  assert(type(P.summary(result)) == 'string', 'summary: not text')\n"
    "  assert(type(P.warns(result)) == 'boolean', 'warns: not a boolean')\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const modules[] = {"engine.json", "engine.jobs", NULL};
  return lua_probe_run("dbt Cloud answer", probe, modules, data, size);
}
