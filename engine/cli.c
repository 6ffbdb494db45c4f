/* cli.c: the command line: its help text and the parser that turns argv
 * into options (like lua's where they do not clash). No Lua, no loop: the
 * fuzzer runs it on any arguments (tests/fuzz). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>

#include "cli.h"
#include "curl_api.h"

static const char usage[] =
    "usage: engine [options] [FLOW.lua | -] [ARGS...]\n"
    "       engine [--state DIR|URL] runs [--json] [--limit N] [--prune] [ID [--logs] [--html FILE]]\n"
    "       engine [--state DIR|URL] ui [--listen HOST:PORT]   a web UI over the journal\n"
    "       engine [--state DIR|URL] doctor [FLOW.lua] [--json]   check the setup\n"
    "       engine state copy FROM TO   copy a run history (directory or URL)\n"
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
    "  --metrics FILE  at the end, write Prometheus metrics to FILE\n"
    "  --metrics-label NAME=VALUE  add this label to every metric (repeatable)\n"
    "  --log-format=text|json  log lines as text (default) or one JSON object each\n"
    "  --state DIR|URL  keep the journal (run history, durable runs) in DIR, or\n"
    "                 on the PostgreSQL server at a postgresql:// URL\n"
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
    "globals in flows: flow, http, json, log, and each provider's module (below;\n"
    "also require \"engine.flow\" ...)\n"
    "\n"
    "A flow may be Lua source or precompiled (luac) bytecode.\n"
    "\n"
    "environment:\n"
    "  LUA_INIT                Lua code (or @FILE) run before the flow;\n"
    "                          LUA_INIT_5_4 is taken first when set\n"
    "  ENGINE_STATE_DIR        the state directory (default:\n"
    "                          $XDG_STATE_HOME/engine, ~/.local/state/engine)\n"
    "  ENGINE_STATE_URL        the journal on PostgreSQL (postgresql://...), taken\n"
    "                          before ENGINE_STATE_DIR; libpq's PG* variables apply\n"
    "  ENGINE_STATE_LEASE      seconds a run's lease on a shared journal lasts\n"
    "                          unless renewed (30)\n"
    "  ENGINE_STATE_TIMEOUT    seconds a write to a journal server may retry before\n"
    "                          the action it precedes fails (30)\n"
    "  ENGINE_HOSTNAME         the host name runs record (default: the machine's)\n"
    "  ENGINE_UI_TOKEN         engine ui's access token (needed off loopback)\n"
    "  ENGINE_STATE_KEEP_DAYS  days of run history kept (90)\n"
    "  ENGINE_STOP_TIMEOUT     seconds from a stop to the exit: cancels and\n"
    "                          flow.on_finish handlers together (20)\n"
    "  ENGINE_HISTORY          REPL history file (~/.engine_history)\n"
    "  ENGINE_LOG_FORMAT       text or json, as --log-format (which wins)\n"
    "  ENGINE_HTTP_MAX_HOST_CONNECTIONS  transfers at once per host (64); more wait\n"
    "  ENGINE_HTTP_MAX_BUFFERED  bytes all answers in flight may hold (256 MiB)\n"
    "  ENGINE_CA_BUNDLE        CA certificates for TLS (also CURL_CA_BUNDLE,\n"
    "                          SSL_CERT_FILE, SSL_CERT_DIR)\n"
    "  HTTPS_PROXY, NO_PROXY   proxies, as curl reads them\n";

/* After the providers' part of the help (lua/help.lua). */
static const char usage_end[] =
    "\n"
    "exit status:\n"
    "  0    every task succeeded\n"
    "  1    the flow raised an error, or a task failed that nobody waited for\n"
    "  2    usage error (unknown option, missing file)\n"
    "  130  interrupted by SIGINT (Ctrl-C); a second Ctrl-C exits at once\n"
    "  143  interrupted by SIGTERM\n"
    "  75   this flow is already running with these arguments (see --allow-overlap)\n"
    "  N    the flow called os.exit(N)\n";



void cli_help_end(void) { fputs(usage_end, stdout); }

