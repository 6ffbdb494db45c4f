"""test_valgrind.py: no leaks and no memory errors under valgrind after a
normal exit, an error exit, an interrupt and cancelled HTTP transfers, and
on the journal's key paths (SQLite and PostgreSQL)."""
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time

from harness import ENGINE, ServerTestCase, main, write_flow

VALGRIND = shutil.which(os.environ.get("VALGRIND", "valgrind")) or "valgrind"
ARGS = [VALGRIND, "-q", "--leak-check=full", "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99"]

NORMAL = """local base = ...
local r = flow.parallel({
  function() flow.sleep(0.01) return 1 end,
  function() return http.get(base .. '/bytes/100000').status end,
  function() return json.decode(http.post(base .. '/echo', json.encode({a = 1})).body).method end,
}, {limit = 2})
local h = flow.spawn(flow.sleep, 5)
h:cancel()
pcall(h.wait, h)
pcall(flow.timeout, 0.1, http.get, base .. '/slow/3')
pcall(flow.retry, {attempts = 2, delay = 0}, function() error('x') end)
assert(flow.sh('echo out; echo err >&2', {max_output = 2}).code == 0)
flow.step('step', flow.sleep, 0.3)
pcall(flow.step, 'failing', error, 'x')
pcall(flow.sh, 'sleep 5', {timeout = 0.2})
pcall(flow.exec, {'no-such-command-here'})
print(r[1], r[2], r[3])
"""


