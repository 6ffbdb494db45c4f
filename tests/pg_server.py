"""pg_server.py: throwaway PostgreSQL (and PgBouncer) servers for the tests.

PgServer runs initdb into a fresh temporary directory and starts postgres
there, listening only on 127.0.0.1 (a free port) and on a unix socket inside
that directory. Host connections need the `engine` role's password (SCRAM);
the unix socket trusts the `postgres` superuser, which psql() uses. PgBouncer
puts a transaction-pooling pgbouncer in front of a PgServer. Neither program
runs as root, so as root (CI) both run as the `postgres` system user.
Standard library only; `python3 tests/pg_server.py` runs a self-test.
"""
import atexit
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

USER = "engine"                 # the login role clients use; not a superuser
PASSWORD = "pg-hunter3-secret"  # its password
SUPERUSER = "postgres"          # cluster superuser, unix socket only


def _find_bindir():
    """The newest /usr/lib/postgresql/VERSION/bin holding initdb, or None."""
    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(d + "/initdb")]
    version = lambda d: [int(p) for p in d.split("/")[-2].split(".") if p.isdigit()]
    return max(dirs, key=version) if dirs else None


BIN = _find_bindir()
HAVE_POSTGRES = BIN is not None
PGBOUNCER = "/usr/sbin/pgbouncer"
HAVE_PGBOUNCER = os.access(PGBOUNCER, os.X_OK)
AS_ROOT = os.geteuid() == 0


def _as_owner(cmd):
    """cmd, run as `postgres` when we are root. setpriv execs in place (unlike
    runuser, which forks), so a Popen's pid is the server process itself."""
    if not AS_ROOT:
        return cmd
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd


def _own(path):
    """As root, hands path (recursively) to the postgres user."""
    if AS_ROOT:
        pw = pwd.getpwnam("postgres")
        for top, dirs, files in os.walk(path):
            for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                os.chown(name, pw.pw_uid, pw.pw_gid)


