/* edit_api.c: libedit, loaded on first use (see edit_api.h). */
#include <stdio.h>

#include "edit_api.h"
#include "lazylib.h"

/* here the names are the table's fields, not the calls */
#undef el_init
#undef el_end
#undef el_gets
#undef el_get
#undef el_set
#undef el_wset
#undef el_line
#undef el_insertstr
#undef history_init
#undef history_end
#undef history

edit_api edit_fns;

bool edit_api_load(char *why, size_t whysz) {
  static bool loaded;
  if (loaded) return true;
#define FN(field) {#field, offsetof(edit_api, field), false}
  static const lazy_symbol fns[] = {
      FN(el_init), FN(el_end), FN(el_gets), FN(el_get), FN(el_set), FN(el_wset),
      FN(el_line), FN(el_insertstr), FN(history_init), FN(history_end), FN(history),
  };
#undef FN
  loaded = lazylib_load("libedit.so.2", "libedit2", fns, sizeof fns / sizeof *fns, &edit_fns,
                        why, whysz);
  return loaded;
}
