"""test_cli.py: the command line, exit codes, error reports and the hello
flow, through the built binary."""
import os
import unittest

from harness import ROOT, main, run, run_flow, write_flow


class Cli(unittest.TestCase):
    def test_help_documents_options_and_exit_codes(self):
        r = run(["--help"])
        self.assertEqual(r.rc, 0, r)
        for word in ["-e CODE", "-q, --quiet", "-v, --verbose", "--version",
                     "FLOW.lua", "130", "143", "usage error", "census", "CENSUS_API_KEY",
                     "CENSUS_BASE_URL", "CENSUS_MIN_POLL", "CENSUS_POLL"]:
            self.assertIn(word, r.stdout)
        self.assertEqual(run(["-h"]).stdout, r.stdout)

    def test_version_names_every_component(self):
        r = run(["--version"])
        self.assertEqual(r.rc, 0)
        self.assertRegex(r.stdout, r"^engine \d+\.\d+\.\d+ \(Lua 5\.4\.\d+, libuv \d+\.\d+\.\d+, libcurl \d+\.\d+\.\d+\)\n$")

    def test_usage_errors_exit_2_with_one_line(self):
        for args, text in [(["--bogus"], "unknown option '--bogus'"),
                           (["-e"], "-e needs CODE"),
                           (["/no/such/flow.lua"], "cannot open /no/such/flow.lua")]:
            r = run(args)
            self.assertEqual(r.rc, 2, r)
            self.assertIn(text, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r)
            self.assertTrue(r.stderr.startswith("engine: "), r)

    def test_e_runs_in_order_before_the_script(self):
        path = write_flow("print('script', x, ...)")
        try:
            r = run(["-e", "x = 1", "-e", "x = x + 1", path, "a", "b"])
        finally:
            os.unlink(path)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "script\t2\ta\tb\n")

    def test_arg_table_like_lua(self):
        r = run_flow("print(arg[0]:match('%.lua$') ~= nil, arg[1], arg[2], #arg, arg[-1] ~= nil)",
                     ["one", "two"])
        self.assertEqual(r.stdout, "true\tone\ttwo\t2\ttrue\n", r)

    def test_script_from_stdin(self):
        r = run(["-", "x"], stdin="print('from stdin', ...)")
        self.assertEqual((r.rc, r.stdout), (0, "from stdin\tx\n"), r)
        r = run([], stdin="print(1 + 1)")
        self.assertEqual((r.rc, r.stdout), (0, "2\n"), r)

    def test_log_levels(self):
        code = "log.debug('dbg %d', 1) log.info('inf') log.warn('wrn') log.error('err')"
        normal, quiet, verbose = run(["-e", code]), run(["-q", "-e", code]), run(["-v", "-e", code])
        self.assertNotIn("dbg", normal.stderr)
        self.assertIn("INFO  inf", normal.stderr)
        self.assertNotIn("inf", quiet.stderr)
        self.assertIn("WARN  wrn", quiet.stderr)
        self.assertIn("ERROR err", quiet.stderr)
        self.assertIn("DEBUG dbg 1", verbose.stderr)
        self.assertRegex(normal.stderr, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  inf$"
                         .replace("$", "\n"))

    def test_uncaught_error_prints_location_and_traceback(self):
        r = run_flow("local function f()\n  error('boom')\nend\nf()\n")
        self.assertEqual(r.rc, 1, r)
        first, *rest = r.stderr.splitlines()
        self.assertRegex(first, r"^engine: /.*\.lua:2: boom$")
        self.assertEqual(rest[0], "stack traceback:")
        self.assertTrue(any("in local 'f'" in line or "in function 'f'" in line for line in rest), r)

    def test_uncaught_error_object_prints_its_tostring(self):
        r = run_flow("flow.sleep(0)\nerror(flow.error('sync', 'sync 42 failed'))\n")
        self.assertEqual(r.rc, 1, r)
        self.assertRegex(r.stderr.splitlines()[0], r"^engine: /.*\.lua:2: sync 42 failed$")
        r = run_flow("error(setmetatable({}, {__tostring = function() return 'custom text' end}))")
        self.assertEqual(r.stderr.splitlines()[0], "engine: custom text")

    def test_syntax_error_exits_1(self):
        r = run(["-e", "x ="])
        self.assertEqual(r.rc, 1)
        self.assertIn("engine: (command line):1: unexpected symbol near <eof>", r.stderr)

    def test_unwaited_task_failure_exits_1(self):
        r = run_flow("flow.spawn(function() flow.sleep(0.01) error('lost') end)\nprint('main ok')")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("main ok", r.stdout)
        self.assertRegex(r.stderr, r"task \d+ failed and nobody waited for it: .*lost")

    def test_handled_failure_exits_0(self):
        r = run_flow("local h = flow.spawn(function() error('x') end)\n"
                     "print(pcall(h.wait, h))")
        self.assertEqual(r.rc, 0, r)

    def test_main_failure_cancels_other_tasks(self):
        r = run_flow("flow.spawn(function() flow.sleep(30) end)\nflow.sleep(0.01)\nerror('stop')")
        self.assertEqual(r.rc, 1, r)
        self.assertLess(r.seconds, 10)
        self.assertNotIn("nobody waited", r.stderr)

    def test_deadlock_is_reported(self):
        r = run_flow("local a, b\nb = flow.spawn(function() flow.sleep(0) a:wait() end)\n"
                     "a = flow.spawn(function() b:wait() end)\na:wait()")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("can never finish", r.stderr)

    def test_raw_coroutine_yield_is_an_error(self):
        r = run(["-e", "coroutine.yield()"])
        self.assertEqual(r.rc, 1)
        self.assertIn("attempt to yield from outside a coroutine", r.stderr)

    def test_main_waits_for_spawned_tasks(self):
        r = run_flow("flow.spawn(function() flow.sleep(0.05) print('late') end)\nprint('early')")
        self.assertEqual((r.rc, r.stdout), (0, "early\nlate\n"), r)

    def test_hello_flow_runs_steps_in_parallel(self):
        r = run([os.path.join(ROOT, "flows", "hello.lua"), "tester"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("hello, tester: extract, transform, load finished in", r.stderr)
        lines = [l for l in r.stderr.splitlines() if ": started" in l or ": done" in l]
        self.assertEqual([": started" in l for l in lines], [True] * 3 + [False] * 3,
                         "the three sleeps run together")

    def test_thousand_tasks_wall_time(self):
        r = run_flow("local t0 = flow.now()\nlocal hs = {}\n"
                     "for i = 1, 1000 do hs[i] = flow.spawn(flow.sleep, 0.1) end\n"
                     "for i = 1, 1000 do hs[i]:wait() end\nprint(flow.now() - t0)")
        self.assertEqual(r.rc, 0, r)
        self.assertLess(float(r.stdout), 10.0, "together, not one after another (100 s)")


if __name__ == "__main__":
    main()
