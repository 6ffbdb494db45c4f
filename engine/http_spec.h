/* http_spec.h: what an http.request asks for, read from its options table
 * and checked before anything is allocated (see http_spec.c). */
#ifndef HTTP_SPEC_H
#define HTTP_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#define HTTP_METHOD_MAX 16

typedef struct {
  const char *url, *method, *body; /* kept alive by the options table */
  size_t body_len;
  double timeout;
  bool follow;
  bool compressed;  /* ask for a compressed answer (Accept-Encoding) */
  size_t max_bytes; /* the largest answer body kept */
  int header_lines; /* stack index of a list of "Name: value" strings */
} request_spec;

/* Reads the options table at 1 into spec; raises on misuse. Leaves what it
 * read on the stack above 1. */
void request_spec_read(lua_State *L, request_spec *spec);

#endif
