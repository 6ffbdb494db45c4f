/* engine.c: the lists higher layers attach to the engine with (front-end
 * hooks, bindings' shutdown work), and the few facts every layer words the
 * same way. The engine's state itself is the struct in engine.h; its
 * lifetime is lifetime.c's. */
#include <stdlib.h>

#include "engine.h"

void engine_hooks_add(engine *e, engine_hooks *h) {
  h->next = e->hooks;
  e->hooks = h;
}

void engine_hooks_remove(engine *e, engine_hooks *h) {
  for (engine_hooks **p = &e->hooks; *p; p = &(*p)->next) {
    if (*p == h) {
      *p = h->next;
      return;
    }
  }
}

void engine_tell_spawned(engine *e, task *parent, task *child) {
  for (engine_hooks *h = e->hooks; h; h = h->next)
    if (h->spawned) h->spawned(h->data, parent, child);
}

void engine_tell_finished(engine *e, lua_State *L, task *t) {
  for (engine_hooks *h = e->hooks; h; h = h->next)
    if (h->finished) h->finished(h->data, L, t);
}

bool engine_interruptible(engine *e, task *t) {
  for (engine_hooks *h = e->hooks; h; h = h->next)
    if (h->interruptible && !h->interruptible(h->data, t)) return false;
  return true;
}

/* The first front end that handles the signal takes it. */
bool engine_tell_interrupted(engine *e, int signal) {
  for (engine_hooks *h = e->hooks; h; h = h->next)
    if (h->interrupted && h->interrupted(h->data, signal)) return true;
  return false;
}

void engine_at_shutdown(engine *e, engine_cleanup *c) {
  c->next = e->cleanups;
  e->cleanups = c;
}

/* Each is unlinked before it runs, so a cleanup may free its own node. */
void engine_run_cleanups(engine *e) {
  while (e->cleanups) {
    engine_cleanup *c = e->cleanups;
    e->cleanups = c->next;
    c->run(c->data);
  }
}

const char *engine_interrupted_by(int signal) {
  return signal == SIGTERM ? "interrupted by SIGTERM" : "interrupted by SIGINT";
}

void engine_free_handle_data(uv_handle_t *h) {
  free(h->data);
}

void engine_begin_stop(engine *e) {
  if (e->stop_began) return;
  e->stop_began = uv_now(&e->loop) + 1; /* never 0 */
  if (e->stopping) e->stopping(e);
}
