/* http_answer.h: an http.request's answer as it arrives and what it becomes
 * for the task (see http_answer.c). */
#ifndef HTTP_ANSWER_H
#define HTTP_ANSWER_H

#include "http_op.h"

/* Points easy's body, header and error output at h's answer. */
void answer_attach(http_op *h, CURL *easy);
/* Pushes true and {status, headers, body}, or false and an error object,
 * for h's transfer that ended with result; logs it with -v. Returns 2. */
int answer_push(lua_State *T, http_op *h, CURLcode result);
void answer_free(http_op *h);

#endif
