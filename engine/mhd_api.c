/* mhd_api.c: libmicrohttpd, loaded on first use (see mhd_api.h for why). */
#include "lazylib.h"
#include "mhd_api.h"

mhd_api mhd_fns;

bool mhd_api_load(char *why, size_t whysz) {
  static bool loaded;
  if (loaded) return true;
#define FN(field, symbol) {#symbol, offsetof(mhd_api, field), false}
  static const lazy_symbol fns[] = {
      FN(start_daemon, MHD_start_daemon),
      FN(stop_daemon, MHD_stop_daemon),
      FN(run, MHD_run),
      FN(get_timeout, MHD_get_timeout),
      FN(get_daemon_info, MHD_get_daemon_info),
      FN(suspend_connection, MHD_suspend_connection),
      FN(resume_connection, MHD_resume_connection),
      FN(create_response_from_buffer, MHD_create_response_from_buffer),
      FN(add_response_header, MHD_add_response_header),
      FN(queue_response, MHD_queue_response),
      FN(destroy_response, MHD_destroy_response),
      FN(lookup_connection_value, MHD_lookup_connection_value),
      FN(get_connection_values, MHD_get_connection_values),
  };
#undef FN
  loaded = lazylib_load("libmicrohttpd.so.12", "libmicrohttpd12", fns, sizeof fns / sizeof *fns,
                        &mhd_fns, why, whysz);
  return loaded;
}
