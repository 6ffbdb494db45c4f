"""test_truth.py: what the engine reports is true and leaves nothing out:
a job whose trigger fails is a row everywhere, a run is known by its
parameters however they are spelled, --resume says what it reused, and
errors are told in the user's words."""
import json
import os
import signal
import sqlite3
import subprocess
import unittest

from harness import ENGINE, SimTestCase, main, run, wait_until


class Base(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def rows(self, sql, *args):
        db = sqlite3.connect(os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db"))
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql, args)]
        finally:
            db.close()


class FailedTriggers(Base):
    def test_a_job_whose_trigger_fails_is_a_row_everywhere(self):
        self.sim.syncs[2] = {"missing": True}
        summary = os.path.join(self.dir, "s.json")
        metrics = os.path.join(self.dir, "m.prom")
        flow = self.flow("""
            flow.on_finish(function(run)
              for _, e in ipairs(run.entries) do print("on_finish", e.name, e.status, e.error ~= nil) end
            end)
            flow.parallel({
              function() return census.sync({sync_id = 1}) end,
              function() return census.sync({sync_id = 2}) end,
              function() return census.sync({name = "nope"}) end,
            })
        """)
        r = run(["--summary-json", summary, "--metrics", metrics, flow], env=self.sim_env())
        self.assertEqual(r.rc, 1, r)
        self.assertIn("summary: 3 syncs: ", r.stderr)
        self.assertIn("2 not_found", r.stderr)
        with open(summary) as f:
            entries = json.load(f)["entries"]
        by_name = {e["name"]: e for e in entries}
        self.assertEqual(sorted(by_name), ["nope", "sync 1", "sync 2"])
        self.assertEqual((by_name["sync 2"]["status"], by_name["sync 2"]["ok"]), ("not_found", False))
        self.assertIn("HTTP 404", by_name["sync 2"]["error"])
        self.assertIn("no sync is named", by_name["nope"]["error"])
        self.assertIn("on_finish\tsync 2\tnot_found\ttrue", r.stdout)
        self.assertIn("on_finish\tnope\tnot_found\ttrue", r.stdout)
        with open(metrics) as f:
            self.assertRegex(f.read(), r'engine_syncs\{[^}]*outcome="not_found"[^}]*\} 2')
        row = self.rows("SELECT status, final, error FROM jobs WHERE provider = 'census' AND resource = '2'")[0]
        self.assertEqual((row["status"], row["final"]), ("not_found", 1))
        self.assertIn("HTTP 404", row["error"])
        self.assertIn("2 of 3 branches failed: [", r.stderr)
        self.assertIn("[sync 2] ", r.stderr)
        self.assertIn("[nope] ", r.stderr)


