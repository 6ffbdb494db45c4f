"""test_journal_hygiene.py: what adversarial testing found in the journal
and the history: secrets stored or printed raw, state files other users
can read, prune deleting what a rerun needs, a full disk, a NUL in a step
name, and the small ones (bad state directories, run ids, environment
values, answer bodies)."""
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
import unittest

from harness import ENGINE, SimTestCase, check_no_secrets, keep_output, main, run

SECRET = "secret-token:hunter2secret"


class Base(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def setUp(self):
        super().setUp()
        self.state = os.environ["ENGINE_STATE_DIR"]

    def journal(self):
        return sqlite3.connect(os.path.join(self.state, "journal.db"))

    def sql(self, *statements):
        db = self.journal()
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.close()


class Secrets(Base):
    def test_a_step_error_holding_a_token_is_scrubbed_everywhere(self):
        flow = self.flow("""
            flow.on_finish(function(run)
              print("on_finish", run.error, run.entries[1].error)
            end)
            flow.step("leak", function()
              error("bad https://bearer:%s@app.getcensus.com/api/v1/syncs/1/trigger and token = " .. os.getenv("MY_API_TOKEN"))
            end)
        """ % SECRET)
        r = run([flow], env={"MY_API_TOKEN": "hunter2secret-value"})
        self.assertEqual(r.rc, 1, r)
        self.assertIn("on_finish", r.stdout)
        db = self.journal()
        stored = " ".join(str(row) for row in db.execute("SELECT error FROM steps"))
        self.assertIn("***", stored)
        self.assertNotIn("hunter2secret", stored)
        for args in (["runs", "1"], ["runs", "1", "--json"]):
            r = run(args, env={"MY_API_TOKEN": None})
            self.assertEqual(r.rc, 0, r)
            self.assertIn("***", r.stdout)

    def test_state_files_are_readable_by_their_owner_alone(self):
        r = run(["-e", "flow.step('a', function() end)"])
        self.assertEqual(r.rc, 0, r)
        for name in os.listdir(self.state):
            if name.startswith("journal.db"):
                mode = stat.S_IMODE(os.stat(os.path.join(self.state, name)).st_mode)
                self.assertEqual(mode & 0o077, 0, "%s is %o" % (name, mode))
        # an older engine's journal, 0644, is made private when opened
        os.chmod(os.path.join(self.state, "journal.db"), 0o644)
        run(["runs"])
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.state, "journal.db")).st_mode), 0o600)

    def test_help_never_prints_a_default_taken_from_a_secret(self):
        flow = self.flow("""
            local p = flow.params({key = {default = os.getenv("CENSUS_API_KEY")},
                                   token = {default = os.getenv("WAREHOUSE_TOKEN")},
                                   target = {default = "prod"}})
        """)
        r = run([flow, "--help"], env={"CENSUS_API_KEY": SECRET, "WAREHOUSE_TOKEN": "hunter2secret-dw"})
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout.count("default hidden: it holds a secret"), 2, r)
        self.assertIn("default prod", r.stdout)


class Names(Base):
    def test_a_nul_in_a_step_name_keeps_the_summary(self):
        out = os.path.join(self.dir, "s.json")
        r = run(["--summary-json", out, "-e", 'flow.step("a\\0b", function() end)'])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("a\\x00b", r.stderr)
        with open(out) as f:
            self.assertEqual(json.load(f)["entries"][0]["name"], "a\0b")
        r = run(["runs", "1"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("a\\x00b", r.stdout)


class Prune(Base):
    def age(self, days):
        self.sql("UPDATE runs SET started_at = started_at - %d" % (days * 86400))

    def test_prune_keeps_live_runs_and_open_intents_and_takes_whole_days(self):
        r = run(["runs", "--prune"], env={"ENGINE_STATE_KEEP_DAYS": "0.0000001"})
        self.assertEqual(r.rc, 2, r)
        self.assertIn("whole number of days >= 1", r.stderr)
        self.sim.syncs[1] = {"steps": ["working"] * 1000}
        flow = self.flow("census.sync({sync_id = 1})")
        proc = subprocess.Popen([ENGINE, flow], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **self.sim_env()))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        deadline = time.monotonic() + 30
        while not self.sim.runs and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        self.age(5)
        r = run(["runs", "--prune", "--json"], env={"ENGINE_STATE_KEEP_DAYS": "1"})
        self.assertEqual(json.loads(r.stdout), {"pruned": 0, "days": 1}, r)
        proc.kill()
        proc.communicate()
        r = run(["runs", "--prune"], env={"ENGINE_STATE_KEEP_DAYS": "1"})
        self.assertIn("pruned 0 run(s)", r.stdout, "the killed run's sync is open")
        self.assertEqual(len(json.loads(run(["runs", "--json"]).stdout)), 1)


class FullDisk(Base):
    def in_small_tmpfs(self, setup, engine_args, size="64k"):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare for a private tmpfs")
        mnt = os.path.join(self.dir, "small")
        os.mkdir(mnt)
        script = ('mount -t tmpfs -o size=%s tmpfs %s && cd %s && %s; "$@"') % (size, mnt, mnt, setup)
        p = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", ENGINE] + engine_args,
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, ENGINE_STATE_DIR=os.path.join(mnt, "state")))
        keep_output(p.stdout + p.stderr)
        check_no_secrets(p.stdout + p.stderr)
        if "mount" in p.stderr and "permission" in p.stderr.lower():
            self.skipTest("cannot mount tmpfs here")
        return p

    def test_a_full_disk_mid_run_is_one_line_and_a_failure(self):
        flow = self.flow("""
            for i = 1, 400 do
              flow.step("step " .. i, function() return string.rep("x", 2000) .. i end)
            end
        """)
        p = self.in_small_tmpfs("true", [flow], size="512k")
        self.assertEqual(p.returncode, 1, p.stderr[-3000:])
        self.assertEqual(p.stderr.count("cannot write the journal"), 1, p.stderr[-3000:])
        self.assertIn("the journal could not be written during this run", p.stderr)


