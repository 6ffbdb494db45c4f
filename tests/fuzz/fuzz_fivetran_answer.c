/* fuzz_fivetran_answer.c: a Fivetran connection answer on any bytes, the
 * way the engine reads one (lua/provider_fivetran.lua): JSON decoding
 * (lua/json.lua over lua-cjson), the check of a GET /v1/connections/{id}
 * answer (has_connection), then what a wait makes of it (judge, status,
 * result). The input's first line, when it has one, is the baseline (the
 * text after "after:" in the run's name: an ISO time, "never", or anything
 * else); without one the baseline is "never". Never a Lua error outside
 * pcall, never a crash; for an answer the check accepts, judge gives a known
 * verdict, "ok" exactly when succeeded_at is a time later than the baseline
 * and than failed_at, "failed" only when failed_at is such a time, and a
 * wait only on a connection that is syncing, scheduled or (when allowed)
 * rescheduled. */
#include "lua_probe.h"

static const char probe[] =
    "local json, jobs, rules = ...\n"
    "local P = assert(jobs.provider('fivetran'), 'no fivetran provider')\n"
    "local KNOWN = {wait = true, ok = true, failed = true, paused = true, rescheduled = true,\n"
    "  unknown_status = true}\n"
    "local function time_of(v) return type(v) == 'string' and rules.parse_time(v) or nil end\n"
    "return function(input)\n"
    "  local head, text = input:match('^([^\\n]*)\\n(.*)$')\n"
    "  if not head then head, text = 'never', input end\n"
    "  local ok, body = pcall(json.decode, text)\n"
    "  if not ok or type(body) ~= 'table' then return end\n"
    "  local problem = P.has_connection(body)\n"
    "  assert(problem == nil or type(problem) == 'string', 'has_connection: not text or nil')\n"
    "  if problem ~= nil then return end\n"
    "  local d = body.data\n"
    "  local w = {remote_run = 'after:' .. head, resource = d.id, what = 'connection ' .. d.id}\n"
    "  -- the baseline as the engine reads it: never (and a name that is no\n"
    "  -- time, which the engine never writes) is 0\n"
    "  local base = head ~= 'never' and time_of(head) or 0\n"
    "  local s, f = time_of(d.succeeded_at), time_of(d.failed_at)\n"
    "  local succeeded = s ~= nil and s > base and (f == nil or s > f)\n"
    "  local failed = not succeeded and f ~= nil and f > base and (s == nil or f >= s)\n"
    "  local state = d.status.sync_state\n"
    "  for _, allow in ipairs{false, true} do\n"
    "    local v, message = P.judge(d, w, {allow_rescheduled = allow})\n"
    "    assert(KNOWN[v], 'judge: unknown verdict ' .. tostring(v))\n"
    "    if v ~= 'ok' and v ~= 'wait' then assert(type(message) == 'string', 'judge: no message for ' .. v) end\n"
    "    if v == 'ok' then\n"
    "      assert(s and s > base, 'judge: ok without a succeeded_at after the baseline')\n"
    "      assert(f == nil or s > f, 'judge: ok with failed_at as late as succeeded_at')\n"
    "    end\n"
    "    assert((v == 'ok') == succeeded, 'judge: ok is not exactly a success after the baseline')\n"
    "    if v == 'failed' then assert(f and f > base and (s == nil or f >= s), 'judge: failed without a failure') end\n"
    "    assert((v == 'failed') == failed, 'judge: failed is not exactly a failure after the baseline')\n"
    "    if allow then assert(v ~= 'rescheduled', 'judge: rescheduled with allow_rescheduled') end\n"
    "    if v == 'wait' then\n"
    "      assert(d.paused ~= true, 'judge: waits on a paused connection')\n"
    "      assert(state == 'syncing' or state == 'scheduled' or (allow and state == 'rescheduled'),\n"
    "        'judge: waits in sync_state ' .. tostring(state))\n"
    "    end\n"
    "    if not succeeded and not failed and (d.paused == true or state == 'paused') then\n"
    "      assert(v == 'paused', 'judge: a paused connection is ' .. v)\n"
    "    end\n"
    "  end\n"
    "  local status = P.status(d, w)\n"
    "  assert(type(status) == 'string', 'status: not text')\n"
    "  assert((status == 'succeeded') == succeeded or state == 'succeeded', 'status: succeeded without a success')\n"
    "  assert(type(P.status(d)) == 'string', 'status without a wait: not text')\n"
    "  local result = P.result(nil, w, d)\n"
    "  assert(type(result) == 'table' and type(result.status) == 'string', 'result: no status')\n"
    "  assert((result.status == 'succeeded') == succeeded, 'result: succeeded is not a success')\n"
    "  assert(type(P.summary(result)) == 'string', 'summary: not text')\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const modules[] = {"engine.json", "engine.jobs", "engine.c.rules", NULL};
  return lua_probe_run("Fivetran answer", probe, modules, data, size);
}
