/* pq_api.h: libpq, loaded when a journal on PostgreSQL is first opened
 * (lazylib.h), not at start-up: libpq pulls in TLS, Kerberos and LDAP,
 * which a flow with its journal in a directory never needs. postgres.c
 * includes this instead of <libpq-fe.h>; the PQ* names it uses go through
 * a table filled once by pq_api_load (process-wide, read-only after). */
#ifndef PQ_API_H
#define PQ_API_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

typedef struct {
  PGconn *(*connectStart)(const char *);
  PostgresPollingStatusType (*connectPoll)(PGconn *);
  ConnStatusType (*status)(const PGconn *);
  int (*socket)(const PGconn *);
  char *(*errorMessage)(const PGconn *);
  void (*finish)(PGconn *);
  int (*setnonblocking)(PGconn *, int);
  PQnoticeProcessor (*setNoticeProcessor)(PGconn *, PQnoticeProcessor, void *);
  int (*sendQuery)(PGconn *, const char *);
  int (*sendQueryParams)(PGconn *, const char *, int, const Oid *, const char *const *,
                         const int *, const int *, int);
  int (*flush)(PGconn *);
  int (*consumeInput)(PGconn *);
  int (*isBusy)(PGconn *);
  PGresult *(*getResult)(PGconn *);
  ExecStatusType (*resultStatus)(const PGresult *);
  char *(*resultErrorField)(const PGresult *, int);
  char *(*resultErrorMessage)(const PGresult *);
  int (*ntuples)(const PGresult *);
  int (*nfields)(const PGresult *);
  char *(*fname)(const PGresult *, int);
  Oid (*ftype)(const PGresult *, int);
  int (*getisnull)(const PGresult *, int, int);
  char *(*getvalue)(const PGresult *, int, int);
  int (*getlength)(const PGresult *, int, int);
  char *(*cmdTuples)(PGresult *);
  void (*clear)(PGresult *);
  int (*serverVersion)(const PGconn *);
  PQconninfoOption *(*conninfoParse)(const char *, char **);
  void (*conninfoFree)(PQconninfoOption *);
  void (*freemem)(void *);
  char *(*escapeLiteral)(PGconn *, const char *, size_t);
  /* OpenSSL's OPENSSL_thread_stop, when libpq uses OpenSSL: a thread of
   * libuv's pool that connected frees OpenSSL's state for itself (its
   * random generators, its error queue), as OpenSSL asks of threads it
   * did not start. NULL otherwise. */
  void (*thread_stop)(void);
} pq_api;

extern pq_api pq_fns;

/* Loads libpq once; false (with why) when it cannot. */
bool pq_api_load(char *why, size_t whysz);

#define PQescapeLiteral pq_fns.escapeLiteral
#define PQconnectStart pq_fns.connectStart
#define PQconnectPoll pq_fns.connectPoll
#define PQstatus pq_fns.status
#define PQsocket pq_fns.socket
#define PQerrorMessage pq_fns.errorMessage
#define PQfinish pq_fns.finish
#define PQsetnonblocking pq_fns.setnonblocking
#define PQsetNoticeProcessor pq_fns.setNoticeProcessor
#define PQsendQuery pq_fns.sendQuery
#define PQsendQueryParams pq_fns.sendQueryParams
#define PQflush pq_fns.flush
#define PQconsumeInput pq_fns.consumeInput
#define PQisBusy pq_fns.isBusy
#define PQgetResult pq_fns.getResult
#define PQresultStatus pq_fns.resultStatus
#define PQresultErrorField pq_fns.resultErrorField
#define PQresultErrorMessage pq_fns.resultErrorMessage
#define PQntuples pq_fns.ntuples
#define PQnfields pq_fns.nfields
#define PQfname pq_fns.fname
#define PQftype pq_fns.ftype
#define PQgetisnull pq_fns.getisnull
#define PQgetvalue pq_fns.getvalue
#define PQgetlength pq_fns.getlength
#define PQcmdTuples pq_fns.cmdTuples
#define PQclear pq_fns.clear
#define PQserverVersion pq_fns.serverVersion
#define PQconninfoParse pq_fns.conninfoParse
#define PQconninfoFree pq_fns.conninfoFree
#define PQfreemem pq_fns.freemem

#endif
