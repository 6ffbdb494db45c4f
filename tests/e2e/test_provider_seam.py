"""test_provider_seam.py: the remote-job machinery with a provider the
engine does not ship (tests/providers/file_jobs.lua): one file, no edit to
generic code, and it gets every guarantee (intent before trigger, adopt
after kill -9, cancel on stop, --resume, report, summary, journal, history,
metrics). Also: no generic source file names a provider."""
import glob
import json
import os
import re
import signal
import sqlite3
import time

from harness import ROOT, SimTestCase, main, run, wait_until

PROVIDERS_DIR = os.path.join(ROOT, "tests", "providers")


class Seam(SimTestCase):
    def setUp(self):
        super().setUp()
        self.jobs_dir = os.path.join(self.dir, "jobs")
        os.mkdir(self.jobs_dir)

    def env(self, extra=None):
        env = {"FILE_JOBS_DIR": self.jobs_dir}
        env.update(extra or {})
        return env

    def job_flow(self, body):
        return self.flow("package.path = %r .. '/?.lua;' .. package.path\n"
                         "local file_jobs = require 'file_jobs'\n%s" % (PROVIDERS_DIR, body))

    def files(self):
        return sorted(f for f in os.listdir(self.jobs_dir) if not f.endswith(".tmp"))

    def set_state(self, name, text):
        # whole or not at all: the engine may read the file at any moment
        tmp = os.path.join(self.dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.jobs_dir, name))

    def rows(self, sql):
        db = sqlite3.connect(os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db"))
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql)]
        finally:
            db.close()

    def test_a_provider_in_one_file_gets_the_whole_machinery(self):
        summary, metrics = os.path.join(self.dir, "s.json"), os.path.join(self.dir, "m.prom")
        flow = self.job_flow("local r = file_jobs.run({job = 'load', label = 'Load'})\n"
                             "print('result', r.status, r.provider, r.resource, r.remote_run)\n"
                             "flow.on_finish(function(s) print('on_finish', s.jobs[1].provider, "
                             "s.jobs[1].outcome, s.jobs[1].counts.records_processed) end)")
        proc = self.start(["--summary-json", summary, "--metrics", metrics, flow], env=self.env())
        wait_until(lambda: self.files() == ["load.1"], what="the trigger")
        self.set_state("load.1", "succeeded\ncounts 5 1")
        rc, out, err = self.finish(proc)
        self.assertEqual(rc, 0, err)
        self.assertIn("result\tsucceeded\tfile_jobs\tload\t1", out)
        self.assertIn("on_finish\tfile_jobs\tsucceeded\t5", out)
        self.assertIn("file_jobs: file job load triggered: run 1", err)
        self.assertRegex(err, r"\n  Load +succeeded +\S+ s +5 +1\n")
        with open(summary) as f:
            doc = json.load(f)
        job = doc["jobs"][0]
        self.assertEqual((job["provider"], job["resource"], job["remote_run"], job["label"], job["outcome"]),
                         ("file_jobs", "load", 1, "Load", "succeeded"))
        self.assertEqual(job["counts"], {"records_processed": 5, "records_failed": 1})
        self.assertEqual(doc["remote_jobs"], {"total": 1, "failed": 0})
        with open(metrics) as f:
            self.assertRegex(f.read(), r'engine_syncs\{[^}]*provider="file_jobs",outcome="succeeded"\} 1')
        row = self.rows("SELECT provider, resource, remote_run, status, final, ok, label FROM jobs")[0]
        self.assertEqual(row, {"provider": "file_jobs", "resource": "load", "remote_run": "1",
                               "status": "succeeded", "final": 1, "ok": 1, "label": "Load"})
        one = json.loads(run(["runs", "1", "--json"]).stdout)
        self.assertEqual([(j["provider"], j["resource"], j["outcome"]) for j in one["jobs"]],
                         [("file_jobs", "load", "succeeded")])
        # engine runs cannot load a provider it does not ship: generic columns
        self.assertRegex(run(["runs", "1"]).stdout, r"FILE_JOBS +RUN +STATUS +LINK\n  load +1 +succeeded")

    def test_kill_9_while_waiting_then_rerun_adopts_instead_of_triggering(self):
        flow = self.job_flow("print(file_jobs.run({job = 'load'}).status)")
        first = self.start([flow], env=self.env())
        wait_until(lambda: self.files() == ["load.1"], what="the trigger")
        wait_until(lambda: self.rows("SELECT remote_run FROM jobs") == [{"remote_run": "1"}], what="the run id")
        first.send_signal(signal.SIGKILL)
        self.finish(first)
        second = self.start([flow], env=self.env())
        wait_until(lambda: len(self.rows("SELECT id FROM jobs")) == 2, what="the adoption")
        self.set_state("load.1", "succeeded")
        rc, out, err = self.finish(second)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.files(), ["load.1"], "one trigger in all")
        self.assertIn("started by engine run 1, is still in flight; adopting it", err)

    def test_sigterm_cancels_the_run_through_the_provider(self):
        flow = self.job_flow("file_jobs.run({job = 'load'})")
        proc = self.start([flow], env=self.env())
        wait_until(lambda: self.files() == ["load.1"], what="the trigger")
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rc, out, err = self.finish(proc)
        self.assertEqual(rc, 143, err)
        with open(os.path.join(self.jobs_dir, "load.1")) as f:
            self.assertEqual(f.read(), "canceled")
        self.assertIn("stopped; cancelled in File jobs", err)

    def test_resume_skips_what_succeeded_and_runs_what_failed(self):
        flow = self.job_flow("file_jobs.run({job = 'a'}) file_jobs.run({job = 'b'})")
        first = self.start([flow], env=self.env())
        wait_until(lambda: "a.1" in self.files(), what="a")
        self.set_state("a.1", "succeeded")
        wait_until(lambda: "b.1" in self.files(), what="b")
        self.set_state("b.1", "failed disk full")
        rc, _, err = self.finish(first)
        self.assertEqual(rc, 1, err)
        self.assertIn("file job b #1 failed: disk full", err)
        second = self.start(["--resume", flow], env=self.env())
        wait_until(lambda: "b.2" in self.files(), what="b again")
        self.set_state("b.2", "succeeded")
        rc, _, err = self.finish(second)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.files(), ["a.1", "b.1", "b.2"])
        self.assertIn("file_jobs: file job a: run 1 succeeded in engine run 1; not triggered again (--resume)", err)


class NoProviderInGenericCode(SimTestCase):
    # What names a provider: its module names, its vendor, its hosts.
    NAMES = re.compile(r"census|fivetran|dbt[ _]?cloud|getdbt", re.I)
    # Journal schema 1 held one provider's syncs: its migration names it.
    HISTORY = {"lua/store_sqlite.lua": re.compile(r"Version 1 \(|syncs become|SELECT id, run, 'census'")}

    def test_generic_sources_name_no_provider(self):
        generic = [p for p in glob.glob(os.path.join(ROOT, "engine", "*.[ch]"))]
        generic += [p for p in glob.glob(os.path.join(ROOT, "lua", "*.lua"))
                    if not os.path.basename(p).startswith(("provider_", "census_"))]
        found = []
        for path in sorted(generic):
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    allowed = self.HISTORY.get(os.path.relpath(path, ROOT))
                    if self.NAMES.search(line) and not (allowed and allowed.search(line)):
                        found.append("%s:%d: %s" % (os.path.relpath(path, ROOT), n, line.strip()))
        self.assertEqual(found, [], "generic files that name a provider:\n" + "\n".join(found))


if __name__ == "__main__":
    main()
