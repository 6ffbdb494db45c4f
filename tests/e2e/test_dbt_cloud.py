"""test_dbt_cloud.py: the dbt_cloud provider end to end against the dbt Cloud
simulator (tests/dbt_cloud_sim.py): the trigger request (path, token, cause
with its marker, overrides), results and counts from run_results.json,
failed / cancelled / unknown statuses, never triggering twice (a lost
answer, kill -9 while polling or before the trigger's answer,
reuse_existing), cancel on stop and on timeout, --resume's rerun from the
failure, throttling and server errors, configuration errors, job names,
the list helpers, the summary JSON and `engine runs`."""
import json
import os
import re
import signal
import sqlite3

from harness import ProvidersTestCase, main, run, wait_until

from dbt_cloud_sim import DEFAULT_TOKEN, FIRST_RUN_ID

FIRST = FIRST_RUN_ID  # 70000000000: past int32
MARKER = re.compile(r"\[(engine:[0-9a-f]{16})\]")
RUN = "local r = dbt_cloud.run({job_id = %d}, {poll = 0.05})\n"
# run_results.json with a warning (served as is)
WARN_RESULTS = {"results": [
    {"unique_id": "model.jaffle_shop.orders", "status": "success", "message": "SUCCESS 9"},
    {"unique_id": "test.jaffle_shop.recent_orders", "status": "warn",
     "message": "Got 3 results, configured to warn if != 0"}]}


class Base(ProvidersTestCase):
    """Helpers: jobs on the simulator, what it saw, the engine's journal."""

    def jobs(self, scenarios):
        self.dbt.configure({str(k): v for k, v in scenarios.items()})

    def job_state(self, job_id=123):
        return self.dbt.state()["jobs"].get(str(job_id), {"triggers": 0, "reruns": 0, "bodies": [], "runs": []})

    def runs_of(self, job_id=123):
        return self.job_state(job_id)["runs"]

    def polls(self, job_id=123):
        return sum(r["polls"] for r in self.runs_of(job_id))

    def cancels(self, job_id=123):
        return sum(r["cancels"] for r in self.runs_of(job_id))

    def requests(self, method=None, ending=None):
        with self.dbt.lock:
            log = list(self.dbt.log)
        return [r for r in log if (method is None or r["method"] == method)
                and (ending is None or r["path"].endswith(ending))]

    def engine(self, code, env=None, rc=0, summary=False):
        """Runs code as a flow file; returns (result, summary document or None)."""
        path = self.flow(code)
        out = os.path.join(self.dir, "summary.json")
        if os.path.exists(out):
            os.unlink(out)
        extra = ["--summary-json", out] if summary else []
        r = run(extra + [path], env=self.sim_env(env))
        if rc is not None:
            self.assertEqual(r.rc, rc, r)
        doc = None
        if summary:
            with open(out) as f:
                doc = json.load(f)
        self.last_flow = path
        return r, doc

    def journal(self):
        db = sqlite3.connect(os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db"))
        db.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in db.execute("SELECT * FROM jobs ORDER BY id")]
        finally:
            db.close()

    def kill9(self, proc):
        proc.send_signal(signal.SIGKILL)
        self.finish(proc)

    def lines(self, text, needle):
        return [line for line in text.splitlines() if needle in line]