class Identity(Base):
    FLOW = """
        local p = flow.params({target = {default = "prod"}})
        flow.step("load", function()
          print("load", p.target)
          if os.getenv("HOLD") then flow.sleep(30) end
        end)
        if os.getenv("FAIL") then error("a later step failed") end
    """

    def test_one_set_of_parameters_is_one_run_however_it_is_written(self):
        flow = self.flow(self.FLOW)
        proc = subprocess.Popen([ENGINE, flow, "--target=prod"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, HOLD="1"))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertEqual(proc.stdout.readline(), "load\tprod\n")
        for args in ([flow, "--target", "prod"], [flow]):
            r = run(args)
            self.assertEqual(r.rc, 75, r)
            self.assertIn("already running with these parameters", r.stderr)
            self.assertNotIn("load", r.stdout)
        r = run([flow, "--target=dev"])
        self.assertEqual(r.rc, 0, r)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)

    def test_resume_of_changed_parameters_names_them_and_the_run_it_could_resume(self):
        flow = self.flow(self.FLOW)
        r = run([flow, "--target=dev"], env={"FAIL": "1"})
        self.assertEqual(r.rc, 1, r)
        r = run(["--resume", flow, "--target=staging"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("run 1 (failed) differs in target staging (run 1: dev): to continue it, run it with its "
                      "parameters and --resume=1", r.stderr)
        r = run(["--resume", flow, "--target", "dev"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("resuming run 1", r.stderr)
        self.assertIn("ok (recorded)", r.stderr)
        r = run(["--resume=1", flow, "--target=prod"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("target prod (run 1: dev)", r.stderr)


class ResumeTells(Base):
    def test_a_successful_last_run_is_info_and_reused_work_is_marked_recorded(self):
        self.sim.syncs[1] = {"steps": [{"status": "completed", "records_updated": 4}]}
        flow = self.flow("""
            flow.step("prepare", function() return 1 end)
            census.sync({sync_id = 1})
            if os.getenv("FAIL") then error("later step failed") end
        """)
        r = run([flow], env=self.sim_env({"FAIL": "1"}))
        self.assertEqual(r.rc, 1, r)
        summary = os.path.join(self.dir, "s.json")
        r = run(["--resume", "--summary-json", summary, flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("waiting, polling", r.stderr)
        with open(summary) as f:
            entries = json.load(f)["entries"]
        self.assertEqual([(e["name"], e["detail"]) for e in entries], [("prepare", "recorded"), ("sync 1", "recorded")])
        shown = run(["runs", "2"]).stdout
        self.assertIn("ok (recorded)", shown)
        self.assertIn("completed (recorded)", shown)
        doc = json.loads(run(["runs", "2", "--json"]).stdout)
        self.assertEqual(doc["syncs"][0]["origin"], "recorded")
        self.assertEqual(doc["syncs"][0]["started_by"], 1)
        r = run(["--resume", flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertIn("INFO  --resume: its last run with these arguments (2) succeeded", r.stderr)
        self.assertNotIn("WARN", r.stderr.replace("WARN  census: CENSUS_MIN_POLL", ""))

    def test_the_journal_tells_who_started_a_run_and_who_adopted_it(self):
        self.sim.syncs[1] = {"steps": ["working"] * 400 + ["completed"]}
        flow = self.flow("census.sync({sync_id = 1})")
        first = self.start([flow])
        wait_until(lambda: self.sim.runs, what="the run")
        first.kill()
        self.finish(first)
        second = self.start([flow])
        wait_until(lambda: len(self.rows("SELECT id FROM jobs")) == 2, what="the adoption")
        second.kill()
        self.finish(second)
        third = self.start([flow])
        wait_until(lambda: len(self.rows("SELECT id FROM jobs")) == 3, what="the second adoption")
        for r in self.sim.runs.values():
            r["polls"] = 1000
        rc, _, err = self.finish(third)
        self.assertEqual(rc, 0, err)
        self.assertIn("started by engine run 1 and watched by engine run 2, is still in flight", err)
        rows = self.rows("SELECT run, origin, started_by FROM jobs ORDER BY id")
        self.assertEqual([(x["run"], x["origin"], x["started_by"]) for x in rows],
                         [(1, "started", 1), (2, "adopted", 1), (3, "adopted", 1)])
        self.assertEqual(self.sim.triggers.get(1), 1)


class Network(Base):
    def test_a_trigger_that_never_left_is_a_network_error_not_a_lost_trigger(self):
        from harness import free_port
        closed = "http://127.0.0.1:%d" % free_port()  # nothing listens: connection refused
        r = run(["-e", "census.sync({sync_id = 1})"],
                env=self.sim_env({"CENSUS_BASE_URL": closed, "CENSUS_RETRY_BUDGET": "0.3"}))
        self.assertEqual(r.rc, 1, r)
        self.assertNotIn("lost trigger", r.stderr)
        self.assertNotIn("may have started", r.stderr)
        self.assertIn("(the request never left), retrying in", r.stderr)
        self.assertRegex(r.stderr, r"WARN  census: sync 1: trigger: POST http://127.0.0.1:\d+/api/v1/syncs/1/trigger: "
                                   r"[^\n]*(refused|connect)")

    def test_a_lost_answer_says_its_error_before_looking_for_the_run(self):
        self.sim.syncs[1] = {"trigger": ["lost"], "steps": ["completed"]}
        r = run(["-e", "census.sync({sync_id = 1})"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.stderr, r"WARN  census: sync 1: trigger: [^\n]*; looking for a run it may have started")
        self.assertIn("no run was started, sending it again", r.stderr)
        self.assertEqual(self.sim.triggers.get(1), 2)

    def test_verbose_shows_each_request(self):
        r = run(["-v", "-e", "census.sync({sync_id = 1})"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.stderr, r"DEBUG http: POST http://127.0.0.1:\d+/api/v1/syncs/1/trigger: 200 in \d+ ms")
        self.assertRegex(r.stderr, r"DEBUG http: GET http://127.0.0.1:\d+/api/v1/sync_runs/\d+: 200 in \d+ ms")


class JsonLogs(Base):
    def test_every_line_on_stderr_is_one_json_object(self):
        flow = self.flow("""
            flow.step("load", flow.sh, "echo loaded; echo careful >&2")
            flow.step("sync", census.sync, {sync_id = 1})
            error("the end")
        """)
        r = run(["--log-format=json", flow], env=self.sim_env())
        self.assertEqual(r.rc, 1, r)
        lines = [json.loads(l) for l in r.stderr.splitlines()]  # every line parses
        child = [l for l in lines if l["msg"] in ("[load] loaded", "[load] careful")]
        self.assertEqual([(l["stream"], l["step"], l["flow"], l["run"]) for l in child],
                         [("stdout", "load", flow, 1), ("stderr", "load", flow, 1)])
        done = [l for l in lines if l["msg"].startswith("step load: done")][0]
        self.assertEqual(done["step"], "load")
        triggered = [l for l in lines if "triggered: run" in l["msg"]][0]
        self.assertEqual(triggered["sync_id"], 1)
        end = [l for l in lines if l["msg"].endswith("the end")][0]
        self.assertEqual(end["level"], "ERROR")
        summary = lines[-1]
        self.assertTrue(summary["msg"].startswith("summary: 2 steps, 1 sync:"), summary)
        self.assertEqual([e["name"] for e in summary["summary"]["entries"]], ["load", "sync", "sync 1"])


class Blocking(Base):
    def test_os_execute_in_a_task_waits_without_holding_the_loop(self):
        code = ("local n = 0\n"
                "local t = flow.spawn(function() while true do flow.sleep(0.05) n = n + 1 end end)\n"
                "flow.sleep(0)\n"
                "print(os.execute('sleep 1; echo from the shell'))\n"
                "print(n >= 5)\n"
                "print(os.execute('exit 3'))\n"
                "print(os.execute('kill -TERM $$'))\n"
                "print(os.execute())\n"
                "t:cancel()\n")
        r = run(["--no-state", "-e", code])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "from the shell\ntrue\texit\t0\ntrue\nnil\texit\t3\nnil\tsignal\t15\ntrue\n")
        stock = subprocess.run(["lua5.4", "-e", "print(os.execute('exit 3')) print(os.execute('kill -TERM $$')) "
                                "print(os.execute())"], capture_output=True, text=True)
        self.assertEqual(r.stdout.splitlines()[3:], stock.stdout.splitlines())

    def test_a_flow_that_holds_the_loop_is_told_with_its_line(self):
        code = ("local t = flow.spawn(flow.sleep, 10)\n"
                "flow.sleep(0.05)\n"
                "local f = io.popen('sleep 1.5') f:close()\n"
                "t:cancel()\n")
        r = run(["--no-state", "-e", code])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.stderr, r"WARN  the flow held the loop for 1\.\d s near \(command line\):[34] while 1 other")
        r = run(["--no-state", "-e", "local f = io.popen('sleep 1.2') f:close()"])
        self.assertNotIn("held the loop", r.stderr, "nothing else waited")


class Words(Base):
    def test_errors_in_the_users_words(self):
        self.sim.syncs[1] = {"steps": [{"status": "completed", "records_processed": 10, "records_failed": 3}]}
        self.sim.syncs[2] = {"trigger": ["html"] * 50}
        r = run(["--log-format=json", "-e", "census.sync({sync_id = 1}, {max_records_failed = 0})"],
                env=self.sim_env())
        self.assertEqual(r.rc, 1, r)
        lines = [json.loads(l) for l in r.stderr.splitlines() if l.startswith("{")]
        threshold = [l for l in lines if l.get("level") == "ERROR" and l.get("sync_id") == 1][0]
        self.assertEqual((threshold["status"], threshold["kind"]), ("completed", "threshold"))
        r = run(["-e", "census.sync({sync_id = 2})"], env=self.sim_env({"CENSUS_RETRY_BUDGET": "0.05"}))
        self.assertIn("HTTP 502: 502 Bad Gateway proxy error;", r.stderr)
        self.assertNotIn(" ;", r.stderr)
        r = run(["--no-state", "-e",
                 "census.trigger('https://bearer:secret-token:ab/slash/tail-secret9@app.getcensus.com/x')"])
        self.assertEqual(r.rc, 1, r)
        self.assertNotIn("tail-secret9", r.stderr)

    def test_a_job_stopped_by_flow_timeout_reads_timeout(self):
        self.sim.syncs[1] = {"steps": ["working"]}
        summary = os.path.join(self.dir, "s.json")
        r = run(["--summary-json", summary, "-e", "print(pcall(flow.timeout, 1, census.sync, {sync_id = 1}))"],
                env=self.sim_env())
        with open(summary) as f:
            entry = json.load(f)["entries"][0]
        self.assertEqual((entry["status"], entry["detail"]), ("timeout", "cancelled in Census"), r)
        self.assertEqual(entry["error"], "timed out after 1 s (flow.timeout)")
        self.assertNotIn("task canceled", r.stderr)

    def test_sigterm_never_says_press_ctrl_c(self):
        proc = self.start(["-e", "print('ready') io.stdout:flush() flow.sleep(30)"])
        self.assertEqual(proc.stdout.readline(), "ready\n")
        proc.send_signal(signal.SIGTERM)
        rc, _, err = self.finish(proc)
        self.assertEqual(rc, 143, err)
        self.assertIn("interrupted by SIGTERM", err)
        self.assertNotIn("Ctrl-C", err)
        self.assertNotIn("Census", err)


if __name__ == "__main__":
    main()
