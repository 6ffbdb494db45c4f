"""test_rejected.py: the records behind a Census failure (issue 20): a run
that ends with failed or invalid records has up to records_sample of them
read (identifier and Census's reason) and shown in the ERROR/WARN line,
under its row in the summary, in --summary-json, the journal and engine
runs; payloads only when asked; a failure to read them changes nothing."""
import json
import os

from harness import SimTestCase, main, run

DONE = {"status": "completed", "records_processed": 100, "records_updated": 90, "records_failed": 7,
        "records_invalid": 3}


class Rejected(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def sync(self, wait_opts="", env=None, scenario=None):
        self.sim.syncs[1] = scenario or {"steps": ["working", DONE], "records": 100}
        summary = os.path.join(self.dir, "summary.json")
        flow = self.flow("census.sync({sync_id = 1}, {%s})" % wait_opts)
        r = run(["--summary-json", summary, flow], env=self.sim_env(env))
        with open(summary) as f:
            return r, json.load(f)["jobs"][0]

    def test_a_threshold_failure_shows_the_rejected_records(self):
        r, job = self.sync("max_records_failed = 0")
        self.assertEqual(r.rc, 1, r)
        want = [{"identifier": "id_%d" % i, "status": "rejected", "message": "Invalid email address"}
                for i in range(1, 6)]
        self.assertEqual(job["rejected"], want)
        self.assertIn("; rejected records: id_1 (Invalid email address), id_2 (Invalid email address)", r.stderr)
        self.assertIn("\n      rejected id_5: Invalid email address\n", r.stderr)  # under the row
        self.assertNotIn("@example.com", r.stdout + r.stderr)  # no payload unless asked
        one = json.loads(run(["runs", "1", "--json"]).stdout)
        self.assertEqual(one["jobs"][0]["rejected"], want)
        self.assertIn("    rejected id_1: Invalid email address", run(["runs", "1"]).stdout)

    def test_the_sample_size_and_invalid_records(self):
        r, job = self.sync("max_records_failed = 0, records_sample = 9")
        self.assertEqual([x["status"] for x in job["rejected"]], ["rejected"] * 7 + ["invalid"] * 2)
        self.assertEqual(job["rejected"][7]["message"], "Missing primary identifier")
        r, job = self.sync("max_records_failed = 0", env={"CENSUS_RECORDS_SAMPLE": "1"})
        self.assertEqual(len(job["rejected"]), 1)

    def test_zero_reads_none(self):
        r, job = self.sync("max_records_failed = 0, records_sample = 0")
        self.assertEqual(r.rc, 1, r)
        self.assertIsNone(job.get("rejected"))
        self.assertEqual(self.sim.record_requests, {})

    def test_a_completed_run_with_failed_records_warns_with_them(self):
        r, job = self.sync()
        self.assertEqual(r.rc, 0, r)
        self.assertIn("WARN  census: sync 1 run 1001: rejected records (5 of 10 shown): id_1 (Invalid email address)",
                      r.stderr)
        self.assertEqual(len(job["rejected"]), 5)

    def test_payloads_only_when_asked(self):
        r, job = self.sync("max_records_failed = 0, records_sample = 2, records_sample_payload = true")
        self.assertEqual(job["rejected"][0]["payload"], {"email": "id_1@example.com"})

    def test_a_failure_to_read_them_changes_nothing(self):
        scenario = {"steps": ["working", DONE], "records": 100, "records_fault": {"http": 500}}
        r, job = self.sync("max_records_failed = 0", env={"CENSUS_RETRY_BUDGET": "1"}, scenario=scenario)
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(job["outcome"], "threshold")
        self.assertIsNone(job.get("rejected"))
        self.assertEqual(r.stderr.count("cannot read its rejected records (the outcome stands)"), 1)
        scenario["records_fault"] = {"http": 404}
        r, job = self.sync("", scenario=scenario)
        self.assertEqual(r.rc, 0, r)

    def test_bad_options_are_refused(self):
        for opts, msg in (("records_sample = -1", "records_sample must be a whole number from 0 to 100"),
                          ("records_sample = 1.5", "records_sample must be a whole number from 0 to 100"),
                          ("records_sample_payload = 1", "records_sample_payload must be true or false")):
            r = run([self.flow("census.sync({sync_id = 1}, {%s})" % opts)], env=self.sim_env())
            self.assertEqual(r.rc, 1, r)
            self.assertIn(msg, r.stderr)


if __name__ == "__main__":
    main()
