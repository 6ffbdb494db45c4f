"""test_fivetran.py: the fivetran module end to end, against the Fivetran
simulator (tests/fivetran_sim.py): a sync that succeeds or fails (and the
baseline rule: only an end after the trigger counts), rescheduled and
paused connections, adopting a sync already running, kill -9 and rerun or
--resume, lost and throttled triggers, SIGTERM (no cancel endpoint),
re-syncs, names, bad input, listing connections, and what the summary,
`engine runs` and JSON logs say. No test ever sees the engine PATCH."""
import base64
import json
import os
import signal
import sqlite3
import stat
import time
import urllib.request

from harness import ProvidersTestCase, main, run, wait_until

from fivetran_sim import DEFAULT_KEY, DEFAULT_SECRET

LINK = "https://fivetran.com/dashboard/connections/%s/status"

# A flow that syncs the connection named by its first argument and prints
# what the result says.
SYNC_FLOW = """
local id = ...
local r = fivetran.sync{connection_id = id}
print(r.status, r.connection_id, r.provider, r.resource, r.remote_run)
"""

# Prints an error's kind and message instead of raising it.
CATCH = """
local ok, err = pcall(function() %s end)
if ok then print("ok") else print("error", err.kind) print("message", err.message) end
"""


class Fivetran(ProvidersTestCase):
    SIM_ENV = dict(ProvidersTestCase.SIM_ENV, FIVETRAN_POLL="0.05", FIVETRAN_THROTTLE_WAIT="0.05")

    def setUp(self):
        super().setUp()
        # whatever a test did, the engine never changes a connection
        self.addCleanup(self.assert_never_patched)

    # --- helpers ----------------------------------------------------------
    def assert_never_patched(self):
        self.assertEqual(self.fivetran.state()["patches"], 0, "the engine sent a PATCH")
        self.assertFalse([r for r in self.fivetran.log if r["method"] not in ("GET", "POST")],
                         "only GET and POST are ever sent")

    def control(self, what, order):
        """POSTs order to the simulator's control endpoint /_sim/<what>."""
        req = urllib.request.Request("%s/_sim/%s" % (self.fivetran.url, what), json.dumps(order).encode(),
                                     {"Content-Type": "application/json"})
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        with direct.open(req, timeout=10) as answer:
            self.assertEqual(json.load(answer), {"ok": True})

    def connections(self, **scenarios):
        self.fivetran.configure(scenarios)

    def state(self, conn_id):
        return self.fivetran.state()["connections"][conn_id]

    def requests(self, method=None, path=None):
        return [r for r in list(self.fivetran.log)
                if (method is None or r["method"] == method) and (path is None or r["path"] == path)]

    def posts(self):
        return self.requests("POST")

    def engine(self, code, args=(), env=None, extra=()):
        """Runs code as a flow file with the simulators' environment."""
        return run(list(extra) + [self.flow(code)] + list(args), env=self.sim_env(env))

    def catch(self, call, env=None):
        """Runs a call in a flow that prints the error's kind and message."""
        r = self.engine(CATCH % call, env=env)
        self.assertEqual(r.rc, 0, r)
        lines = dict(line.split("\t", 1) if "\t" in line else (line, "") for line in r.stdout.splitlines())
        return lines.get("error"), lines.get("message", ""), r

    def journal(self):
        """The journal's job rows, as dicts, oldest first."""
        db = sqlite3.connect(os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db"))
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY id")]
        finally:
            db.close()

    def gets(self, conn_id):
        return self.state(conn_id)["gets"]

    def finish_at(self, conn_id, polls_left):
        """Moves the running sync of conn_id so that it ends polls_left GETs
        from now (used while no engine runs)."""
        with self.fivetran.lock:
            conn = self.fivetran.connections[conn_id]
            steps = self.fivetran.steps_of(conn, conn["sync"]["ordinal"])
            conn["sync"]["polls"] = len(steps) - polls_left

    def kill9(self, proc):
        proc.send_signal(signal.SIGKILL)
        rc, _, _ = self.finish(proc)
        self.assertEqual(rc, -signal.SIGKILL)

    def error_lines(self, stderr):
        return [line for line in stderr.splitlines() if line.startswith("engine:")]


class Success(Fivetran):
    def test_a_sync_that_succeeds(self):
        self.connections(decisive_bloom={"steps": ["syncing", "syncing", "succeeded"]})
        summary = os.path.join(self.dir, "s.json")
        r = self.engine(SYNC_FLOW, ["decisive_bloom"], extra=["--summary-json", summary])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tdecisive_bloom\tfivetran\tdecisive_bloom\tafter:never\n")
        st = self.state("decisive_bloom")
        self.assertEqual((st["triggers"], st["forced"], st["syncs"], st["restarts"]), (1, 0, 1, 0))
        # the summary row
        self.assertIn("summary: 1 sync: 1 succeeded", r.stderr)
        self.assertRegex(r.stderr, r"connection decisive_bloom\s+succeeded")
        self.assertIn("connection decisive_bloom succeeded in", r.stderr)
        self.assertIn("synced at " + st["succeeded_at"], r.stderr)
        with open(summary) as f:
            s = json.load(f)
        self.assertEqual((s["exit_code"], s["status"]), (0, "ok"), s)
        # the requests: current paths, Basic auth, the version 2 Accept header
        auth = "Basic " + base64.b64encode(("%s:%s" % (DEFAULT_KEY, DEFAULT_SECRET)).encode()).decode()
        log = self.requests()
        self.assertTrue(log)
        for req in log:
            self.assertTrue(req["path"].startswith("/v1/connections"), req)
            self.assertNotIn("/v1/connectors", req["path"])
            self.assertEqual(req["auth"], auth)
            self.assertEqual(req["accept"], "application/json;version=2")
        self.assertEqual(log[0]["method"], "GET", "the baseline is read before the trigger")
        posts = self.posts()
        self.assertEqual([p["path"] for p in posts], ["/v1/connections/decisive_bloom/sync"])
        self.assertEqual(json.loads(posts[0]["body"]), {"force": False})
        self.assertEqual(posts[0]["content_type"], "application/json")
        # the journal: one row, over and ok
        rows = self.journal()
        self.assertEqual([(x["provider"], x["resource"], x["remote_run"], x["final"], x["ok"]) for x in rows],
                         [("fivetran", "decisive_bloom", "after:never", 1, 1)])

    def test_the_result_table_and_trigger_then_wait(self):
        self.connections(decisive_bloom={"succeeded_at": "2024-05-01T10:00:00Z", "group_id": "g7",
                                         "service": "postgres", "name": "pg_main"})
        r = self.engine("""
            local h = fivetran.trigger{connection_id = "decisive_bloom", label = "nightly"}
            print("handle", h.connection_id, h.after, h.label)
            local r = fivetran.wait(h, {poll = 0.05})
            for _, k in ipairs{"status", "connection_id", "provider", "resource", "remote_run", "link", "url",
                               "schema", "service", "group_id", "after", "label", "sync_state"} do
              print(k, r[k])
            end
            print("failed_at", r.failed_at)
            print("later", r.succeeded_at > "2024-05-01T10:00:00.000000Z", type(r.elapsed))
        """)
        self.assertEqual(r.rc, 0, r)
        out = dict(line.split("\t", 1) for line in r.stdout.splitlines())
        self.assertEqual(out["handle"], "decisive_bloom\t2024-05-01T10:00:00.000000Z\tnightly")
        self.assertEqual(out["status"], "succeeded")
        self.assertEqual(out["connection_id"], "decisive_bloom")
        self.assertEqual(out["provider"], "fivetran")
        self.assertEqual(out["resource"], "decisive_bloom")
        self.assertEqual(out["remote_run"], "after:2024-05-01T10:00:00.000000Z")
        self.assertEqual(out["link"], LINK % "decisive_bloom")
        self.assertEqual(out["url"], LINK % "decisive_bloom")
        self.assertEqual((out["schema"], out["service"], out["group_id"]), ("pg_main", "postgres", "g7"))
        self.assertEqual(out["after"], "2024-05-01T10:00:00.000000Z")
        self.assertEqual(out["label"], "nightly")
        self.assertEqual(out["sync_state"], "scheduled")
        self.assertEqual(out["failed_at"], "nil")
        self.assertEqual(out["later"], "true\tnumber")
        self.assertEqual(self.state("decisive_bloom")["triggers"], 1)
        self.assertRegex(r.stderr, r"nightly\s+succeeded")


class Failure(Fivetran):
    def test_a_sync_that_fails_gives_fivetrans_message(self):
        self.connections(c1={"steps": ["syncing", "failed"], "fail_message": "Table 'orders' lost its primary key"})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}')
        self.assertEqual(kind, "failed", r)
        self.assertIn("Table 'orders' lost its primary key", message)
        self.assertIn(LINK % "c1", message)
        # uncaught: exit 1, one error line, the summary row
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.stdout, "")
        errors = self.error_lines(r.stderr)
        self.assertEqual(len(errors), 1, r)
        self.assertIn("connection c1 failed: Table 'orders' lost its primary key", errors[0])
        self.assertIn("summary: 1 sync: 1 failed", r.stderr)
        self.assertRegex(r.stderr, r"connection c1\s+failed")
        self.assertEqual(self.state("c1")["triggers"], 2)
        rows = self.journal()
        self.assertEqual([(x["status"], x["final"], x["ok"]) for x in rows], [("failed", 1, 0)] * 2)

    def test_a_stale_failure_from_before_the_trigger_is_not_a_failure(self):
        # the last sync failed (failed_at is later than succeeded_at); the
        # first polls still show that failed_at: it is the baseline, not news
        self.connections(c1={"succeeded_at": "2024-01-01T00:00:00Z", "failed_at": "2024-02-01T00:00:00Z",
                             "steps": ["syncing", "syncing", "succeeded"]},
                         c2={"failed_at": "2024-02-01T00:00:00Z", "steps": ["syncing", "succeeded"]})
        for conn_id, after in (("c1", "2024-02-01T00:00:00.000000Z"), ("c2", "2024-02-01T00:00:00.000000Z")):
            r = self.engine(SYNC_FLOW, [conn_id])
            self.assertEqual(r.rc, 0, r)
            self.assertEqual(r.stdout, "succeeded\t%s\tfivetran\t%s\tafter:%s\n" % (conn_id, conn_id, after))
            st = self.state(conn_id)
            self.assertEqual(st["failed_at"], "2024-02-01T00:00:00.000000Z", "it did not fail again")
            self.assertGreater(st["succeeded_at"], st["failed_at"])
            self.assertNotIn("failed", r.stderr.replace("0 failed", ""))

    def test_equal_timestamps_then_a_later_success_is_a_success(self):
        # succeeded_at == failed_at before the trigger: the success that
        # moves past them wins, the older failed_at does not count
        self.connections(c1={"succeeded_at": "2024-03-01T12:00:00.123456Z",
                             "failed_at": "2024-03-01T12:00:00.123456Z"})
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tc1\tfivetran\tc1\tafter:2024-03-01T12:00:00.123456Z\n")
        self.assertEqual(self.state("c1")["failed_at"], "2024-03-01T12:00:00.123456Z")

    def test_a_success_a_millisecond_after_the_baseline_counts(self):
        # the sim stamps at least 1 ms after the latest end: sub-second
        # precision matters, whole seconds would read it as no news
        baseline = "2099-01-01T00:00:00.000100Z"
        self.connections(c1={"succeeded_at": baseline, "steps": ["syncing", "succeeded"]})
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.state("c1")["succeeded_at"], "2099-01-01T00:00:00.001100Z")
        self.assertIn("succeeded\tc1", r.stdout)


