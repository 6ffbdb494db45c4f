/* cli.h: the engine's command line, parsed (cli.c) for main.c. */
#ifndef CLI_H
#define CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"

#define MAX_CHUNKS 64 /* -e and -l options */
#define MAX_METRIC_LABELS 32 /* --metrics-label options */

/* A -e or -l option, in command-line order. */
typedef struct {
  char kind; /* 'e' or 'l' */
  const char *text;
} pre_chunk;

/* A --metrics-label NAME=VALUE, checked: name_len bytes of text are the
 * name, the value follows the '='. */
typedef struct {
  const char *text;
  size_t name_len;
} metric_label;

typedef struct {
  pre_chunk chunks[MAX_CHUNKS];
  int nchunks;
  bool ignore_env;    /* -E */
  bool warnings;      /* -W */
  const char *script; /* NULL: none; "-": stdin */
  int script_index;   /* in argv */
  bool interactive;   /* start the REPL after the chunks */
  bool runs;          /* engine runs ...: the history */
  bool state_command; /* engine state ...: copy a history */
  bool ui_command;    /* engine ui ...: the web UI */
  bool doctor_command; /* engine doctor ...: check the setup */
  bool help;          /* -h: the rest of the help is printed by main */
  const char *summary_path;
  const char *metrics_path; /* --metrics FILE */
  metric_label metrics_labels[MAX_METRIC_LABELS];
  int nmetrics_labels;
  const char *log_format;   /* "text" or "json" */
  const char *state;  /* --state DIR */
  bool no_state;      /* --no-state */
  const char *resume; /* --resume: "" for the latest run, or a run id */
  bool allow_overlap;
  const char *progress;
  enum log_level level;
} options;

/* Parses argv into o: -1 to go on, or an exit code (after printing help,
 * the version, or a one-line usage error). */
int cli_parse(int argc, char **argv, options *o);

/* The end of --help, after the providers' variables (lua/help.lua). */
void cli_help_end(void);

#endif
