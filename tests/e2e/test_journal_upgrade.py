"""test_journal_upgrade.py: a journal written by the previous release
(schema 1: Census syncs in a `syncs` table) upgrades in place on first
open, in one transaction: its history shows in `engine runs`, and a run it
recorded as in flight is adopted, never triggered again."""
import json
import os
import sqlite3
import time

from harness import SimTestCase, main, run

# Schema 1 as the previous release created it (lua/journal.lua at 0.2).
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (
  id INTEGER PRIMARY KEY, flow TEXT NOT NULL, args TEXT NOT NULL,
  pid INTEGER NOT NULL, host TEXT NOT NULL, started_at REAL NOT NULL,
  ended_at REAL, outcome TEXT, exit_code INTEGER, resumed_from INTEGER, params TEXT);
CREATE INDEX runs_by_flow ON runs (flow, args, id);
CREATE INDEX runs_by_start ON runs (started_at);
CREATE TABLE steps (
  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  name TEXT NOT NULL, occurrence INTEGER NOT NULL, status TEXT NOT NULL,
  started_at REAL NOT NULL, ended_at REAL, error TEXT, results TEXT, origin TEXT);
CREATE INDEX steps_by_run ON steps (run, name, occurrence);
CREATE TABLE syncs (
  id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  sync_id INTEGER NOT NULL, occurrence INTEGER NOT NULL, sent_at REAL,
  sync_run_id INTEGER, status TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0,
  records_processed INTEGER, records_updated INTEGER, records_failed INTEGER,
  records_invalid INTEGER, started_at REAL NOT NULL, ended_at REAL, link TEXT,
  error TEXT, result TEXT, origin TEXT, started_by INTEGER);
CREATE INDEX syncs_by_run ON syncs (run, sync_id, occurrence);
CREATE INDEX syncs_open ON syncs (sync_id) WHERE final = 0;
CREATE TABLE statuses (
  sync INTEGER NOT NULL REFERENCES syncs (id) ON DELETE CASCADE,
  at REAL NOT NULL, status TEXT NOT NULL);
