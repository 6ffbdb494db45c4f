/* main.c: the command line, a front end. Parses options (like lua's where
 * they do not clash), loads the chunks to run in order (LUA_INIT, -e code
 * and -l modules, a flow file or stdin, the REPL), sets `arg`, runs them as
 * the main task, and maps the outcome to an exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "frontend.h"

#define EXIT_USAGE 2

static const char usage[] =
    "usage: engine [options] [FLOW.lua | -] [ARGS...]\n"
    "       engine [--state DIR] runs [--json] [--limit N] [--prune] [ID]\n"
    "\n"
    "Runs a Lua 5.4 flow script. ARGS reach the script as `arg` and `...`.\n"
    "With no flow and a terminal, starts the interactive prompt (REPL).\n"
    "\n"
    "options:\n"
    "  -e CODE        run CODE before the flow (repeatable)\n"
    "  -l MOD         require MOD into the global MOD; -l G=MOD into G\n"
    "  -i             start the REPL after -e CODE and the flow have run\n"
    "  -E             ignore LUA_INIT, LUA_PATH and LUA_CPATH\n"
    "  -W             turn Lua warnings on\n"
    "  -               read the flow from standard input\n"
    "  --summary-json FILE  also write the run summary as JSON to FILE\n"
    "  --state DIR    keep the journal (run history, durable runs) in DIR\n"
    "  --no-state     keep no journal (the REPL keeps none unless --state)\n"
    "  --resume[=ID]  continue the latest failed run of this flow and arguments\n"
    "                 (or run ID): what completed in it is not run again\n"
    "  --allow-overlap  run even while another engine runs this flow\n"
    "  --progress=auto|always|never  live progress lines on stderr (auto: on a\n"
    "                 terminal, and not at the REPL)\n"
    "  -q, --quiet    log warnings and errors only\n"
    "  -v, --verbose  log debug lines too (not lua's -v: see --version)\n"
    "  -h, --help     show this help and exit\n"
    "  --version      show engine, Lua, libuv and libcurl versions and exit\n"
    "  --             stop handling options\n"
    "\n"
    "globals in flows: flow, http, json, log, census (also require \"engine.flow\" ...)\n"
    "\n"
    "A flow may be Lua source or precompiled (luac) bytecode.\n"
    "\n"
    "environment:\n"
    "  LUA_INIT                Lua code (or @FILE) run before the flow;\n"
    "                          LUA_INIT_5_4 is taken first when set\n"
    "  ENGINE_STATE_DIR        the state directory (default:\n"
    "                          $XDG_STATE_HOME/engine, ~/.local/state/engine)\n"
    "  ENGINE_STATE_KEEP_DAYS  days of run history kept (90)\n"
    "  CENSUS_API_KEY          Census token when a flow gives none\n"
    "  CENSUS_API_KEY_FILE     a file holding it (not readable by every user)\n"
    "  CENSUS_API_KEY_FILE_ANY_MODE  1: accept a key file every user may read\n"
    "  CENSUS_ALLOW_HTTP       1: allow plain http to a non-local CENSUS_BASE_URL\n"
    "  CENSUS_API_VERSION      1 (default) or 2\n"
    "  CENSUS_BASE_URL         scheme://host[:port] for every Census request\n"
    "  CENSUS_POLL             default poll interval in seconds (60)\n"
    "  CENSUS_MIN_POLL         lower the 5 s poll floor (tests, simulators)\n"
    "  CENSUS_REQUEST_TIMEOUT  seconds per Census request (30)\n"
    "  CENSUS_RETRY_DELAY      first retry delay in seconds (1)\n"
    "  CENSUS_RETRY_BUDGET     seconds of retries per request (300)\n"
    "  CENSUS_CANCEL_ON_STOP   0: stopping leaves Census runs going (default 1)\n"
    "  ENGINE_HISTORY          REPL history file (~/.engine_history)\n"
    "  ENGINE_HTTP_MAX_HOST_CONNECTIONS  connections per host (default: no cap)\n"
    "  ENGINE_HTTP_MAX_BUFFERED  bytes all answers in flight may hold (256 MiB)\n"
    "  ENGINE_CA_BUNDLE        CA certificates for TLS (also CURL_CA_BUNDLE,\n"
    "                          SSL_CERT_FILE, SSL_CERT_DIR)\n"
    "  HTTPS_PROXY, NO_PROXY   proxies, as curl reads them\n"
    "  CENSUS_MAX_ANSWER_BYTES   the largest Census answer read (4 MiB)\n"
    "\n"
    "exit status:\n"
    "  0    every task succeeded\n"
    "  1    the flow raised an error, or a task failed that nobody waited for\n"
    "  2    usage error (unknown option, missing file)\n"
    "  130  interrupted by SIGINT (Ctrl-C); a second Ctrl-C exits at once\n"
    "  143  interrupted by SIGTERM\n"
    "  75   this flow is already running with these arguments (see --allow-overlap)\n"
    "  N    the flow called os.exit(N)\n";

#define MAX_CHUNKS 64 /* -e and -l options */

