"""test_postgres.py: the journal on PostgreSQL, against a throwaway
PostgreSQL server the test starts on loopback (tests/pg_server.py), with
two engines given different host names (ENGINE_HOSTNAME) playing two
machines: started together one runs and one exits 75; kill -9 the runner
and the other host resumes it, triggering nothing twice; SIGSTOP the
runner past its lease, the other takes over, SIGCONT: the stale one writes
and triggers nothing; one guard per remote resource across flows and
hosts; the server going away; first use by many engines at once;
`engine runs` with every host; `engine state copy` both ways; passwords
never shown; PgBouncer in transaction pooling mode."""
import json
import os
import signal
import subprocess
import threading
import time
import unittest

from harness import ENGINE, SimTestCase, check_no_secrets, keep_output, main, run, wait_until
from pg_server import HAVE_PGBOUNCER, HAVE_POSTGRES, PASSWORD, PgBouncer, PgServer, shared_server

SYNC_FLOW = """
local ids = {...}
for _, id in ipairs(ids) do
  census.sync({sync_id = tonumber(id)})
end
print("done")
"""

LEASE = "2"  # seconds: a short lease, so a takeover comes quickly


@unittest.skipUnless(HAVE_POSTGRES, "PostgreSQL is not installed (./dev installs it)")
class Postgres(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = shared_server()  # the run's (a database each test), or one of its own

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.db = self.pg.new_database()
        self.url = self.pg.url(self.db)
        self.flow_file = self.flow(SYNC_FLOW)

    def sim_env(self, env=None):
        full = {"ENGINE_STATE_URL": self.url, "ENGINE_STATE_LEASE": LEASE, "ENGINE_HOSTNAME": "alpha"}
        full.update(env or {})
        return super().sim_env(full)

    def host(self, name, **extra):
        return dict({"ENGINE_HOSTNAME": name}, **extra)

    def sql(self, query):
        return self.pg.psql(query, db=self.db).strip()

    def sql_or_none(self, query):
        """The answer, or None while the tables are not there yet."""
        try:
            return self.sql(query)
        except RuntimeError:
            return None

    def runs(self, *args):
        r = run(["--state", self.url, "runs", "--json"] + list(args), env={"ENGINE_STATE_LEASE": LEASE})
        self.assertEqual(r.rc, 0, r)
        check_no_secrets(r.stdout + r.stderr)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def own_server(self):
        """A server of this test's own, for a test that stops it."""
        self.pg = PgServer().start()
        self.addCleanup(self.pg.cleanup)
        self.db = self.pg.new_database()
        self.url = self.pg.url(self.db)

    def polls(self, sync_id):
        return sum(r["polls"] for r in self.sim.runs.values() if r["sync_id"] == sync_id)

    def finish(self, proc, timeout=60):
        rc, out, err = super().finish(proc, timeout)
        self.assertNotIn(PASSWORD, out + err)
        return rc, out, err

    # -- the run lock across hosts -------------------------------------------

    def test_started_together_one_runs_and_one_exits_75(self):
        self.sim.syncs[1] = {"steps": ["working"] * 40 + ["completed"]}
        a = self.start([self.flow_file, "1"], self.host("alpha"))
        b = self.start([self.flow_file, "1"], self.host("beta"))
        results = sorted([self.finish(a), self.finish(b)])
        (rc0, out0, err0), (rc75, out75, err75) = results
        self.assertEqual((rc0, rc75), (0, 75), results)
        self.assertIn("done", out0)
        line = err75.strip().splitlines()
        self.assertEqual(len(line), 1, err75)
        self.assertRegex(line[0], r"is already running with these arguments \(host (alpha|beta), pid \d+, started "
                                  r"\d{4}-\d\d-\d\dT[\d:.]+Z; its lease runs to [\d:TZ.-]+ unless renewed\); "
                                  r"--allow-overlap runs it anyway")
        self.assertEqual(self.sim.triggers.get(1), 1)
        # a clean exit gives the lease back at once: the next start runs
        self.assertEqual(self.sql("SELECT count(*) FROM leases"), "0")
        self.sim.syncs[1] = {"steps": ["completed"]}
        r = run([self.flow_file, "1"], env=self.sim_env(self.host("beta")))
        self.assertEqual(r.rc, 0, r)

    def test_kill_9_then_the_other_host_resumes_and_nothing_is_triggered_twice(self):
        self.sim.syncs[1] = {"steps": ["completed"]}
        self.sim.syncs[2] = {"steps": ["working"] * 40 + ["completed"]}
        a = self.start([self.flow_file, "1", "2"], self.host("alpha"))
        wait_until(lambda: self.polls(2) >= 2, what="sync 2 polled")
        a.send_signal(signal.SIGKILL)
        self.finish(a)
        # at once: alpha's lease still runs, and beta cannot know it is dead
        r = run([self.flow_file, "1", "2"], env=self.sim_env(self.host("beta")))
        self.assertEqual(r.rc, 75, r)
        self.assertIn("(host alpha, pid %d" % a.pid, r.stderr)
        time.sleep(float(LEASE) + 0.5)
        r = run(["--resume", self.flow_file, "1", "2"], env=self.sim_env(self.host("beta")))
        self.assertEqual(r.rc, 0, r)
        self.assertIn("took over the run lock of host alpha, pid %d" % a.pid, r.stderr)
        self.assertIn("resuming run 1", r.stderr)
        self.assertEqual(self.sim.triggers, {1: 1, 2: 1})
        runs = self.runs()
        self.assertEqual([(x["host"], x["outcome"]) for x in runs], [("beta", "ok"), ("alpha", "crashed")])
        self.assertEqual(runs[0]["resumed_from"], 1)

    def test_sigstop_past_the_lease_then_sigcont_the_stale_engine_writes_and_triggers_nothing(self):
        self.sim.syncs[1] = {"steps": ["working"] * 80 + ["completed"]}
        self.sim.syncs[3] = {"steps": ["completed"]}
        a = self.start([self.flow_file, "1", "3"], self.host("alpha"))
        wait_until(lambda: self.polls(1) >= 2, what="sync 1 polled")
        a.send_signal(signal.SIGSTOP)
        self.addCleanup(lambda: a.poll() is None and a.send_signal(signal.SIGCONT))
        time.sleep(float(LEASE) + 0.5)
        b = self.start([self.flow_file, "1", "3"], self.host("beta"))
        # beta took the lock over and adopted alpha's run of sync 1
        wait_until(lambda: self.sql_or_none("SELECT count(*) FROM jobs WHERE run = 2 AND origin = 'adopted'") == "1",
                   what="beta adopting sync 1")
        stopped_at = self.sql("SELECT extract(epoch FROM now())")
        a.send_signal(signal.SIGCONT)
        rc, out, err = self.finish(a)
        self.assertEqual(rc, 75, err)
        self.assertIn("this engine lost its lease on the journal", err)
        self.assertIn("stopping without triggering, cancelling or writing anything more", err)
        self.assertNotIn("done", out)
        rc, out, err = self.finish(b)
        self.assertEqual(rc, 0, err)
        self.assertIn("took over the run lock of host alpha", err)
        self.assertIn("is still in flight; adopting it", err)
        self.assertEqual(self.sim.triggers, {1: 1, 3: 1})
        self.assertEqual(self.sim.cancels, {})
        # alpha wrote nothing after it came back: its run never ended, no
        # status of its jobs is later than the SIGCONT
        self.assertEqual(self.sql("SELECT ended_at IS NULL FROM runs WHERE id = 1"), "t")
        self.assertEqual(self.sql("SELECT count(*) FROM job_statuses s JOIN jobs j ON j.id = s.job "
                                  "WHERE j.run = 1 AND s.at > %s" % stopped_at), "0")

    # -- one guard per remote resource -------------------------------------

    def test_two_flows_on_two_hosts_never_trigger_one_sync_at_once(self):
        self.sim.syncs[1] = {"steps": ["working"] * 20 + ["completed"]}
        other = self.flow(SYNC_FLOW)  # another flow, so no run lock is shared
        a = self.start([self.flow_file, "1"], self.host("alpha"))
        wait_until(lambda: self.sim.triggers.get(1) == 1 and self.polls(1) >= 1, what="the trigger")
        r = run([other, "1"], env=self.sim_env(self.host("beta")))
        self.assertEqual(r.rc, 0, r)
        self.assertIn("is still in flight; adopting it", r.stderr)
        self.assertEqual(self.finish(a)[0], 0)
        self.assertEqual(self.sim.triggers.get(1), 1)
        # force = true triggers anyway
        self.sim.syncs[1] = {"steps": ["working"] * 20 + ["completed"]}
        a = self.start([self.flow_file, "1"], self.host("alpha"))
        wait_until(lambda: self.sim.triggers.get(1) == 2, what="the second trigger")
        forced = self.flow("census.sync({sync_id = 1, force = true})")
        r = run([forced], env=self.sim_env(self.host("beta")))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sim.triggers.get(1), 3)
        self.finish(a)

    def test_engines_racing_for_one_sync_trigger_it_once(self):
        self.sim.syncs[5] = {"steps": ["working"] * 60 + ["completed"]}  # in flight while all claim
        flows = [self.flow(SYNC_FLOW) for _ in range(6)]
        procs = [self.start([f, "5"], self.host("host%d" % i)) for i, f in enumerate(flows)]
        for p in procs:
            rc, out, err = self.finish(p)
            self.assertEqual(rc, 0, err)
        self.assertEqual(self.sim.triggers.get(5), 1)

    # -- the server going away ---------------------------------------------

    def test_the_server_away_mid_run_loses_and_doubles_nothing(self):
        self.own_server()
        self.sim.syncs[1] = {"steps": ["working"] * 50 + ["completed"]}
        self.sim.syncs[2] = {"steps": ["completed"]}
        a = self.start([self.flow_file, "1", "2"], {"ENGINE_STATE_LEASE": "30"})
        wait_until(lambda: self.polls(1) >= 3, what="sync 1 polled")
        self.pg.stop()
        time.sleep(1.5)
        self.pg.start()
        rc, out, err = self.finish(a)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.sim.triggers, {1: 1, 2: 1})
        self.assertEqual(self.sql("SELECT count(*) FROM jobs"), "2")
        self.assertEqual(self.sql("SELECT string_agg(status || ':' || final, ',' ORDER BY id) FROM jobs"),
                         "completed:1,completed:1")
        self.assertEqual(self.runs()[0]["outcome"], "ok")

    def test_the_server_away_before_a_trigger_fails_it_with_kind_journal(self):
        self.own_server()
        self.sim.syncs[2] = {"steps": ["completed"]}
        flow = self.flow("""
flow.step("first", function() end)
local gate = os.getenv("GATE")
while not io.open(gate) do flow.sleep(0.05) end
local ok, err = pcall(census.sync, {sync_id = 2})
print(ok, type(err) == "table" and err.kind)
""")
        gate = os.path.join(self.dir, "gate")
        a = self.start([flow], {"GATE": gate, "ENGINE_STATE_TIMEOUT": "1", "ENGINE_STATE_LEASE": "30"})
        wait_until(lambda: self.sql_or_none("SELECT count(*) FROM steps") == "1", what="the first step")
        self.pg.stop()
        open(gate, "w").close()
        rc, out, err = self.finish(a)
        self.pg.start()
        self.assertEqual(out.strip(), "false\tjournal", err)
        self.assertEqual(self.sim.triggers.get(2), None)
        self.assertIn("cannot write the journal: cannot reach the server", err)
        self.assertNotEqual(rc, 0)

    def test_polls_keep_their_pace_while_the_store_is_slow(self):
        # the store's tables locked by another session for 3 s: the engine's
        # writes wait on the server, its loop does not (every poll is on time)
        n = 50
        for i in range(1, n + 1):
            self.sim.syncs[i] = {"steps": ["working"] * 45 + ["completed"]}
        flow = self.flow("""
local fns = {}
for i = 1, %d do fns[i] = function() return census.sync({sync_id = i}) end end
flow.parallel(fns)
print("done")
""" % n)
        a = self.start([flow], {"CENSUS_POLL": "0.1", "ENGINE_STATE_LEASE": "30"})
        total = lambda: sum(r["polls"] for r in self.sim.runs.values())
        wait_until(lambda: len(self.sim.runs) == n and total() >= 2 * n, what="every sync polled")
        locker = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.url, "-c",
                                   "BEGIN; LOCK TABLE runs, steps, jobs, job_statuses IN ACCESS EXCLUSIVE MODE; "
                                   "SELECT pg_sleep(3); COMMIT;"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the lock is held by now
        before = total()
        self.assertEqual(locker.wait(timeout=60), 0, locker.stderr.read())
        during = total() - before
        # 50 syncs polled every 0.1 s for 2.5 s: 1,250 polls on time; a loop
        # blocked on the store would make none
        self.assertGreater(during, 500, "polls while the store was locked")
        rc, out, err = self.finish(a, timeout=120)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sum(self.sim.triggers.values()), n)
        self.assertEqual(self.sql("SELECT count(*) FROM jobs WHERE final = 1 AND ok = 1"), str(n))

    # -- first use, history, copy ----------------------------------------------

    def test_notes_sent_together_keep_every_byte_and_a_failing_one_fails_its_transaction(self):
        # writes nobody reads back (status changes) wait inside a transaction
        # and go with the next statement as literals: text round-trips
        # exactly, more than 64 KiB goes in several sends, and a note the
        # server refuses fails the whole transaction, which is rolled back
        code = r"""
local store = require "engine.store"
local db = assert(store.open({url = os.getenv("ENGINE_STATE_URL")}))
db:exec("CREATE TABLE notes_t (id integer PRIMARY KEY, text text, n float8)")
local odd = "it's \\ \"quoted\" $$ ; -- é 😀 " .. string.char(0, 255)
db:transaction(false, function()
  for i = 1, 2000 do db:note("INSERT INTO notes_t (id, text, n) VALUES (?, ?, ?)", i, odd .. i, i + 0.5) end
  print("inside", db:rows("SELECT count(*) AS n FROM notes_t")[1].n)
end)
local bad = pcall(db.transaction, db, false, function()
  db:note("INSERT INTO notes_t (id, text) VALUES (?, ?)", 3001, "kept?")
  db:note("INSERT INTO notes_t (id, text) VALUES (?, ?)", 1, "a duplicate key")
end)
print("bad", bad)
local rows = db:rows("SELECT count(*) AS n, max(n) AS top FROM notes_t")
print("after", rows[1].n, rows[1].top)
print("text", db:rows("SELECT text FROM notes_t WHERE id = 7")[1].text == (odd:gsub("%z", "\239\191\189"):gsub("\255", "\239\191\189")) .. 7)
"""
        r = run(["--no-state", "-e", code], env={"ENGINE_STATE_URL": self.url, "ENGINE_STATE_TIMEOUT": "3"})
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout.split("\n")[:4], ["inside\t2000", "bad\tfalse", "after\t2000\t2000.5",
                                                   "text\ttrue"], r)

    def test_many_engines_opening_a_new_journal_at_once(self):
        procs = [subprocess.Popen([ENGINE, "-e", "flow.step('s', function() end)"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, **self.sim_env(self.host("h%d" % i))))
                 for i in range(8)]
        for p in procs:
            out, err = p.communicate(timeout=60)
            keep_output(out + err)
            self.assertEqual(p.returncode, 0, err)
        self.assertEqual(self.sql("SELECT value FROM meta WHERE key = 'schema_version'"), "3")
        self.assertEqual(self.sql("SELECT count(*) FROM runs"), "8")
        self.assertEqual(len(self.runs("--limit", "50")), 8)

    def test_a_schema_2_journal_on_the_server_is_upgraded(self):
        r = run(["-e", "flow.step('a', function() end)"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.sql("DROP TABLE logs; ALTER TABLE runs DROP COLUMN summary; ALTER TABLE jobs DROP COLUMN rejected; "
                 "DROP INDEX runs_by_host; UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        r = run(["-e", "flow.step('b', function() log.info('kept') end)"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sql("SELECT value FROM meta WHERE key = 'schema_version'"), "3")
        self.assertEqual(self.sql("SELECT count(*) FROM logs WHERE text LIKE '%kept%'"), "1")

    def test_engine_runs_shows_every_host(self):
        self.sim.syncs[1] = {"steps": ["completed"]}
        for host in ("alpha", "beta"):
            r = run([self.flow_file, "1"], env=self.sim_env(self.host(host)))
            self.assertEqual(r.rc, 0, r)
        r = run(["--state", self.url, "runs"])
        self.assertEqual(r.rc, 0, r)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "STARTED", "OUTCOME", "EXIT", "RESUMES", "HOST", "FLOW"])
        self.assertEqual([l.split()[5] for l in lines[1:]], ["beta", "alpha"])
        r = run(["--state", self.url, "runs", "1"])
        self.assertIn(" on alpha (pid ", r.stdout)
        self.assertEqual([x["host"] for x in self.runs()], ["beta", "alpha"])

    def test_state_copy_moves_a_directory_history_into_postgres_and_back(self):
        state_dir = os.path.join(self.dir, "state")
        self.sim.syncs[1] = {"steps": ["completed"]}
        for _ in range(2):
            r = run(["--state", state_dir, self.flow_file, "1"], env=self.sim_env())
            self.assertEqual(r.rc, 0, r)
        r = run(["state", "copy", state_dir, self.url])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("copied 2 run(s), 0 step(s), 2 job(s) from %s to postgresql://***@" % state_dir, r.stdout)
        self.assertIn("run ids kept", r.stdout)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        pg_runs = self.runs()
        self.assertEqual([x["id"] for x in pg_runs], [2, 1])
        self.assertEqual(json.loads(run(["--state", self.url, "runs", "2", "--json"]).stdout),
                         json.loads(run(["--state", state_dir, "runs", "2", "--json"]).stdout))
        # again: nothing doubles
        r = run(["state", "copy", state_dir, self.url])
        self.assertIn("copied 0 run(s)", r.stdout)
        self.assertIn("2 run(s) were there already", r.stdout)
        # a new run on the server gets the next id
        r = run([self.flow_file, "1"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.runs()[0]["id"], 3)
        # and back into a new directory
        back = os.path.join(self.dir, "back")
        r = run(["state", "copy", self.url, back])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("copied 3 run(s), 0 step(s), 3 job(s)", r.stdout)
        self.assertEqual(len(json.loads(run(["--state", back, "runs", "--json"]).stdout)), 3)
        r = run(["state", "copy", self.url])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("TO is missing", r.stderr)
        r = run(["state", "copy", os.path.join(self.dir, "nothing"), self.url])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no run was recorded", r.stderr)

    # -- passwords -----------------------------------------------------------

    def test_the_password_never_shows_and_libpq_variables_work(self):
        self.sim.syncs[1] = {"steps": ["completed"]}
        bad = self.pg.url(self.db, password="wrong-" + PASSWORD)
        r = run([self.flow_file, "1"], env=self.sim_env({"ENGINE_STATE_URL": bad}))
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r)
        self.assertIn('password authentication failed for user "engine"', r.stderr)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        # the password from PGPASSWORD, then from a PGPASSFILE
        bare = self.pg.url(self.db, password=False)
        r = run([self.flow_file, "1"], env=self.sim_env({"ENGINE_STATE_URL": bare, "PGPASSWORD": PASSWORD}))
        self.assertEqual(r.rc, 0, r)
        passfile = os.path.join(self.dir, "pgpass")
        with open(passfile, "w") as f:
            f.write("127.0.0.1:%d:%s:engine:%s\n" % (self.pg.port, self.db, PASSWORD))
        os.chmod(passfile, 0o600)
        r = run([self.flow_file, "1"], env=self.sim_env({"ENGINE_STATE_URL": bare, "PGPASSFILE": passfile}))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sql("SELECT count(*) FROM runs"), "2")
        # a flow that fails prints the URL without its password too
        r = run(["--state", self.url, "runs", "99"])
        self.assertEqual(r.rc, 1, r)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        self.assertIn("there is no run 99 in postgresql://***@127.0.0.1:%d/%s" % (self.pg.port, self.db), r.stderr)


@unittest.skipUnless(HAVE_POSTGRES and HAVE_PGBOUNCER, "pgbouncer is not installed (./dev installs it)")
class ThroughPgBouncer(Postgres):
    """The same engine, through PgBouncer in transaction pooling mode: every
    guarantee holds without session state (advisory locks are per
    transaction, the lock is a lease)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bouncer = PgBouncer(cls.pg).start()

    @classmethod
    def tearDownClass(cls):
        cls.bouncer.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.url = self.bouncer.url(self.db)

    def test_through_pgbouncer_one_runs_and_one_exits_75(self):
        self.test_started_together_one_runs_and_one_exits_75()

    def test_through_pgbouncer_kill_9_then_the_other_host_resumes(self):
        self.test_kill_9_then_the_other_host_resumes_and_nothing_is_triggered_twice()

    def test_through_pgbouncer_the_stale_engine_writes_and_triggers_nothing(self):
        self.test_sigstop_past_the_lease_then_sigcont_the_stale_engine_writes_and_triggers_nothing()

    def test_through_pgbouncer_engines_racing_for_one_sync_trigger_it_once(self):
        self.test_engines_racing_for_one_sync_trigger_it_once()


if __name__ == "__main__":
    main()