class Trigger(Base):
    def test_success_posts_the_trigger_with_a_marked_cause_and_reads_the_counts(self):
        self.jobs({123: {"steps": [1, 3, 10], "run_results": "default"}})
        code = RUN % 123 + """
            print(r.status, r.job_id, r.run_id, math.type(r.run_id), r.remote_run, r.provider, r.resource)
            local c = r.counts
            print(c.passed, c.failed, c.errored, c.skipped, c.warned)
            print(r.link)
        """
        r, doc = self.engine(code, summary=True)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "success\t123\t%d\tinteger\t%d\tdbt_cloud\t123" % (FIRST, FIRST), r)
        self.assertEqual(lines[1], "5\t0\t0\t0\t0", r)
        self.assertEqual(lines[2], "%s/deploy/42/projects/1000/runs/%d/" % (self.dbt.url, FIRST))
        posts = self.requests("POST")
        self.assertEqual(len(posts), 1, posts)
        post = posts[0]
        self.assertEqual(post["path"], "/api/v2/accounts/42/jobs/123/run/")
        self.assertEqual(post["auth"], "Token " + DEFAULT_TOKEN)
        self.assertTrue(post["content_type"].startswith("application/json"), post)
        body = json.loads(post["body"])
        self.assertEqual(set(body), {"cause"}, body)
        cause = body["cause"]
        self.assertLessEqual(len(cause), 255)
        self.assertIn("engine", cause)
        self.assertIn(os.path.basename(self.last_flow) + " (engine run 1) [engine:", cause, "it names the flow")
        marker = MARKER.search(cause).group(1)
        # every GET went to the run by its exact id, then its results
        gets = [g["path"] for g in self.requests("GET")]
        self.assertEqual(gets[-1], "/api/v2/accounts/42/runs/%d/artifacts/run_results.json" % FIRST)
        self.assertEqual(set(gets[:-1]), {"/api/v2/accounts/42/runs/%d/" % FIRST})
        self.assertEqual(self.job_state()["triggers"], 1)
        self.assertIn("INFO  dbt_cloud: job 123 triggered: run %d" % FIRST, r.stderr)
        self.assertIn("5 passed, 0 failed, 0 errored, 0 skipped, 0 warned", r.stderr)
        # the journal: the intent (with the marker) before, the outcome after
        rows = self.journal()
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual((row["provider"], row["resource"], row["remote_run"], row["final"], row["ok"]),
                         ("dbt_cloud", "123", str(FIRST), 1, 1), row)
        self.assertEqual(json.loads(row["intent"])["marker"], marker)
        self.assertEqual(row["origin"], "started")
        self.assertEqual(json.loads(row["counts"]), {"passed": 5, "failed": 0, "errored": 0, "skipped": 0,
                                                     "warned": 0})
        entry = doc["jobs"][0]
        self.assertEqual((entry["remote_run"], entry["run_id"], entry["job_id"]), (FIRST, FIRST, 123))
        # another run: another marker
        r, _ = self.engine(RUN % 123)
        second = json.loads(self.requests("POST")[-1]["body"])["cause"]
        self.assertNotEqual(MARKER.search(second).group(1), marker)

    def test_a_fifteen_digit_run_id_round_trips_exactly(self):
        big = 123456789012345  # past 2^31 and 2^32, with 15 significant digits
        self.jobs({123: {"steps": [3, 10], "run_results": "default"}})
        with self.dbt.lock:
            self.dbt.next_run_id = big
        r, doc = self.engine(RUN % 123 + "print(r.run_id, r.remote_run)", summary=True)
        self.assertEqual(r.stdout, "%d\t%d\n" % (big, big), r)
        self.assertIn("/api/v2/accounts/42/runs/%d/" % big, [g["path"] for g in self.requests("GET")])
        self.assertEqual(self.journal()[0]["remote_run"], str(big))
        history = json.loads(run(["runs", "1", "--json"]).stdout)
        entry = doc["jobs"][0]
        seen = {"the summary JSON's remote_run": entry["remote_run"], "the summary JSON's run_id": entry["run_id"],
                "engine runs --json's remote_run": history["jobs"][0]["remote_run"]}
        self.assertEqual(seen, {k: big for k in seen})

    def test_the_cause_is_utf8_of_at_most_255_characters_with_the_flow_name_and_marker(self):
        self.jobs({123: {"steps": [10]}})
        deep = os.path.join(self.dir, "\u00e9" * 100, "\u00fc" * 60)
        os.makedirs(deep)
        flow = os.path.join(deep, "nightly.lua")
        with open(flow, "w") as f:
            f.write(RUN % 123 + "print(r.status)")
        latin1 = os.path.join(self.dir.encode(), b"caf\xe9.lua")  # a name that is not UTF-8
        with open(latin1, "w") as f:
            f.write(RUN % 123 + "print(r.status)")
        for path in (flow, latin1):
            r = run([path], env=self.sim_env())
            self.assertEqual((r.rc, r.stdout), (0, "success\n"), r)
        causes = [json.loads(p["body"])["cause"] for p in self.requests("POST")]
        self.assertEqual(len(causes), 2, "both accepted")
        for cause in causes:
            self.assertNotIn("\ufffd", cause, "valid UTF-8")
            self.assertLessEqual(len(cause), 255)
            self.assertRegex(cause, MARKER)
        self.assertRegex(causes[0], r"^Triggered by engine flow \.\.\.\u00e9+/\u00fc{60}/nightly\.lua "
                                    r"\(engine run 1\) \[engine:[0-9a-f]{16}\]$")
        self.assertIn("caf?.lua (engine run 2)", causes[1])

    def test_overrides_pass_through_into_the_trigger_body(self):
        self.jobs({123: {"steps": [10]}})
        code = """
            local r = dbt_cloud.run({job_id = 123, git_branch = "feature/orders", git_sha = "4f1c2e0d9b",
              steps_override = {"dbt seed", "dbt build --select tag:nightly"}, threads_override = 8,
              target_name_override = "ci", schema_override = "dbt_ci", timeout_seconds_override = 600},
              {poll = 0.05})
            print(r.status)
        """
        r, _ = self.engine(code)
        self.assertEqual(r.stdout, "success\n")
        body = json.loads(self.requests("POST")[0]["body"])
        cause = body.pop("cause")
        self.assertRegex(cause, MARKER)
        self.assertEqual(body, {"git_branch": "feature/orders", "git_sha": "4f1c2e0d9b",
                                "steps_override": ["dbt seed", "dbt build --select tag:nightly"],
                                "threads_override": 8, "target_name_override": "ci",
                                "schema_override": "dbt_ci", "timeout_seconds_override": 600})
        self.assertIsInstance(body["threads_override"], int)
        self.assertEqual(self.job_state()["bodies"][0]["steps_override"], body["steps_override"])

    def test_bad_overrides_are_refused_before_any_request(self):
        self.jobs({123: {"steps": [10]}})
        cases = [
            ("threads_override = '8'", "threads_override must be a whole number > 0"),
            ("threads_override = 0", "threads_override must be a whole number > 0"),
            ("timeout_seconds_override = 1.5", "timeout_seconds_override must be a whole number > 0"),
            ("steps_override = 'dbt build'", "steps_override must be a list of dbt commands"),
            ("steps_override = {}", "steps_override must be a list of dbt commands"),
            ("steps_override = {'dbt build', 5}", "steps_override must be a list of dbt commands"),
            ("git_branch = ''", "git_branch must be a non-empty string"),
            ("git_sha = 7", "git_sha must be a non-empty string"),
            ("schema_override = true", "schema_override must be a non-empty string"),
            ("git_brnach = 'main'", "git_brnach"),
            ("reuse_existing = 'yes'", "reuse_existing must be true or false"),
        ]
        for spec, message in cases:
            with self.subTest(spec=spec):
                r = run(["-e", "local ok, e = pcall(dbt_cloud.trigger, {job_id = 123, %s}) "
                         "print(ok, e.kind) error(e, 0)" % spec], env=self.sim_env())
                self.assertEqual(r.rc, 1, r)
                self.assertEqual(r.stdout, "false\tinvalid_argument\n", r)
                self.assertIn(message, r.stderr)
        self.assertEqual(self.requests(), [], "nothing was sent")
        self.assertEqual(self.journal() if os.path.exists(
            os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db")) else [], [])

    def test_trigger_wait_and_cancel_by_handle(self):
        self.jobs({123: {"steps": [3]}, 124: {"steps": [3, 10], "run_results": "default"}})
        code = """
            local h = dbt_cloud.trigger({job_id = 124, label = "nightly"})
            print(h.job_id, h.run_id, h.label)
            local r = dbt_cloud.wait(h, {poll = 0.05})
            print(r.status, r.label, r.counts.passed)
            local h2 = dbt_cloud.trigger({job_id = 123})
            dbt_cloud.cancel(h2)
            local ok, e = pcall(dbt_cloud.wait, h2, {poll = 0.05})
            print(ok, e.kind, e.run_id == h2.run_id)
        """
        r, _ = self.engine(code)
        self.assertEqual(r.stdout.splitlines(), ["124\t%d\tnightly" % FIRST, "success\tnightly\t5",
                                                 "false\tcanceled\ttrue"], r)
        self.assertEqual(self.cancels(123), 1, "one cancel: the run ended cancelled, not cancelled again")
        self.assertEqual([p["path"] for p in self.requests("POST", "/cancel/")],
                         ["/api/v2/accounts/42/runs/%d/cancel/" % (FIRST + 1)])
        self.assertIn("cancel requested", r.stderr)


class Outcomes(Base):
    def test_an_error_run_fails_with_its_message_step_and_nodes(self):
        self.jobs({123: {"steps": [3, 20], "run_results": "default_error", "failed_step": 2,
                         "execute_steps": ["dbt seed", "dbt build", "dbt docs generate"]}})
        code = """
            local ok, e = pcall(dbt_cloud.run, {job_id = 123}, {poll = 0.05})
            print(ok, e.kind, e.job_id, e.run_id, e.provider)
            print(e.message)
            local c = e.result.counts
            print(e.result.status, c.passed, c.failed, c.errored, c.skipped, c.warned)
            error(e, 0)
        """
        r, doc = self.engine(code, rc=1, summary=True)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "false\tfailed\t123\t%d\tdbt_cloud" % FIRST, r)
        message = lines[1]
        self.assertIn("job 123 run %d failed: Database Error in model customers" % FIRST, message)
        self.assertIn('relation "raw.orders" does not exist', message, "the status message, on one line")
        self.assertIn("in Invoke dbt with `dbt build`", message)
        self.assertIn("failing: model.jaffle_shop.customers", message)
        self.assertNotIn("stg_orders", message, "only the failing nodes")
        self.assertEqual(lines[2], "error\t2\t0\t1\t2\t0")
        entry = doc["jobs"][0]
        self.assertEqual((entry["outcome"], entry["ok"], entry["provider"]), ("failed", False, "dbt_cloud"))
        self.assertIn("failing: model.jaffle_shop.customers", entry["error"])
        self.assertEqual(entry["counts"], {"passed": 2, "failed": 0, "errored": 1, "skipped": 2, "warned": 0})
        self.assertEqual(len(self.lines(r.stderr, "ERROR dbt_cloud: job 123 run %d failed:" % FIRST)), 1, r)
        self.assertEqual(self.cancels(), 0)
        row = self.journal()[0]
        self.assertEqual((row["final"], row["ok"]), (1, 0), row)

    def test_a_run_cancelled_in_dbt_cloud_is_canceled_never_success(self):
        self.jobs({123: {"steps": [3, 30], "run_results": "default"}})
        code = """
            local ok, e = pcall(dbt_cloud.run, {job_id = 123}, {poll = 0.05})
            print(ok, e.kind, e.result and e.result.status)
            error(e, 0)
        """
        r, doc = self.engine(code, rc=1, summary=True)
        self.assertEqual(r.stdout, "false\tcanceled\tcancelled\n", r)
        self.assertIn("was cancelled in dbt Cloud", r.stderr)
        entry = doc["jobs"][0]
        self.assertEqual((entry["outcome"], entry["ok"]), ("canceled", False), entry)
        self.assertEqual(self.cancels(), 0, "a run that ended is not cancelled again")
        self.assertEqual(self.requests("POST", "/cancel/"), [])
        self.assertEqual(self.requests("GET", "run_results.json"), [], "a cancelled run has no results to read")

    def test_an_unknown_status_is_a_failure_never_success(self):
        self.jobs({123: {"steps": [3, 99], "run_results": "default"}})
        code = """
            local ok, e = pcall(dbt_cloud.run, {job_id = 123}, {poll = 0.05})
            print(ok, e.kind)
            print(e.message)
            error(e, 0)
        """
        r, doc = self.engine(code, rc=1, summary=True)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "false\tunknown_status", r)
        self.assertIn("reported status 99, which is not a known dbt Cloud status", lines[1])
        entry = doc["jobs"][0]
        self.assertEqual((entry["outcome"], entry["ok"]), ("unknown_status", False), entry)
        self.assertEqual(self.lines(r.stderr, "success in"), [], "never read as a success")
        self.assertEqual(self.journal()[0]["ok"], 0)

    def test_warnings_in_run_results_are_logged_at_warn(self):
        self.jobs({123: {"steps": [3, 10], "run_results": WARN_RESULTS}})
        r, doc = self.engine(RUN % 123 + "print(r.status, r.counts.passed, r.counts.warned)", summary=True)
        self.assertEqual(r.stdout, "success\t1\t1\n", r)
        warn = self.lines(r.stderr, "warning in test.jaffle_shop.recent_orders")
        self.assertEqual(len(warn), 1, r)
        self.assertIn(" WARN  dbt_cloud: job 123 run %d: warning in test.jaffle_shop.recent_orders: Got 3 "
                      "results, configured to warn if != 0" % FIRST, warn[0])
        done = self.lines(r.stderr, "success in")
        self.assertEqual(len(done), 1, r)
        self.assertIn(" WARN  ", done[0], "a success with warnings ends at WARN")
        self.assertIn("1 passed, 0 failed, 0 errored, 0 skipped, 1 warned", done[0])
        self.assertEqual(doc["jobs"][0]["counts"]["warned"], 1)


