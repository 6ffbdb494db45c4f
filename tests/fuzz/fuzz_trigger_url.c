/* fuzz_trigger_url.c: the Census trigger-URL grammar (lua/provider_census.lua)
 * on any bytes. A URL it accepts must name a positive sync id and a token
 * inside the URL, and redacting the URL must leave no token behind. */
#include "lua_probe.h"

static const char probe[] =
    "local jobs, rules = ...\n"
    "require('engine.census')\n"
    "local parse = jobs.provider('census').parse_trigger\n"
    "return function(url)\n"
    "  local t = parse(url)\n"
    "  if not t then return end\n"
    "  assert(math.type(t.sync_id) == 'integer' and t.sync_id > 0)\n"
    "  local at = url:find(t.token, 1, true)\n"
    "  assert(at and t.token:sub(1, 13) == 'secret-token:' and #t.token > 13)\n"
    "  assert(not rules.redact(url):find(t.token, 1, true), 'the token survives redaction')\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const modules[] = {"engine.jobs", "engine.c.rules", NULL};
  return lua_probe_run("trigger URL", probe, modules, data, size);
}
