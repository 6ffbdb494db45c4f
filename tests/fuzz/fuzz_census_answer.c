/* fuzz_census_answer.c: a Census answer on any bytes, the way the engine
 * reads one: JSON decoding into a run table (lua/json.lua over lua-cjson),
 * then the checks and the meaning of lua/census_answers.lua. Never a Lua
 * error outside pcall, never a crash; an answer the checks accept has
 * whole, non-negative counts and a boolean or absent `canceled`. */
#include "lua_probe.h"

static const char probe[] =
    "local json, answers = ...\n"
    "return function(text)\n"
    "  local ok, body = pcall(json.decode, text)\n"
    "  if not ok or type(body) ~= 'table' then return end\n"
    "  local problem = answers.has_run_status(body)\n"
    "  answers.has_run_id(body)\n"
    "  answers.has_data(body)\n"
    "  if problem == nil then\n"
    "    local d = body.data\n"
    "    local m = answers.meaning(d)\n"
    "    assert(m == 'waiting' or m == 'completed' or m == 'failed' or m == 'skipped'\n"
    "      or m == 'canceled' or m == 'unknown')\n"
    "    for _, k in ipairs{'records_processed', 'records_updated', 'records_failed', 'records_invalid'} do\n"
    "      local v = d[k]\n"
    "      assert(v == nil or v == json.null or (math.type(v) == 'integer' and v >= 0), k)\n"
    "    end\n"
    "    assert(d.canceled == nil or d.canceled == json.null or type(d.canceled) == 'boolean')\n"
    "    if m == 'completed' then assert(d.status == 'completed' and d.canceled ~= true) end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const modules[] = {"engine.json", "engine.census_answers", NULL};
  return lua_probe_run("Census answer", probe, modules, data, size);
}
