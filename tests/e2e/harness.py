"""harness.py: shared pieces of the end-to-end tests: run the engine binary
(ENGINE_BIN) on a flow, and a local HTTP test server on 127.0.0.1."""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINE = os.environ.get("ENGINE_BIN") or os.path.join(ROOT, "build", "engine")
sys.path.insert(0, os.path.join(ROOT, "tests"))

# Secrets the tests hand to the engine; no output may ever contain them.
SECRETS = ["sim-test-token", "hunter2secret", "wrong-token-value", "pat-v2-hunter3-secret",
           "slash/tail-secret9", "file-hunter4-secret", "pg-hunter3-secret", "sim-fivetran-hunter5-secret", "sim-fivetran-key", "sim-dbt-hunter6-token",
           # the Fivetran simulator's Basic header: base64 of its key:secret
           "c2ltLWZpdmV0cmFuLWtleTpzaW0tZml2ZXRyYW4taHVudGVyNS1zZWNyZXQ="]
# Every engine output is also kept here for the suite-wide secret scan.
OUTPUT_DIR = os.environ.get("ENGINE_TEST_OUTPUT")
# Each test process (one ctest case) keeps its engines' journal apart, so a
# run left open by one test is never adopted by another's simulator.
STATE_DIR = tempfile.mkdtemp(prefix="engine-state-")
os.environ["ENGINE_STATE_DIR"] = STATE_DIR


atexit.register(shutil.rmtree, STATE_DIR, True)


def check_no_secrets(text):
    for secret in SECRETS:
        if secret in text:
            raise AssertionError("secret %r leaked into engine output:\n%s" % (secret, text))


def keep_output(text):
    if OUTPUT_DIR:
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(OUTPUT_DIR, "%d.log" % os.getpid()), "a") as f:
            f.write(text)


class Result:
    def __init__(self, proc, stdout, stderr, seconds):
        self.rc = proc.returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    def __repr__(self):
        return "rc=%s\n--- stdout\n%s--- stderr\n%s" % (self.rc, self.stdout, self.stderr)


