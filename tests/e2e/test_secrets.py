"""test_secrets.py: a token never leaves the process in text. Every known
token value (CENSUS_API_KEY, CENSUS_API_KEY_FILE, `token =` options, trigger
URLs) is hidden in log lines, the top-level error line, status lines that
echo server text, summaries (text and JSON), REPL history and captured
child output; tokens come from files only when other users cannot read
them; children can start from a clean environment; plain http leaves this
machine only when allowed; compressed answers only where asked."""
import json
import os
import shutil
import tempfile

from harness import SimTestCase, check_no_secrets, main, run, write_flow

PAT = "pat-v2-hunter3-secret"
SLASH = "secret-token:slash/tail-secret9"
FILE_TOKEN = "secret-token:file-hunter4-secret"


class Secrets(SimTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_raw(self, args, env):
        """Runs the engine without the harness's own check, to look at the
        output; the check runs after."""
        import subprocess
        from harness import ENGINE, keep_output
        p = subprocess.run([os.environ.get("ENGINE_BIN") or ENGINE] + args, capture_output=True, text=True,
                           env=dict(os.environ, **env), timeout=60)
        keep_output(p.stdout + p.stderr)
        return p

    def assert_hidden(self, p, *tokens):
        text = p.stdout + p.stderr
        for t in tokens:
            self.assertNotIn(t, text, text)
        check_no_secrets(text)

    def test_the_flows_own_error_and_log_lines(self):
        for token in [PAT, SLASH]:
            p = self.run_raw(["-e", "log.info('key is %s', os.getenv('CENSUS_API_KEY'))\n"
                                    "error('failed with ' .. os.getenv('CENSUS_API_KEY'))"],
                             {"CENSUS_API_KEY": token})
            self.assertEqual(p.returncode, 1)
            self.assertIn("engine: (command line):2: failed with ***", p.stderr)
            self.assert_hidden(p, token, "tail-secret9")

    def test_status_lines_that_echo_server_text(self):
        self.sim.syncs[1] = {"steps": [{"status": "working", "current_step": "auth with " + self.token},
                                       {"status": "failed", "error_message": "bad token " + self.token}]}
        p = self.run_raw(["--summary-json", os.path.join(self.dir, "s.json"), "-e",
                          "census.sync({sync_id = 1}, {poll = 0.05})"], self.sim_env())
        self.assertEqual(p.returncode, 1)
        self.assertIn("auth with ***", p.stderr)
        self.assert_hidden(p, self.token)
        with open(os.path.join(self.dir, "s.json")) as f:
            text = f.read()
        check_no_secrets(text)
        self.assertIn("bad token ***", text)

    def test_a_v2_token_in_captured_child_output(self):
        p = self.run_raw(["-e", "local r = flow.sh('echo got $CENSUS_API_KEY; echo err $CENSUS_API_KEY >&2')\n"
                                "print(r.stdout, r.stderr)"],
                         {"CENSUS_API_KEY": PAT})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("got ***", p.stdout)
        self.assertIn("err ***", p.stdout)
        self.assert_hidden(p, PAT)

    def test_a_token_option_is_hidden_from_then_on(self):
        self.sim.token = PAT
        self.addCleanup(setattr, self.sim, "token", self.token)
        p = self.run_raw(["-e", "census.sync({sync_id = 1, token = '%s', api_version = 2}, {poll = 0.05})\n"
                                "log.info('used %s')" % (PAT, PAT)], self.sim_env({"CENSUS_API_KEY": ""}))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("used ***", p.stderr)
        self.assert_hidden(p, PAT)

    def test_key_file(self):
        path = os.path.join(self.dir, "key")
        with open(path, "w") as f:
            f.write(self.token + "\n")
        os.chmod(path, 0o600)
        env = self.sim_env({"CENSUS_API_KEY": "", "CENSUS_API_KEY_FILE": path})
        r = run(["-e", "print(census.sync({sync_id = 1}, {poll = 0.05}).status)"], env=env)
        self.assertEqual((r.rc, r.stdout), (0, "completed\n"), r)
        for mode in [0o644, 0o640]:
            os.chmod(path, mode)
            r = run(["-e", "local ok, e = pcall(census.trigger, {sync_id = 1}) print(e.kind, e.message)"], env=env)
            self.assertIn("invalid_argument\tcensus: CENSUS_API_KEY_FILE: %s is readable by other users (mode %o): "
                          "chmod go-r it, or set CENSUS_API_KEY_FILE_ANY_MODE=1" % (path, mode), r.stdout)
        env["CENSUS_API_KEY_FILE_ANY_MODE"] = "1"
        r = run(["-e", "print(census.sync({sync_id = 1}, {poll = 0.05}).status)"], env=env)
        self.assertEqual(r.stdout, "completed\n", r)
        env["CENSUS_API_KEY"] = self.token
        r = run(["-e", "local ok, e = pcall(census.trigger, {sync_id = 1}) print(e.kind, e.message)"], env=env)
        self.assertIn("both CENSUS_API_KEY and CENSUS_API_KEY_FILE are set", r.stdout)
        with open(path, "w") as f:
            f.write(FILE_TOKEN)
        p = self.run_raw(["-e", "pcall(census.trigger, {sync_id = 1}) log.info('%s')" % FILE_TOKEN],
                         dict(env, CENSUS_API_KEY=""))
        self.assert_hidden(p, FILE_TOKEN, "file-hunter4-secret")
        r = run(["-e", "local ok, e = pcall(census.trigger, {sync_id = 1}) print(e.kind, e.message)"],
                env=self.sim_env({"CENSUS_API_KEY": "", "CENSUS_API_KEY_FILE": "/nonexistent/key"}))
        self.assertIn("CENSUS_API_KEY_FILE: cannot read /nonexistent/key", r.stdout)

    def test_repl_history(self):
        self.sim.token = PAT
        self.addCleanup(setattr, self.sim, "token", self.token)
        import pty
        import select
        import time
        from harness import ENGINE
        history = os.path.join(self.dir, "history")
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update(self.sim_env({"ENGINE_HISTORY": history, "TERM": "xterm", "HOME": self.dir,
                                            "CENSUS_API_KEY": ""}))
            os.execv(os.environ.get("ENGINE_BIN") or ENGINE, [ENGINE])
        out = b""

        def wait_for(text, timeout=20):
            nonlocal out
            deadline = time.monotonic() + timeout
            while text.encode() not in out and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.1)[0]:
                    out += os.read(fd, 65536)
            self.assertIn(text.encode(), out)
            out = b""
        wait_for("> ")
        os.write(fd, ("x = census.trigger({sync_id = 1, token = '%s', api_version = 2})\r" % PAT).encode())
        wait_for("> ")
        os.write(fd, b"\x04")
        os.waitpid(pid, 0)
        with open(history) as f:
            saved = f.read()
        self.assertIn("census.trigger", saved)
        self.assertNotIn(PAT, saved)
        check_no_secrets(saved)