def _env():
    """Our environment without PG* variables (PGPASSWORD, PGHOST, ...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ident(name):
    return '"%s"' % name.replace('"', '""')


def _read(path, offset=0):
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


class PgServer:
    def __init__(self):
        self.dir = self.port = None

    data = property(lambda self: os.path.join(self.dir, "data"))
    log = property(lambda self: os.path.join(self.dir, "postgres.log"))
    running = property(lambda self: bool(self.dir) and os.path.exists(self.data + "/postmaster.pid"))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def _pg(self, tool, *args, check=True):
        """Runs a server binary (initdb, pg_ctl) as the data directory's owner."""
        proc = subprocess.run(_as_owner([os.path.join(BIN, tool)] + list(args)), cwd=self.dir,
                              env=_env(), capture_output=True, text=True, timeout=120)
        if check and proc.returncode:
            raise RuntimeError("%s failed (rc %d):\n%s%s\n--- log\n%s" % (
                tool, proc.returncode, proc.stdout, proc.stderr, _read(self.log)[-3000:]))
        return proc

    def _init(self):
        self.dir = tempfile.mkdtemp(prefix="pg-test-")
        atexit.register(self.cleanup)  # never leave a server behind
        _own(self.dir)
        self._pg("initdb", "-D", self.data, "-U", SUPERUSER, "-E", "UTF8", "--locale=C",
                 "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:  # the port goes on pg_ctl's command line
            f.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 16MB\n" % self.dir.replace("'", "''"))

    def start(self):
        """Starts the server: a new cluster the first time, the same data
        directory and port after a stop() or kill(). Returns self."""
        if self.running:
            return self
        first = self.dir is None
        if first:
            self._init()
        for attempt in range(5):
            if first:
                self.port = free_port()
            offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
            proc = self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", self.log,
                            "-o", "-p %d" % self.port, check=False)
            if proc.returncode == 0:
                break
            if not (first and "already in use" in _read(self.log, offset) and attempt < 4):
                raise RuntimeError("pg_ctl start failed:\n%s%s\n--- log\n%s" % (
                    proc.stdout, proc.stderr, _read(self.log, offset)))
            # someone took the port between free_port() and the bind: pick another
        if first:
            self.psql("CREATE ROLE %s LOGIN NOSUPERUSER PASSWORD '%s'" % (USER, PASSWORD))
        return self

    def stop(self, mode="fast"):
        """Stops the server (idempotent); mode is pg_ctl's: smart, fast, immediate."""
        if not self.running:
            return
        proc = self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", self.data, check=False)
        if proc.returncode and self._pg("pg_ctl", "status", "-D", self.data, check=False).returncode == 0:
            raise RuntimeError("pg_ctl stop failed:\n%s%s" % (proc.stdout, proc.stderr))

    def kill(self):
        """Immediate stop, as if the server crashed: no shutdown checkpoint."""
        self.stop("immediate")

    def cleanup(self):
        """Stops the server and removes its directory (not the run's shared
        one: its fixture does)."""
        if getattr(self, "shared", False):
            return
        if self.dir:
            self.stop("immediate")
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            atexit.unregister(self.cleanup)

    def psql(self, sql, db="postgres"):
        """Runs sql as the superuser over the unix socket; returns stdout."""
        proc = subprocess.run([os.path.join(BIN, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", self.dir, "-p", str(self.port), "-U", SUPERUSER, "-d", db],
                              input=sql, env=_env(), capture_output=True, text=True, timeout=120)
        if proc.returncode:
            raise RuntimeError("psql failed (rc %d) on %r:\n%s" % (proc.returncode, sql, proc.stderr))
        return proc.stdout

    def new_database(self, name=None):
        """Creates a database owned by `engine` (a unique name when None); returns its name."""
        name = name or "test_" + secrets.token_hex(6)
        self.psql("CREATE DATABASE %s OWNER %s" % (_ident(name), USER))
        return name

    def url(self, db, user=USER, password=True, host="127.0.0.1", port=None):
        """postgresql://user[:password]@host:port/db; password True means PASSWORD,
        a string is used as is (a wrong one, say), False leaves it out."""
        if password is True:
            password = PASSWORD
        auth = urllib.parse.quote(user, safe="")
        if password:
            auth += ":" + urllib.parse.quote(password, safe="")
        host = "[%s]" % host if ":" in host else host
        return "postgresql://%s@%s:%d/%s" % (auth, host, port or self.port, urllib.parse.quote(db, safe=""))


# One server for a whole ctest run (tests/tests.cmake's pg:start and
# pg:stop fixtures), so each case does not pay for initdb: the file named
# by ENGINE_TEST_PG holds its directory and port. A case that stops or
# restarts its server starts one of its own instead.
SHARED = os.environ.get("ENGINE_TEST_PG")


def shared_server():
    """The run's shared server when the fixture started one, else a new
    server of this process's own (stopped at exit)."""
    if SHARED and os.path.exists(SHARED):
        with open(SHARED) as f:
            info = json.load(f)
        server = PgServer()
        server.dir, server.port, server.shared = info["dir"], info["port"], True
        if server.running:
            return server
    return PgServer().start()


class PgBouncer:
    """pgbouncer in transaction pooling mode on a free loopback port, in front
    of every database of server; clients log in as `engine` with PASSWORD."""

    def __init__(self, server, pool_mode="transaction"):
        self.server, self.pool_mode = server, pool_mode
        self.dir = self.port = self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def start(self):
        if self.proc:
            return self
        first = self.dir is None
        if first:
            self.dir = tempfile.mkdtemp(prefix="pgbouncer-test-")
            atexit.register(self.cleanup)
        log = os.path.join(self.dir, "pgbouncer.log")
        for attempt in range(5):
            if first:
                self.port = free_port()
            conf = os.path.join(self.dir, "pgbouncer.ini")
            with open(conf, "w") as f:  # a plain password lets pgbouncer do SCRAM on both sides
                f.write("[databases]\n* = host=127.0.0.1 port=%d\n[pgbouncer]\n"
                        "listen_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n"
                        "auth_type = scram-sha-256\nauth_file = %s/userlist.txt\npool_mode = %s\n"
                        "max_client_conn = 500\ndefault_pool_size = 20\n"
                        # while postgres is down clients fail after 10 s (not 120), and
                        # pgbouncer retries logging in every second (not 15) until it is back
                        "query_wait_timeout = 10\nserver_login_retry = 1\n"
                        % (self.server.port, self.port, self.dir, self.pool_mode))
            with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
                f.write('"%s" "%s"\n' % (USER, PASSWORD))
            _own(self.dir)
            offset = os.path.getsize(log) if os.path.exists(log) else 0
            with open(log, "ab") as out:  # in the foreground pgbouncer logs to stderr
                self.proc = subprocess.Popen(_as_owner([PGBOUNCER, conf]), cwd=self.dir, env=_env(),
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            # ready once its log says so: a test connect could reach whoever else has the port
            deadline = time.monotonic() + 30
            while self.proc.poll() is None and time.monotonic() < deadline:
                if "process up" in _read(log, offset):
                    return self
                time.sleep(0.02)
            self.stop()
            if not (first and "already in use" in _read(log, offset) and attempt < 4):
                raise RuntimeError("pgbouncer did not start:\n" + _read(log, offset))

    def stop(self):
        """Stops pgbouncer (idempotent); SIGTERM is its immediate shutdown."""
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self):
        self.stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            atexit.unregister(self.cleanup)

    def url(self, db, user=USER, password=True):
        return self.server.url(db, user, password, port=self.port)


def _client(url):
    """select 1 through the psql binary as a plain client of url: (rc, output)."""
    env = dict(_env(), PGPASSFILE=os.devnull, PGCONNECT_TIMEOUT="5")  # the password must come from url
    proc = subprocess.run([os.path.join(BIN, "psql"), "-X", "-A", "-t", "-w", "-c", "select 1", url],
                          env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _fixture(what, path):
    """pg:start / pg:stop: the run's shared server, described in path."""
    if what == "start":
        server = PgServer().start()
        atexit.unregister(server.cleanup)  # it outlives this process
        with open(path, "w") as f:
            json.dump({"dir": server.dir, "port": server.port}, f)
    elif os.path.exists(path):
        with open(path) as f:
            info = json.load(f)
        server = PgServer()
        server.dir, server.port = info["dir"], info["port"]
        server.cleanup()
        os.unlink(path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["fixture"]:  # tests/tests.cmake: pg_server.py fixture start|stop PATH
        if HAVE_POSTGRES:
            _fixture(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if not HAVE_POSTGRES:
        sys.exit("no PostgreSQL server binaries under /usr/lib/postgresql")
    began = time.monotonic()
    with PgServer() as pg:
        print("postgres from %s on port %d, up in %.2fs" % (BIN, pg.port, time.monotonic() - began))
        db = pg.new_database()
        assert pg.psql("select 1", db) == "1\n"
        assert pg.psql("show listen_addresses").strip() == "127.0.0.1"
        assert _client(pg.url(db)) == (0, "1"), _client(pg.url(db))
        assert _client(pg.url(db, password=False))[0] != 0, "no password: must be refused"
        assert _client(pg.url(db, password="wrong"))[0] != 0, "wrong password: must be refused"
        pg.stop()
        pg.stop()  # idempotent
        assert _client(pg.url(db))[0] != 0, "server stopped: must be unreachable"
        began = time.monotonic()
        pg.start()
        print("restarted in %.2fs" % (time.monotonic() - began))
        assert _client(pg.url(db)) == (0, "1")
        pg.kill()
        pg.start()  # crash recovery
        assert pg.psql("select 1", db) == "1\n"
        if HAVE_PGBOUNCER:
            with PgBouncer(pg) as bouncer:
                assert _client(bouncer.url(db)) == (0, "1"), _client(bouncer.url(db))
                assert _client(bouncer.url(db, password="wrong"))[0] != 0
                print("pgbouncer on port %d ok" % bouncer.port)
        else:
            print("pgbouncer not installed: skipped")
    print("ok")

