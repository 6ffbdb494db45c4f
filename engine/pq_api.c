/* pq_api.c: libpq, loaded on first use (see pq_api.h for why). */
#include "lazylib.h"
#include "pq_api.h"

pq_api pq_fns;

bool pq_api_load(char *why, size_t whysz) {
  static bool loaded;
  if (loaded) return true;
#define FN(field, symbol) {#symbol, offsetof(pq_api, field), false}
  static const lazy_symbol fns[] = {
      FN(connectStart, PQconnectStart),
      FN(connectPoll, PQconnectPoll),
      FN(status, PQstatus),
      FN(socket, PQsocket),
      FN(errorMessage, PQerrorMessage),
      FN(finish, PQfinish),
      FN(setnonblocking, PQsetnonblocking),
      FN(setNoticeProcessor, PQsetNoticeProcessor),
      FN(sendQuery, PQsendQuery),
      FN(sendQueryParams, PQsendQueryParams),
      FN(flush, PQflush),
      FN(consumeInput, PQconsumeInput),
      FN(isBusy, PQisBusy),
      FN(getResult, PQgetResult),
      FN(resultStatus, PQresultStatus),
      FN(resultErrorField, PQresultErrorField),
      FN(resultErrorMessage, PQresultErrorMessage),
      FN(ntuples, PQntuples),
      FN(nfields, PQnfields),
      FN(fname, PQfname),
      FN(ftype, PQftype),
      FN(getisnull, PQgetisnull),
      FN(getvalue, PQgetvalue),
      FN(getlength, PQgetlength),
      FN(cmdTuples, PQcmdTuples),
      FN(clear, PQclear),
      FN(serverVersion, PQserverVersion),
      FN(conninfoParse, PQconninfoParse),
      FN(conninfoFree, PQconninfoFree),
      FN(freemem, PQfreemem),
      FN(escapeLiteral, PQescapeLiteral),
      {"OPENSSL_thread_stop", offsetof(pq_api, thread_stop), true}, /* (libcrypto, libpq's) */
  };
#undef FN
  loaded = lazylib_load("libpq.so.5", "libpq5", fns, sizeof fns / sizeof *fns, &pq_fns, why,
                        whysz);
  return loaded;
}