class PruneFailure(Base):
    def test_a_failed_daily_prune_is_a_warning_that_says_why(self):
        run(["-e", "flow.step('a', function() end)"])
        # a write that fails inside the prune's transaction, as on a full disk
        self.sql("UPDATE runs SET started_at = started_at - 400 * 86400",
                 "UPDATE meta SET value = '0' WHERE key = 'pruned_at'",
                 "CREATE TRIGGER keep BEFORE DELETE ON runs BEGIN SELECT RAISE(ABORT, 'simulated failure'); END")
        r = run(["-e", "print('ran')"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("(null)", r.stderr)
        self.assertIn("WARN  cannot prune the journal: ", r.stderr)
        self.assertIn("simulated failure", r.stderr)
        self.assertEqual(r.stdout, "ran\n")


class Result:
    def __init__(self, p):
        self.rc, self.stdout, self.stderr = p.returncode, p.stdout, p.stderr

    def __repr__(self):
        return "rc=%s\n--- stdout\n%s--- stderr\n%s" % (self.rc, self.stdout, self.stderr)


class StateUrl(Base):
    """A URL given for the state is never taken for a directory (it would
    put the password in a path on disk): a scheme no store serves is
    refused with one line, a PostgreSQL server that cannot be reached fails
    with one line, and neither shows the password or writes anything."""
    OTHER = "mysql://user:hunter2secret@db.invalid/jobs"
    # a closed port on loopback: refused at once, no traffic elsewhere
    DOWN = "postgresql://user:hunter2secret@127.0.0.1:1/jobs"

    def check_refused(self, r, source):
        self.assertEqual(r.rc, 2, r)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r)
        self.assertIn("engine: %s mysql://" % source, lines[0])
        self.assertIn("has no store for mysql://", lines[0])
        self.assertNotIn("hunter2secret", r.stdout + r.stderr)

    def test_a_state_url_is_refused_and_nothing_is_written(self):
        cwd = os.path.join(self.dir, "cwd")
        os.mkdir(cwd)
        flow = self.flow("flow.step('a', function() end)")
        env = {"XDG_RUNTIME_DIR": ""}
        for args, source, extra in ((["--state", self.OTHER, flow], "--state", {}),
                                    (["--state", self.OTHER, "-e", "flow.step('a', function() end)"], "--state", {}),
                                    (["-e", "flow.step('a', function() end)"], "ENGINE_STATE_URL",
                                     {"ENGINE_STATE_URL": self.OTHER})):
            p = subprocess.run([ENGINE] + args, cwd=cwd, capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, **env, **extra))
            keep_output(p.stdout + p.stderr)
            self.check_refused(Result(p), source)
        # ENGINE_STATE_DIR holds directories: a URL there says where it goes
        for args in (["--no-state", flow], ["-e", "flow.step('a', function() end)"]):
            p = subprocess.run([ENGINE] + args, cwd=cwd, capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, **env, ENGINE_STATE_DIR=self.DOWN))
            keep_output(p.stdout + p.stderr)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(p.stderr.strip().splitlines(),
                             ["engine: ENGINE_STATE_DIR is a URL (postgresql://***@127.0.0.1:1/jobs): "
                              "set ENGINE_STATE_URL to it instead"])
        p = subprocess.run([ENGINE, "--state", "postgresql://u@127.0.0.1:1/jobs?sslmode=bogus", flow], cwd=cwd,
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, **env))
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn('libpq cannot use postgresql://***@127.0.0.1:1/jobs?sslmode=bogus: invalid sslmode value: "bogus"',
                      p.stderr)
        # a server that is not there: one line, within ENGINE_STATE_TIMEOUT
        for args in (["--state", self.DOWN, flow], ["--state", self.DOWN, "runs"]):
            p = subprocess.run([ENGINE] + args, cwd=cwd, capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, **env, ENGINE_STATE_TIMEOUT="1"))
            keep_output(p.stdout + p.stderr)
            self.assertEqual(p.returncode, 1, p.stderr)
            lines = p.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn("cannot use the journal postgresql://***@127.0.0.1:1/jobs: cannot reach the "
                          "server: ", lines[0])
            self.assertIn("Connection refused", lines[0])
            self.assertNotIn("hunter2secret", p.stdout + p.stderr)
        self.assertEqual(os.listdir(cwd), [], "no directory made from a URL")
        r = run(["--state", self.OTHER, "runs"])
        self.check_refused(r, "--state")


