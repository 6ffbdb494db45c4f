"""test_durable.py: durable runs against the Census simulator, with the
journal in a temporary state directory: kill -9 at each point and rerun
(each sync triggered once in total), --resume, the run lock (exit 75),
stopping cancels what the engine started (and the opt-outs), children gone
after kill -9, the summary JSON on a symlink, a device node, a FIFO, a full
filesystem and after os.exit, engine runs, concurrent engines on one
journal, a corrupt journal."""
import json
import os
import shutil
import sqlite3
import signal
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import ENGINE, SimTestCase, check_no_secrets, keep_output, main, run, write_flow, wait_until



def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


SYNC_FLOW = """
local ids = {...}
local fns = {}
for i, id in ipairs(ids) do
  fns[i] = function() return census.sync({sync_id = tonumber(id)}) end
end
flow.parallel(fns)
print("done")
"""


class Durable(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.flow = write_flow(SYNC_FLOW, self.dir)

    def rerun(self, *ids, extra=(), rc=0):
        r = run(list(extra) + [self.flow] + [str(i) for i in ids], env=self.sim_env())
        self.assertEqual(r.rc, rc, r)
        return r

    def polls(self, sync_id):
        return sum(r["polls"] for r in self.sim.runs.values() if r["sync_id"] == sync_id)

    def kill9(self, proc):
        proc.send_signal(signal.SIGKILL)
        self.finish(proc)

    def test_kill_while_polling_then_rerun_adopts_the_run(self):
        self.sim.syncs[1] = {"steps": ["working"] * 15 + ["completed"]}
        proc = self.start([self.flow, "1"])
        wait_until(lambda: self.polls(1) >= 2, what="polls")
        self.kill9(proc)
        r = self.rerun(1)
        self.assertEqual(self.sim.triggers.get(1), 1, r)
        self.assertIn("started by engine run 1, is still in flight; adopting it", r.stderr)
        self.assertIn("done", r.stdout)
        runs = json.loads(run(["--state", os.environ["ENGINE_STATE_DIR"], "runs", "--json"]).stdout)
        self.assertEqual([x["outcome"] for x in runs], ["ok", "crashed"])

    def test_kill_before_the_trigger_answer_then_rerun_adopts_the_run(self):
        self.sim.syncs[1] = {"trigger": [{"created_slow": 30}], "steps": ["working", "completed"]}
        proc = self.start([self.flow, "1"])
        wait_until(lambda: self.sim.triggers.get(1) == 1 and self.sim.runs, what="the trigger")
        self.kill9(proc)
        r = self.rerun(1)
        self.assertEqual(self.sim.triggers.get(1), 1, r)
        self.assertIn("adopting it instead of triggering again", r.stderr)

    def test_kill_with_one_sync_polling_and_one_trigger_unanswered(self):
        self.sim.syncs[1] = {"steps": ["working"] * 15 + ["completed"]}
        self.sim.syncs[2] = {"trigger": [{"created_slow": 30}], "steps": ["working", "completed"]}
        proc = self.start([self.flow, "1", "2"])
        wait_until(lambda: self.polls(1) >= 2 and self.sim.triggers.get(2) == 1, what="both")
        self.kill9(proc)
        self.rerun(1, 2)
        self.assertEqual((self.sim.triggers.get(1), self.sim.triggers.get(2)), (1, 1))

    def test_a_finished_sync_is_triggered_anew_and_resume_skips_it(self):
        flow = write_flow("""
            local r = census.sync({sync_id = 1})
            flow.step("after", function() if os.getenv("FAIL_AFTER") then error("step failed") end end)
            print("records", r.records_updated)
        """, self.dir)
        self.sim.syncs[1] = {"steps": [{"status": "completed", "records_updated": 7}]}
        r = run([flow], env=self.sim_env({"FAIL_AFTER": "1"}))
        self.assertEqual(r.rc, 1, r)
        r = run([flow], env=self.sim_env({"FAIL_AFTER": "1"}))
        self.assertEqual(self.sim.triggers.get(1), 2, "a plain rerun triggers a finished sync anew")
        r = run(["--resume", flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sim.triggers.get(1), 2, "--resume does not trigger it again")
        self.assertEqual(r.stdout, "records\t7\n")
        self.assertIn("not triggered again (--resume)", r.stderr)
        h = json.loads(run(["runs", "--json"]).stdout)
        self.assertEqual([(x["outcome"], x["resumed_from"]) for x in h],
                         [("ok", 2), ("failed", None), ("failed", None)])

    def test_force_triggers_even_with_a_run_in_flight(self):
        self.sim.syncs[1] = {"steps": ["working"] * 15 + ["completed"]}
        proc = self.start([self.flow, "1"])
        wait_until(lambda: self.polls(1) >= 1, what="polls")
        self.kill9(proc)
        r = run(["-e", "census.trigger({sync_id = 1, force = true})"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sim.triggers.get(1), 2)

    def test_overlap_exits_75_and_allow_overlap_runs(self):
        self.sim.syncs[1] = {"steps": ["working"] * 20 + ["completed"]}
        proc = self.start([self.flow, "1"])
        wait_until(lambda: self.polls(1) >= 1, what="polls")
        r = self.rerun(1, rc=75)
        self.assertRegex(r.stderr, r"already running with these arguments \(pid %d, started \d{4}-" % proc.pid)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r)
        self.assertEqual(self.sim.triggers.get(1), 1)
        self.rerun(2)  # other arguments: not the same run
        r = self.rerun(1, extra=["--allow-overlap"])
        self.assertEqual(self.sim.triggers.get(1), 1, "it adopted the running one")
        self.finish(proc)
        r = run(["--no-state", self.flow, "7"], env=self.sim_env())  # the lock works without state too
        self.assertEqual(r.rc, 0, r)


class CancelOnStop(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    FLOW = """
        local h = flow.spawn(function() return census.sync({sync_id = 1}, {cancel_on_stop = %s}) end)
        while #census.runs(1) == 0 do flow.sleep(0.02) end
        flow.sleep(0.1)
        %s
        print(pcall(h.wait, h))
    """

    def run_stop(self, how, opt="nil", env=None, signal_to_send=None):
        self.sim.syncs[1] = {"steps": ["working"]}
        code = self.FLOW % (opt, how)
        path = write_flow(code)
        self.addCleanup(os.unlink, path)
        summary = path + ".json"
        self.addCleanup(lambda: os.path.exists(summary) and os.unlink(summary))
        proc = subprocess.Popen([ENGINE, "--summary-json", summary, path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ, **self.sim_env(env)))
        if signal_to_send:
            wait_until(lambda: sum(r["polls"] for r in self.sim.runs.values()) >= 2, what="polls")
            proc.send_signal(signal_to_send)
        out, err = proc.communicate(timeout=60)
        keep_output(out + err)
        check_no_secrets(out + err)
        with open(summary) as f:
            doc = json.load(f)
        return proc.returncode, out, err, doc

    def cancels(self):
        return sum(self.sim.cancels.values())

    def check(self, rc, err, doc, cancelled):
        entry = [e for e in doc["entries"] if e["kind"] == "sync"][0]
        self.assertEqual(entry["status"], "canceled", err)
        self.assertFalse(entry["ok"])
        if cancelled:
            self.assertEqual(self.cancels(), 1, err)
            self.assertEqual(entry["detail"], "cancelled in Census")
            self.assertIn("canceled (cancelled in Census)", err)
        else:
            self.assertEqual(self.cancels(), 0, err)
            self.assertTrue(entry["detail"].startswith("left running in Census: "), entry)

    def test_sigint_and_sigterm(self):
        for sig, code in [(signal.SIGINT, 130), (signal.SIGTERM, 143)]:
            self.sim.reset()
            rc, _, err, doc = self.run_stop("flow.sleep(30)", signal_to_send=sig)
            self.assertEqual(rc, code, err)
            self.check(rc, err, doc, True)

    def test_handle_cancel(self):
        rc, out, err, doc = self.run_stop("h:cancel()")
        self.assertIn("false", out)
        self.check(rc, err, doc, True)

    def test_flow_timeout(self):
        self.sim.syncs[1] = {"steps": ["working"]}
        r = run(["--summary-json", os.path.join(tempfile.mkdtemp(), "s.json"), "-e",
                 "print(pcall(flow.timeout, 1, census.sync, {sync_id = 1}))"], env=self.sim_env())
        self.assertIn("timed out", r.stdout)
        self.assertEqual(self.cancels(), 1, r)

    def test_os_exit(self):
        rc, _, err, doc = self.run_stop("os.exit(3)")
        self.assertEqual(rc, 3, err)
        self.check(rc, err, doc, True)

    def test_opt_outs(self):
        rc, _, err, doc = self.run_stop("h:cancel()", opt="false")
        self.check(rc, err, doc, False)
        self.assertIn("left running in Census: cancel_on_stop = false", err)
        self.sim.reset()
        rc, _, err, doc = self.run_stop("h:cancel()", env={"CENSUS_CANCEL_ON_STOP": "0"})
        self.check(rc, err, doc, False)
        self.assertIn("CENSUS_CANCEL_ON_STOP=0", err)

    def test_second_interrupt_exits_at_once_and_says_so(self):
        self.sim.syncs[1] = {"steps": ["working"]}
        code = """
            local h = flow.spawn(function()
              local ok = pcall(census.sync, {sync_id = 1})
              local t = os.time() while os.time() - t < 30 do end -- a slow cleanup
            end)
            h:wait()
        """
        path = write_flow(code)
        self.addCleanup(os.unlink, path)
        proc = subprocess.Popen([ENGINE, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, **self.sim_env()))
        wait_until(lambda: sum(r["polls"] for r in self.sim.runs.values()) >= 1, what="polls")
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: self.cancels() == 1, what="the cancel")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        keep_output(err)
        self.assertEqual(proc.returncode, 130)
        self.assertIn("second interrupt: exiting now", err)


class Children(SimTestCase):
    def test_children_die_with_the_engine_even_on_kill_9(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        pidfile = os.path.join(d, "pids")
        path = write_flow("flow.sh('sleep 300 & echo $! >> %s; sh -c \"sleep 301 & echo \\\\$! >> %s; wait\" & wait')"
                          % (pidfile, pidfile), d)
        proc = subprocess.Popen([ENGINE, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: os.path.exists(pidfile) and len(open(pidfile).read().split()) == 2, what="children")
        pids = [int(p) for p in open(pidfile).read().split()]
        self.assertTrue(all(alive(p) for p in pids))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        wait_until(lambda: not any(alive(p) for p in pids), timeout=10, what="the children to die")


class Summary(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    FLOW = "flow.step('s', function() end)"

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_symlink_is_written_through(self):
        target = os.path.join(self.dir, "target.json")
        link = os.path.join(self.dir, "link.json")
        os.symlink(target, link)
        r = run(["--summary-json", link, "-e", self.FLOW])
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(os.path.islink(link))
        with open(target) as f:
            self.assertEqual(json.load(f)["status"], "ok")

    def test_device_node_and_fifo_are_written_in_place(self):
        node = os.path.join(self.dir, "null")
        try:
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            self.skipTest("mknod needs root")
        r = run(["--summary-json", node, "-e", self.FLOW])
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(stat.S_ISCHR(os.stat(node).st_mode), "the device node was replaced")
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
        reader.start()
        r = run(["--summary-json", fifo, "-e", self.FLOW])
        reader.join(30)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(stat.S_ISFIFO(os.stat(fifo).st_mode))
        self.assertEqual(json.loads(got[0])["status"], "ok")

    def test_full_filesystem_keeps_the_old_summary_and_fails(self):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare for a private tmpfs")
        mnt = os.path.join(self.dir, "small")
        os.mkdir(mnt)
        script = ('mount -t tmpfs -o size=12k tmpfs %s && echo old > %s/s.json && '
                  'head -c 8000 /dev/zero > %s/filler; '
                  '"$@"; rc=$?; echo "old file: $(cat %s/s.json)"; exit $rc') % (mnt, mnt, mnt, mnt)
        flow = "for i = 1, 300 do flow.step('a step with a long name to fill the summary ' .. i, function() end) end"
        p = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", ENGINE, "--summary-json",
                            os.path.join(mnt, "s.json"), "-q", "-e", flow], capture_output=True, text=True,
                           timeout=60)
        keep_output(p.stdout + p.stderr)
        if "mount" in p.stderr and "permission" in p.stderr.lower():
            self.skipTest("cannot mount tmpfs here")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("engine: cannot write the summary: ", p.stderr)
        self.assertIn("No space left on device", p.stderr)
        self.assertIn("old file: old", p.stdout)

    def test_written_after_os_exit_and_ok_is_false_for_a_failing_skip(self):
        out = os.path.join(self.dir, "s.json")
        self.sim.syncs[1] = {"steps": ["skipped"]}
        self.sim.syncs[2] = {"steps": ["skipped"]}
        r = run(["--summary-json", out, "-e",
                 "pcall(census.sync, {sync_id = 1}) census.sync({sync_id = 2}, {allow_skipped = true}) os.exit(4)"],
                env=self.sim_env())
        self.assertEqual(r.rc, 4, r)
        with open(out) as f:
            doc = json.load(f)
        self.assertEqual(doc["exit_code"], 4)
        self.assertEqual([(e["status"], e["ok"]) for e in doc["entries"]], [("skipped", False), ("skipped", True)])
        self.assertEqual((doc["steps"], doc["syncs"]), ({"total": 0, "failed": 0}, {"total": 2, "failed": 1}))
        self.assertIn("summary: 2 syncs: 1 skipped (failed), 1 skipped;", r.stderr)


class History(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def test_runs_and_one_run_in_both_formats(self):
        self.sim.syncs[3] = {"steps": [{"status": "completed", "records_processed": 5, "records_updated": 4,
                                        "records_failed": 1, "records_invalid": 0}]}
        path = write_flow("flow.step('prepare', function() end) census.sync({sync_id = 3})")
        self.addCleanup(os.unlink, path)
        r = run([path, "x"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        r = run(["runs"])
        self.assertRegex(r.stdout, r"\n1 +\S+ +ok +0 +- +\S+ +%s x\n" % path)
        runs = json.loads(run(["runs", "--json", "--limit", "5"]).stdout)
        self.assertEqual(len(runs), 1)
        for k in ["id", "flow", "arguments", "started_at", "ended_at", "outcome", "exit_code", "resumed_from"]:
            self.assertIn(k, runs[0])
        self.assertEqual((runs[0]["flow"], runs[0]["arguments"]), (path, ["x"]))
        one = json.loads(run(["runs", "1", "--json"]).stdout)
        self.assertEqual([s["name"] for s in one["steps"]], ["prepare"])
        sync = one["syncs"][0]
        for k in ["sync_id", "run_id", "status", "records_processed", "records_updated", "records_failed",
                  "records_invalid", "started_at", "ended_at", "link"]:
            self.assertIn(k, sync)
        self.assertEqual((sync["sync_id"], sync["status"], sync["records_failed"], sync["records_invalid"]),
                         (3, "completed", 1, 0))
        text = run(["runs", "1"]).stdout
        self.assertIn("prepare", text)
        self.assertRegex(text, r"3 +%d +completed +5 +4 +1 +0" % sync["run_id"])
        r = run(["runs", "99"])
        self.assertEqual(r.rc, 1)
        r = run(["runs", "--bogus"])
        self.assertEqual(r.rc, 2)

    def test_a_run_without_steps_or_syncs_writes_nothing(self):
        run(["-e", "print('quick')"])
        self.assertEqual(json.loads(run(["runs", "--json"]).stdout), [])
        run(["-e", "flow.step('a', function() end)"])
        self.assertEqual(len(json.loads(run(["runs", "--json"]).stdout)), 1)

    def test_prune(self):
        run(["-e", "flow.step('a', function() end)"])
        db = sqlite3.connect(os.path.join(os.environ["ENGINE_STATE_DIR"], "journal.db"))
        db.execute("UPDATE runs SET started_at = started_at - 3 * 86400")
        db.commit()
        db.close()
        r = run(["runs", "--prune"], env={"ENGINE_STATE_KEEP_DAYS": "2"})
        self.assertIn("pruned 1 run(s)", r.stdout)
        self.assertEqual(json.loads(run(["runs", "--json"]).stdout), [])

    def test_concurrent_engines_share_one_journal(self):
        procs = [subprocess.Popen([ENGINE, "-e", "for i = 1, 20 do flow.step('s' .. i, flow.sleep, 0.001) end"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
        runs = json.loads(run(["runs", "--json"]).stdout)
        self.assertEqual(len(runs), 6)
        for r in runs:
            self.assertEqual(len(json.loads(run(["runs", str(r["id"]), "--json"]).stdout)["steps"]), 20)

    def test_a_journal_another_program_holds_is_waited_for(self):
        # turning a new file to WAL does not call SQLite's busy handler: the
        # engine retries instead of failing with "database is locked"
        state = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state, True)
        holder = sqlite3.connect(os.path.join(state, "journal.db"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        proc = subprocess.Popen([ENGINE, "--state", state, "-e", "flow.step('s', function() end)"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        holder.execute("COMMIT")
        holder.close()
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(len(json.loads(run(["--state", state, "runs", "--json"]).stdout)), 1)

    def test_the_repl_keeps_no_state_unless_asked(self):
        r = run(["-i"], stdin="print(1 + 1)\n", env={"ENGINE_STATE_DIR": "/proc/no-such-dir"})
        self.assertEqual((r.rc, r.stdout), (0, "2\n"), r)
        state = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state, True)
        r = run(["--state", state, "-i"], stdin="flow.step('at the prompt', function() end)\n")
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(os.path.exists(os.path.join(state, "journal.db")))

    def test_corrupt_journal_is_one_line_and_no_state_works(self):
        state = os.environ["ENGINE_STATE_DIR"]
        os.makedirs(state, exist_ok=True)
        with open(os.path.join(state, "journal.db"), "wb") as f:
            f.write(b"this is not a database at all" * 100)
        r = run(["-e", "print('ran')"])
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.stdout, "")
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r)
        self.assertIn(os.path.join(state, "journal.db"), lines[0])
        self.assertIn("--no-state", lines[0])
        r = run(["--no-state", "-e", "print('ran')"])
        self.assertEqual((r.rc, r.stdout), (0, "ran\n"), r)
        r = run(["--state", "/proc/no-such-dir", "-e", "print('ran')"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("--no-state", r.stderr)


if __name__ == "__main__":
    main()