/* A -e or -l option, in command-line order. */
typedef struct {
  char kind; /* 'e' or 'l' */
  const char *text;
} pre_chunk;

typedef struct {
  pre_chunk chunks[MAX_CHUNKS];
  int nchunks;
  bool ignore_env;    /* -E */
  bool warnings;      /* -W */
  const char *script; /* NULL: none; "-": stdin */
  int script_index;   /* in argv */
  bool interactive;   /* start the REPL after the chunks */
  bool runs;          /* engine runs ...: the history */
  const char *summary_path;
  const char *state;  /* --state DIR */
  bool no_state;      /* --no-state */
  const char *resume; /* --resume: "" for the latest run, or a run id */
  bool allow_overlap;
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
    } else if (strcmp(a, "--state") == 0) {
      if (i + 1 >= argc) return usage_error("%s needs a DIR after it", a);
      o->state = argv[++i];
    } else if (strcmp(a, "--no-state") == 0) {
      o->no_state = true;
    } else if (strcmp(a, "--resume") == 0) {
      o->resume = "";
    } else if (strncmp(a, "--resume=", 9) == 0) {
      o->resume = a + 9;
      if (!*o->resume || strspn(o->resume, "0123456789") != strlen(o->resume))
        return usage_error("%s: the run id is a number (see engine runs)", a);
    } else if (strcmp(a, "--allow-overlap") == 0) {
      o->allow_overlap = true;
    } else if (strcmp(a, "-i") == 0) {
      o->interactive = true;
    } else if (strcmp(a, "-E") == 0) {
      o->ignore_env = true;
    } else if (strcmp(a, "-W") == 0) {
      o->warnings = true;
    } else if (a[1] == 'e' || a[1] == 'l') { /* -e CODE, -eCODE, -l MOD, -lMOD */
      const char *text = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!text)
        return usage_error(a[1] == 'e' ? "%s needs CODE after it"
                                       : "%s needs a module name after it", a);
      if (o->nchunks == MAX_CHUNKS) return usage_error("%s given too many times", a);
      o->chunks[o->nchunks++] = (pre_chunk){a[1], text};
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (i < argc && strcmp(argv[i], "runs") == 0 && o->nchunks == 0 && !o->interactive) {
    o->runs = true; /* a flow file named runs runs as ./runs */
    o->script_index = i;
  } else if (i < argc) {
    o->script = argv[i];
    o->script_index = i;
  } else if (o->nchunks == 0 && !o->interactive) {
    if (isatty(STDIN_FILENO))
      o->interactive = true;
    else {
      o->script = "-";
      o->script_index = argc;
    }
  }
  if (o->state && o->no_state) return usage_error("%s", "--state and --no-state exclude each other");
  if (o->resume && !o->script) return usage_error("%s", "--resume needs a FLOW.lua file");
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

/* -l [G=]MOD: G = require(MOD), with the flow's require, as lua does. */
static int require_into_global(lua_State *L) {
  const char *spec = lua_tostring(L, lua_upvalueindex(1));
  const char *eq = strchr(spec, '=');
  lua_getglobal(L, "require");
  lua_pushstring(L, eq ? eq + 1 : spec);
  lua_call(L, 1, 1);
  if (eq)
    lua_pushlstring(L, spec, (size_t)(eq - spec));
  else
    lua_pushstring(L, spec);
  lua_insert(L, -2);
  lua_setglobal(L, lua_tostring(L, -2)); /* the name stays on the stack */
  return 0;
}

static int load_failed(lua_State *L, int status) {
  fprintf(stderr, "engine: %s\n", lua_tostring(L, -1));
  return status == LUA_ERRFILE ? EXIT_USAGE : 1;
}

/* LUA_INIT_5_4 or LUA_INIT: code, or @FILE. Pushes a chunk or nothing;
 * returns -1 or an exit code. */
static int load_init(lua_State *L, int *count) {
  const char *name = "=LUA_INIT_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR;
  const char *init = getenv(name + 1);
  if (!init) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (!init) return -1;
  int status = init[0] == '@'
                   ? luaL_loadfilex(L, init + 1, NULL)
                   : luaL_loadbufferx(L, init, strlen(init), name, "t");
  if (status != LUA_OK) return load_failed(L, status);
  lua_rawseti(L, -2, ++*count);
  return -1;
}

