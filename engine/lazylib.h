/* lazylib.h: a shared library loaded on first use (dlopen), its functions
 * copied into a table of pointers. curl_api.c and edit_api.c use it for
 * libcurl and libedit: start-up then relocates neither, and a flow that
 * makes no request and opens no prompt never loads them. */
#ifndef LAZYLIB_H
#define LAZYLIB_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  const char *symbol;
  size_t offset; /* of its pointer in the table */
  bool optional;  /* missing (or in none of lib's dependencies): left NULL */
} lazy_symbol;

/* Opens lib and fills table (a struct of function pointers) from syms;
 * false, with why (naming the library and the package to install), when
 * it cannot. The library stays loaded for the process. */
bool lazylib_load(const char *lib, const char *package, const lazy_symbol *syms, size_t n,
                  void *table, char *why, size_t whysz);

#endif
