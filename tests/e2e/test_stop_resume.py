"""test_stop_resume.py: what adversarial testing broke in durable runs and
stopping, each as found: a chained --resume, a run that finished while no
engine watched it, a stop that a flow catches, triggers pending when the
stop comes, engines racing for one sync, wait options checked before the
trigger, flow.on_finish handlers that never end or call os.exit."""
import json
import os
import signal
import unittest

from harness import SimTestCase, main, run, wait_until


class Base(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def polls(self, sync_id=None):
        return sum(r["polls"] for r in self.sim.runs.values() if sync_id is None or r["sync_id"] == sync_id)


class Resume(Base):
    def test_a_chained_resume_never_triggers_a_completed_sync_again(self):
        flow = self.flow("""
            census.sync({sync_id = 1})
            flow.step("after", function() error("step failed") end)
        """)
        self.sim.syncs[1] = {"steps": ["completed"]}
        for args in ([flow], ["--resume", flow], ["--resume", flow], ["--resume", flow]):
            r = run(args, env=self.sim_env())
            self.assertEqual(r.rc, 1, r)
        self.assertEqual(self.sim.triggers.get(1), 1, "each --resume takes the recorded result")
        self.assertIn("not triggered again (--resume)", r.stderr)

    def test_resume_takes_a_run_that_finished_while_the_engine_was_down(self):
        flow = self.flow("""
            local r = census.sync({sync_id = 1})
            print("records", r.records_updated)
        """)
        self.sim.syncs[1] = {"steps": ["working"] * 12 + [{"status": "completed", "records_updated": 5}]}
        proc = self.start([flow])
        wait_until(lambda: self.polls(1) >= 2, what="polls")
        proc.send_signal(signal.SIGKILL)
        self.finish(proc)
        for r in self.sim.runs.values():  # it completes while no engine runs
            r["polls"] = 100
        r = run(["--resume", flow], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sim.triggers.get(1), 1, r)
        self.assertEqual(r.stdout, "records\t5\n")
        self.assertIn("ended while no engine watched it; taking its result", r.stderr)


class Stop(Base):
    def test_sigterm_stops_a_flow_that_catches_errors(self):
        for i in range(1, 6):
            self.sim.syncs[i] = {"steps": ["working"] * 40 + ["completed"]}
        flow = self.flow("""
            for i = 1, 5 do
              local ok, err = pcall(census.sync, {sync_id = i})
              print(i, ok, type(err) == "table" and err.kind or err)
            end
            local ok, err = pcall(flow.sleep, 10)
            print("sleep", ok, err and err.kind)
            local ok, err = pcall(http.get, os.getenv("CENSUS_BASE_URL"))
            print("http", ok, err and err.kind)
            local ok, err = pcall(flow.sh, "true")
            print("sh", ok, err and err.kind)
        """)
        proc = self.start([flow])
        wait_until(lambda: self.polls(1) >= 2, what="polls")
        proc.send_signal(signal.SIGTERM)
        rc, out, err = self.finish(proc, timeout=30)
        self.assertEqual(rc, 143, err)
        self.assertEqual(set(self.sim.triggers), {1}, "nothing is triggered after the stop")
        self.assertEqual(sum(self.sim.cancels.values()), 1, err)
        lines = out.splitlines()
        self.assertEqual(lines[:5], ["%d\tfalse\tcanceled" % i for i in range(1, 6)], out)
        self.assertEqual(lines[5:], ["sleep\tfalse\tcanceled", "http\tfalse\tcanceled", "sh\tfalse\tcanceled"])

    def test_a_stop_while_triggers_are_answered_cancels_what_they_started(self):
        n = 6
        for i in range(1, n + 1):
            self.sim.syncs[i] = {"trigger": [{"created_slow": 3}], "steps": ["working"]}
        flow = self.flow("""
            local fns = {}
            for i = 1, %d do fns[i] = function() return census.sync({sync_id = i}) end end
            flow.parallel(fns)
        """ % n)
        proc = self.start([flow])
        wait_until(lambda: len(self.sim.runs) == n, what="the runs")
        proc.send_signal(signal.SIGTERM)
        rc, out, err = self.finish(proc, timeout=30)
        self.assertEqual(rc, 143, err)
        self.assertEqual(sorted(self.sim.cancels), sorted(self.sim.runs), err)
        self.assertEqual(err.count("the stop interrupted its trigger"), n, err)

    def test_on_finish_handlers_that_never_wait_are_stopped_and_os_exit_ends_them(self):
        flow = self.flow("""
            flow.step("a", function() end)
            flow.on_finish(function() while true do end end, {timeout = 0.5})
            flow.on_finish(function() print("second") os.exit(7) end)
            flow.on_finish(function() print("third") end)
        """)
        r = run(["--summary-json", os.path.join(self.dir, "s.json"), flow], timeout=30)
        self.assertEqual(r.rc, 7, r)
        self.assertEqual(r.stdout, "second\n")
        self.assertIn("handler 1 did not finish within 0.5 s; stopped it", r.stderr)
        with open(os.path.join(self.dir, "s.json")) as f:
            self.assertEqual(json.load(f)["exit_code"], 7)
        runs = json.loads(run(["runs", "--json"]).stdout)
        self.assertEqual((runs[0]["outcome"], runs[0]["exit_code"]), ("exited", 7))


class Options(Base):
    def test_a_bad_wait_option_fails_before_the_trigger(self):
        for opts in ["{timeout = -1}", "{poll = '5'}", "{max_records_failed = 0/0}", "{allow_skipped = 'yes'}"]:
            r = run(["-e", "census.sync({sync_id = 1}, %s)" % opts], env=self.sim_env())
            self.assertEqual(r.rc, 1, r)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r)
        r = run(["-e", "census.task({sync_id = 1, timeout = -1}):run()"], env=self.sim_env())
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(self.sim.triggers, {}, "nothing was triggered")


class Race(Base):
    ROUNDS = 5

    def test_engines_racing_for_the_same_syncs_trigger_each_once(self):
        code = """
            local fns = {}
            for i = 1, 10 do fns[i] = function() return census.sync({sync_id = i}) end end
            flow.parallel(fns)
        """
        flows = [self.flow(code) for _ in range(3)]
        for round_ in range(self.ROUNDS):
            self.sim.reset()
            for i in range(1, 11):
                # long enough (polls of four engines advance it) that all start while it runs
                self.sim.syncs[i] = {"steps": ["working"] * 40 + ["completed"]}
            args = [[flows[0]], [flows[1]], [flows[2]], ["--allow-overlap", flows[0]]]
            procs = [self.start(a) for a in args]
            for p in procs:
                rc, out, err = self.finish(p)
                self.assertEqual(rc, 0, err)
            twice = {k: v for k, v in self.sim.triggers.items() if v != 1}
            self.assertEqual(twice, {}, "round %d: syncs triggered more than once" % round_)


if __name__ == "__main__":
    main()