class Transport(SimTestCase):
    def test_children_can_start_from_a_clean_environment(self):
        r = run(["-e", "local r = flow.exec({'/usr/bin/env', inherit_env = false, env = {ONLY = 'this'}})\n"
                       "io.write(r.stdout)"], env={"CENSUS_API_KEY": PAT})
        self.assertEqual(r.stdout, "ONLY=this\n", r)
        r = run(["-e", "local r = flow.exec({'/bin/sh', '-c', 'echo ${CENSUS_API_KEY:-unset}'}) io.write(r.stdout)"],
                env={"CENSUS_API_KEY": PAT})
        self.assertEqual(r.stdout, "***\n", "inherited by default (and hidden in what comes back)")

    def test_plain_http_leaves_this_machine_only_when_allowed(self):
        code = "local ok, e = pcall(census.trigger, {sync_id = 1}) print(e.kind, e.message)"
        r = run(["-e", code], env=self.sim_env({"CENSUS_BASE_URL": "http://census.invalid"}))
        self.assertIn("invalid_argument\tCENSUS_BASE_URL http://census.invalid is plain http to a host that is "
                      "not this machine", r.stdout)
        r = run(["-e", code], env=self.sim_env({"CENSUS_BASE_URL": "http://census.invalid",
                                                "CENSUS_ALLOW_HTTP": "1", "CENSUS_RETRY_BUDGET": "0"}))
        self.assertIn("network", r.stdout, "allowed: it tries (and the name does not resolve)")
        r = run(["-e", "print(census.trigger({sync_id = 1}).sync_run_id)"], env=self.sim_env())
        self.assertEqual(r.rc, 0, "loopback is fine")

    def test_accept_encoding_only_where_asked(self):
        r = run(["-e", "census.trigger({sync_id = 1})\n"
                       "local base = os.getenv('CENSUS_BASE_URL')\n"
                       "http.get(base .. '/x') http.get(base .. '/y', {compressed = true})"],
                env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        log = self.sim.log
        self.assertIsNotNone(log[0]["accept_encoding"], "Census requests ask for compression")
        by_path = {e["path"]: e for e in log}
        self.assertIsNone(by_path["/x"]["accept_encoding"])
        self.assertIsNotNone(by_path["/y"]["accept_encoding"])


class Tls(SimTestCase):
    """A Census simulator over https with a CA of its own, made here."""

    @classmethod
    def setUpClass(cls):
        import subprocess
        from census_sim import DEFAULT_TOKEN, CensusSim
        cls.dir = tempfile.mkdtemp()
        cls.cert, cls.key = os.path.join(cls.dir, "ca.pem"), os.path.join(cls.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", cls.key,
                        "-out", cls.cert, "-days", "2", "-subj", "/CN=engine test CA",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)
        cls.token = DEFAULT_TOKEN
        cls.sim = CensusSim(tls=(cls.cert, cls.key)).start()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        shutil.rmtree(cls.dir, True)

    CODE = "local ok, r = pcall(census.sync, {sync_id = 1}, {poll = 0.05}) print(ok and r.status or r.kind, r.message)"

    def test_trusted_only_with_its_ca(self):
        env = self.sim_env({"CENSUS_RETRY_BUDGET": "0", "ENGINE_CA_BUNDLE": None, "CURL_CA_BUNDLE": None,
                            "SSL_CERT_FILE": None})
        self.assertTrue(self.sim.url.startswith("https://"))
        r = run(["-e", self.CODE], env=env)
        self.assertTrue(r.stdout.startswith("network\t"), r)
        self.assertIn("the TLS certificate of 127.0.0.1 is not trusted", r.stdout)
        self.assertIn("point ENGINE_CA_BUNDLE at the certificate of its CA", r.stdout)
        self.assertEqual(self.sim.triggers.get(1), None, "nothing was sent to an untrusted server")
        for var in ["ENGINE_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"]:
            self.sim.reset()
            r = run(["-e", self.CODE], env=dict(env, **{var: self.cert}))
            self.assertTrue(r.stdout.startswith("completed"), (var, r))


class Proxy(SimTestCase):
    def test_https_proxy_and_no_proxy(self):
        code = "local ok, e = pcall(census.trigger, {sync_id = 1}) print(e.kind, e.message)"
        base = {"CENSUS_BASE_URL": "https://census.invalid", "CENSUS_RETRY_BUDGET": "0",
                "HTTPS_PROXY": self.sim.url, "https_proxy": None, "NO_PROXY": None, "no_proxy": None}
        r = run(["-e", code], env=self.sim_env(base))
        self.assertIn("network", r.stdout, r)
        connects = [e["path"] for e in self.sim.log if e["method"] == "CONNECT"]
        self.assertTrue(connects and set(connects) == {"census.invalid:443"}, connects)
        self.sim.reset()
        r = run(["-e", code], env=self.sim_env(dict(base, NO_PROXY="census.invalid")))
        self.assertIn("network", r.stdout, r)
        self.assertEqual([e for e in self.sim.log if e["method"] == "CONNECT"], [], "NO_PROXY: no proxy")


if __name__ == "__main__":
    main()
