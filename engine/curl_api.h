/* curl_api.h: libcurl, loaded when the first HTTP request (or --version)
 * needs it, not at start-up: the dynamic loader spends most of a plain
 * `engine -e ''` relocating libcurl and the thirty libraries it pulls in
 * (TLS, HTTP/2, IDN, LDAP, Kerberos...), which flows and REPL sessions that
 * make no request never need. Files that call libcurl include this header
 * instead of <curl/curl.h>; the curl_* names they use go through a table
 * filled once by curl_api_load (process-wide, read-only after that). */
#ifndef CURL_API_H
#define CURL_API_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

typedef struct {
  CURLcode (*global_init)(long flags);
  void (*global_cleanup)(void);
  curl_version_info_data *(*version_info)(CURLversion);
  CURL *(*easy_init)(void);
  void (*easy_cleanup)(CURL *);
  void (*easy_reset)(CURL *);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  const char *(*easy_strerror)(CURLcode);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_cleanup)(CURLM *);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM *, CURL *);
  CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
  CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
  CURLMsg *(*multi_info_read)(CURLM *, int *);
  CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
} curl_api;

extern curl_api curl_fns;

/* Loads libcurl once; false (with why) when it cannot. */
bool curl_api_load(char *why, size_t whysz);

/* The calls go through the table. curl.h's type-checking macros for
 * curl_easy_setopt and curl_easy_getinfo cannot see through it, so the
 * build compiles every file that includes this header once more with
 * ENGINE_CURL_TYPECHECK (CMakeLists.txt's curl_typecheck: compiled, never
 * linked): there the calls stay libcurl's own, its macros check each
 * option's argument type, and a wrong one fails the build. */
#ifndef ENGINE_CURL_TYPECHECK
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init curl_fns.global_init
#define curl_global_cleanup curl_fns.global_cleanup
#define curl_version_info curl_fns.version_info
#define curl_easy_init curl_fns.easy_init
#define curl_easy_cleanup curl_fns.easy_cleanup
#define curl_easy_reset curl_fns.easy_reset
#define curl_easy_setopt curl_fns.easy_setopt
#define curl_easy_getinfo curl_fns.easy_getinfo
#define curl_easy_strerror curl_fns.easy_strerror
#define curl_multi_init curl_fns.multi_init
#define curl_multi_cleanup curl_fns.multi_cleanup
#define curl_multi_setopt curl_fns.multi_setopt
#define curl_multi_add_handle curl_fns.multi_add_handle
#define curl_multi_remove_handle curl_fns.multi_remove_handle
#define curl_multi_socket_action curl_fns.multi_socket_action
#define curl_multi_info_read curl_fns.multi_info_read
#define curl_multi_assign curl_fns.multi_assign
#define curl_slist_append curl_fns.slist_append
#define curl_slist_free_all curl_fns.slist_free_all
#endif

#endif