class Rescheduled(Fivetran):
    def test_a_rescheduled_sync_is_an_error_naming_the_time(self):
        self.connections(c1={"steps": ["syncing", "rescheduled"], "rescheduled_for": "2030-01-01T00:00:00Z"})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}')
        self.assertEqual(kind, "rescheduled", r)
        self.assertIn("2030-01-01T00:00:00.000000Z", message)
        self.assertIn("allow_rescheduled = true", message)
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.stdout, "", "never a success")
        self.assertIn("summary: 1 sync: 1 rescheduled", r.stderr)
        self.assertNotIn("succeeded", r.stderr.split("summary:")[0])
        self.assertEqual([(x["ok"], x["final"]) for x in self.journal()], [(0, 1), (0, 1)])

    def test_allow_rescheduled_waits_on_and_succeeds(self):
        self.connections(c1={"steps": ["syncing", "rescheduled", "rescheduled", "rescheduled", "syncing",
                                       "succeeded"]})
        r = self.engine("""
            local r = fivetran.sync({connection_id = "c1"}, {allow_rescheduled = true})
            print(r.status)
        """)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\n")
        self.assertIn("connection c1: rescheduled", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"]), (1, 1))
        self.assertIsNotNone(st["succeeded_at"])


    def test_an_unknown_sync_state_is_never_a_success(self):
        raw = json.dumps({"code": "Success", "data": {
            "id": "CONNECTION_ID", "paused": False, "succeeded_at": None, "failed_at": None,
            "status": {"setup_state": "connected", "sync_state": "teleporting"}}})
        self.connections(c1={"get": ["ok", {"raw": raw}]})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}')
        self.assertEqual(kind, "unknown_status", r)
        self.assertIn('reported sync_state "teleporting"', message)
        self.assertIn("treating it as a failure", message)


