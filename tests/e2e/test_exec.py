"""test_exec.py: flow.exec and flow.sh: results, failures, streaming to the
log as output arrives, bounded capture, timeouts and cancellation that stop
the child's whole process group."""
import os
import re
import signal
import subprocess
import time
import unittest
import uuid

from harness import ENGINE, main, run_flow, write_flow


def alive(marker):
    """Processes whose command line holds marker."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Exec(unittest.TestCase):
    def flow(self, code, rc=0):
        r = run_flow(code)
        self.assertEqual(r.rc, rc, r)
        return r

    def test_results(self):
        r = self.flow("local r = flow.exec{'echo', 'hello', 'world'}\n"
                      "print(r.code, r.signal, r.stdout == 'hello world\\n', r.stderr == '')\n"
                      "r = flow.sh('echo out; echo err >&2; exit 3', {check = false})\n"
                      "print(r.code, r.stdout == 'out\\n', r.stderr == 'err\\n')\n"
                      "print(flow.exec{'cat', stdin = 'fed\\n'}.stdout == 'fed\\n')\n"
                      "print(flow.exec{'sh', '-c', 'echo $A-$HOME', env = {A = 'x', HOME = false}}.stdout)\n"
                      "print(flow.sh('pwd', {cwd = '/'}).stdout)")
        self.assertEqual(r.stdout, "0\tnil\ttrue\ttrue\n3\ttrue\ttrue\ntrue\nx-\n\n/\n\n")

    def test_failure_raises_kind_exec(self):
        r = self.flow("local ok, e = pcall(flow.sh, 'echo detail >&2; exit 2')\n"
                      "print(e.kind, e.code, e.stderr)\nprint(tostring(e))\n"
                      "ok, e = pcall(flow.exec, {'no-such-command-here'})\nprint(e.kind)\nprint(tostring(e))\n"
                      "ok, e = pcall(flow.sh, 'kill -9 $$')\nprint(e.kind, e.signal)")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "exec\t2\tdetail")
        self.assertRegex(lines[2], r"\.lua:1: /bin/sh -c echo detail >&2; exit 2 exited with code 2: detail$")
        self.assertEqual(lines[3], "exec")
        self.assertRegex(lines[4], r"\.lua:4: flow.exec: cannot run no-such-command-here: no such file "
                                   r"or directory \(is it installed and on PATH\?\)")
        self.assertEqual(lines[5], "exec\t9")

    def test_output_streams_to_the_log_as_it_arrives(self):
        r = self.flow("flow.sh('echo first; sleep 0.4; echo second >&2', {name = 'dbt'})")
        stamps = re.findall(r"T\d\d:\d\d:(\d\d\.\d{3})Z (INFO|WARN) +\[dbt\] (first|second)", r.stderr)
        self.assertEqual([s[1:] for s in stamps], [("INFO", "first"), ("WARN", "second")], r.stderr)
        gap = (float(stamps[1][0]) - float(stamps[0][0])) % 60
        self.assertGreaterEqual(gap, 0.3, "each line is logged when it is printed")

    def test_capture_keeps_the_tail_within_the_bound(self):
        r = self.flow("local r = flow.sh('seq 1 2000', {max_output = 20})\nio.write(r.stdout)", rc=0)
        self.assertTrue(r.stdout.startswith("[... "), r.stdout[:80])
        self.assertTrue(r.stdout.endswith("1998\n1999\n2000\n"))
        self.assertLessEqual(len(r.stdout.split("\n", 1)[1]), 20)

    def test_timeout_and_cancel_stop_the_process_group(self):
        marker = uuid.uuid4().hex
        r = self.flow("local t0 = flow.now()\n"
                      "local ok, e = pcall(flow.sh, 'sleep 30 # %s-a & sleep 30 # %s-b; wait', {timeout = 0.3})\n"
                      "print(e.kind, flow.now() - t0 < 2)\n"
                      "local h = flow.spawn(flow.sh, 'sleep 30 # %s-c')\nflow.sleep(0.2)\nh:cancel()\n"
                      "print(pcall(h.wait, h))" % (marker, marker, marker))
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "timeout\ttrue")
        self.assertTrue(lines[1].startswith("false"), lines)
        deadline = time.monotonic() + 5
        while alive(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(alive(marker), [], "children of the shell were stopped too")

    def test_ctrl_c_stops_children(self):
        marker = uuid.uuid4().hex
        path = write_flow("flow.spawn(flow.sh, 'sleep 30 # %s')\nflow.sleep(0.3)\n"
                          "print('ready') io.stdout:flush()\nflow.sleep(30)" % marker)
        self.addCleanup(os.unlink, path)
        proc = subprocess.Popen([ENGINE, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(proc.stdout.readline(), "ready\n")
        self.assertEqual(len(alive(marker)), 2)  # the shell and its supervisor
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 130)
        self.assertEqual(alive(marker), [])

    def test_bad_arguments(self):
        for code, text in [("flow.exec('ls')", "expected {\"command\""),
                           ("flow.exec{}", "with the command first"),
                           ("flow.exec{'ls', 5}", "argument 2 must be a string"),
                           ("flow.exec{'ls', timout = 1}", "unknown option 'timout'"),
                           ("flow.sh(5)", "expected a shell script string")]:
            r = run_flow(code)
            self.assertEqual(r.rc, 1, code)
            self.assertIn(text, r.stderr.splitlines()[0], code)


if __name__ == "__main__":
    main()
