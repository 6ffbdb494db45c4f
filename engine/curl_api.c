/* curl_api.c: libcurl, loaded on first use (see curl_api.h for why). */
#include "curl_api.h"
#include "lazylib.h"

curl_api curl_fns;

bool curl_api_load(char *why, size_t whysz) {
  static bool loaded;
  if (loaded) return true;
#define FN(field, symbol) {#symbol, offsetof(curl_api, field), false}
  static const lazy_symbol fns[] = {
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
  };
#undef FN
  loaded = lazylib_load("libcurl.so.4", "libcurl4 (7.85 or later)", fns,
                        sizeof fns / sizeof *fns, &curl_fns, why, whysz);
  return loaded;
}
