/* lazylib.c: loading a shared library on first use (see lazylib.h). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "lazylib.h"

bool lazylib_load(const char *lib, const char *package, const lazy_symbol *syms, size_t n,
                  void *table, char *why, size_t whysz) {
  void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    snprintf(why, whysz, "cannot load %s (%s): install %s", lib, dlerror(), package);
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    void *f = dlsym(handle, syms[i].symbol); /* (lib, then what it loaded) */
    if (!f && !syms[i].optional) {
      snprintf(why, whysz, "%s has no %s: install a newer %s", lib, syms[i].symbol, package);
      dlclose(handle);
      return false;
    }
    /* POSIX: a pointer from dlsym converts to a function pointer */
    memcpy((char *)table + syms[i].offset, &f, sizeof f);
  }
  return true;
}