class Paused(Fivetran):
    def test_a_paused_connection_is_refused_before_any_trigger(self):
        self.connections(c1={"paused": True})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}')
        self.assertEqual(kind, "paused", r)
        self.assertIn("connection c1 is paused in Fivetran", message)
        self.assertIn("never changes a connection's pause state", message)
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("summary: 1 sync: 1 paused", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"], st["paused"]), (0, 0, True))
        self.assertEqual(self.posts(), [])
        self.assertEqual([x for x in self.journal() if not x["final"]], [], "no open row is left")

    def test_a_connection_paused_during_the_wait_ends_it(self):
        self.connections(c1={"steps": ["syncing", "syncing", "paused"]})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}')
        self.assertEqual(kind, "paused", r)
        self.assertIn("is paused in Fivetran", message)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["paused"], st["sync_state"]), (1, True, "paused"))
        rows = self.journal()
        self.assertEqual([(x["final"], x["ok"]) for x in rows], [(1, 0)])

    def test_a_connection_not_set_up_is_refused(self):
        self.connections(c1={"setup_state": "broken"})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}')
        self.assertEqual(kind, "failed", r)
        self.assertIn('setup_state "broken"', message)
        self.assertEqual(self.state("c1")["triggers"], 0)


class Adopt(Fivetran):
    def test_a_sync_already_running_is_adopted_not_restarted(self):
        self.connections(c1={"sync_state": "syncing", "steps": ["syncing", "syncing", "syncing", "succeeded"]})
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tc1\tfivetran\tc1\tafter:never\n")
        self.assertIn("connection c1: a sync is already running (force = false); adopting it", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["restarts"], st["syncs"]), (0, 0, 1))
        for p in self.posts():
            self.assertEqual(json.loads(p["body"]).get("force"), False)
        self.assertEqual([(x["remote_run"], x["ok"]) for x in self.journal()], [("after:never", 1)])

    def test_force_passes_force_true(self):
        self.connections(c1={"sync_state": "syncing", "steps": ["syncing", "syncing", "succeeded"]})
        r = self.engine("""
            local r = fivetran.sync{connection_id = "c1", force = true}
            print(r.status)
        """)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\n")
        posts = self.posts()
        self.assertEqual(len(posts), 1)
        self.assertEqual(json.loads(posts[0]["body"]), {"force": True})
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["forced"], st["restarts"], st["syncs"]), (1, 1, 1, 2))


