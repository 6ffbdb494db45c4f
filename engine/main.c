/* main.c: the command line. Parses options, loads the chunks to run (-e
 * code, a flow file or stdin), sets `arg`, runs them in order as the main
 * task, and maps the outcome to an exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "engine.h"

#define EXIT_USAGE 2

static const char usage[] =
    "usage: engine [options] [FLOW.lua | -] [ARGS...]\n"
    "\n"
    "Runs a Lua 5.4 flow script. ARGS reach the script as `arg` and `...`.\n"
    "With no flow and a terminal, starts the interactive prompt (REPL).\n"
    "\n"
    "options:\n"
    "  -e CODE        run CODE before the flow (repeatable)\n"
    "  -i             start the REPL after -e CODE and the flow have run\n"
    "  -               read the flow from standard input\n"
    "  --summary-json FILE  also write the run summary as JSON to FILE\n"
    "  --progress=auto|always|never  live progress lines on stderr (auto: on a\n"
    "                 terminal, and not at the REPL)\n"
    "  -q, --quiet    log warnings and errors only\n"
    "  -v, --verbose  log debug lines too\n"
    "  -h, --help     show this help and exit\n"
    "  --version      show engine, Lua, libuv and libcurl versions and exit\n"
    "  --             stop handling options\n"
    "\n"
    "globals in flows: flow, http, json, log, census (also require \"engine.flow\" ...)\n"
    "\n"
    "environment:\n"
    "  CENSUS_API_KEY          Census token when a flow gives none\n"
    "  CENSUS_API_VERSION      1 (default) or 2\n"
    "  CENSUS_BASE_URL         scheme://host[:port] for every Census request\n"
    "  CENSUS_POLL             default poll interval in seconds (60)\n"
    "  CENSUS_MIN_POLL         lower the 5 s poll floor (tests, simulators)\n"
    "  CENSUS_REQUEST_TIMEOUT  seconds per Census request (30)\n"
    "  CENSUS_RETRY_DELAY      first retry delay in seconds (1)\n"
    "  CENSUS_RETRY_BUDGET     seconds of retries per request (300)\n"
    "  ENGINE_HISTORY          REPL history file (~/.engine_history)\n"
    "  ENGINE_HTTP_MAX_HOST_CONNECTIONS  connections per host (default: no cap)\n"
    "\n"
    "exit status:\n"
    "  0    every task succeeded\n"
    "  1    the flow raised an error, or a task failed that nobody waited for\n"
    "  2    usage error (unknown option, missing file)\n"
    "  130  interrupted by SIGINT (Ctrl-C); a second Ctrl-C exits at once\n"
    "  143  interrupted by SIGTERM\n";

typedef struct {
  const char *codes[64];
  int ncodes;
  const char *script; /* NULL: none; "-": stdin */
  int script_index;   /* in argv */
  bool interactive;   /* start the REPL after the chunks */
  const char *summary_path;
  const char *progress;
  enum log_level level;
} options;

static int usage_error(const char *fmt, const char *what) {
  fprintf(stderr, "engine: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (see engine --help)\n");
  return EXIT_USAGE;
}

/* Returns -1 to go on, or an exit code. */
static int parse(int argc, char **argv, options *o) {
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (a[0] != '-' || strcmp(a, "-") == 0) break;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    if (strcmp(a, "--version") == 0) {
      curl_version_info_data *c = curl_version_info(CURLVERSION_NOW);
      printf("engine %s (%s, libuv %s, libcurl %s)\n", ENGINE_VERSION,
             LUA_RELEASE, uv_version_string(), c->version);
      return 0;
    }
    if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      o->level = LOG_WARN;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      o->level = LOG_DEBUG;
    } else if (strncmp(a, "--progress=", 11) == 0) {
      o->progress = a + 11;
      if (strcmp(o->progress, "auto") && strcmp(o->progress, "always") &&
          strcmp(o->progress, "never"))
        return usage_error("%s: use --progress=auto, always or never", a);
    } else if (strcmp(a, "--summary-json") == 0) {
      if (i + 1 >= argc) return usage_error("%s needs a FILE after it", a);
      o->summary_path = argv[++i];
    } else if (strcmp(a, "-i") == 0) {
      o->interactive = true;
    } else if (strcmp(a, "-e") == 0) {
      if (i + 1 >= argc) return usage_error("%s needs CODE after it", a);
      if (o->ncodes == (int)(sizeof o->codes / sizeof *o->codes))
        return usage_error("%s given too many times", a);
      o->codes[o->ncodes++] = argv[++i];
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (i < argc) {
    o->script = argv[i];
    o->script_index = i;
  } else if (o->ncodes == 0 && !o->interactive) {
    if (isatty(STDIN_FILENO))
      o->interactive = true;
    else {
      o->script = "-";
      o->script_index = argc;
    }
  }
  return -1;
}

