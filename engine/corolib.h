/* corolib.h: the coroutine library flows see (see corolib.c). */
#ifndef COROLIB_H
#define COROLIB_H

#include <lua.h>

/* Replaces the functions of the loaded coroutine library in place. */
void corolib_open(lua_State *L);

#endif
