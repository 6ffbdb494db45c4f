"""test_flows.py: every example in flows/ runs as documented against the
Census simulator, and does what its comment promises."""
import os

from harness import ROOT, SimTestCase, TestServer, main, run  # first: puts tests/ on the path
from census_sim import DEFAULT_TOKEN

URL = "https://bearer:%s@app.getcensus.com/api/v1/syncs/%%d/trigger" % DEFAULT_TOKEN
DONE = {"status": "completed", "records_processed": 10, "records_updated": 10, "records_failed": 0}


class Flows(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def run_flow(self, name, *args, env=None, rc=0):
        r = run([os.path.join(ROOT, "flows", name)] + [str(a) for a in args], env=self.sim_env(env))
        self.assertEqual(r.rc, rc, r)
        return r

    def runs(self):
        return sorted(self.sim.runs.values(), key=lambda r: r["id"])

    def test_census_sync(self):
        self.sim.syncs[42] = {"steps": ["working", DONE]}
        r = self.run_flow("census_sync.lua", env={"CENSUS_TRIGGER_URL": URL % 42})
        self.assertIn("sync 42: 10 records updated", r.stderr)

    def test_census_chain_runs_b_after_a(self):
        self.sim.syncs[1] = {"steps": ["working", "working", DONE]}
        self.run_flow("census_chain.lua", 1, 2)
        a, b = self.runs()
        a_done = max(q["time"] for q in self.sim.log if q["path"].endswith("/sync_runs/%d" % a["id"]))
        self.assertGreater(b["created_at"], a_done)

    def test_census_chain_stops_when_a_fails(self):
        self.sim.syncs[1] = {"steps": [{"status": "failed", "error_message": "bad"}]}
        r = self.run_flow("census_chain.lua", 1, 2, rc=1)
        self.assertEqual(self.sim.triggers, {1: 1})
        self.assertIn("sync 1 run 1001 failed: bad", r.stderr)

    def test_census_fanout_limits_concurrency(self):
        for i in range(11, 17):
            self.sim.syncs[i] = {"steps": ["working", "working", DONE]}
        r = self.run_flow("census_fanout.lua", *range(11, 17))
        self.assertEqual(r.stderr.count(": completed, 10 records updated"), 6)
        # a run is active from its trigger to its last poll
        spans = []
        for run_ in self.runs():
            polls = [q["time"] for q in self.sim.log if q["path"].endswith("/sync_runs/%d" % run_["id"])]
            spans.append((run_["created_at"], max(polls)))
        peak = max(sum(1 for s, e in spans if s <= t <= e) for t, _ in spans)
        self.assertEqual(peak, 3)

    def test_census_retry_reruns_a_failed_sync(self):
        self.sim.syncs[5] = {"runs": [[{"status": "failed", "error_message": "flaky"}]], "steps": [DONE]}
        r = self.run_flow("census_retry.lua", 5, env={"RETRY_DELAY": "0.05"})
        self.assertEqual(self.sim.triggers, {5: 2})
        self.assertIn("sync 5 completed (run 1002)", r.stderr)

    def test_census_retry_gives_up_on_auth_errors(self):
        self.run_flow("census_retry.lua", 5, env={"RETRY_DELAY": "0.05",
                                                 "CENSUS_API_KEY": "secret-token:wrong-token-value"}, rc=1)
        self.assertEqual(self.sim.triggers, {})

    def test_census_threshold(self):
        self.sim.syncs[6] = {"steps": [dict(DONE, records_failed=2, records_updated=8)]}
        r = self.run_flow("census_threshold.lua", 6, rc=1)
        link = "%s/syncs/6/sync-history" % self.sim.url
        lines = r.stderr.splitlines()
        errors = [l for l in lines if " ERROR " in l]
        # the first ERROR line says it all: which sync, what, the counts, where to look
        self.assertRegex(errors[0], r"ERROR census: sync 6 run \d+ \(threshold check\) completed with 2 of 10 "
                                    r"records failed, more than max_failed_ratio = 0.01 \(%s\)$" % link)
        self.assertEqual(len(errors), 1, r.stderr)
        # then once as the run's end (one line, no traceback) and once in the summary
        self.assertEqual(sum("completed with 2 of 10" in l for l in lines), 3, r.stderr)
        self.assertNotIn("traceback", r.stderr)
        self.assertRegex(r.stderr, r"\n  threshold check +threshold +\d+\.\d s +10 +8 +2 +-\n")
        self.sim.syncs[6] = {"steps": [DONE]}
        self.run_flow("census_threshold.lua", 6)

    def test_census_eu_v2(self):
        self.run_flow("census_eu_v2.lua", 7)
        paths = [q["path"] for q in self.sim.log if "/trigger" in q["path"]]
        self.assertEqual(paths, ["/api/v1/syncs/7/trigger", "/api/v2/syncs/7/trigger"])

    def test_census_demo(self):
        import json
        with open(os.path.join(ROOT, "tests", "census_demo.json")) as f:
            self.sim.syncs.update({int(k): v for k, v in json.load(f).items()})
        r = self.run_flow("census_demo.lua")
        self.assertIn("demo: 6 syncs completed, 9920 records updated", r.stderr)

    def test_nightly_runs_dbt_then_syncs_two_at_a_time(self):
        r = self.run_flow("nightly.lua", env={"DBT_COMMAND": os.path.join(ROOT, "tests", "fake_dbt.sh")})
        self.assertIn("[dbt] Completed successfully", r.stderr)
        dbt_done = r.stderr.index("step dbt: done")
        self.assertGreater(r.stderr.index("census: sync 101 triggered"), dbt_done)
        self.assertEqual(sorted(self.sim.triggers), [101, 102, 103, 104, 105])
        self.assertIn("summary: 2 steps, 5 syncs: 2 ok, 5 completed;", r.stderr)

    def test_nightly_notifies_on_failure(self):
        hook = TestServer()
        self.addCleanup(hook.stop)
        self.sim.syncs[103] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        r = self.run_flow("nightly.lua", env={"DBT_COMMAND": "true", "NOTIFY_URL": hook.url + "/echo"}, rc=1)
        self.assertEqual(hook.counts.get("echo"), 1)
        self.assertIn("sync 103 run", r.stderr)
        r = self.run_flow("nightly.lua", env={"DBT_COMMAND": "false", "NOTIFY_URL": hook.url + "/echo"}, rc=1)
        self.assertEqual(hook.counts.get("echo"), 2)
        self.assertEqual(self.sim.triggers.get(101), 1, "no sync ran after dbt failed")

    def test_notify_on_failure(self):
        hook = TestServer()
        self.addCleanup(hook.stop)
        self.sim.syncs[9] = {"steps": [{"status": "failed", "error_message": "boom"}]}
        self.run_flow("notify_on_failure.lua", 9, env={"NOTIFY_URL": hook.url + "/echo"}, rc=1)
        self.assertEqual(hook.counts.get("echo"), 1)
        self.sim.syncs[9] = {}
        self.run_flow("notify_on_failure.lua", 9, env={"NOTIFY_URL": hook.url + "/echo"})
        self.assertEqual(hook.counts.get("echo"), 1)

    def test_hello(self):
        r = self.run_flow("hello.lua")
        self.assertIn("extract, transform, load finished in", r.stderr)


if __name__ == "__main__":
    main()
