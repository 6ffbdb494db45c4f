/* files.c: files the engine keeps on disk for a run: the state directory
 * (created with its parents), the lock that keeps two engines off one flow
 * (flock, released by the kernel when the holder dies, even by kill -9),
 * and a summary file written so that a reader never sees half of it (a
 * regular file is replaced atomically after fsync; a symlink is written
 * through; a device or FIFO is written in place). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "bindings.h"

#define LOCK_INFO_MAX 256

/* mkdir -p with mode 0700 for what it creates; true when dir exists. */
static bool make_dirs(const char *dir, char *err, size_t errsz) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    snprintf(err, errsz, "path too long");
    return false;
  }
  for (char *p = path + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return false;
      }
      *p = c;
      if (c == '\0') break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errsz, "%s: not a directory", path);
    return false;
  }
  return true;
}

/* mkdirs(dir) -> true | nil, message */
static int l_mkdirs(lua_State *L) {
  char err[PATH_MAX + 64];
  if (make_dirs(luaL_checkstring(L, 1), err, sizeof err)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* lock(path, info) -> true | false, holder's info | nil, message. Takes an
 * exclusive flock on path without waiting and writes info into the file;
 * the descriptor stays open (close-on-exec) until the process exits. A
 * holder's info is what it wrote. */
static int l_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t info_len;
  const char *info = luaL_checklstring(L, 2, &info_len);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char holder[LOCK_INFO_MAX];
    ssize_t n = e == EWOULDBLOCK ? pread(fd, holder, sizeof holder - 1, 0) : -1;
    close(fd);
    if (e != EWOULDBLOCK) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", path, strerror(e));
      return 2;
    }
    lua_pushboolean(L, 0);
    lua_pushlstring(L, holder, n > 0 ? (size_t)n : 0);
    return 2;
  }
  if (ftruncate(fd, 0) != 0 || pwrite(fd, info, info_len, 0) != (ssize_t)info_len) {
    /* the lock holds; only the holder's description is missing */
  }
  lua_pushboolean(L, 1); /* fd deliberately kept open: it is the lock */
  return 1;
}

static bool write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= (size_t)n;
  }
  return true;
}

/* Writes data to a temporary file beside path, fsyncs it, renames it over
 * path and fsyncs the directory. On any failure path is left as it was. */
static bool replace_atomically(const char *path, const char *data, size_t len,
                               char *err, size_t errsz) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    snprintf(err, errsz, "path too long");
    return false;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errsz, "%s", strerror(errno));
    return false;
  }
  bool ok = write_all(fd, data, len) && fsync(fd) == 0;
  int e = errno;
  ok = close(fd) == 0 && ok;
  if (ok && rename(tmp, path) != 0) {
    ok = false;
    e = errno;
  }
  if (!ok) {
    unlink(tmp);
    snprintf(err, errsz, "%s", strerror(e ? e : EIO));
    return false;
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir)
    dir[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf(dir, sizeof dir, ".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return true;
}

/* write_file(path, data) -> true | nil, message */
static int l_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  char err[PATH_MAX + 64] = "";
  char target[PATH_MAX];
  bool ok;
  struct stat st;
  /* a symlink is written through: its target is what gets replaced */
  if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
    if (!realpath(path, target)) { /* dangling: create the target */
      ssize_t n = readlink(path, target, sizeof target - 1);
      if (n < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
      }
      target[n] = '\0';
    }
    path = target;
  }
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    /* a device or FIFO (/dev/stdout, /dev/null): written in place */
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ok = fd >= 0 && write_all(fd, data, len);
    if (!ok) snprintf(err, sizeof err, "%s", strerror(errno));
    if (fd >= 0) close(fd);
  } else {
    ok = replace_atomically(path, data, len, err, sizeof err);
  }
  if (ok) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, err);
  return 2;
}

#define SECRET_FILE_MAX 4096

/* read_secret(path, any_mode) -> text without trailing newlines | nil,
 * message. Refuses a file its group or other users may read, unless
 * any_mode. */
static int l_read_secret(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool any_mode = lua_toboolean(L, 2);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot read %s: %s", path, strerror(errno));
    return 2;
  }
  if (!any_mode && (st.st_mode & (S_IRGRP | S_IROTH))) {
    close(fd);
    lua_pushnil(L);
    char mode[8];
    snprintf(mode, sizeof mode, "%o", (unsigned)(st.st_mode & 07777));
    lua_pushfstring(L, "%s is readable by other users (mode %s): chmod go-r it, or set "
                       "CENSUS_API_KEY_FILE_ANY_MODE=1", path, mode);
    return 2;
  }
  char buf[SECRET_FILE_MAX + 1];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n < 0 || n > SECRET_FILE_MAX) {
    lua_pushnil(L);
    lua_pushfstring(L, n < 0 ? "cannot read %s" : "%s is larger than a token can be", path);
    return 2;
  }
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* whoami() -> pid, host name, uid */
static int l_whoami(lua_State *L) {
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  lua_pushinteger(L, getpid());
  lua_pushstring(L, host);
  lua_pushinteger(L, (lua_Integer)getuid());
  return 3;
}

/* alive(pid) -> whether a process with that id exists here */
static int l_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  lua_pushboolean(L, pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM));
  return 1;
}

/* absolute(path) -> the absolute, resolved path, or path itself */
static int l_absolute(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char out[PATH_MAX];
  lua_pushstring(L, realpath(path, out) ? out : path);
  return 1;
}

void files_register(lua_State *L) {
  static const luaL_Reg fns[] = {{"mkdirs", l_mkdirs},         {"lock", l_lock},
                                 {"write_file", l_write_file}, {"whoami", l_whoami},
                                 {"alive", l_alive},
                                 {"read_secret", l_read_secret},
                                 {"absolute", l_absolute},     {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