class Small(Base):
    def test_bad_state_directories_and_run_ids(self):
        r = run(["--state", "", "-e", "print(1)"])
        self.assertEqual(r.rc, 2, r)
        r = run(["--state", "/", "-e", "flow.step('a', function() end)"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("cannot be /", r.stderr)
        self.assertFalse(os.path.exists("/journal.db"))
        run(["-e", "flow.step('a', function() end)"])
        r = run(["runs", "99999999999999999999"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("not a run id", r.stderr)
        missing = os.path.join(self.dir, "nowhere")
        r = run(["--state", missing, "runs"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no run was recorded", r.stderr)
        self.assertFalse(os.path.exists(missing), "reading the history created a journal")

    def test_resume_of_a_run_with_other_arguments_is_refused(self):
        flow = self.flow("flow.step('a', function() error('no') end)")
        run([flow, "--target=prod"])
        r = run(["--resume=1", flow, "--target=dev"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn('other arguments: "--target=prod", not "--target=dev"', r.stderr)

    def test_journal_errors_name_no_engine_source_line(self):
        run(["-e", "flow.step('a', function() end)"])
        self.sql("DELETE FROM meta", "DROP TABLE steps", "CREATE TABLE steps (x)")
        r = run(["-e", "flow.step('a', function() end)"])
        self.assertEqual(r.rc, 1, r)
        self.assertNotIn("lua/journal.lua", r.stderr)
        self.assertIn("cannot use the journal", r.stderr)

    def test_max_answer_bytes_is_checked(self):
        for value in ["abc", "1", "-1", "1.5"]:
            r = run(["-e", "census.sync({sync_id = 1})"], env=self.sim_env({"CENSUS_MAX_ANSWER_BYTES": value}))
            self.assertEqual(r.rc, 1, r)
            self.assertIn("CENSUS_MAX_ANSWER_BYTES must be a whole number of bytes >= 16384", r.stderr)
        self.assertEqual(self.sim.triggers, {})

    def test_answers_are_shown_as_they_are(self):
        self.sim.syncs[1] = {"steps": [{"status": "completed", "records_failed": 1e400}],
                             "get": [{"raw": '{"data": {"id": RUN_ID, "status": "completed", '
                                     '"records_failed": 1e400}}'}] * 50}
        r = run(["-e", "census.sync({sync_id = 1})"], env=self.sim_env({"CENSUS_RETRY_BUDGET": "0.2"}))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("records_failed is inf", r.stderr)
        self.sim.syncs[2] = {"trigger": [{"http": 500, "body": '{"message": "line one\\nline two"}'}] * 50}
        r = run(["-e", "census.sync({sync_id = 2})"], env=self.sim_env({"CENSUS_RETRY_BUDGET": "0.1"}))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("Census answered HTTP 500: line one line two", r.stderr)

    def test_a_name_search_over_a_large_workspace_is_bounded(self):
        for i in range(1, 20001):
            self.sim.syncs[i] = {"name": ("label %d " % i) + "x" * 2000}
        r = run(["-e", "census.sync({name = '%s'})" % ("y" * 200)], env=self.sim_env(), timeout=120)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no sync is named", r.stderr)


if __name__ == "__main__":
    main()