static int usage_error(const char *fmt, const char *what) {
  fprintf(stderr, "engine: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, " (see engine --help)\n");
  return EXIT_USAGE;
}

/* Labels every series already has: a second one would make the file
 * unreadable to Prometheus, or rename a series the alerts select on. */
static const char *const engine_labels[] = {"flow", "outcome", "kind", "sync_id",
                                            "name", "provider", "resource"};

#define TEXT_OF(n) #n
#define LABELS_MAX_TEXT_OF(n) TEXT_OF(n)
#define LABELS_MAX_TEXT LABELS_MAX_TEXT_OF(MAX_METRIC_LABELS)

static int label_error(const char *text, const char *why) {
  fprintf(stderr, "engine: --metrics-label %s: %s (see engine --help)\n", text, why);
  return EXIT_USAGE;
}

/* --metrics-label NAME=VALUE: a name Prometheus accepts, that no series
 * has yet, and a value (an empty one means no label to Prometheus, so two
 * files would clash on the series they were meant to tell apart). */
static int add_metric_label(options *o, const char *text) {
  const char *eq = strchr(text, '=');
  if (!eq) return label_error(text, "give NAME=VALUE");
  size_t n = (size_t)(eq - text);
  static const char first[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_";
  if (n == 0 || !strchr(first, text[0]) ||
      strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") != n)
    return label_error(text, "NAME must match [a-zA-Z_][a-zA-Z0-9_]*");
  if (n >= 2 && text[0] == '_' && text[1] == '_')
    return label_error(text, "names starting with __ are Prometheus' own; pick another");
  for (size_t i = 0; i < sizeof engine_labels / sizeof *engine_labels; i++)
    if (strlen(engine_labels[i]) == n && memcmp(engine_labels[i], text, n) == 0)
      return label_error(text, "the engine sets this label itself; pick another name");
  if (!eq[1]) return label_error(text, "the value is empty; give one, or leave the label out");
  for (int i = 0; i < o->nmetrics_labels; i++)
    if (o->metrics_labels[i].name_len == n && memcmp(o->metrics_labels[i].text, text, n) == 0)
      return label_error(text, "this NAME is given twice; give each label once");
  if (o->nmetrics_labels == MAX_METRIC_LABELS)
    return label_error(text, "too many labels (at most " LABELS_MAX_TEXT ")");
  o->metrics_labels[o->nmetrics_labels++] = (metric_label){text, n};
  return -1;
}

/* Returns -1 to go on, or an exit code. */
int cli_parse(int argc, char **argv, options *o) {
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
      o->help = true; /* the providers' part comes from Lua, then cli_help_end() */
      return -1;
    }
    if (strcmp(a, "--version") == 0) {
      char why[256];
      curl_version_info_data *c = curl_api_load(why, sizeof why) ? curl_version_info(CURLVERSION_NOW) : NULL;
      printf("engine %s (%s, libuv %s, libcurl %s)\n", ENGINE_VERSION,
             LUA_RELEASE, uv_version_string(), c ? c->version : "not found");
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
    } else if (strcmp(a, "--metrics") == 0) {
      if (i + 1 >= argc) return usage_error("%s needs a FILE after it", a);
      o->metrics_path = argv[++i];
    } else if (strcmp(a, "--metrics-label") == 0 || strncmp(a, "--metrics-label=", 16) == 0) {
      const char *text = a[15] == '=' ? a + 16 : (i + 1 < argc ? argv[++i] : NULL);
      if (!text) return usage_error("%s needs NAME=VALUE after it", a);
      int rc = add_metric_label(o, text);
      if (rc >= 0) return rc;
    } else if (strncmp(a, "--log-format=", 13) == 0) {
      o->log_format = a + 13;
      if (strcmp(o->log_format, "text") && strcmp(o->log_format, "json"))
        return usage_error("%s: use --log-format=text or json", a);
    } else if (strcmp(a, "--state") == 0) {
      if (i + 1 >= argc) return usage_error("%s needs a DIR after it", a);
      o->state = argv[++i];
      if (!*o->state) return usage_error("%s: the directory is empty; give one, or --no-state", a);
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
  } else if (i < argc && strcmp(argv[i], "doctor") == 0 && o->nchunks == 0 && !o->interactive) {
    o->doctor_command = true; /* likewise ./doctor */
    o->script_index = i;
  } else if (i < argc && strcmp(argv[i], "ui") == 0 && o->nchunks == 0 && !o->interactive) {
    o->ui_command = true; /* likewise ./ui */
    o->script_index = i;
  } else if (i < argc && strcmp(argv[i], "state") == 0 && o->nchunks == 0 && !o->interactive) {
    o->state_command = true; /* likewise ./state */
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
  if (!o->log_format) {
    const char *env = getenv("ENGINE_LOG_FORMAT");
    o->log_format = env && *env ? env : "text";
    if (strcmp(o->log_format, "text") && strcmp(o->log_format, "json"))
      return usage_error("ENGINE_LOG_FORMAT=%s: use text or json", o->log_format);
  }
  if (o->nmetrics_labels && !o->metrics_path)
    return usage_error("%s", "--metrics-label needs --metrics FILE: give both, or neither");
  if (o->state && o->no_state) return usage_error("%s", "--state and --no-state exclude each other");
  if (o->resume && !o->script) return usage_error("%s", "--resume needs a FLOW.lua file");
  return -1;
}
