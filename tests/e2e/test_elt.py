"""test_elt.py: flows/elt.lua (two Fivetran connections in parallel, a dbt
Cloud job, three Census syncs) against the three simulators: it runs end to
end; killed with kill -9 at any phase and resumed, no job is triggered
twice; a plain rerun adopts what was in flight; SIGTERM cancels the dbt
Cloud and Census runs and says the Fivetran syncs were left running."""
import json
import os
import signal
import sqlite3

from harness import ROOT, ProvidersTestCase, main, wait_until

ELT = os.path.join(ROOT, "flows", "elt.lua")
WORKING = ["working"] * 30


class Elt(ProvidersTestCase):
    def setUp(self):
        super().setUp()
        # each job moves on a step per poll: long enough to kill it mid-way
        self.fivetran.configure({
            "decisive_bloom": {"name": "salesforce", "succeeded_at": "2026-11-29T02:00:00.000000Z",
                               "steps": ["syncing"] * 20 + ["succeeded"]},
            "warm_paw": {"name": "stripe", "steps": ["syncing"] * 20 + ["succeeded"]}})
        self.dbt.configure({"123": {"name": "nightly", "steps": [3] * 20 + [10], "run_results": "default"}})
        for sync_id in (101, 102, 103):
            self.sim.syncs[sync_id] = {"steps": WORKING + [{"status": "completed", "records_processed": 100,
                                                             "records_updated": 100, "records_failed": 0}]}

    def env(self):
        return {"CENSUS_POLL": "0.05", "FIVETRAN_POLL": "0.05", "DBT_CLOUD_POLL": "0.05"}

    def triggers(self):
        ft = {k: v["triggers"] for k, v in self.fivetran.state()["connections"].items()}
        dbt = {k: v["triggers"] + v["reruns"] for k, v in self.dbt.state()["jobs"].items()}
        census = dict(self.sim.triggers)
        return ft, dbt, census

    def rows(self, sql):
        path = os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db")
        if not os.path.exists(path):
            return []
        db = sqlite3.connect(path)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            db.close()

    def in_flight(self):
        return self.rows("SELECT provider, resource FROM jobs WHERE final = 0 AND remote_run IS NOT NULL")

    def test_the_flow_runs_end_to_end(self):
        summary = os.path.join(self.dir, "s.json")
        rc, _, err = self.finish(self.start(["--summary-json", summary, ELT], env=self.env()))
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.triggers(), ({"decisive_bloom": 1, "warm_paw": 1}, {"123": 1}, {101: 1, 102: 1, 103: 1}))
        with open(summary) as f:
            doc = json.load(f)
        self.assertEqual(sorted((j["provider"], str(j["resource"]), j["outcome"]) for j in doc["jobs"]),
                         [("census", "101", "completed"), ("census", "102", "completed"),
                          ("census", "103", "completed"), ("dbt_cloud", "123", "success"),
                          ("fivetran", "decisive_bloom", "succeeded"), ("fivetran", "warm_paw", "succeeded")])
        self.assertIn("summary: 3 steps, 5 syncs, 1 job:", err)

    def kill_then_resume(self, phase_reached):
        first = self.start([ELT], env=self.env())
        wait_until(phase_reached, timeout=30, what="the phase")
        first.send_signal(signal.SIGKILL)
        self.finish(first)
        open_at_kill = self.in_flight()
        rc, _, err = self.finish(self.start(["--resume", ELT], env=self.env()))
        self.assertEqual(rc, 0, err)
        ft, dbt, census = self.triggers()
        self.assertEqual((ft, dbt, census), ({"decisive_bloom": 1, "warm_paw": 1}, {"123": 1},
                                             {101: 1, 102: 1, 103: 1}), err)
        return open_at_kill, err

    def test_kill_9_while_fivetran_syncs_then_resume_triggers_nothing_twice(self):
        open_at_kill, err = self.kill_then_resume(
            lambda: all(c["triggers"] == 1 for c in self.fivetran.state()["connections"].values())
            and len(self.in_flight()) == 2)
        self.assertEqual(sorted(open_at_kill), [("fivetran", "decisive_bloom"), ("fivetran", "warm_paw")])
        self.assertIn("is still in flight; adopting it instead of triggering again", err)

    def test_kill_9_while_dbt_runs_then_resume_triggers_nothing_twice(self):
        open_at_kill, err = self.kill_then_resume(
            lambda: self.dbt.state()["jobs"]["123"]["triggers"] == 1 and ("dbt_cloud", "123") in self.in_flight())
        self.assertEqual(open_at_kill, [("dbt_cloud", "123")])
        self.assertIn("step ingest: done in engine run 1; not run again (--resume)", err)

    def test_kill_9_while_census_syncs_then_resume_triggers_nothing_twice(self):
        open_at_kill, err = self.kill_then_resume(lambda: len(self.sim.triggers) == 3 and len(self.in_flight()) == 3)
        self.assertEqual(sorted(open_at_kill), [("census", "101"), ("census", "102"), ("census", "103")])
        self.assertIn("step transform: done in engine run 1; not run again (--resume)", err)
        self.assertRegex(err, r"census: sync 10\d: run \d+, started by engine run 1, is still in flight; adopting it")

    def test_kill_9_then_a_plain_rerun_adopts_what_was_in_flight(self):
        first = self.start([ELT], env=self.env())
        wait_until(lambda: ("dbt_cloud", "123") in self.in_flight(), timeout=30, what="the dbt run")
        first.send_signal(signal.SIGKILL)
        self.finish(first)
        rc, _, err = self.finish(self.start([ELT], env=self.env()))
        self.assertEqual(rc, 0, err)
        _, dbt, _ = self.triggers()
        self.assertEqual(dbt, {"123": 1}, "the dbt run in flight was adopted")
        self.assertIn("dbt_cloud: job 123: run 70000000000, started by engine run 1, is still in flight; adopting", err)

    def test_sigterm_cancels_dbt_and_census_and_says_fivetran_is_left_running(self):
        flow = self.flow("flow.parallel({\n"
                         "  function() return fivetran.sync{connection_id = 'decisive_bloom'} end,\n"
                         "  function() return dbt_cloud.run{job_id = 123} end,\n"
                         "  function() return census.sync{sync_id = 101} end,\n"
                         "})")
        proc = self.start([flow], env=self.env())
        wait_until(lambda: len(self.in_flight()) == 3, timeout=30, what="three jobs in flight")
        proc.send_signal(signal.SIGTERM)
        rc, _, err = self.finish(proc)
        self.assertEqual(rc, 143, err)
        runs = self.dbt.state()["jobs"]["123"]["runs"]
        self.assertEqual([r["cancels"] for r in runs], [1])
        self.assertEqual(len(self.sim.cancels), 1)
        self.assertIn("fivetran: connection decisive_bloom: stopped; left running in Fivetran: no cancel endpoint", err)
        self.assertIn("dbt_cloud: job 123 run 70000000000: stopped; cancelled in dbt Cloud", err)
        self.assertIn("census: sync 101 run 1001: stopped; cancelled in Census", err)


if __name__ == "__main__":
    main()
