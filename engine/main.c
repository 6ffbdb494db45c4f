/* main.c: the command line, a front end. Takes the options cli.c parsed,
 * starts the run (journal, lock), loads the chunks to run in order
 * (LUA_INIT, -e code and -l modules, a flow file or stdin, the REPL), sets
 * `arg`, runs them as the main task, and maps the outcome to an exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <lauxlib.h>

#include "cli.h"
#include "errors.h"
#include "frontend.h"
#include "lifetime.h"
#include "log.h"
#include "modules.h"

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

static int load_failed(engine *e, lua_State *L, int status) {
  log_final_value(e, L, -1);
  return status == LUA_ERRFILE ? EXIT_USAGE : 1;
}

/* LUA_INIT_5_4 or LUA_INIT: code, or @FILE. Pushes a chunk or nothing;
 * returns -1 or an exit code. */
static int load_init(engine *e, lua_State *L, int *count) {
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
  if (status != LUA_OK) return load_failed(e, L, status);
  lua_rawseti(L, -2, ++*count);
  return -1;
}

/* Loads every chunk into a table; returns -1 or an exit code. */
static int load_chunks(engine *e, lua_State *L, const options *o, int argc, char **argv) {
  lua_newtable(L);
  int count = 0, rc;
  if (!o->ignore_env && (rc = load_init(e, L, &count)) >= 0) return rc;
  for (int i = 0; i < o->nchunks; i++) {
    const pre_chunk *c = &o->chunks[i];
    if (c->kind == 'l') {
      lua_pushstring(L, c->text);
      lua_pushcclosure(L, require_into_global, 1);
    } else if (luaL_loadbufferx(L, c->text, strlen(c->text), "=(command line)",
                                "t") != LUA_OK) {
      return load_failed(e, L, LUA_ERRSYNTAX);
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
  if (status != LUA_OK) return load_failed(e, L, status);
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
static int begin_run(engine *e, lua_State *L, const options *o, int argc, char **argv) {
  bool file = o->script && strcmp(o->script, "-") != 0;
  modules_require(L, "engine.run");
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
  /* --metrics-label NAME=VALUE, in order: {{name, value}, ...} */
  lua_createtable(L, o->nmetrics_labels, 0);
  for (int i = 0; i < o->nmetrics_labels; i++) {
    const metric_label *l = &o->metrics_labels[i];
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, l->text, l->name_len);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, l->text + l->name_len + 1);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "metrics_labels");
  int rc = -1, n = 0;
  if (engine_call_task(e, 1, &n) != LUA_OK) { /* a task: the journal's store may wait */
    log_final_value(e, L, -1);
    rc = 1;
  } else {
    lua_settop(L, lua_gettop(L) - n + 3); /* exactly three results */
    if (!lua_toboolean(L, -3)) {
      log_final_value(e, L, -2);
      rc = (int)lua_tointeger(L, -1);
    }
  }
  lua_settop(L, 0);
  return rc;
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
  int rc = cli_parse(argc, argv, &o);
  if (rc >= 0) return rc;

  engine e;
  if (engine_init(&e, o.level, o.ignore_env) != 0) {
    fprintf(stderr, "engine: cannot start the event loop, HTTP or Lua\n");
    engine_shutdown(&e);
    return 1;
  }
  lua_State *L = e.L;
  if (o.help) { /* each provider's variables, from the provider itself */
    modules_require(L, "engine.help");
    lua_getfield(L, -1, "environment");
    rc = lua_pcall(L, 0, 1, 0) == LUA_OK ? 0 : 1;
    fputs(lua_tostring(L, -1), rc == 0 ? stdout : stderr);
    cli_help_end();
    engine_shutdown(&e);
    return rc;
  }
  e.log_json = strcmp(o.log_format, "json") == 0;
  if (o.runs || o.state_command || o.ui_command || o.doctor_command) {
    /* engine runs (lua/history.lua), state (lua/state_copy.lua), ui
     * (lua/ui.lua), doctor (lua/doctor.lua): as the main task */
    modules_require(L, o.runs ? "engine.history" : o.ui_command ? "engine.ui"
                       : o.doctor_command ? "engine.doctor" : "engine.state_copy");
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_createtable(L, argc, 0);
    for (int i = o.script_index + 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i - o.script_index);
    }
    if (o.state)
      lua_pushstring(L, o.state);
    else
      lua_pushnil(L);
    rc = engine_run(&e, 2);
    engine_shutdown(&e);
    return rc;
  }
  e.summary_path = o.summary_path;
  e.metrics_path = o.metrics_path;
  if (o.warnings) lua_warning(L, "@on", 0);
  rc = begin_run(&e, L, &o, argc, argv);
  if (rc < 0 && !o.interactive && progress_start(&e, o.progress) != 0)
    fprintf(stderr, "engine: cannot start the progress view\n");
  if (rc < 0) {
    set_arg_table(L, argc, argv, o.script ? o.script_index : argc);
    rc = load_chunks(&e, L, &o, argc, argv);
  }
  if (rc < 0) {
    if (o.interactive) {
      lua_pushlightuserdata(L, &e);
      lua_pushcclosure(L, repl_start, 1);
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
