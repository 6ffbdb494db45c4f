/* mhd_api.h: libmicrohttpd, loaded when `engine ui` starts its server
 * (lazylib.h), not at start-up: a flow never pays for it. httpd.c includes
 * this instead of <microhttpd.h>; the MHD_* names it uses go through a
 * table filled once by mhd_api_load (process-wide, read-only after). */
#ifndef MHD_API_H
#define MHD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

typedef struct {
  struct MHD_Daemon *(*start_daemon)(unsigned int, uint16_t, MHD_AcceptPolicyCallback, void *,
                                     MHD_AccessHandlerCallback, void *, ...);
  void (*stop_daemon)(struct MHD_Daemon *);
  enum MHD_Result (*run)(struct MHD_Daemon *);
  enum MHD_Result (*get_timeout)(struct MHD_Daemon *, MHD_UNSIGNED_LONG_LONG *);
  const union MHD_DaemonInfo *(*get_daemon_info)(struct MHD_Daemon *, enum MHD_DaemonInfoType, ...);
  void (*suspend_connection)(struct MHD_Connection *);
  void (*resume_connection)(struct MHD_Connection *);
  struct MHD_Response *(*create_response_from_buffer)(size_t, void *, enum MHD_ResponseMemoryMode);
  enum MHD_Result (*add_response_header)(struct MHD_Response *, const char *, const char *);
  enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int, struct MHD_Response *);
  void (*destroy_response)(struct MHD_Response *);
  const char *(*lookup_connection_value)(struct MHD_Connection *, enum MHD_ValueKind, const char *);
  int (*get_connection_values)(struct MHD_Connection *, enum MHD_ValueKind, MHD_KeyValueIterator, void *);
} mhd_api;

extern mhd_api mhd_fns;

/* Loads libmicrohttpd once; false (with why) when it cannot. */
bool mhd_api_load(char *why, size_t whysz);

#define MHD_start_daemon mhd_fns.start_daemon
#define MHD_stop_daemon mhd_fns.stop_daemon
#define MHD_run mhd_fns.run
#define MHD_get_timeout mhd_fns.get_timeout
#define MHD_get_daemon_info mhd_fns.get_daemon_info
#define MHD_suspend_connection mhd_fns.suspend_connection
#define MHD_resume_connection mhd_fns.resume_connection
#define MHD_create_response_from_buffer mhd_fns.create_response_from_buffer
#define MHD_add_response_header mhd_fns.add_response_header
#define MHD_queue_response mhd_fns.queue_response
#define MHD_destroy_response mhd_fns.destroy_response
#define MHD_lookup_connection_value mhd_fns.lookup_connection_value
#define MHD_get_connection_values mhd_fns.get_connection_values

#endif
