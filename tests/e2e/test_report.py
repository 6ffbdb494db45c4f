"""test_report.py: named steps, the end-of-run summary (text and
--summary-json) for success, failure, threshold and interrupt, and the live
progress view: on a terminal, forced on, and absent in a pipe."""
import json
import os
import pty
import select
import signal
import subprocess
import tempfile
import time

from harness import ENGINE, SimTestCase, main, run_flow, write_flow
from test_repl import render

NIGHTLY = """
flow.step("dbt", flow.sh, "echo compiling; echo warn >&2")
flow.step("syncs", function()
  return flow.parallel({
    function() return census.sync({sync_id = 1}) end,
    function() return census.sync({sync_id = 2}, {max_records_failed = 0}) end,
  }, {limit = 2})
end)
"""


class Report(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def flow(self, code, args=(), rc=0, env=None):
        r = run_flow(code, args=args, env=self.sim_env(env))
        if rc is not None:
            self.assertEqual(r.rc, rc, r)
        return r

    def with_json(self, code, rc=0, env=None):
        path = tempfile.mktemp(suffix=".json")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        script = write_flow(code)
        self.addCleanup(os.unlink, script)
        from harness import run
        r = run(["--summary-json", path, script], env=self.sim_env(env))
        self.assertEqual(r.rc, rc, r)
        self.assertEqual([f for f in os.listdir(os.path.dirname(path))
                          if f.startswith(os.path.basename(path) + ".tmp")], [], "no temporary file left")
        with open(path) as f:
            return r, json.load(f)

    def test_steps_log_name_and_return(self):
        r = self.flow("local a, b = flow.step('prepare', function(x) return x, 2 end, 1)\nprint(a, b)\n"
                      "flow.step('dbt', function() flow.sh('echo from dbt')\n"
                      "  flow.spawn(flow.sh, 'echo from child'):wait() end)\n"
                      "print(pcall(flow.step, 'broken', function() error('bad input') end))")
        self.assertEqual(r.stdout.splitlines()[0], "1\t2")
        self.assertIn("step prepare: started", r.stderr)
        self.assertRegex(r.stderr, r"step prepare: done in \d+\.\d s")
        self.assertIn("[dbt] from dbt", r.stderr)
        self.assertIn("[dbt] from child", r.stderr, "spawned tasks inherit the step")
        self.assertRegex(r.stderr, r"ERROR step broken: failed after \d+\.\d s: .*bad input")
        self.assertIn("false\t", r.stdout.splitlines()[1])

    def test_summary_and_json_on_success(self):
        self.sim.syncs[1] = {"steps": [{"status": "completed", "records_processed": 5,
                                        "records_updated": 5, "records_failed": 0}]}
        r, doc = self.with_json(NIGHTLY)
        text = r.stderr[r.stderr.index("summary:"):]
        self.assertIn("summary: 2 steps, 2 syncs: 2 ok, 2 completed;", text)
        self.assertRegex(text, r"\n  dbt +ok +\d+\.\d s\n")
        self.assertRegex(text, r"\n  sync 1 +completed +\d+\.\d s +5 +5 +0 +-\n")
        self.assertEqual(doc["version"], 1)
        self.assertEqual((doc["status"], doc["exit_code"]), ("ok", 0))
        rows = [(e["kind"], e["name"], e["status"], e["ok"]) for e in doc["entries"]]
        self.assertEqual(rows[:2], [("step", "dbt", "ok", True), ("step", "syncs", "ok", True)])
        # the two syncs run in parallel: either may start first
        self.assertEqual(sorted(rows[2:]), [("sync", "sync 1", "completed", True),
                                            ("sync", "sync 2", "completed", True)])
        sync1 = next(e for e in doc["entries"] if e["name"] == "sync 1")
        run_of_sync1 = [r["id"] for r in self.sim.runs.values() if r["sync_id"] == 1]
        self.assertEqual((sync1["sync_id"], sync1["sync_run_id"], sync1["records_updated"]),
                         (1, run_of_sync1[0], 5))
        self.assertEqual(sync1["url"], self.sim.url + "/syncs/1/sync-history")
        for e in doc["entries"]:
            self.assertRegex(e["started_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIsInstance(e["duration"], float)

    def test_summary_on_failure_and_threshold(self):
        self.sim.syncs[1] = {"steps": [{"status": "failed", "error_message": "bad mapping"}]}
        self.sim.syncs[2] = {"steps": [{"status": "completed", "records_processed": 10,
                                        "records_updated": 7, "records_failed": 3}]}
        r, doc = self.with_json(NIGHTLY, rc=1)
        text = r.stderr[r.stderr.index("summary:"):]
        self.assertIn("summary: 2 steps, 2 syncs: 1 ok, 2 failed, 1 threshold;", text)
        self.assertEqual((doc["steps"], doc["syncs"]), ({"total": 2, "failed": 1}, {"total": 2, "failed": 2}))
        self.assertRegex(text, r"sync 1 +failed .*\n +.*failed: bad mapping \(%s/syncs/1/sync-history\)\n"
                         % self.sim.url)
        self.assertRegex(text, r"sync 2 +threshold +\d+\.\d s +10 +7 +3")
        self.assertRegex(text, r"\n  syncs +failed \(see sync \d, sync \d\) +\d+\.\d s\n", "the step names the rows")
        self.assertEqual((doc["status"], doc["exit_code"]), ("failed", 1))
        by_name = {e["name"]: e for e in doc["entries"]}
        self.assertEqual(by_name["sync 2"]["status"], "threshold")
        self.assertFalse(by_name["sync 2"]["ok"])
        self.assertIn("max_records_failed", by_name["sync 2"]["error"])
        self.assertEqual(by_name["syncs"]["status"], "failed")

    def test_summary_on_interrupt(self):
        self.sim.syncs[1] = {"steps": ["working"]}
        path = tempfile.mktemp(suffix=".json")
        script = write_flow("flow.spawn(function() flow.sleep(0.3) print('ready') io.stdout:flush() end)\n"
                            "flow.step('syncs', census.sync, {sync_id = 1})")
        self.addCleanup(os.unlink, script)
        proc = subprocess.Popen([ENGINE, "--summary-json", path, script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ, **self.sim_env()))
        self.assertEqual(proc.stdout.readline(), "ready\n")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 130)
        with open(path) as f:
            doc = json.load(f)
        os.unlink(path)
        self.assertEqual((doc["status"], doc["exit_code"]), ("interrupted", 130))
        self.assertEqual({e["status"] for e in doc["entries"]}, {"canceled"})
        self.assertIn("exit 130", err)

    def test_no_summary_without_steps_or_syncs(self):
        r = self.flow("print('plain')")
        self.assertNotIn("summary:", r.stderr)
        r, doc = self.with_json("print('plain')")
        self.assertEqual(doc["entries"], [])

    def test_unwritable_summary_path(self):
        script = write_flow("print('x')")
        self.addCleanup(os.unlink, script)
        from harness import run
        r = run(["--summary-json", "/no/such/dir/s.json", script])
        self.assertEqual(r.rc, 1)
        self.assertIn("engine: cannot write the summary: /no/such/dir/s.json", r.stderr)

    def test_no_progress_in_a_pipe_and_forced_progress(self):
        self.sim.syncs[1] = {"steps": ["working"] * 8 + ["completed"]}
        r = self.flow("flow.step('load', census.sync, {sync_id = 1})")
        self.assertNotIn("\x1b[", r.stderr, "plain log lines when stderr is not a terminal")
        r = self.flow("flow.step('load', census.sync, {sync_id = 1})", args=(), env=None)
        from harness import run
        script = write_flow("flow.step('load', census.sync, {sync_id = 1})")
        self.addCleanup(os.unlink, script)
        r = run(["--progress=always", script], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertIn("\x1b[J", r.stderr)
        self.assertRegex(r.stderr, r"  sync 1 +working")
        bad = run(["--progress=sometimes", script])
        self.assertEqual(bad.rc, 2)
        self.assertIn("use --progress=auto, always or never", bad.stderr)

    def test_progress_on_a_terminal(self):
        self.sim.syncs[1] = {"steps": ["working"] * 6 + [{"status": "completed", "records_processed": 3}]}
        script = write_flow("flow.step('dbt', flow.sh, 'echo building; sleep 0.6; echo built')\n"
                            "flow.step('load', census.sync, {sync_id = 1})")
        self.addCleanup(os.unlink, script)
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update(self.sim_env())
            os.execv(ENGINE, [ENGINE, script])
        out, seen_block = b"", False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                seen_block = seen_block or b"  dbt " in out and b"running" in out
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertTrue(seen_block, "a progress line for the running step")
        screen = render(out.decode(errors="replace"))
        self.assertNotIn("running", screen, "the block is gone at the end")
        for line in ["[dbt] building", "[dbt] built", "step load: done", "summary:"]:
            self.assertIn(line, screen, "log lines are never hidden")


if __name__ == "__main__":
    main()