static void set_arg_table(lua_State *L, int argc, char **argv, int script) {
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  if (script >= argc) { /* script from stdin without a "-" argument */
    lua_pushliteral(L, "-");
    lua_rawseti(L, -2, 0);
  }
  lua_setglobal(L, "arg");
}

/* Runs the chunks in the upvalue table in order, the one at the index in
 * upvalue 3 with the script arguments (upvalue 2); yields inside them cross
 * this C frame through lua_callk continuations. */
static int run_from(lua_State *L, lua_Integer i);

static int run_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return run_from(L, (lua_Integer)ctx + 1);
}

static int run_from(lua_State *L, lua_Integer i) {
  lua_Integer n = luaL_len(L, lua_upvalueindex(1));
  for (; i <= n; i++) {
    lua_settop(L, 0);
    lua_geti(L, lua_upvalueindex(1), i);
    int nargs = 0;
    if (i == lua_tointeger(L, lua_upvalueindex(3))) {
      nargs = (int)luaL_len(L, lua_upvalueindex(2));
      luaL_checkstack(L, nargs, "too many arguments");
      for (int a = 1; a <= nargs; a++) lua_geti(L, lua_upvalueindex(2), a);
    }
    lua_callk(L, nargs, 0, (lua_KContext)i, run_k);
  }
  return 0;
}

static int run_chunks(lua_State *L) {
  return run_from(L, 1);
}

/* Loads every chunk into a table; returns -1 or an exit code. */
static int load_chunks(lua_State *L, const options *o, int argc, char **argv) {
  lua_newtable(L);
  for (int i = 0; i < o->ncodes; i++) {
    if (luaL_loadbufferx(L, o->codes[i], strlen(o->codes[i]),
                         "=(command line)", "t") != LUA_OK) {
      fprintf(stderr, "engine: %s\n", lua_tostring(L, -1));
      return 1;
    }
    lua_rawseti(L, -2, i + 1);
  }
  if (!o->script) {
    lua_newtable(L);
    lua_pushinteger(L, 0);
    return -1;
  }
  const char *path = strcmp(o->script, "-") == 0 ? NULL : o->script;
  int status = luaL_loadfilex(L, path, "t");
  if (status != LUA_OK) {
    fprintf(stderr, "engine: %s\n", lua_tostring(L, -1));
    return status == LUA_ERRFILE ? EXIT_USAGE : 1;
  }
  lua_rawseti(L, -2, o->ncodes + 1);
  lua_createtable(L, argc - o->script_index, 0);
  for (int i = o->script_index + 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - o->script_index);
  }
  lua_pushinteger(L, o->ncodes + 1);
  return -1;
}

int main(int argc, char **argv) {
  options o = {.level = LOG_INFO, .progress = "auto"};
  int rc = parse(argc, argv, &o);
  if (rc >= 0) return rc;

  engine e;
  if (engine_init(&e, o.level) != 0) {
    fprintf(stderr, "engine: cannot start the event loop, HTTP or Lua\n");
    engine_shutdown(&e);
    return 1;
  }
  e.summary_path = o.summary_path;
  if (!o.interactive && progress_start(&e, o.progress) != 0) {
    fprintf(stderr, "engine: cannot start the progress view\n");
  }
  lua_State *L = e.L;
  set_arg_table(L, argc, argv, o.script ? o.script_index : argc);
  rc = load_chunks(L, &o, argc, argv);
  if (rc < 0) {
    if (o.interactive) {
      lua_pushcfunction(L, repl_start);
      lua_rawseti(L, -4, (lua_Integer)luaL_len(L, -4) + 1);
    }
    lua_pushcclosure(L, run_chunks, 3);
    rc = engine_run(&e, 0);
    if (e.repl && rc == 0) rc = repl_exit_code(&e);
  }
  engine_shutdown(&e);
  return rc;
}