def write_flow(code, directory=None):
    """Writes code to a temporary .lua file and returns its path."""
    fd, path = tempfile.mkstemp(suffix=".lua", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(code)
    return path


def run(args, stdin=None, env=None, timeout=60):
    """Runs the engine with args; returns a Result."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    for name in [k for k, v in full_env.items() if v is None]:
        del full_env[name]  # None: unset
    start = time.monotonic()
    proc = subprocess.Popen([ENGINE] + list(args), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=full_env, text=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave an engine spinning after a test gave up on it
        proc.communicate()
        raise
    keep_output(out + err)
    check_no_secrets(out + err)
    return Result(proc, out, err, time.monotonic() - start)


def run_flow(code, args=(), **kw):
    path = write_flow(code)
    try:
        return run([path] + list(args), **kw)
    finally:
        os.unlink(path)


def wait_until(cond, timeout=30, what="condition"):
    """Polls cond every 20 ms until it is true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestHandler(BaseHTTPRequestHandler):
    """Routes: /status/N, /bytes/N, /slow/SECONDS, /echo (method, headers,
    body as JSON), /headers (repeated response headers), /stall (headers
    then never the body), /gzip/N (N zero bytes, gzip-encoded), /half/N (N
    bytes, then N more a second later)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body, headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("?")[0].strip("/").split("/")
        self.server.counts[parts[0]] = self.server.counts.get(parts[0], 0) + 1
        if parts[0] == "status":
            code = int(parts[1])
            self.send(code, "" if code in (204, 304) else "status %d" % code)
        elif parts[0] == "bytes":
            n = int(parts[1])
            self.send(200, (b"0123456789abcdef" * (n // 16 + 1))[:n])
        elif parts[0] == "slow":
            time.sleep(float(parts[1]))
            self.send(200, "slow")
        elif parts[0] == "echo":
            self.server.bodies.append(body.decode("utf-8", "replace"))
            self.send(200, json.dumps({
                "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1")}),
                [("Content-Type", "application/json")])
        elif parts[0] == "half":  # N bytes at once, N more a second later
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Length", str(2 * n))
            self.end_headers()
            self.wfile.write(b"h" * n)
            self.wfile.flush()
            time.sleep(1)
            self.wfile.write(b"h" * n)
        elif parts[0] == "gzip":  # N zero bytes, gzip-compressed on the wire
            import gzip
            self.send(200, gzip.compress(b"\0" * int(parts[1]), 9), [("Content-Encoding", "gzip")])
        elif parts[0] == "headers":
            self.send(200, "h", [("X-Test", "yes"), ("X-Multi", "a"), ("X-Multi", "b")])
        elif parts[0] == "stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            time.sleep(float(parts[1]) if len(parts) > 1 else 5)
        else:
            self.send(404, "no route")

    def handle_quietly(self):
        try:
            self.handle_any()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the engine gave up on the answer (a cap, a timeout): expected

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_quietly


class TestServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            return  # the engine hung up on purpose (a cap, a timeout)
        super().handle_error(request, client_address)
    request_queue_size = 512

    def __init__(self, ssl_context=None):
        super().__init__(("127.0.0.1", 0), TestHandler)
        if ssl_context:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if ssl_context else "http"
        self.counts = {}
        self.bodies = []  # what /echo was sent
        self.connections = 0
        # a short poll: stop() (shutdown) returns within it, not half a second
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.server_address[1])

    def stop(self):
        self.shutdown()
        self.server_close()


class ServerTestCase(unittest.TestCase):
    """Tests sharing one local HTTP test server."""

    @classmethod
    def setUpClass(cls):
        cls.server = TestServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()


class SimTestCase(unittest.TestCase):
    """Tests against one Census simulator, reset before each test; flows run
    with the simulator's token and the test-only fast-poll settings."""
    SIM_ENV = {"CENSUS_MIN_POLL": "0.05", "CENSUS_RETRY_DELAY": "0.01"}

    @classmethod
    def setUpClass(cls):
        from census_sim import DEFAULT_TOKEN, CensusSim
        cls.token = DEFAULT_TOKEN
        cls.sim = CensusSim().start()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        self.sim.reset()
        # a journal of its own: run ids restart with each reset
        state = tempfile.mkdtemp(prefix="engine-state-", dir=STATE_DIR)
        os.environ["ENGINE_STATE_DIR"] = state
        self.dir = tempfile.mkdtemp()  # the test's own files (flows, summaries)
        self.addCleanup(shutil.rmtree, self.dir, True)

    def flow(self, code):
        """Writes code to a .lua file in the test's own directory."""
        return write_flow(code, self.dir)

    def sim_env(self, env=None):
        full = {"CENSUS_BASE_URL": self.sim.url, "CENSUS_API_KEY": self.token}
        full.update(self.SIM_ENV)
        full.update(env or {})
        return full

    def start(self, args, env=None):
        """Starts the engine with the simulator's environment; killed at the
        test's end if it still runs."""
        proc = subprocess.Popen([ENGINE] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, **self.sim_env(env)))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc

    def finish(self, proc, timeout=60):
        """Waits for a started engine: rc, stdout, stderr (checked for secrets)."""
        out, err = proc.communicate(timeout=timeout)
        keep_output(out + err)
        check_no_secrets(out + err)
        return proc.returncode, out, err


class ProvidersTestCase(SimTestCase):
    """Tests against the Census, Fivetran and dbt Cloud simulators (self.sim,
    self.fivetran, self.dbt), each reset before each test; flows run with
    every simulator's credentials and the fast-poll settings."""
    # (fast polls would outrun the vendors' request budgets: tests of the
    # budget set them)
    SIM_ENV = dict(SimTestCase.SIM_ENV, FIVETRAN_MIN_POLL="0.05", FIVETRAN_RETRY_DELAY="0.01",
                   DBT_CLOUD_MIN_POLL="0.05", DBT_CLOUD_RETRY_DELAY="0.01",
                   FIVETRAN_MAX_REQUESTS_PER_SECOND="0", DBT_CLOUD_MAX_REQUESTS_PER_SECOND="0")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from fivetran_sim import FivetranSim
        from dbt_cloud_sim import DbtCloudSim
        cls.fivetran = FivetranSim().start()
        cls.dbt = DbtCloudSim().start()

    @classmethod
    def tearDownClass(cls):
        cls.fivetran.stop()
        cls.dbt.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.fivetran.reset()
        self.dbt.reset()

    def sim_env(self, env=None):
        from fivetran_sim import DEFAULT_KEY, DEFAULT_SECRET
        from dbt_cloud_sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN
        full = {"FIVETRAN_BASE_URL": self.fivetran.url, "FIVETRAN_API_KEY": DEFAULT_KEY,
                "FIVETRAN_API_SECRET": DEFAULT_SECRET, "DBT_CLOUD_BASE_URL": self.dbt.url,
                "DBT_CLOUD_API_TOKEN": DEFAULT_TOKEN, "DBT_CLOUD_ACCOUNT_ID": str(DEFAULT_ACCOUNT)}
        full.update(super().sim_env(env))
        return full


def main():
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
