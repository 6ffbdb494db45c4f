"""test_valgrind.py: no leaks and no memory errors under valgrind after a
normal exit, an error exit, an interrupt and cancelled HTTP transfers."""
import os
import signal
import subprocess
import unittest

from harness import ENGINE, TestServer, main, write_flow

VALGRIND = os.environ.get("VALGRIND", "valgrind")
ARGS = [VALGRIND, "-q", "--leak-check=full", "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99"]

NORMAL = """local base = ...
local r = flow.parallel({
  function() flow.sleep(0.01) return 1 end,
  function() return http.get(base .. '/bytes/100000').status end,
  function() return json.decode(http.post(base .. '/echo', json.encode({a = 1})).body).method end,
}, {limit = 2})
local h = flow.spawn(flow.sleep, 5)
h:cancel()
pcall(h.wait, h)
pcall(flow.timeout, 0.1, http.get, base .. '/slow/3')
pcall(flow.retry, {attempts = 2, delay = 0}, function() error('x') end)
print(r[1], r[2], r[3])
"""


class Valgrind(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = TestServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def run_flow(self, code, interrupt=False):
        path = write_flow(code)
        self.addCleanup(os.unlink, path)
        proc = subprocess.Popen(ARGS + [ENGINE, path, self.server.url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if interrupt:
            self.assertEqual(proc.stdout.readline(), "ready\n")
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
        self.assertNotEqual(proc.returncode, 99, err)
        self.assertNotRegex(err, r"==\d+== (Invalid|Conditional|.*definitely lost|.*indirectly lost)")
        return proc.returncode, out, err

    def test_normal_exit(self):
        rc, out, err = self.run_flow(NORMAL)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "1\t200\tPOST\n")

    def test_error_exit(self):
        rc, _, err = self.run_flow("local base = ...\nflow.spawn(http.get, base .. '/slow/5')\n"
                                   "flow.spawn(flow.sleep, 5)\nflow.sleep(0.1)\nerror('fail')")
        self.assertEqual(rc, 1, err)

    def test_interrupt(self):
        rc, _, err = self.run_flow("local base = ...\nflow.spawn(http.get, base .. '/slow/5')\n"
                                   "flow.spawn(flow.sleep, 30)\nflow.sleep(0.2)\n"
                                   "print('ready') io.stdout:flush()\nflow.sleep(30)", interrupt=True)
        self.assertEqual(rc, 130, err)


if __name__ == "__main__":
    main()
