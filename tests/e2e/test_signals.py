"""test_signals.py: SIGINT/SIGTERM cancel every task (timers, HTTP
transfers, busy Lua code), let cleanups run, and exit 130/143; a second
SIGINT exits at once."""
import os
import signal
import subprocess
import time
import unittest

from harness import ENGINE, TestServer, main, write_flow


class Signals(unittest.TestCase):
    def start(self, code, *args):
        self.path = write_flow(code)
        self.addCleanup(os.unlink, self.path)
        proc = subprocess.Popen([ENGINE, self.path] + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertEqual(proc.stdout.readline(), "ready\n")
        return proc

    def finish(self, proc, timeout=10):
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err

    def test_sigint_cancels_and_cleanups_run(self):
        proc = self.start("local fns = {}\nfor i = 1, 3 do fns[i] = function()\n"
                          "  local ok, err = pcall(flow.sleep, 30)\n"
                          "  print('cleanup', i, err.kind, tostring(err)) error(err, 0)\nend end\n"
                          "flow.spawn(function() flow.sleep(0.05) print('ready') io.stdout:flush() end)\n"
                          "flow.parallel(fns)")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc, out, err = self.finish(proc)
        self.assertEqual(rc, 130, err)
        self.assertLess(time.monotonic() - t0, 10)  # not the 30 s sleeps
        for i in (1, 2, 3):
            self.assertRegex(out, r"cleanup\t%d\tcanceled\t/.*\.lua:3: interrupted by SIGINT\n" % i)
        self.assertIn("engine: interrupted by SIGINT", err)
        self.assertNotIn("stack traceback", err)

    def test_sigterm_exits_143(self):
        proc = self.start("print('ready') io.stdout:flush()\nflow.sleep(30)")
        proc.send_signal(signal.SIGTERM)
        rc, _, err = self.finish(proc)
        self.assertEqual(rc, 143)
        self.assertIn("engine: interrupted by SIGTERM", err)

    def test_busy_lua_code_is_interrupted(self):
        proc = self.start("print('ready') io.stdout:flush()\nlocal n = 0 while true do n = n + 1 end")
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        rc, _, err = self.finish(proc)
        self.assertEqual(rc, 130, err)

    def test_an_interrupt_is_not_swallowed_by_the_engines_own_code(self):
        # nearly every instruction here runs in lua/ (steps write the journal
        # under pcall): the interrupt still reaches the flow
        proc = self.start("print('ready') io.stdout:flush()\n"
                          "while true do flow.step('s', function() end) end")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rc, _, err = self.finish(proc)
        self.assertEqual(rc, 130, err[-2000:])
        self.assertNotIn("cannot write the journal", err)

    def test_second_sigint_exits_at_once(self):
        # a flow that catches the interrupt and keeps the loop busy (every
        # wait after a stop raises, so only a loop that never waits stays)
        proc = self.start("pcall(function() print('ready') io.stdout:flush() flow.sleep(30) end)\n"
                          "print('ignoring') io.stdout:flush()\nlocal t = os.time() while os.time() - t < 30 do end")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.stdout.readline(), "ignoring\n")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc, _, _ = self.finish(proc)
        self.assertEqual(rc, 130)
        self.assertLess(time.monotonic() - t0, 10)  # not the 30 s sleep

    def test_http_transfers_are_aborted(self):
        server = TestServer()
        self.addCleanup(server.stop)
        proc = self.start("local base = ...\n"
                          "for i = 1, 5 do flow.spawn(function()\n"
                          "  local ok, e = pcall(http.get, base .. '/slow/20') print(ok, e.kind) end)\n"
                          "end\nflow.sleep(0.2) print('ready') io.stdout:flush()\n",
                          server.url)
        deadline = time.monotonic() + 10
        while server.counts.get("slow", 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc, out, err = self.finish(proc)
        self.assertEqual(rc, 130, err)
        self.assertLess(time.monotonic() - t0, 10)  # not the 20 s answers
        self.assertEqual(out, "false\tcanceled\n" * 5)
        self.assertEqual(server.counts.get("slow"), 5)


if __name__ == "__main__":
    main()