CREATE INDEX statuses_by_sync ON statuses (sync);
INSERT INTO meta VALUES ('schema_version', '1'), ('added_columns', '4');
"""


class Upgrade(SimTestCase):
    def journal(self):
        return os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db")

    def old_journal(self, flow, in_flight_run):
        """A schema-1 journal: run 1 completed sync 6, run 2 (its engine
        killed) left sync 5's run in flight."""
        now = time.time()
        db = sqlite3.connect(self.journal())
        db.executescript(SCHEMA_1)
        db.execute("INSERT INTO runs (id, flow, args, pid, host, started_at, ended_at, outcome, exit_code) "
                   "VALUES (1, '(command line)', '{}', 1, 'old-host', ?, ?, 'ok', 0)", (now - 60, now - 50))
        db.execute("INSERT INTO syncs (id, run, sync_id, occurrence, sent_at, sync_run_id, status, final, "
                   "records_processed, records_updated, records_failed, records_invalid, started_at, ended_at, "
                   "link, result, origin, started_by) VALUES (1, 1, 6, 1, ?, 901, 'completed', 1, 10, 9, 1, 0, "
                   "?, ?, 'https://app.getcensus.com/syncs/6/sync-history', '{\"status\":\"completed\"}', "
                   "'started', 1)", (now - 59, now - 59, now - 50))
        db.execute("INSERT INTO statuses (sync, at, status) VALUES (1, ?, 'working'), (1, ?, 'completed')",
                   (now - 58, now - 50))
        db.execute("INSERT INTO runs (id, flow, args, pid, host, started_at) "
                   "VALUES (2, ?, '{}', 999999, 'gone-host', ?)", (flow, now - 30))
        db.execute("INSERT INTO syncs (id, run, sync_id, occurrence, sent_at, sync_run_id, status, final, "
                   "started_at, origin, started_by) VALUES (2, 2, 5, 1, ?, ?, 'working', 0, ?, 'started', 2)",
                   (now - 29, in_flight_run, now - 29))
        db.commit()
        db.close()

    def test_a_schema_1_journal_upgrades_and_its_run_in_flight_is_adopted(self):
        flow = self.flow("census.sync({sync_id = 5})")
        run_id = self.sim_start_run(5)
        self.old_journal(flow, run_id)
        r = run([flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sim.triggers.get(5), None, "the run in flight was adopted, not triggered again")
        self.assertIn("sync 5: run %d, started by engine run 2, is still in flight; adopting it" % run_id, r.stderr)
        db = sqlite3.connect(self.journal())
        self.assertEqual(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone(), ("3",))
        tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertNotIn("syncs", tables)
        self.assertIn("logs", tables)  # schema 3: each run's log lines and its summary
        self.assertIn("sync 5: run %d, started by engine run 2" % run_id,
                      db.execute("SELECT group_concat(text, '|') FROM logs WHERE run = 3").fetchone()[0])
        self.assertEqual(db.execute("SELECT provider, resource, remote_run, ok, final FROM jobs WHERE id = 1").fetchone(),
                         ("census", "6", "901", 1, 1))
        self.assertEqual(db.execute("SELECT count(*) FROM job_statuses WHERE job = 1").fetchone(), (2,))
        db.close()
        one = json.loads(run(["runs", "1", "--json"]).stdout)
        self.assertEqual((one["jobs"][0]["provider"], one["jobs"][0]["resource"], one["jobs"][0]["counts"]),
                         ("census", 6, {"records_processed": 10, "records_updated": 9, "records_failed": 1,
                                          "records_invalid": 0}))
        sync = one["syncs"][0]
        self.assertEqual((sync["sync_id"], sync["run_id"], sync["records_failed"]), (6, 901, 1))
        self.assertRegex(run(["runs", "1"]).stdout, r"\n  6 +901 +completed +10 +9 +1 +0  https://")
        listed = json.loads(run(["runs", "--json"]).stdout)
        self.assertEqual([x["id"] for x in listed], [3, 2, 1])

    def sim_start_run(self, sync_id):
        """A run of the sync that an engine of the previous release started."""
        self.sim.syncs[sync_id] = {"steps": ["working", "completed"]}
        run = self.sim.new_run(sync_id, {})
        return run["id"]

    def test_a_schema_2_journal_gains_logs_and_summaries(self):
        # schema 2 (the previous release): runs without summary, no logs
        run(["-e", "flow.step('a', function() end)"])
        db = sqlite3.connect(self.journal())
        db.executescript("DROP TABLE logs; ALTER TABLE runs DROP COLUMN summary; ALTER TABLE jobs DROP COLUMN rejected; "
                         "DROP INDEX runs_by_host; UPDATE meta SET value = '2' WHERE key = 'schema_version';")
        db.close()
        r = run(["-e", "flow.step('b', function() log.info('hello from b') end)"])
        self.assertEqual(r.rc, 0, r)
        db = sqlite3.connect(self.journal())
        self.assertEqual(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone(), ("3",))
        self.assertEqual(db.execute("SELECT summary IS NULL FROM runs ORDER BY id").fetchall(), [(1,), (0,)])
        db.close()
        self.assertIn("hello from b", run(["runs", "2", "--logs"]).stdout)
        r = run(["runs", "1", "--logs"])
        self.assertEqual((r.rc, r.stdout), (0, ""))
        self.assertIn("run 1 kept no log lines", r.stderr)

    def test_an_engine_refuses_a_journal_newer_than_it_knows(self):
        run(["-e", "flow.step('a', function() end)"])
        db = sqlite3.connect(self.journal())
        db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        db.commit()
        db.close()
        r = run(["-e", "flow.step('a', function() end)"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("it has schema version 4; this engine knows 3 (upgrade the engine)", r.stderr)

    def test_a_failed_upgrade_leaves_the_old_journal_whole(self):
        flow = self.flow("census.sync({sync_id = 5})")
        self.old_journal(flow, 77)
        db = sqlite3.connect(self.journal())
        # a table in the way of the new schema: the upgrade cannot finish
        db.execute("CREATE TABLE jobs (x)")
        db.commit()
        db.close()
        r = run([flow], env=self.sim_env())
        self.assertEqual(r.rc, 1, r)
        self.assertIn("cannot use the journal", r.stderr)
        self.assertEqual(self.sim.triggers.get(5), None)
        db = sqlite3.connect(self.journal())
        self.assertEqual(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone(), ("1",))
        self.assertEqual(db.execute("SELECT count(*) FROM syncs").fetchone(), (2,))
        db.close()


if __name__ == "__main__":
    main()