class Valgrind(ServerTestCase):
    def run_flow(self, code, interrupt=False):
        path = write_flow(code)
        self.addCleanup(os.unlink, path)
        summary = path + ".json"
        self.addCleanup(lambda: os.path.exists(summary) and os.unlink(summary))
        proc = subprocess.Popen(ARGS + [ENGINE, "--progress=always", "--summary-json", summary,
                                        path, self.server.url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if interrupt:
            self.assertEqual(proc.stdout.readline(), "ready\n")
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
        self.assertNotEqual(proc.returncode, 99, err)
        self.assertNotRegex(err, r"==\d+== (Invalid|Conditional|.*definitely lost|.*indirectly lost)")
        return proc.returncode, out, err

    def test_normal_exit(self):
        rc, out, err = self.run_flow(NORMAL)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "1\t200\tPOST\n")

    def test_error_exit(self):
        rc, _, err = self.run_flow("local base = ...\nflow.spawn(http.get, base .. '/slow/5')\n"
                                   "flow.spawn(flow.sleep, 5)\nflow.sleep(0.1)\nerror('fail')")
        self.assertEqual(rc, 1, err)

    def test_os_exit(self):
        rc, out, err = self.run_flow(
            "local base = ...\nflow.spawn(http.get, base .. '/slow/5')\n"
            "flow.spawn(flow.sh, 'sleep 30')\nflow.step('s', flow.sleep, 0.01)\n"
            "local co = coroutine.wrap(function() flow.sleep(0.1) os.exit(4, true) end)\n"
            "local c <close> = setmetatable({}, {__close = function() print('closed') end})\n"
            "co()")
        self.assertEqual((rc, out), (4, "closed\n"), err)

    def test_coroutines(self):
        rc, out, err = self.run_flow(
            "local co\nlocal h = flow.spawn(function()\n"
            "  co = coroutine.create(function()\n"
            "    local x <close> = setmetatable({}, {__close = function() flow.sleep(0.01) end})\n"
            "    coroutine.yield(1) end)\n"
            "  coroutine.resume(co) end)\nh:wait() h = nil collectgarbage()\n"
            "print(coroutine.close(co) == false)\n"
            "local parked = coroutine.create(function() flow.sleep(0.05) end)\n"
            "local w = flow.spawn(coroutine.resume, parked)\nflow.sleep(0.01)\n"
            "print(coroutine.resume(parked)) w:wait()")
        self.assertEqual((rc, out), (0, "true\nfalse\tcannot resume non-suspended coroutine\n"), err)

    def test_journal_census_and_history(self):
        sim, env = self.census({1: {"steps": ["working", "completed"]},
                                   2: {"trigger": ["lost_created"], "steps": ["completed"]}})
        flow = write_flow("flow.step('s', function() return 1 end)\n"
                          "flow.parallel({function() return census.sync({sync_id = 1}) end,\n"
                          "  function() return census.sync({sync_id = 2}) end})\n"
                          "local h = flow.spawn(census.sync, {sync_id = 1})\nflow.sleep(0.02) h:cancel()\n"
                          "pcall(h.wait, h)\nflow.step('fail', error, 'x')")
        self.addCleanup(os.unlink, flow)
        for args in [[flow], ["--resume", flow], ["runs"], ["runs", "1", "--json"]]:
            p = subprocess.run(ARGS + [ENGINE] + args, capture_output=True, text=True, env=env, timeout=240)
            self.assertNotEqual(p.returncode, 99, p.stderr)
            self.check(p.stderr)

    def test_operability(self):
        # JSON logs, metrics, parameters, syncs by name, retried rows, on_finish handlers
        sim, env = self.census({1: {"name": "Contacts", "runs": [["failed"], ["completed"]]},
                                   2: {"name": "Leads", "steps": ["completed"]}}, HOOK=self.server.url)
        flow = write_flow("local p = flow.params{names = {type = 'list', default = {'Contacts', 'Leads'}},\n"
                          "  slow = {type = 'boolean'}}\n"
                          "flow.on_finish(function(s) http.post(os.getenv('HOOK') .. '/echo', json.encode(s)) end)\n"
                          "flow.on_finish(function() flow.sleep(30) end, {timeout = 0.1})\n"
                          "local fns = {}\nfor i, name in ipairs(p.names) do fns[i] = function()\n"
                          "  return flow.retry({attempts = 2, delay = 0}, census.sync, {name = name}) end end\n"
                          "flow.step('syncs', flow.parallel, fns)\n"
                          "pcall(census.sync, {name = 'Contact'})\n"
                          "pcall(flow.parallel, {function() error('a') end, function() error('b') end})\n"
                          "log.info('done \\1 \\255')")
        self.addCleanup(os.unlink, flow)
        metrics = os.path.join(env["ENGINE_STATE_DIR"], "m.prom")
        for args, rc in [(["--log-format=json", "--metrics", metrics, flow], 0), ([flow, "--help"], 0),
                         ([flow, "--bad"], 2)]:
            p = subprocess.run(ARGS + [ENGINE] + args, capture_output=True, text=True, env=env, timeout=240)
            self.assertEqual(p.returncode, rc, p.stderr)
            self.check(p.stderr)
        self.assertTrue(os.path.exists(metrics))

    def test_stop_paths(self):
        # a stop while a trigger is answered (its run found and cancelled),
        # a handler stopped at its deadline, a handler's os.exit
        sim, env = self.census({1: {"trigger": [{"created_slow": 20}], "steps": ["working"]}})
        flow = write_flow("flow.on_finish(function() while true do end end, {timeout = 0.3})\n"
                          "flow.on_finish(function() os.exit(5) end)\n"
                          "for i = 1, 3 do pcall(census.sync, {sync_id = 1}) end")
        self.addCleanup(os.unlink, flow)
        proc = subprocess.Popen(ARGS + [ENGINE, flow], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        deadline = time.monotonic() + 120
        while not sim.runs and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
        self.assertNotEqual(proc.returncode, 99, err)
        self.check(err)
        self.assertEqual(proc.returncode, 5, err)
        self.assertEqual(sum(sim.cancels.values()), 1, err)

    def test_fivetran_and_dbt_cloud(self):
        # both new providers: a trigger, a wait, results, a failure, a lost
        # answer adopted, the stop that cancels dbt Cloud and leaves Fivetran
        from dbt_cloud_sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN as DBT_TOKEN, DbtCloudSim
        from fivetran_sim import DEFAULT_KEY, DEFAULT_SECRET, FivetranSim
        ft = FivetranSim(scenarios={"a": {"steps": ["syncing", "succeeded"]},
                                    "b": {"steps": ["syncing", "failed"], "fail_message": "x"},
                                    "c": {"steps": ["syncing"]}}).start()
        dbt = DbtCloudSim(scenarios={"1": {"steps": [3, 10], "run_results": "default",
                                           "trigger": ["lost_created"]},
                                     "2": {"steps": [3]}}).start()
        self.addCleanup(ft.stop)
        self.addCleanup(dbt.stop)
        _, env = self.census({})
        env.update(FIVETRAN_BASE_URL=ft.url, FIVETRAN_API_KEY=DEFAULT_KEY, FIVETRAN_API_SECRET=DEFAULT_SECRET,
                   FIVETRAN_MIN_POLL="0.05", FIVETRAN_POLL="0.05", FIVETRAN_RETRY_DELAY="0.01",
                   DBT_CLOUD_BASE_URL=dbt.url, DBT_CLOUD_API_TOKEN=DBT_TOKEN, DBT_CLOUD_ACCOUNT_ID=str(DEFAULT_ACCOUNT),
                   DBT_CLOUD_MIN_POLL="0.05", DBT_CLOUD_POLL="0.05", DBT_CLOUD_RETRY_DELAY="0.01")
        flow = write_flow("fivetran.sync{connection_id = 'a'}\npcall(fivetran.sync, {connection_id = 'b'})\n"
                          "dbt_cloud.run{job_id = 1}\nprint('ready')\nio.stdout:flush()\n"
                          "flow.parallel({function() return fivetran.sync{connection_id = 'c'} end,\n"
                          "  function() return dbt_cloud.run{job_id = 2} end})")
        self.addCleanup(os.unlink, flow)
        proc = subprocess.Popen(ARGS + [ENGINE, flow], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        self.assertEqual(proc.stdout.readline(), "ready\n")
        deadline = time.monotonic() + 120
        while len(dbt.state()["jobs"].get("2", {}).get("runs", [])) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
        self.assertNotEqual(proc.returncode, 99, err)
        self.check(err)
        self.assertEqual(proc.returncode, 143, err)
        self.assertIn("left running in Fivetran: no cancel endpoint", err)
        self.assertEqual(dbt.state()["jobs"]["1"]["triggers"], 1, err)
        for args in [["runs"], ["runs", "1"], ["runs", "1", "--json"]]:
            p = subprocess.run(ARGS + [ENGINE] + args, capture_output=True, text=True, env=env, timeout=240)
            self.assertNotEqual(p.returncode, 99, p.stderr)
            self.check(p.stderr)

    def test_journal_on_postgres(self):
        # the PostgreSQL store's key paths: connecting, schema, leases and
        # their renewal, claims, group commits, a lost connection retried
        # (the server restarted mid-run), the lock refused (75), history
        from pg_server import HAVE_POSTGRES, PgServer
        if not HAVE_POSTGRES:
            self.skipTest("PostgreSQL is not installed (./dev installs it)")
        pg = PgServer().start()
        self.addCleanup(pg.cleanup)
        url = pg.url(pg.new_database())
        # sync 1 runs until the second engine was refused (valgrind is slow)
        sim, env = self.census({1: {"steps": ["working"]}, 2: {"steps": ["completed"]}},
                               ENGINE_STATE_URL=url, ENGINE_STATE_LEASE="10")
        flow = write_flow("flow.step('s', function() return 1 end)\n"
                          "flow.parallel({function() return census.sync({sync_id = 1}) end,\n"
                          "  function() return census.sync({sync_id = 2}) end})\nprint('done')")
        self.addCleanup(os.unlink, flow)
        proc = subprocess.Popen(ARGS + [ENGINE, flow], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.communicate()))
        deadline = time.monotonic() + 120
        while sim.triggers.get(1) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(ARGS + [ENGINE, flow], capture_output=True, text=True, env=env, timeout=240)
        self.assertEqual(second.returncode, 75, second.stderr)
        sim.syncs[1] = {"steps": ["working"] * 10 + ["completed"]}
        pg.stop()
        time.sleep(0.3)
        pg.start()
        out, err = proc.communicate(timeout=240)
        self.assertNotEqual(proc.returncode, 99, err)
        self.check(err)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(sim.triggers, {1: 1, 2: 1})
        for args in [["runs"], ["runs", "1", "--json"]]:
            p = subprocess.run(ARGS + [ENGINE] + args, capture_output=True, text=True, env=env, timeout=240)
            self.assertNotEqual(p.returncode, 99, p.stderr)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.check(p.stderr)

    def test_ui_request_path(self):
        # engine ui: the server on the loop, each request's task, pages,
        # the API, 404/405, a request left waiting when the server stops
        import urllib.error
        import urllib.request
        sim, env = self.census({1: {"steps": ["working", "completed"]}, 2: {"steps": ["failed"]}})
        flow = write_flow("flow.step('<b>s</b>', function() log.info('hello') return 1 end)\n"
                          "census.sync({sync_id = 1})\npcall(census.sync, {sync_id = 2})")
        self.addCleanup(os.unlink, flow)
        p = subprocess.run([ENGINE, flow], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        proc = subprocess.Popen(ARGS + [ENGINE, "ui", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        base = proc.stdout.readline().strip()
        self.assertRegex(base, r"^http://127\.0\.0\.1:\d+/$")
        for path, status in [("", 200), ("runs/1", 200), ("runs/1/summary.json", 200), ("api/runs", 200),
                             ("api/runs/1", 200), ("flows/" + flow.replace("/", "%2F"), 200), ("jobs/census/1", 200),
                             ("assets/ui.css", 200), ("runs/99", 404), ("nothing", 404)]:
            try:
                with urllib.request.urlopen(base + path, timeout=60) as r:
                    code = r.status
                    r.read()
            except urllib.error.HTTPError as e:
                code = e.code
            self.assertEqual(code, status, path)
        try:
            urllib.request.urlopen(urllib.request.Request(base, method="POST", data=b"x"), timeout=60)
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 405)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
        self.assertNotEqual(proc.returncode, 99, err)
        self.check(err)
        p = subprocess.run(ARGS + [ENGINE, "runs", "1", "--logs"], capture_output=True, text=True, env=env,
                           timeout=240)
        self.assertIn("hello", p.stdout)
        self.check(p.stderr)

    def census(self, scenarios, **env):
        """A Census simulator playing scenarios, and the environment (token,
        fast polls, a state directory of its own) that reaches it."""
        from census_sim import DEFAULT_TOKEN, CensusSim
        sim = CensusSim(scenarios=scenarios).start()
        self.addCleanup(sim.stop)
        state = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state, True)
        return sim, dict(os.environ, CENSUS_BASE_URL=sim.url, CENSUS_API_KEY=DEFAULT_TOKEN, CENSUS_MIN_POLL="0.05",
                         CENSUS_POLL="0.05", CENSUS_RETRY_DELAY="0.01", ENGINE_STATE_DIR=state, **env)

    def check(self, err):
        self.assertNotRegex(err, r"==\d+== (Invalid|Conditional|.*definitely lost|.*indirectly lost)")

    def test_repl_piped(self):
        proc = subprocess.run(ARGS + [ENGINE, "-i"], input="x = 1 + 1\nx\n"
                              "flow.spawn(function() flow.sleep(0.1) return 'bg' end)\n"
                              "flow.spawn(flow.sleep, 30)\nflow.sleep(0.3)\nos.exit(0)\nos.exit(0)\n",
                              capture_output=True, text=True, timeout=240)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.check(proc.stderr)
        self.assertIn('done: "bg"', proc.stdout)

    def test_repl_terminal(self):
        log = tempfile.mktemp()
        self.addCleanup(lambda: os.path.exists(log) and os.unlink(log))
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update({"ENGINE_HISTORY": log + ".history", "TERM": "xterm"})
            os.execv(VALGRIND, ARGS + ["--log-file=" + log, ENGINE])
        out, mark = b"", 0

        def wait_for(text, timeout=120):
            nonlocal out, mark
            deadline = time.monotonic() + timeout
            while out.find(text.encode(), mark) < 0 and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.1)[0]:
                    out += os.read(fd, 65536)
            at = out.find(text.encode(), mark)
            self.assertGreaterEqual(at, 0, (text, out))
            mark = at + len(text)

        wait_for("Ctrl-D leaves")
        wait_for("> ")
        for keys, shown in [("census.tr\t", "igger"), ("\r", "function"),
                            ("flow.spawn(flow.sleep, 600)\r", "(running)")]:
            os.write(fd, keys.encode())
            wait_for(shown)
            wait_for("> ") if keys != "census.tr\t" else None
        os.write(fd, b"flow.sleep(600)\r")
        wait_for("flow.sleep(600)")
        time.sleep(1)
        os.write(fd, b"\x03")
        wait_for("interrupted")
        wait_for("> ")
        os.write(fd, b"\x04")
        wait_for("still running")
        wait_for("> ")
        os.write(fd, b"\x04")
        deadline = time.monotonic() + 120
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() > deadline:
                break
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    pass
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.fail("the REPL did not leave after the second Ctrl-D: %r" % out[-300:])
        os.close(fd)
        with open(log) as f:
            err = f.read()
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, err)
        self.check(err)
        if os.path.exists(log + ".history"):
            os.unlink(log + ".history")

    def test_interrupt(self):
        rc, _, err = self.run_flow("local base = ...\nflow.spawn(http.get, base .. '/slow/5')\n"
                                   "flow.spawn(flow.sleep, 30)\nflow.sleep(0.2)\n"
                                   "print('ready') io.stdout:flush()\nflow.sleep(30)", interrupt=True)
        self.assertEqual(rc, 130, err)


if __name__ == "__main__":
    main()