class NeverTwice(Base):
    def test_a_lost_trigger_answer_is_resolved_by_the_marker(self):
        self.jobs({123: {"trigger": ["lost_created"], "steps": [3, 10], "run_results": "default"}})
        r, _ = self.engine(RUN % 123 + "print(r.status, r.run_id)")
        self.assertEqual(r.stdout, "success\t%d\n" % FIRST, r)
        state = self.job_state()
        self.assertEqual(state["triggers"], 1, r)
        self.assertEqual(len(state["runs"]), 1)
        self.assertEqual(len(self.requests("POST", "/run/")), 1, "never sent twice")
        looked = self.requests("GET", "/runs/")
        self.assertTrue(looked and looked[0]["query"].get("job_definition_id") == "123", looked)
        self.assertIn("adopting run %d, which dbt Cloud created after the trigger was sent" % FIRST, r.stderr)
        row = self.journal()[0]
        self.assertEqual((row["remote_run"], row["ok"]), (str(FIRST), 1))

    def test_kill_while_polling_then_rerun_adopts_the_run(self):
        self.jobs({123: {"steps": [3], "run_results": "default"}})
        flow = self.flow(RUN % 123 + "print(r.status, r.run_id)")
        proc = self.start([flow])
        wait_until(lambda: self.polls() >= 2, timeout=10, what="polls")
        self.kill9(proc)
        with self.dbt.lock:  # it ends a few polls after the rerun found it
            run_ = self.dbt.runs[FIRST]
            run_["steps"] = [3] * (run_["polls"] + 3) + [10]
        r = run([flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "success\t%d\n" % FIRST)
        self.assertEqual(self.job_state()["triggers"], 1, r)
        self.assertIn("run %d, started by engine run 1, is still in flight; adopting it" % FIRST, r.stderr)
        rows = self.journal()
        self.assertEqual([(x["run"], x["status"], x["final"]) for x in rows][0], (1, "adopted", 1), rows)
        self.assertEqual((rows[1]["run"], rows[1]["origin"], rows[1]["started_by"], rows[1]["remote_run"],
                          rows[1]["ok"]), (2, "adopted", 1, str(FIRST), 1), rows)

    def test_kill_between_the_trigger_and_its_answer_then_rerun_finds_it_by_marker(self):
        self.jobs({123: {"trigger": [{"created_slow": 20}], "steps": [3, 10], "run_results": "default"}})
        flow = self.flow(RUN % 123 + "print(r.status, r.run_id)")
        proc = self.start([flow])
        wait_until(lambda: len(self.runs_of()) == 1, timeout=10, what="the trigger")
        self.kill9(proc)
        rows = self.journal()
        self.assertEqual((rows[0]["remote_run"], rows[0]["final"]), (None, 0), "an intent without a run id")
        marker = json.loads(rows[0]["intent"])["marker"]
        self.assertIn(marker, self.runs_of()[0]["cause"])
        r = run([flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "success\t%d\n" % FIRST)
        self.assertEqual(self.job_state()["triggers"], 1, r)
        self.assertIn("adopting it instead of triggering again", r.stderr)
        rows = self.journal()
        self.assertEqual((rows[0]["status"], rows[0]["final"]), ("adopted", 1), rows)
        self.assertEqual((rows[1]["origin"], rows[1]["remote_run"], rows[1]["ok"]), ("adopted", str(FIRST), 1))

    def test_reuse_existing_adopts_a_queued_or_running_run_without_a_post(self):
        self.jobs({123: {"existing_runs": [{"status": 10, "cause": "yesterday"},
                                           {"status": 3, "cause": "scheduled", "steps": [3, 10]}],
                         "run_results": "default"},
                   124: {"existing_runs": [{"status": 20, "cause": "failed before"}], "steps": [3, 10]}})
        existing = self.runs_of(123)[1]["id"]
        code = """
            local r = dbt_cloud.run({job_id = 123, reuse_existing = true}, {poll = 0.05})
            print(r.status, r.run_id)
            local r2 = dbt_cloud.run({job_id = 124, reuse_existing = true}, {poll = 0.05})
            print(r2.status, r2.run_id)
        """
        r, _ = self.engine(code)
        self.assertEqual(r.stdout.splitlines()[0], "success\t%d" % existing, r)
        self.assertEqual(self.job_state(123)["triggers"], 0, "adopted, not triggered")
        self.assertEqual(self.requests("POST", "/jobs/123/run/"), [])
        self.assertIn("run %d is already queued or running (reuse_existing = true); adopting it" % existing,
                      r.stderr)
        looked = [q for q in self.requests("GET", "/runs/") if q["query"].get("job_definition_id") == "123"]
        self.assertEqual(looked[0]["query"]["status__in"], "[1,2,3]")
        # nothing in flight: it triggers
        self.assertEqual(self.job_state(124)["triggers"], 1)
        self.assertEqual(r.stdout.splitlines()[1], "success\t%d" % self.runs_of(124)[-1]["id"])


class Stop(Base):
    FLOW = RUN % 123 + "print('not reached')"

    def stop_while_waiting(self, env=None):
        self.jobs({123: {"steps": [3]}})
        flow = self.flow(self.FLOW)
        out = os.path.join(self.dir, "s.json")
        proc = self.start(["--summary-json", out, flow], env=env)
        wait_until(lambda: self.polls() >= 2, timeout=10, what="polls")
        proc.send_signal(signal.SIGTERM)
        rc, stdout, err = self.finish(proc, timeout=30)
        self.assertEqual(rc, 143, err)
        self.assertEqual(stdout, "")
        with open(out) as f:
            return err, json.load(f)["jobs"][0]

    def test_sigterm_cancels_the_run_in_dbt_cloud(self):
        err, entry = self.stop_while_waiting()
        self.assertEqual(self.cancels(), 1, err)
        self.assertEqual([p["path"] for p in self.requests("POST", "/cancel/")],
                         ["/api/v2/accounts/42/runs/%d/cancel/" % FIRST])
        self.assertEqual((entry["outcome"], entry["ok"], entry["detail"]),
                         ("canceled", False, "cancelled in dbt Cloud"), entry)
        self.assertIn("canceled (cancelled in dbt Cloud)", err)
        row = self.journal()[0]
        self.assertEqual((row["status"], row["final"], row["ok"]), ("canceled", 1, 0), row)

    def test_sigterm_while_the_trigger_is_unanswered_cancels_the_run_it_started(self):
        self.jobs({123: {"trigger": [{"created_slow": 20}], "steps": [3]}})
        proc = self.start([self.flow(self.FLOW)])
        wait_until(lambda: len(self.runs_of()) == 1, timeout=10, what="the trigger")
        proc.send_signal(signal.SIGTERM)
        rc, out, err = self.finish(proc, timeout=30)
        self.assertEqual(rc, 143, err)
        self.assertEqual(self.cancels(), 1, err)
        self.assertIn("the stop interrupted its trigger; run %d, which it started, was cancelled in dbt Cloud"
                      % FIRST, err)
        row = self.journal()[0]
        self.assertEqual((row["remote_run"], row["status"], row["final"]), (str(FIRST), "canceled", 1), row)

    def test_cancel_on_stop_0_leaves_the_run_going_and_says_so(self):
        err, entry = self.stop_while_waiting({"DBT_CLOUD_CANCEL_ON_STOP": "0"})
        self.assertEqual(self.cancels(), 0, err)
        self.assertEqual(self.requests("POST", "/cancel/"), [])
        self.assertEqual(entry["detail"], "left running in dbt Cloud: DBT_CLOUD_CANCEL_ON_STOP=0", entry)
        self.assertIn("left running in dbt Cloud: DBT_CLOUD_CANCEL_ON_STOP=0", err)

    def test_flow_timeout_cancels_the_run(self):
        self.jobs({123: {"steps": [3]}})
        r, doc = self.engine("""
            local h = dbt_cloud.trigger({job_id = 123})
            local ok, e = pcall(flow.timeout, 0.5, dbt_cloud.wait, h, {poll = 0.05})
            print(ok, e.kind)
        """, summary=True)
        self.assertEqual(r.stdout, "false\ttimeout\n", r)
        self.assertEqual(self.cancels(), 1, r)
        self.assertEqual(doc["jobs"][0]["detail"], "cancelled in dbt Cloud", doc)

    def test_the_wait_timeout_cancels_only_with_cancel_on_timeout(self):
        self.jobs({123: {"steps": [3]}, 124: {"steps": [3]}})
        r, _ = self.engine("""
            local ok, e = pcall(dbt_cloud.run, {job_id = 123}, {poll = 0.05, timeout = 0.3, cancel_on_timeout = true})
            print(ok, e.kind)
            print(e.message)
            local ok, e = pcall(dbt_cloud.run, {job_id = 124}, {poll = 0.05, timeout = 0.3})
            print(ok, e.kind)
        """)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "false\ttimeout", r)
        self.assertIn("still running after the 0.3 s timeout; cancelled it", lines[1])
        self.assertEqual(lines[2], "false\ttimeout")
        self.assertEqual(self.cancels(123), 1, r)
        self.assertEqual(self.cancels(124), 0, "without cancel_on_timeout it is left running")


class Resume(Base):
    FLOW = RUN % 123 + "print(r.status, r.run_id)"

    def test_resume_after_a_failed_dbt_job_reruns_it_from_the_failure(self):
        self.jobs({123: {"runs": [[3, 20]], "steps": [3, 10], "run_results": "default"}})
        flow = self.flow(self.FLOW)
        r = run([flow], env=self.sim_env())
        self.assertEqual(r.rc, 1, r)
        r = run(["--resume", flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "success\t%d\n" % (FIRST + 1))
        state = self.job_state()
        self.assertEqual((state["triggers"], state["reruns"], state["retries"]), (1, 1, 1), state)
        self.assertEqual([p["path"] for p in self.requests("POST")],
                         ["/api/v2/accounts/42/jobs/123/run/", "/api/v2/accounts/42/jobs/123/rerun/"])
        retry = state["runs"][1]
        self.assertEqual((retry["is_retry"], retry["retry_of"]), (True, FIRST))
        self.assertIn("job 123 triggered: run %d (a rerun of run %d from its failure: --resume)" % (FIRST + 1, FIRST),
                      r.stderr)
        rows = self.journal()
        self.assertEqual([(x["run"], x["remote_run"], x["ok"]) for x in rows],
                         [(1, str(FIRST), 0), (2, str(FIRST + 1), 1)], rows)

    def test_a_lost_rerun_answer_is_adopted_never_sent_again(self):
        self.jobs({123: {"runs": [[3, 20]], "rerun": ["lost_created"], "steps": [3, 10]}})
        flow = self.flow(self.FLOW)
        self.assertEqual(run([flow], env=self.sim_env()).rc, 1)
        r = run(["--resume", flow], env=self.sim_env())
        self.assertEqual((r.rc, r.stdout), (0, "success\t%d\n" % (FIRST + 1)), r)
        state = self.job_state()
        self.assertEqual((state["triggers"], state["reruns"], len(state["runs"])), (1, 1, 2), state)
        self.assertIn("adopting run %d, which dbt Cloud created after the trigger was sent" % (FIRST + 1), r.stderr)

    def test_kill_before_the_rerun_answer_then_resume_adopts_the_retry(self):
        self.jobs({123: {"runs": [[3, 20]], "rerun": [{"created_slow": 20}], "steps": [3, 10]}})
        flow = self.flow(self.FLOW)
        self.assertEqual(run([flow], env=self.sim_env()).rc, 1)
        proc = self.start(["--resume", flow])
        wait_until(lambda: len(self.runs_of()) == 2, timeout=10, what="the rerun")
        self.kill9(proc)
        r = run(["--resume", flow], env=self.sim_env())
        self.assertEqual((r.rc, r.stdout), (0, "success\t%d\n" % (FIRST + 1)), r)
        state = self.job_state()
        self.assertEqual((state["triggers"], state["reruns"], len(state["runs"])), (1, 1, 2), state)
        self.assertIn("run %d, started by engine run 2, is still in flight; adopting it" % (FIRST + 1), r.stderr)

    def test_resume_triggers_as_asked_once_another_run_came_after_the_failed_one(self):
        scenario = {"runs": [[3, 20]], "steps": [3, 10]}
        self.jobs({123: scenario})
        flow = self.flow("""
            local r = dbt_cloud.run({job_id = 123, steps_override = {"dbt build --select orders"}}, {poll = 0.05})
            print(r.status, r.run_id)
        """)
        self.assertEqual(run([flow], env=self.sim_env()).rc, 1)
        # a scheduled run of the job since: rerun/ would run the job afresh, without the overrides
        self.jobs({123: dict(scenario, existing_runs=[{"status": 10, "age": 0, "cause": "scheduled"}])})
        r = run(["--resume", flow], env=self.sim_env())
        self.assertEqual((r.rc, r.stdout), (0, "success\t%d\n" % (FIRST + 2)), r)
        state = self.job_state()
        self.assertEqual((state["triggers"], state["reruns"]), (2, 0), state)
        self.assertEqual(state["bodies"][1]["steps_override"], ["dbt build --select orders"])
        self.assertRegex(state["bodies"][1]["cause"], MARKER)
        self.assertIn("(not a rerun: run %d, which failed, is no longer the job's latest run)" % FIRST, r.stderr)

    def test_a_plain_run_after_a_failure_triggers_anew_never_reruns(self):
        self.jobs({123: {"runs": [[3, 20]], "steps": [3, 10]}})
        flow = self.flow(self.FLOW)
        self.assertEqual(run([flow], env=self.sim_env()).rc, 1)
        r = run([flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        state = self.job_state()
        self.assertEqual((state["triggers"], state["reruns"]), (2, 0), state)
        self.assertEqual(self.requests("POST", "/rerun/"), [])
        self.assertEqual(state["runs"][1]["is_retry"], False)


class Http(Base):
    def test_429_with_retry_after_waits_that_long(self):
        self.jobs({123: {"steps": [10]}})
        self.dbt.set_throttle(1, "1")
        r, _ = self.engine(RUN % 123 + "print(r.status)")
        self.assertEqual(r.stdout, "success\n", r)
        log = self.requests()
        self.assertEqual(log[0]["path"], log[1]["path"])  # the throttled POST, sent again
        self.assertGreaterEqual(log[1]["time"] - log[0]["time"], 0.9, "Retry-After: 1 was honoured")
        self.assertEqual(self.job_state()["triggers"], 1, "a 429 started nothing: sent again")
        self.assertEqual(len(self.runs_of()), 1)
        self.assertIn("answered HTTP 429", r.stderr)

    def test_429_without_retry_after_waits_dbt_cloud_throttle_wait(self):
        self.jobs({123: {"steps": [10]}})
        self.dbt.set_throttle(2, None)
        r, _ = self.engine(RUN % 123 + "print(r.status)", env={"DBT_CLOUD_THROTTLE_WAIT": "0.3"})
        self.assertEqual(r.stdout, "success\n", r)
        log = self.requests()
        gap = log[2]["time"] - log[1]["time"]
        self.assertGreaterEqual(gap, 0.25, "DBT_CLOUD_THROTTLE_WAIT paused it")
        self.assertLess(gap, 5, "not the 300 s default")
        self.assertEqual(self.job_state()["triggers"], 1)
        self.assertEqual(len(self.lines(r.stderr, "answered HTTP 429")), 2, r)

    def test_server_errors_are_retried_and_a_5xx_trigger_is_never_doubled(self):
        self.jobs({123: {"trigger": [{"http": 503}], "get": [{"http": 502}, "html"], "steps": [3, 10],
                         "run_results": "default"}})
        r, _ = self.engine(RUN % 123 + "print(r.status, r.run_id)")
        self.assertEqual(r.stdout, "success\t%d\n" % FIRST, r)
        self.assertEqual(len(self.runs_of()), 1, "one run")
        self.assertEqual(len(self.requests("POST", "/run/")), 2)
        self.assertIn("answered HTTP 503", r.stderr)
        self.assertIn("looking for a run it may have started", r.stderr)
        self.assertIn("no run was started, sending it again", r.stderr)
        self.assertIn("answered HTTP 502", r.stderr)

    def test_a_missing_base_url_is_one_line_naming_the_variable(self):
        env = {"DBT_CLOUD_BASE_URL": None, "DBT_CLOUD_MIN_POLL": None}
        r = run(["-e", "dbt_cloud.run({job_id = 123})"], env=self.sim_env(env))
        self.assertEqual(r.rc, 1, r)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r)
        self.assertIn("DBT_CLOUD_BASE_URL", lines[0])
        self.assertIn("Account settings", lines[0])
        self.assertEqual(self.requests(), [])

    def test_a_401_names_the_token_variable(self):
        self.jobs({123: {"steps": [10]}})
        r, _ = self.engine("""
            local ok, e = pcall(dbt_cloud.run, {job_id = 123}, {poll = 0.05})
            print(ok, e.kind)
            error(e, 0)
        """, env={"DBT_CLOUD_API_TOKEN": "wrong-token-value"}, rc=1)
        self.assertEqual(r.stdout, "false\tauth\n", r)
        self.assertIn("answered HTTP 401: Invalid token.", r.stderr)
        self.assertIn("DBT_CLOUD_API_TOKEN", r.stderr)
        self.assertEqual(len(self.requests("POST")), 1, "a refusal is not retried")
        self.assertEqual(self.job_state()["triggers"], 0)
        row = self.journal()[0]
        self.assertEqual((row["status"], row["final"]), ("auth", 1), "a refused trigger is settled")

    def test_a_missing_job_is_not_found_and_names_the_settings(self):
        self.jobs({123: {"missing": True}})
        r, doc = self.engine("""
            local ok, e = pcall(dbt_cloud.run, {job_id = 123}, {poll = 0.05})
            print(ok, e.kind)
            error(e, 0)
        """, rc=1, summary=True)
        self.assertEqual(r.stdout, "false\tnot_found\n", r)
        self.assertIn("answered HTTP 404: Unauthorized or Not Found; check the id, DBT_CLOUD_ACCOUNT_ID and "
                      "DBT_CLOUD_BASE_URL", r.stderr)
        self.assertEqual(len(self.requests("POST")), 1)
        self.assertEqual((doc["jobs"][0]["outcome"], doc["jobs"][0]["resource"]), ("not_found", 123))
        self.assertEqual(self.journal()[0]["final"], 1, "a refused trigger is settled")

    def test_plain_http_to_another_host_is_refused(self):
        for args in (["-e", "dbt_cloud.run({job_id = 123})"],
                     ["-e", "dbt_cloud.run({job_id = 123, base_url = 'http://dbt.example.invalid:8080'})"]):
            r = run(args, env=self.sim_env({"DBT_CLOUD_BASE_URL": "http://ab123.us1.dbt.invalid",
                                            "DBT_CLOUD_MIN_POLL": None}))
            self.assertEqual(r.rc, 1, r)
            self.assertIn("is plain http to a host that is not this machine", r.stderr)
            self.assertIn("DBT_CLOUD_ALLOW_HTTP=1", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r)


class Names(Base):
    JOBS = {1: {"name": "nightly build", "project_id": 1000, "environment_id": 2000, "steps": [10]},
            2: {"name": "nightly build", "project_id": 1001, "environment_id": 2001, "steps": [10]},
            3: {"name": "hourly models", "steps": [10]}}

    def test_a_name_with_project_and_environment_filters_runs_that_job(self):
        self.jobs(self.JOBS)
        r, _ = self.engine("""
            local r = dbt_cloud.run({name = "nightly build", project_id = 1001, environment_id = 2001}, {poll = 0.05})
            print(r.status, r.job_id, r.label)
            local r = dbt_cloud.run({name = "hourly models"}, {poll = 0.05})
            print(r.status, r.job_id)
        """)
        self.assertEqual(r.stdout.splitlines(), ["success\t2\tnightly build", "success\t3"], r)
        self.assertEqual((self.job_state(1)["triggers"], self.job_state(2)["triggers"],
                          self.job_state(3)["triggers"]), (0, 1, 1))
        listing = self.requests("GET", "/jobs/")[0]["query"]
        self.assertEqual((listing["project_id"], listing["environment_id"]), ("1001", "2001"))

    def test_a_typo_lists_close_matches(self):
        self.jobs(self.JOBS)
        r, _ = self.engine("""
            local ok, e = pcall(dbt_cloud.run, {name = "nightly biuld"}, {poll = 0.05})
            print(ok, e.kind)
            print(e.message)
        """)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "false\tnot_found", r)
        self.assertIn('no job is named "nightly biuld"', lines[1])
        self.assertIn('close matches: "nightly build" (id 1), "nightly build" (id 2)', lines[1])
        self.assertNotIn("hourly", lines[1])
        self.assertEqual(self.requests("POST"), [])

    def test_two_jobs_with_the_name_are_ambiguous(self):
        self.jobs(self.JOBS)
        r, _ = self.engine("""
            local ok, e = pcall(dbt_cloud.trigger, {name = "nightly build"})
            print(ok, e.kind)
            print(e.message)
        """)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "false\tinvalid_argument", r)
        self.assertIn('2 jobs are named "nightly build" (ids 1, 2): pass project_id, environment_id or job_id',
                      lines[1])
        self.assertEqual(self.requests("POST"), [])


class Reading(Base):
    def test_jobs_and_runs_read_the_account(self):
        jobs = {i: {"name": "job number %d" % i, "project_id": 1000 + i % 2} for i in range(1, 130)}
        jobs[500] = {"name": "nightly", "steps": [3, 10]}
        self.jobs(jobs)
        r, _ = self.engine("""
            local all = dbt_cloud.jobs()
            print(#all, all[1].id, all[1].name, all[#all].id)
            print(#dbt_cloud.jobs({project_id = 1001}))
            local named = dbt_cloud.jobs({name = "NIGHT"})
            print(#named, named[1].id)
            local r1 = dbt_cloud.run({job_id = 500}, {poll = 0.05})
            local r2 = dbt_cloud.run({job_id = 500}, {poll = 0.05})
            local runs = dbt_cloud.runs({job_id = 500})
            print(#runs, runs[1].id == r2.run_id, runs[2].id == r1.run_id, runs[1].status, math.type(runs[1].id))
            local one = dbt_cloud.runs({job_id = 500, limit = 1})
            print(#one, one[1].id == r2.run_id)
            print(pcall(dbt_cloud.runs, {job_id = 500, limit = 0}))
        """)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "130\t1\tjob number 1\t500", r)
        self.assertEqual(lines[1], "65")
        self.assertEqual(lines[2], "1\t500")
        self.assertEqual(lines[3], "2\ttrue\ttrue\t10\tinteger")
        self.assertEqual(lines[4], "1\ttrue")
        self.assertIn("limit must be a whole number from 1 to 100", lines[5])
        pages = [q["query"].get("offset") for q in self.requests("GET", "/jobs/") if not q["query"].get("name__icontains")
                 and not q["query"].get("project_id")]
        self.assertEqual(pages, ["0", "100"], "the listing is paged")

    def test_the_summary_json_and_engine_runs_show_the_jobs(self):
        self.jobs({123: {"steps": [3, 10], "run_results": "default"},
                   124: {"steps": [3, 20], "run_results": "default_error"}})
        code = """
            dbt_cloud.run({job_id = 123, label = "nightly"}, {poll = 0.05})
            dbt_cloud.run({job_id = 124}, {poll = 0.05})
        """
        r, doc = self.engine(code, rc=1, summary=True)
        jobs = doc["jobs"]
        self.assertEqual(len(jobs), 2, doc)
        ok, failed = jobs
        for k, v in {"provider": "dbt_cloud", "resource": 123, "remote_run": FIRST, "label": "nightly",
                     "outcome": "success", "ok": True, "job_id": 123, "run_id": FIRST,
                     "link": "%s/deploy/42/projects/1000/runs/%d/" % (self.dbt.url, FIRST),
                     "counts": {"passed": 5, "failed": 0, "errored": 0, "skipped": 0, "warned": 0}}.items():
            self.assertEqual(ok.get(k), v, k)
        self.assertEqual((failed["provider"], failed["resource"], failed["outcome"], failed["ok"]),
                         ("dbt_cloud", 124, "failed", False))
        self.assertEqual(failed["counts"]["errored"], 1)
        self.assertEqual(doc["remote_jobs"], {"total": 2, "failed": 1})
        history = json.loads(run(["runs", "1", "--json"]).stdout)
        # (ids as numbers or as text)
        self.assertEqual([(j["provider"], str(j["resource"]), str(j["remote_run"]), j["outcome"])
                          for j in history["jobs"]],
                         [("dbt_cloud", "123", str(FIRST), "success"), ("dbt_cloud", "124", str(FIRST + 1), "failed")])
        self.assertEqual(history["jobs"][0]["label"], "nightly")
        self.assertEqual(history["jobs"][0]["counts"]["passed"], 5)
        text = run(["runs", "1"]).stdout
        self.assertRegex(text, r"JOB +RUN +STATUS +PASSED +FAILED +ERRORED +SKIPPED +WARNED +LINK")
        self.assertRegex(text, r"123 +%d +success +5 +0 +0 +0 +0 " % FIRST)
        self.assertRegex(text, r"124 +%d +\S+ +2 +0 +1 +2 +0 " % (FIRST + 1))


if __name__ == "__main__":
    main()