/* Loads every chunk into a table; returns -1 or an exit code. */
static int load_chunks(lua_State *L, const options *o, int argc, char **argv) {
  lua_newtable(L);
  int count = 0, rc;
  if (!o->ignore_env && (rc = load_init(L, &count)) >= 0) return rc;
  for (int i = 0; i < o->nchunks; i++) {
    const pre_chunk *c = &o->chunks[i];
    if (c->kind == 'l') {
      lua_pushstring(L, c->text);
      lua_pushcclosure(L, require_into_global, 1);
    } else if (luaL_loadbufferx(L, c->text, strlen(c->text), "=(command line)",
                                "t") != LUA_OK) {
      return load_failed(L, LUA_ERRSYNTAX);
    }
    lua_rawseti(L, -2, ++count);
  }
  if (!o->script) {
    lua_newtable(L);
    lua_pushinteger(L, 0);
    return -1;
  }
  const char *path = strcmp(o->script, "-") == 0 ? NULL : o->script;
  int status = luaL_loadfilex(L, path, NULL); /* source or luac output */
  if (status != LUA_OK) return load_failed(L, status);
  lua_rawseti(L, -2, ++count);
  lua_createtable(L, argc - o->script_index, 0);
  for (int i = o->script_index + 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - o->script_index);
  }
  lua_pushinteger(L, count);
  return -1;
}

/* The run's start (lua/run.lua): journal, lock, --resume. Returns -1 to
 * go on, or an exit code after printing why not. */
static int begin_run(lua_State *L, const options *o, int argc, char **argv) {
  bool file = o->script && strcmp(o->script, "-") != 0;
  engine_require(L, "engine.run");
  lua_getfield(L, -1, "begin");
  lua_createtable(L, 0, 8);
  if (o->state) {
    lua_pushstring(L, o->state);
    lua_setfield(L, -2, "state");
  }
  /* the REPL keeps no state unless asked */
  lua_pushboolean(L, o->no_state || (o->interactive && !o->state));
  lua_setfield(L, -2, "no_state");
  if (file) {
    lua_pushstring(L, o->script);
    lua_setfield(L, -2, "flow");
  }
  lua_pushstring(L, o->script ? (file ? o->script : "(stdin)") : "(command line)");
  lua_setfield(L, -2, "label");
  lua_createtable(L, argc, 0);
  for (int i = o->script_index + 1; o->script && i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - o->script_index);
  }
  lua_setfield(L, -2, "args");
  if (o->resume && *o->resume)
    lua_pushinteger(L, strtoll(o->resume, NULL, 10));
  else
    lua_pushboolean(L, o->resume != NULL);
  lua_setfield(L, -2, "resume");
  lua_pushboolean(L, o->allow_overlap);
  lua_setfield(L, -2, "allow_overlap");
  int rc = -1;
  if (lua_pcall(L, 1, 3, 0) != LUA_OK) {
    fprintf(stderr, "engine: %s\n", lua_tostring(L, -1));
    rc = 1;
  } else if (!lua_toboolean(L, -3)) {
    fprintf(stderr, "engine: %s\n", lua_tostring(L, -2));
    rc = (int)lua_tointeger(L, -1);
  }
  lua_settop(L, 0);
  return rc;
}

/* engine [--state DIR] runs ...: lua/history.lua as the main task. */
static int run_history(lua_State *L) {
  engine_require(L, "engine.history");
  lua_getfield(L, -1, "main");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_call(L, 2, 0);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--supervise") == 0)
    return supervise_main(argc - 2, argv + 2);
  /* Thousands of syncs want sockets: take all the descriptors we may. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  options o = {.level = LOG_INFO, .progress = "auto"};
  int rc = parse(argc, argv, &o);
  if (rc >= 0) return rc;

  engine e;
  if (engine_init(&e, o.level, o.ignore_env) != 0) {
    fprintf(stderr, "engine: cannot start the event loop, HTTP or Lua\n");
    engine_shutdown(&e);
    return 1;
  }
  lua_State *L = e.L;
  if (o.runs) {
    lua_createtable(L, argc, 0);
    for (int i = o.script_index + 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i - o.script_index);
    }
    if (o.state)
      lua_pushstring(L, o.state);
    else
      lua_pushnil(L);
    lua_pushcclosure(L, run_history, 2);
    rc = engine_run(&e, 0);
    engine_shutdown(&e);
    return rc;
  }
  e.summary_path = o.summary_path;
  if (o.warnings) lua_warning(L, "@on", 0);
  rc = begin_run(L, &o, argc, argv);
  if (rc < 0 && !o.interactive && progress_start(&e, o.progress) != 0)
    fprintf(stderr, "engine: cannot start the progress view\n");
  if (rc < 0) {
    set_arg_table(L, argc, argv, o.script ? o.script_index : argc);
    rc = load_chunks(L, &o, argc, argv);
  }
  if (rc < 0) {
    if (o.interactive) {
      lua_pushcfunction(L, repl_start);
      lua_rawseti(L, -4, (lua_Integer)luaL_len(L, -4) + 1);
    }
    lua_pushcclosure(L, run_chunks, 3);
    rc = engine_run(&e, 0);
    int repl_rc = repl_exit_code(&e);
    if (repl_rc >= 0 && rc == 0) rc = repl_rc;
  }
  repl_free(&e);
  engine_shutdown(&e);
  return rc;
}