class Durable(Fivetran):
    LONG = ["syncing"] * 400 + ["succeeded"]

    def test_kill_9_while_waiting_then_rerun_adopts_the_sync(self):
        self.connections(c1={"steps": self.LONG})
        flow = self.flow(SYNC_FLOW)
        proc = self.start([flow, "c1"])
        wait_until(lambda: self.gets("c1") >= 3, timeout=10, what="polls")
        self.kill9(proc)
        self.assertEqual(self.state("c1")["triggers"], 1)
        self.assertEqual([(x["remote_run"], x["final"]) for x in self.journal()], [("after:never", 0)],
                         "the killed run left its row open")
        self.finish_at("c1", 3)  # it ends soon
        r = run([flow, "c1"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tc1\tfivetran\tc1\tafter:never\n")
        self.assertIn("connection c1: its first sync, started by engine run 1, is still in flight; "
                      "adopting it instead of triggering again", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"]), (1, 1), "no second trigger")
        self.assertEqual(len(self.posts()), 1)
        rows = self.journal()
        self.assertEqual([(x["run"], x["status"], x["final"]) for x in rows][0], (1, "adopted", 1))
        last = rows[-1]
        self.assertEqual((last["run"], last["remote_run"], last["ok"], last["final"], last["origin"],
                          last["started_by"]), (2, "after:never", 1, 1, "adopted", 1))

    def test_kill_9_then_the_sync_ends_unwatched_and_resume_takes_it(self):
        self.connections(c1={"succeeded_at": "2024-01-01T00:00:00Z", "steps": self.LONG})
        flow = self.flow(SYNC_FLOW)
        proc = self.start([flow, "c1"])
        wait_until(lambda: self.gets("c1") >= 3, timeout=10, what="polls")
        self.kill9(proc)
        self.finish_at("c1", 1)  # the next GET ends it: while no engine runs
        r = run(["--resume", flow, "c1"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tc1\tfivetran\tc1\tafter:2024-01-01T00:00:00.000000Z\n")
        self.assertIn("started by engine run 1, ended while no engine watched it; taking its result", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"], st["sync_state"]), (1, 1, "scheduled"))
        rows = self.journal()
        self.assertEqual([(x["run"], x["ok"], x["final"]) for x in rows], [(1, 0, 1), (2, 1, 1)], rows)
        self.assertEqual(rows[1]["origin"], "recorded")
        runs = json.loads(run(["runs", "--json"]).stdout)
        self.assertEqual([(x["outcome"], x["resumed_from"]) for x in runs], [("ok", 1), ("crashed", None)])


    def test_kill_9_then_the_sync_ends_unwatched_and_a_plain_rerun_syncs_anew(self):
        self.connections(c1={"steps": self.LONG, "runs": [self.LONG, ["syncing", "succeeded"]]})
        flow = self.flow(SYNC_FLOW)
        proc = self.start([flow, "c1"])
        wait_until(lambda: self.gets("c1") >= 3, timeout=10, what="polls")
        self.kill9(proc)
        self.finish_at("c1", 1)
        r = run([flow, "c1"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"]), (2, 2), "without --resume a finished sync is synced anew")
        rows = self.journal()
        self.assertEqual(rows[0]["status"], "succeeded", "the earlier row is settled with how it ended")
        # the new sync's baseline is the end of the earlier one: its end
        # alone is never taken for the new sync's
        first_end = rows[1]["remote_run"][len("after:"):]
        self.assertNotEqual(first_end, "never")
        self.assertLess(first_end, st["succeeded_at"])
        self.assertEqual(r.stdout, "succeeded\tc1\tfivetran\tc1\tafter:%s\n" % first_end)

    def test_a_chained_resume_takes_the_recorded_result(self):
        flow = self.flow("""
            local r = fivetran.sync{connection_id = "c1"}
            print(r.status, r.succeeded_at, r.remote_run)
            flow.step("after", function() error("step failed") end)
        """)
        self.connections(c1={"steps": ["succeeded"]})
        outs = []
        for args in ([flow], ["--resume", flow], ["--resume", flow]):
            r = run(args, env=self.sim_env())
            self.assertEqual(r.rc, 1, r)
            outs.append(r.stdout)
        self.assertEqual(self.state("c1")["triggers"], 1, "each --resume takes the recorded result")
        self.assertEqual(len(set(outs)), 1, outs)
        self.assertEqual(outs[0], "succeeded\t%s\tafter:never\n" % self.state("c1")["succeeded_at"])
        # (the run named is the one resumed, here 2, which took run 1's result)
        self.assertRegex(r.stderr, r"connection c1: its first sync succeeded in engine run \d; "
                                   r"not triggered again \(--resume\)")
        self.assertRegex(r.stderr, r"connection c1\s+succeeded \(recorded\)")


class Lost(Fivetran):
    def test_a_lost_answer_to_a_trigger_that_took_effect_is_adopted(self):
        self.connections(c1={"trigger": ["lost_created"], "steps": ["syncing", "syncing", "succeeded"]})
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tc1\tfivetran\tc1\tafter:never\n")
        self.assertIn("looking for a run it may have started", r.stderr)
        self.assertIn("adopting its first sync, which Fivetran created after the trigger was sent", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"]), (1, 1), "no second POST")
        self.assertEqual(len(self.posts()), 1)

    def test_a_lost_trigger_that_started_nothing_is_sent_again(self):
        self.connections(c1={"trigger": ["lost"], "steps": ["syncing", "succeeded"]})
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tc1\tfivetran\tc1\tafter:never\n")
        self.assertIn("no run was started, sending it again", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"]), (2, 1))
        methods = [q["method"] for q in self.requests()]
        self.assertEqual(methods[:4], ["GET", "POST", "GET", "POST"], "it looked before sending again")

    def test_a_lost_answer_then_kill_9_then_rerun_does_not_trigger_again(self):
        self.connections(c1={"trigger": [{"created_slow": 30}], "steps": ["syncing", "syncing", "succeeded"]})
        flow = self.flow(SYNC_FLOW)
        proc = self.start([flow, "c1"])
        wait_until(lambda: self.state("c1")["syncs"] == 1, timeout=10, what="the trigger")
        self.kill9(proc)
        rows = self.journal()
        self.assertEqual([(x["remote_run"], x["final"]) for x in rows], [(None, 0)], "the intent is durable")
        r = run([flow, "c1"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.state("c1")["triggers"], 1, r)
        self.assertIn("adopting it instead of triggering again", r.stderr)

    def test_429_with_and_without_retry_after_backs_off_and_succeeds(self):
        # (Retry-After, FIVETRAN_THROTTLE_WAIT, 429s in a row, the least it waits)
        for retry_after, throttle_wait, count, least in ((None, "0.3", 2, 0.6), ("1", "0.05", 1, 1.0),
                                                         ("0", "0.05", 3, 0.0)):
            self.fivetran.reset()
            self.connections(c1={})
            self.control("throttle", {"count": count, "retry_after": retry_after})
            started = time.monotonic()
            r = self.engine(SYNC_FLOW, ["c1"], env={"FIVETRAN_THROTTLE_WAIT": throttle_wait})
            took = time.monotonic() - started
            self.assertEqual(r.rc, 0, r)
            self.assertIn("succeeded\tc1", r.stdout)
            self.assertEqual(r.stderr.count("Fivetran answered HTTP 429"), count, r)
            # without Retry-After it waits FIVETRAN_THROTTLE_WAIT, with one at least that
            self.assertGreaterEqual(took, least, (retry_after, r))
            self.assertEqual(self.fivetran.state()["throttle"], 0)
            self.assertEqual(self.state("c1")["triggers"], 1)

    def test_a_429_trigger_is_sent_again_without_looking(self):
        self.connections(c1={"trigger": [{"http": 429, "retry_after": "0"}]})
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([q["method"] for q in self.requests()][:3], ["GET", "POST", "POST"])
        self.assertNotIn("looking for a run", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"]), (2, 1))

    def test_5xx_answers_are_retried(self):
        self.connections(c1={"get": [{"http": 503}, "html", "ok", {"http": 500}],
                             "trigger": [{"http": 500}],
                             "steps": ["syncing", "succeeded"]})
        r = self.engine(SYNC_FLOW, ["c1"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("succeeded\tc1", r.stdout)
        self.assertIn("Fivetran answered HTTP 503", r.stderr)
        self.assertIn("Fivetran answered HTTP 502", r.stderr)
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["syncs"]), (2, 1), "a 500 trigger started nothing: sent again")

    def test_a_bad_key_is_one_auth_error_and_not_retried(self):
        self.connections(c1={})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}',
                                      env={"FIVETRAN_API_SECRET": "wrong-token-value"})
        self.assertEqual(kind, "auth", r)
        self.assertIn("HTTP 401", message)
        self.assertIn("FIVETRAN_API_KEY", message)
        self.assertEqual(len(self.requests()), 1)

    def test_an_unknown_connection_is_not_found(self):
        kind, message, r = self.catch('fivetran.sync{connection_id = "nope_nope"}')
        self.assertEqual(kind, "not_found", r)
        self.assertIn("HTTP 404", message)
        self.assertEqual(self.posts(), [])


class Stop(Fivetran):
    def test_sigterm_during_a_wait_leaves_the_sync_running(self):
        self.connections(c1={"steps": ["syncing"] * 400 + ["succeeded"]})
        summary = os.path.join(self.dir, "s.json")
        proc = self.start(["--summary-json", summary, self.flow(SYNC_FLOW), "c1"])
        wait_until(lambda: self.gets("c1") >= 3, timeout=10, what="polls")
        proc.send_signal(signal.SIGTERM)
        rc, out, err = self.finish(proc, timeout=30)
        self.assertEqual(rc, 143, err)
        self.assertEqual(out, "")
        self.assertIn("connection c1: stopped; left running in Fivetran: no cancel endpoint", err)
        with open(summary) as f:
            s = json.load(f)
        self.assertEqual(s["exit_code"], 143)
        self.assertIn("left running in Fivetran: no cancel endpoint", json.dumps(s["jobs"]))
        st = self.state("c1")
        self.assertEqual((st["triggers"], st["sync_state"]), (1, "syncing"))
        self.assertEqual(len(self.posts()), 1, "nothing is sent to stop it")


    def test_sigterm_while_the_trigger_is_unanswered_says_what_it_left(self):
        self.connections(c1={"trigger": [{"created_slow": 30}], "steps": ["syncing"]})
        proc = self.start([self.flow(SYNC_FLOW), "c1"])
        wait_until(lambda: self.state("c1")["syncs"] == 1, timeout=10, what="the trigger")
        proc.send_signal(signal.SIGTERM)
        rc, out, err = self.finish(proc, timeout=30)
        self.assertEqual(rc, 143, err)
        self.assertIn("connection c1: the stop interrupted its trigger; its first sync, which it started, "
                      "is left running in Fivetran: no cancel endpoint", err)
        self.assertEqual(self.state("c1")["triggers"], 1)
        rows = self.journal()
        self.assertEqual([x["remote_run"] for x in rows], ["after:never"], "the sync it started is known")

    def test_a_timeout_ends_the_wait_and_leaves_the_sync(self):
        self.connections(c1={"steps": ["syncing"]})
        kind, message, r = self.catch('fivetran.sync({connection_id = "c1"}, {timeout = 0.3})')
        self.assertEqual(kind, "timeout", r)
        self.assertIn("connection c1: still syncing after the 0.3 s timeout", message)
        self.assertEqual(len(self.posts()), 1)
        self.assertEqual(self.state("c1")["sync_state"], "syncing")


class Resync(Fivetran):
    def test_resync_posts_the_scope(self):
        self.connections(c1={"steps": ["syncing", "syncing", "succeeded"]})
        r = self.engine("""
            local r = fivetran.sync{connection_id = "c1", resync = true, scope = {public = {"users", "orders"}}}
            print(r.status)
        """)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\n")
        posts = self.posts()
        self.assertEqual([p["path"] for p in posts], ["/v1/connections/c1/resync"])
        self.assertEqual(json.loads(posts[0]["body"]), {"scope": {"public": ["users", "orders"]}})
        st = self.state("c1")
        self.assertEqual((st["resyncs"], st["triggers"], st["resync_scopes"]),
                         (1, 0, [{"public": ["users", "orders"]}]))

    def test_a_409_to_a_sync_is_a_conflict_too(self):
        self.connections(c1={"trigger": [{"http": 409, "body": {"code": "Conflict", "message": "busy"}}]})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1"}')
        self.assertEqual(kind, "conflict", r)
        self.assertIn("Fivetran refused the sync (HTTP 409)", message)
        self.assertEqual(self.state("c1")["triggers"], 1)

    def test_resync_without_scope_posts_an_empty_object(self):
        self.connections(c1={})
        r = self.engine('print(fivetran.sync{connection_id = "c1", resync = true}.status)')
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(self.posts()[0]["body"]), {})
        self.assertEqual(self.state("c1")["resync_scopes"], [None])

    def test_a_409_is_one_clear_conflict_error(self):
        self.connections(c1={"resync": "conflict"})
        kind, message, r = self.catch('fivetran.sync{connection_id = "c1", resync = true}')
        self.assertEqual(kind, "conflict", r)
        self.assertIn("HTTP 409", message)
        self.assertIn(LINK % "c1", message)
        r = self.engine('fivetran.sync{connection_id = "c1", resync = true}')
        self.assertEqual(r.rc, 1, r)
        errors = self.error_lines(r.stderr)
        self.assertEqual(len(errors), 1, r)
        self.assertIn("Fivetran refused the re-sync (HTTP 409)", errors[0])
        self.assertNotIn("retrying", r.stderr)
        self.assertEqual(self.state("c1")["resyncs"], 2, "one POST per run, never retried")
        self.assertEqual([x for x in self.journal() if not x["final"]], [], "a refused trigger leaves no open row")


class Names(Fivetran):
    def setUp(self):
        super().setUp()
        self.connections(c1={"name": "salesforce_prod", "group_id": "g1"},
                         c2={"name": "salesforce_prod", "group_id": "g2"},
                         c3={"name": "hubspot", "group_id": "g1"},
                         c4={"name": "stripe_live", "group_id": "g2"})

    def test_by_name(self):
        r = self.engine('local r = fivetran.sync{name = "hubspot"} print(r.status, r.connection_id, r.label)')
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\tc3\thubspot\n")
        self.assertEqual(self.state("c3")["triggers"], 1)
        self.assertEqual(self.requests()[0]["path"], "/v1/connections")
        self.assertEqual(self.requests()[0]["query"].get("limit"), "1000")

    def test_a_typo_gives_close_matches(self):
        kind, message, r = self.catch('fivetran.sync{name = "hubspt"}')
        self.assertEqual(kind, "not_found", r)
        self.assertIn('no connection is named "hubspt"; close matches: "hubspot" (c3)', message)
        r = self.engine('fivetran.sync{name = "stripe_lvie"}')
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(len(self.error_lines(r.stderr)), 1, r)
        self.assertIn('close matches: "stripe_live" (c4)', r.stderr)
        kind, message, r = self.catch('fivetran.sync{name = "zzzzzzzz"}')
        self.assertEqual(kind, "not_found", r)
        self.assertIn("fivetran.connections{} lists them", message)
        self.assertEqual(self.posts(), [])

    def test_two_connections_with_one_name_are_ambiguous(self):
        kind, message, r = self.catch('fivetran.sync{name = "salesforce_prod"}')
        self.assertEqual(kind, "invalid_argument", r)
        self.assertIn('2 connections are named "salesforce_prod" (c1 in group g1, c2 in group g2)', message)
        self.assertIn("pass group_id or connection_id", message)
        self.assertEqual(self.posts(), [])

    def test_group_id_disambiguates(self):
        r = self.engine('local r = fivetran.sync{name = "salesforce_prod", group_id = "g2"} print(r.connection_id)')
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "c2\n")
        self.assertEqual(self.requests()[0]["query"].get("group_id"), "g2")
        self.assertEqual((self.state("c1")["triggers"], self.state("c2")["triggers"]), (0, 1))


class BadInput(Fivetran):
    def assert_one_line(self, r, *words):
        self.assertEqual(r.rc, 1, r)
        errors = self.error_lines(r.stderr)
        self.assertEqual(len(errors), 1, r)
        for w in words:
            self.assertIn(w, errors[0])
        self.assertEqual(self.requests(), [], "nothing was sent")

    def test_missing_key_or_secret(self):
        self.connections(c1={})
        for unset in ("FIVETRAN_API_KEY", "FIVETRAN_API_SECRET"):
            r = self.engine(SYNC_FLOW, ["c1"], env={unset: None})
            self.assert_one_line(r, "no API key and secret", "FIVETRAN_API_KEY")

    def test_a_key_file_others_can_read_is_refused(self):
        self.connections(c1={})
        path = os.path.join(self.dir, "key")
        with open(path, "w") as f:
            f.write(DEFAULT_KEY + "\n")
        os.chmod(path, 0o644)
        env = {"FIVETRAN_API_KEY": None, "FIVETRAN_API_KEY_FILE": path}
        r = self.engine(SYNC_FLOW, ["c1"], env=env)
        self.assert_one_line(r, "FIVETRAN_API_KEY_FILE", "readable by other users", "FIVETRAN_API_KEY_FILE_ANY_MODE=1")
        # private, or with the opt-out, it is read
        r = self.engine(SYNC_FLOW, ["c1"], env=dict(env, FIVETRAN_API_KEY_FILE_ANY_MODE="1"))
        self.assertEqual(r.rc, 0, r)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        r = self.engine(SYNC_FLOW, ["c1"], env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.state("c1")["triggers"], 2)

    def test_bad_connection_id_and_options(self):
        cases = [
            ("fivetran.sync{connection_id = 42}", ["connection_id must be a Fivetran connection id", "got 42"]),
            ('fivetran.sync{connection_id = "a/b"}', ["connection_id must be"]),
            ("fivetran.sync{}", ["connection_id must be"]),
            ('fivetran.sync{connection_id = "c1", scope = {public = {"t"}}}', ["scope goes with resync = true"]),
            ('fivetran.sync{connection_id = "c1", resync = true, scope = {public = "t"}}', ["scope must be"]),
            ('fivetran.sync{connection_id = "c1", force = "yes"}', ["force must be true or false"]),
            ('fivetran.sync{connection_id = "c1", name = "x"}', ["give connection_id or name, not both"]),
            ('fivetran.sync{connection_id = "c1", sync_id = 3}', ["sync_id"]),
            ('fivetran.sync({connection_id = "c1"}, {allow_rescheduled = "yes"})',
             ["allow_rescheduled must be true or false"]),
            ('fivetran.sync({connection_id = "c1"}, {poll = -1})', ["poll"]),
            ('fivetran.wait({connection_id = "c1"})', ["expected what fivetran.trigger returned"]),
            ('fivetran.connection(7)', ["fivetran.connection: expected a connection id"]),
            ('fivetran.connections{group_id = "a b"}', ["group_id must be a Fivetran group id"]),
        ]
        for code, words in cases:
            with self.subTest(code=code):
                self.fivetran.reset()
                self.connections(c1={})
                r = self.engine(code)
                self.assert_one_line(r, *words)

    def test_key_and_secret_given_in_the_spec(self):
        self.connections(c1={})
        r = self.engine("""
            local r = fivetran.sync{connection_id = "c1", key = os.getenv("K"), secret = os.getenv("S")}
            print(r.status)
            log.info("key %s, secret %s", os.getenv("K"), os.getenv("S"))
        """, env={"FIVETRAN_API_KEY": None, "FIVETRAN_API_SECRET": None, "K": DEFAULT_KEY, "S": DEFAULT_SECRET})
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "succeeded\n")
        self.assertIn("key ***, secret ***", r.stderr, "both are secrets, given as options too")

    def test_plain_http_off_this_machine_is_refused(self):
        r = self.engine(SYNC_FLOW, ["c1"], env={"FIVETRAN_BASE_URL": "http://fivetran.invalid"})
        self.assert_one_line(r, "FIVETRAN_BASE_URL http://fivetran.invalid is plain http",
                             "FIVETRAN_ALLOW_HTTP=1")
        r = self.engine(SYNC_FLOW, ["c1"], env={"FIVETRAN_BASE_URL": "http://fivetran.invalid/v1"})
        self.assert_one_line(r, "scheme://host[:port] with no path")


class Listing(Fivetran):
    def test_connections_lists_across_pages(self):
        n = 1234  # the provider asks 1000 a page: two pages
        self.connections(**{"conn_%04d" % i: {"group_id": "g%d" % (i % 2)} for i in range(n)})
        r = self.engine("""
            local all = fivetran.connections{}
            local ids = {}
            for i, c in ipairs(all) do ids[c.id] = true end
            local distinct = 0
            for _ in pairs(ids) do distinct = distinct + 1 end
            print(#all, distinct, all[1].id, all[#all].id, all[1].status.sync_state)
            local g1 = fivetran.connections{group_id = "g1"}
            print(#g1, g1[1].group_id)
        """)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout.splitlines(),
                         ["%d\t%d\tconn_0000\tconn_%04d\tscheduled" % (n, n, n - 1), "%d\tg1" % (n // 2)])
        lists = self.requests("GET", "/v1/connections")
        self.assertEqual(len(lists), 3)
        self.assertEqual([q["query"].get("limit") for q in lists], ["1000"] * 3)
        self.assertNotIn("cursor", lists[0]["query"])
        self.assertTrue(lists[1]["query"].get("cursor"), "the second page is asked by its cursor")
        self.assertEqual(lists[2]["query"], {"limit": "1000", "group_id": "g1"})
        self.assertEqual(sum(self.state(c)["gets"] for c in ("conn_0000", "conn_1233")), 0)

    def test_connection_reads_one(self):
        self.connections(decisive_bloom={"name": "sf", "group_id": "g9", "succeeded_at": "2024-05-01T10:00:00Z"})
        r = self.engine("""
            local c = fivetran.connection("decisive_bloom")
            print(c.id, c.schema, c.group_id, c.succeeded_at, c.failed_at, c.paused, c.status.sync_state)
        """)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "decisive_bloom\tsf\tg9\t2024-05-01T10:00:00.000000Z\tnil\tfalse\tscheduled\n")
        self.assertEqual([q["path"] for q in self.requests()], ["/v1/connections/decisive_bloom"])
        kind, message, r = self.catch('fivetran.connection("nope")')
        self.assertEqual(kind, "not_found", r)


class Reporting(Fivetran):
    def test_summary_json_runs_json_and_json_logs(self):
        self.connections(c1={"steps": ["syncing", "succeeded"]},
                         c2={"steps": ["syncing", "failed"], "fail_message": "quota exceeded"})
        summary = os.path.join(self.dir, "s.json")
        r = self.engine("""
            fivetran.sync{connection_id = "c1", label = "crm"}
            fivetran.sync{connection_id = "c2", label = "billing"}
        """, extra=["--summary-json", summary, "--log-format=json"])
        self.assertEqual(r.rc, 1, r)
        with open(summary) as f:
            s = json.load(f)
        self.assertEqual(s["exit_code"], 1)
        jobs = {j["resource"]: j for j in s["jobs"]}
        self.assertEqual(set(jobs), {"c1", "c2"})
        for resource, label, outcome in (("c1", "crm", "succeeded"), ("c2", "billing", "failed")):
            j = jobs[resource]
            self.assertEqual(j["provider"], "fivetran")
            self.assertEqual(j["remote_run"], "after:never")
            self.assertEqual(j["label"], label)
            self.assertEqual(j["outcome"], outcome)
            self.assertEqual(j["link"], LINK % resource)
            self.assertIn("counts", j)
        self.assertNotIn("error", jobs["c1"])
        self.assertIn("quota exceeded", jobs["c2"]["error"])
        # engine runs 1 --json
        h = json.loads(run(["runs", "1", "--json"]).stdout)
        self.assertEqual(sorted((j["provider"], j["resource"], j["outcome"], j["remote_run"], j["label"])
                                for j in h["jobs"]),
                         [("fivetran", "c1", "succeeded", "after:never", "crm"),
                          ("fivetran", "c2", "failed", "after:never", "billing")])
        self.assertEqual(h["outcome"], "failed")
        # JSON log lines carry the provider and the resource
        lines = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
        self.assertEqual(len(lines), len(r.stderr.splitlines()), "every line is JSON")
        about = [x for x in lines if x.get("provider") == "fivetran"]
        self.assertTrue(any(x.get("resource") == "c1" and x.get("status") == "succeeded" for x in about), lines)
        failed = [x for x in about if x["level"] == "ERROR"]
        self.assertEqual([(x["resource"], x["connection_id"], x["kind"]) for x in failed], [("c2", "c2", "failed")])
        for x in about:
            self.assertIn(x["resource"], ("c1", "c2"))
            self.assertEqual(x["remote_run"], "after:never")


if __name__ == "__main__":
    main()
