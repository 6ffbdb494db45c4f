/* curl_api.c: loads libcurl on first use (see curl_api.h for why). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "curl_api.h"

#define LIBCURL "libcurl.so.4"

curl_api curl_fns;

static bool loaded;

bool curl_api_load(char *why, size_t whysz) {
  if (loaded) return true;
  void *lib = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(why, whysz, "cannot load %s (%s): install libcurl4", LIBCURL, dlerror());
    return false;
  }
  static const struct {
    const char *name;
    size_t offset;
  } fns[] = {
#define FN(field, symbol) {#symbol, offsetof(curl_api, field)}
      FN(global_init, curl_global_init),
      FN(global_cleanup, curl_global_cleanup),
      FN(version_info, curl_version_info),
      FN(easy_init, curl_easy_init),
      FN(easy_cleanup, curl_easy_cleanup),
      FN(easy_reset, curl_easy_reset),
      FN(easy_setopt, curl_easy_setopt),
      FN(easy_getinfo, curl_easy_getinfo),
      FN(easy_strerror, curl_easy_strerror),
      FN(multi_init, curl_multi_init),
      FN(multi_cleanup, curl_multi_cleanup),
      FN(multi_setopt, curl_multi_setopt),
      FN(multi_add_handle, curl_multi_add_handle),
      FN(multi_remove_handle, curl_multi_remove_handle),
      FN(multi_socket_action, curl_multi_socket_action),
      FN(multi_info_read, curl_multi_info_read),
      FN(multi_assign, curl_multi_assign),
      FN(slist_append, curl_slist_append),
      FN(slist_free_all, curl_slist_free_all),
#undef FN
  };
  curl_api table;
  for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
    void *f = dlsym(lib, fns[i].name);
    if (!f) {
      snprintf(why, whysz, "%s has no %s: install libcurl4 7.85 or later", LIBCURL, fns[i].name);
      dlclose(lib);
      return false;
    }
    /* POSIX guarantees a data pointer from dlsym converts to a function pointer */
    memcpy((char *)&table + fns[i].offset, &f, sizeof f);
  }
  curl_fns = table;
  loaded = true; /* the library stays loaded for the process */
  return true;
}
