/* files.c: files the engine keeps on disk for a run, and the files it reads
 * and writes for the user, written for directories other users share: the
 * state directory (created with its parents), private directories (made
 * 0700, refused when another user could change them), the lock that keeps
 * two engines off one flow (flock, released by the kernel when the holder
 * dies, even by kill -9), a summary file written so that a reader never
 * sees half of it (a regular file is replaced atomically after fsync
 * through a temporary file created exclusively; a symlink is written
 * through, unless another user could have planted it; a device or FIFO is
 * written in place, without waiting for a reader), and reads that never
 * block (a previous regular file, a secret). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "bindings.h"

#define LOCK_INFO_MAX 256
#define ERR_MAX (2 * PATH_MAX + 160)
#define SYMLINK_HOPS 40 /* the kernel's own limit */

/* What a mode is, for messages: "a FIFO", "a directory", ... */
static const char *kind_of(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symlink";
  if (S_ISREG(mode)) return "a regular file";
  return "not a file";
}

/* The directory part of path ("." when it has none). */
static void dir_of(const char *path, char *dir, size_t size) {
  snprintf(dir, size, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir)
    dir[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf(dir, size, ".");
}

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
  char err[ERR_MAX];
  if (make_dirs(luaL_checkstring(L, 1), err, sizeof err)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* Opens the directory part under dfd (made 0700 when missing) and checks
 * that only we can change it: not a symlink, ours, writable by no group
 * and no other user. Returns its descriptor, or -1 after a message naming
 * path (part's full name) and the fix ("remove it", then ", or ..." and
 * alternative when given). Opened relative to the verified parent and
 * without following a link, so nothing can swap a directory in between. */
static int open_private(int dfd, const char *part, const char *path, const char *alternative,
                        char *err, size_t errsz) {
  const char *or_ = alternative ? ", or " : "";
  const char *alt = alternative ? alternative : "";
  if (mkdirat(dfd, part, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errsz, "%s: %s", path, strerror(errno));
    return -1;
  }
  int fd = openat(dfd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0) {
    int e = errno;
    if (fstatat(dfd, part, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
      snprintf(err, errsz, "%s is %s, not a directory: remove it%s%s", path, kind_of(st.st_mode),
               or_, alt);
    else
      snprintf(err, errsz, "%s: %s", path, strerror(e));
    return -1;
  }
  if (fstat(fd, &st) != 0) {
    snprintf(err, errsz, "%s: %s", path, strerror(errno));
  } else if (st.st_uid != geteuid()) {
    snprintf(err, errsz, "%s is owned by uid %u, not you (uid %u): remove it%s%s", path,
             (unsigned)st.st_uid, (unsigned)geteuid(), or_, alt);
  } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    snprintf(err, errsz, "%s is writable by other users (mode %o): chmod go-w it%s%s", path,
             (unsigned)(st.st_mode & 07777), or_, alt);
  } else {
    return fd;
  }
  close(fd);
  return -1;
}

/* private_dir(base, {part, ...}, alternative) -> base/part/... | nil,
 * message. base must exist; each part under it is made (0700) when
 * missing, and refused when another user could change it (open_private).
 * alternative: what else the user can do, added to each fix. */
static int l_private_dir(lua_State *L) {
  const char *base = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *alternative = luaL_optstring(L, 3, NULL);
  lua_Integer n = luaL_len(L, 2);
  for (lua_Integer i = 1; i <= n; i++) { /* checked first: no raise with a descriptor open */
    lua_geti(L, 2, i);
    const char *part = lua_tostring(L, -1);
    luaL_argcheck(L, part && *part && !strchr(part, '/') && strcmp(part, ".") && strcmp(part, ".."),
                  2, "each part must be one directory name");
    lua_pop(L, 1);
  }
  char path[PATH_MAX], err[ERR_MAX];
  snprintf(path, sizeof path, "%s", base);
  int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) snprintf(err, sizeof err, "%s: %s", base, strerror(errno));
  for (lua_Integer i = 1; dfd >= 0 && i <= n; i++) {
    lua_geti(L, 2, i);
    const char *part = lua_tostring(L, -1);
    size_t used = strlen(path);
    if (snprintf(path + used, sizeof path - used, "/%s", part) >= (int)(sizeof path - used)) {
      snprintf(err, sizeof err, "%s: path too long", base);
      close(dfd);
      dfd = -1;
    } else {
      int fd = open_private(dfd, part, path, alternative, err, sizeof err);
      close(dfd);
      dfd = fd;
    }
    lua_pop(L, 1);
  }
  if (dfd < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  close(dfd);
  lua_pushstring(L, path);
  return 1;
}

/* lock(path, info) -> true | false, holder's info | nil, message. Takes an
 * exclusive flock on path without waiting and writes info into the file;
 * the descriptor stays open (close-on-exec) until the process exits. A
 * holder's info is what it wrote. The file is never reached through a
 * symlink and must be our own regular file with no other name, so a file
 * someone planted is refused before it is truncated. */
static int l_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t info_len;
  const char *info = luaL_checklstring(L, 2, &info_len);
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    lua_pushnil(L);
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) /* ELOOP: a symlink; ENXIO: a socket */
      lua_pushfstring(L, "%s is %s, not a regular file: remove it", path, kind_of(st.st_mode));
    else
      lua_pushfstring(L, "%s: %s", path, strerror(e));
    return 2;
  }
  char wrong[96] = "";
  if (!S_ISREG(st.st_mode))
    snprintf(wrong, sizeof wrong, "is %s, not a regular file", kind_of(st.st_mode));
  else if (st.st_uid != geteuid())
    snprintf(wrong, sizeof wrong, "is owned by uid %u, not you (uid %u)", (unsigned)st.st_uid,
             (unsigned)geteuid());
  else if (st.st_nlink != 1)
    snprintf(wrong, sizeof wrong, "has other hard links");
  if (wrong[0]) {
    close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: remove it", path, wrong);
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

/* Follows the symlinks at the end of path into out: what a write to path
 * reaches. A symlink another user owns is refused when its directory is
 * sticky or writable by a group or others: they could have planted it (the
 * kernel's protected_symlinks covers only world-writable sticky
 * directories, and never a lookup done here). Directories inside a link's
 * text are left to the kernel. *proc_link: the last link is a descriptor
 * under /proc (/dev/stdout on a pipe: "pipe:[N]" names nothing), so only
 * opening that link reaches the object. */
static bool resolve(const char *path, char *out, bool *proc_link, char *err, size_t errsz) {
  char cur[PATH_MAX], text[PATH_MAX], dir[PATH_MAX];
  *proc_link = false;
  if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur) {
    snprintf(err, errsz, "%s: path too long", path);
    return false;
  }
  for (int hops = 0;; hops++) {
    struct stat st, dst;
    if (lstat(cur, &st) != 0) {
      if (errno != ENOENT) {
        snprintf(err, errsz, "%s: %s", cur, strerror(errno));
        return false;
      }
      break; /* a new file (or a dangling link's target): created */
    }
    if (!S_ISLNK(st.st_mode)) break;
    if (hops == SYMLINK_HOPS) {
      snprintf(err, errsz, "%s: %s", path, strerror(ELOOP));
      return false;
    }
    dir_of(cur, dir, sizeof dir);
    if (stat(dir, &dst) != 0) {
      snprintf(err, errsz, "%s: %s", dir, strerror(errno));
      return false;
    }
    if (st.st_uid != geteuid() && (dst.st_mode & (S_ISVTX | S_IWGRP | S_IWOTH))) {
      snprintf(err, errsz, "%s is a symlink owned by uid %u in a directory other users can write: "
                           "remove it, or use a path in a directory of your own", cur,
               (unsigned)st.st_uid);
      return false;
    }
    ssize_t n = readlink(cur, text, sizeof text - 1);
    if (n < 0) {
      snprintf(err, errsz, "%s: %s", cur, strerror(errno));
      return false;
    }
    text[n] = '\0';
    char next[PATH_MAX];
    int len = text[0] == '/' ? snprintf(next, sizeof next, "%s", text)
                             : snprintf(next, sizeof next, "%s/%s", strcmp(dir, "/") ? dir : "", text);
    if (len >= (int)sizeof next) {
      snprintf(err, errsz, "%s: path too long", cur);
      return false;
    }
    if (strncmp(cur, "/proc/", 6) == 0 && lstat(next, &st) != 0) {
      *proc_link = true;
      break;
    }
    memcpy(cur, next, (size_t)len + 1);
  }
  memcpy(out, cur, strlen(cur) + 1);
  return true;
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

/* Creates a new file beside path, named path.tmp.<12 random letters>, with
 * O_EXCL (a name someone planted, file or symlink, is never opened) and
 * mode 0644 minus the umask. Returns its descriptor and its name in tmp. */
static int create_temp(const char *path, char *tmp, size_t size) {
  static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  static unsigned long counter;
  for (int attempt = 0; attempt < 100; attempt++) {
    unsigned char r[12];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
      /* no entropy yet (early boot): O_EXCL, not the name, keeps a planted
       * file out; a name that varies only saves retries */
      unsigned long x = (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16) ^ ++counter;
      for (size_t i = 0; i < sizeof r; i++) r[i] = (unsigned char)(x >> (i % 8 * 8)) ^ (unsigned char)i;
    }
    char suffix[sizeof r + 1];
    for (size_t i = 0; i < sizeof r; i++) suffix[i] = letters[r[i] % (sizeof letters - 1)];
    suffix[sizeof r] = '\0';
    if (snprintf(tmp, size, "%s.tmp.%s", path, suffix) >= (int)size) {
      errno = ENAMETOOLONG;
      return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

/* Writes data to a temporary file beside path, fsyncs it, renames it over
 * path and fsyncs the directory. On any failure path is left as it was.
 * rename replaces the name itself: whatever path is by then (a file
 * someone else made, a link) is replaced, never written through. */
static bool replace_atomically(const char *path, const char *data, size_t len,
                               char *err, size_t errsz) {
  char tmp[PATH_MAX];
  int fd = create_temp(path, tmp, sizeof tmp);
  if (fd < 0) {
    snprintf(err, errsz, "%s: %s", path, strerror(errno));
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
    snprintf(err, errsz, "%s: %s", path, strerror(e ? e : EIO));
    return false;
  }
  char dir[PATH_MAX];
  dir_of(path, dir, sizeof dir);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return true;
}

/* Writes data into a device or FIFO in place (mode: what it is). Opened
 * without following a link (except a /proc descriptor link, which only
 * this process has) and without waiting: a FIFO no one reads is an error,
 * not a hang; then the writes block as usual. */
static bool write_in_place(const char *path, bool proc_link, mode_t mode, const char *data,
                           size_t len, char *err, size_t errsz) {
  int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | (proc_link ? 0 : O_NOFOLLOW));
  struct stat st;
  if (fd < 0) {
    if (errno == ENXIO && S_ISFIFO(mode))
      snprintf(err, errsz, "%s is a FIFO no one reads: start its reader first, or use a file",
               path);
    else
      snprintf(err, errsz, "%s: %s", path, strerror(errno));
    return false;
  }
  bool ok = fstat(fd, &st) == 0;
  if (ok && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
    /* a file is never overwritten in place: it was swapped in since we
     * looked, or a /proc link leads to a file that has no name left */
    close(fd);
    snprintf(err, errsz, proc_link ? "%s leads to a file without a path: give a path instead"
                                   : "%s changed while it was written: try again", path);
    return false;
  }
  int flags = ok ? fcntl(fd, F_GETFL) : -1;
  ok = flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 && write_all(fd, data, len);
  int e = errno;
  ok = close(fd) == 0 && ok;
  if (!ok) snprintf(err, errsz, "%s: %s", path, strerror(e ? e : EIO));
  return ok;
}

/* write_file(path, data) -> true | nil, message */
static int l_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  char err[ERR_MAX] = "", target[PATH_MAX];
  bool proc_link, ok = resolve(path, target, &proc_link, err, sizeof err);
  struct stat st;
  if (!ok) {
    /* refused: err says why */
  } else if (proc_link) { /* /dev/stdout on a pipe or socket */
    ok = write_in_place(target, true, stat(target, &st) == 0 ? st.st_mode : 0, data, len, err,
                        sizeof err);
  } else if (lstat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
    /* a device or FIFO (/dev/null, /dev/stdout on a terminal) */
    ok = write_in_place(target, false, st.st_mode, data, len, err, sizeof err);
  } else {
    ok = replace_atomically(target, data, len, err, sizeof err);
  }
  if (ok) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* read_regular(path, max_bytes) -> text | nil, message. Reads a regular
 * file (through symlinks as write_file follows them) and nothing else: a
 * FIFO or a device (/dev/stdout) could block forever or hand back our own
 * output. Never waits. */
static int l_read_regular(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max >= 0 && max < (lua_Integer)1 << 30, 2, "out of range");
  char err[ERR_MAX] = "", target[PATH_MAX];
  bool proc_link;
  struct stat st;
  if (!resolve(path, target, &proc_link, err, sizeof err)) {
    /* refused: err says why */
  } else if (proc_link || lstat(target, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, sizeof err, "%s is not a regular file", target);
  } else if (st.st_size > max) {
    snprintf(err, sizeof err, "%s is larger than %lld bytes", target, (long long)max);
  }
  if (err[0]) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  /* the buffer before the descriptor, from Lua: nothing raises while it is
   * open; sized by the look above, which only the fstat below vouches for */
  size_t cap = (size_t)st.st_size + 1;
  char *buf = lua_newuserdatauv(L, cap, 0);
  size_t got = 0;
  int fd = open(target, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, sizeof err, "%s: %s", target, strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    snprintf(err, sizeof err, "%s is %s, not a regular file", target, kind_of(st.st_mode));
  } else {
    ssize_t n = 0;
    while (got < cap && ((n = read(fd, buf + got, cap - got)) > 0 || (n < 0 && errno == EINTR)))
      if (n > 0) got += (size_t)n;
    if (n < 0)
      snprintf(err, sizeof err, "%s: %s", target, strerror(errno));
    else if (got == cap) /* it grew, or changed under us */
      snprintf(err, sizeof err, "%s changed while it was read", target);
  }
  if (fd >= 0) close(fd);
  if (err[0]) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, buf, got);
  return 1;
}

#define SECRET_FILE_MAX 4096

/* read_secret(path, any_mode [, how_to_allow]) -> text without trailing newlines | nil,
 * message. Refuses anything but a regular file (a FIFO would block the run
 * forever) and a file its group or other users may read, unless any_mode.
 * Symlinks are followed: Kubernetes mounts secrets as links. */
static int l_read_secret(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool any_mode = lua_toboolean(L, 2);
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    lua_pushnil(L);
    if (e == ENXIO && stat(path, &st) == 0) /* a socket, a device without a driver */
      lua_pushfstring(L, "%s is not a regular file (%s): point it at the key file", path,
                      kind_of(st.st_mode));
    else
      lua_pushfstring(L, "cannot read %s: %s", path, strerror(e));
    return 2;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s is not a regular file (%s): point it at the key file", path,
                    kind_of(st.st_mode));
    return 2;
  }
  if (!any_mode && (st.st_mode & (S_IRGRP | S_IROTH))) {
    close(fd);
    lua_pushnil(L);
    char mode[8];
    snprintf(mode, sizeof mode, "%o", (unsigned)(st.st_mode & 07777));
    lua_pushfstring(L, "%s is readable by other users (mode %s): chmod go-r it, or set %s", path,
                    mode, luaL_optstring(L, 3, "its _FILE_ANY_MODE variable to 1"));
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

/* whoami() -> pid, host name, uid. The host name is $ENGINE_HOSTNAME when
 * set (a pod's node, or a stable name where the machine's changes), else
 * the machine's: runs record it, and a shared journal tells hosts by it. */
static int l_whoami(lua_State *L) {
  char host[256] = "";
  const char *given = getenv("ENGINE_HOSTNAME");
  if (given && *given)
    snprintf(host, sizeof host, "%s", given);
  else
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
  static const luaL_Reg fns[] = {{"mkdirs", l_mkdirs},
                                 {"private_dir", l_private_dir},
                                 {"lock", l_lock},
                                 {"write_file", l_write_file},
                                 {"read_regular", l_read_regular},
                                 {"whoami", l_whoami},
                                 {"alive", l_alive},
                                 {"read_secret", l_read_secret},
                                 {"absolute", l_absolute},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
