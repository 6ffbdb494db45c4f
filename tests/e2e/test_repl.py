"""test_repl.py: the REPL, through piped input (no prompts, scriptable) and
through a real terminal (a pty) typing keys as a person would."""
import os
import pty
import re
import select
import shutil
import signal
import tempfile
import time
import unittest

from harness import ENGINE, check_no_secrets, keep_output, main, run
from census_sim import DEFAULT_TOKEN, CensusSim

URL = "https://bearer:%s@app.getcensus.com/api/v1/syncs/%%d/trigger" % DEFAULT_TOKEN


class Piped(unittest.TestCase):
    def repl(self, text, args=("-i",), env=None, rc=0):
        r = run(list(args), stdin=text, env=env)
        if rc is not None:
            self.assertEqual(r.rc, rc, r)
        return r

    def test_expressions_print_their_values(self):
        r = self.repl("1 + 1\n'text'\n= 3, nil, true\nx = 5\nx\n{1, 2, a = {b = 'c'}, [10] = 'ten'}\n"
                      "local t = {} t.self = t return t\nnil\n")
        self.assertEqual(r.stdout.splitlines(), [
            "2", '"text"', "3\tnil\ttrue", "5", '{1, 2, [10] = "ten", a = {b = "c"}}',
            "{self = <cycle>}", "nil"])

    def test_modules_and_large_tables_print_readably(self):
        r = self.repl("census\nlocal t = {} for i = 1, 30 do t[i] = i end return t\n"
                      "{a = {b = {c = {d = {e = 1}}}}}\njson.null\n")
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("{cancel = function, get_run = function"), lines[0])
        self.assertIn("... (10 more)", lines[1])
        self.assertEqual(lines[2], "{a = {b = {c = {...}}}}")
        self.assertEqual(lines[3], "json.null")

    def test_continuation_lines(self):
        r = self.repl("function f(a)\n  return a * 2\nend\nf(21)\nfor i = 1, 2 do\nprint(i)\nend\n1 +\n2\n")
        self.assertEqual(r.stdout, "42\n1\n2\n3\n")

    def test_errors_keep_the_session(self):
        r = self.repl("foo bar\nerror('boom')\nerror(flow.error('custom', 'went wrong'))\nprint('still here')\n",
                      rc=1)
        self.assertEqual(r.stdout, "still here\n")
        self.assertIn("stdin:1: syntax error near 'bar'", r.stderr)
        self.assertIn("stdin:1: boom\nstack traceback:", r.stderr)
        self.assertIn("stdin:1: went wrong", r.stderr)
        self.assertNotIn("repl.lua", r.stderr)

    def test_unfinished_statement_at_end_of_input(self):
        r = self.repl("print(1)\nfor i = 1, 2 do\n", rc=1)
        self.assertIn("unexpected end of input", r.stderr)

    def test_waiting_calls_block_the_line(self):
        r = self.repl("t0 = flow.now()\nflow.sleep(0.2)\nprint(flow.now() - t0 >= 0.19)\n")
        self.assertEqual(r.stdout, "true\n")

    def test_census_sync_at_the_prompt(self):
        sim = CensusSim().start()
        self.addCleanup(sim.stop)
        sim.syncs[3] = {"steps": ["working", {"status": "completed", "records_updated": 7}]}
        r = self.repl("r = census.sync(%r, {poll = 0.05})\nr.records_updated\n" % (URL % 3),
                      env={"CENSUS_BASE_URL": sim.url, "CENSUS_MIN_POLL": "0.05"})
        self.assertEqual(r.stdout, "7\n")
        self.assertIn("census: sync 3 run 1001 completed", r.stderr)

    def test_background_tasks_report_and_finish_before_exit(self):
        r = self.repl("h = flow.spawn(function() flow.sleep(0.2) return 'bg', 2 end)\n"
                      "flow.spawn(function() flow.sleep(0.1) error('bad') end)\n"
                      "print('typed on')\n")
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^task \d+ \(running\)$", "an expression prints the handle")
        self.assertEqual(lines[1], "typed on")
        self.assertRegex(lines[2], r'^\[task \d+\] failed: stdin:1: bad$')
        self.assertRegex(lines[3], r'^\[task \d+\] done: "bg"\t2$')

    def test_only_the_users_own_tasks_are_reported(self):
        # a step with a journal commits in a task of the engine's own, and
        # flow.parallel runs its branches in tasks: the user started neither
        state = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state, True)
        r = self.repl("flow.step('a', function() end)\n"
                      "flow.parallel{function() end, function() end}\n"
                      "print('typed on')\n", args=("--state", state, "-i"))
        self.assertNotIn("[task", r.stdout)
        self.assertEqual(r.stdout.splitlines()[-1], "typed on")
        r = self.repl("flow.step('b', function() flow.spawn(function() return 'mine' end) end)\n",
                      args=("--state", state, "-i"))
        self.assertRegex(r.stdout, r'^\[task \d+\] done: "mine"$')

    def test_background_reports_are_one_short_line(self):
        r = self.repl("flow.spawn(function() return string.rep('x', 500) end)\n"
                      "flow.spawn(function() error(string.rep('y', 500) .. '\\nsecond line') end)\n")
        reports = [l for l in r.stdout.splitlines() if l.startswith("[task")]
        self.assertEqual(len(reports), 2)
        for line in reports:
            self.assertLessEqual(len(line), 120)
            self.assertTrue(line.endswith("..."), line)

    def test_os_exit_code(self):
        r = self.repl("print(1)\nos.exit(3)\nprint(2)\n", rc=3)
        self.assertEqual(r.stdout, "1\n")
        r = self.repl("flow.spawn(flow.sleep, 10)\nos.exit(true)\nos.exit(true)\n", rc=0)
        self.assertIn("1 background task(s) still running: os.exit() again cancels them", r.stdout)

    def test_help(self):
        r = self.repl("help()\n:help\nhelp(census.sync)\nhelp('flow')\nhelp(42)\n")
        self.assertEqual(r.stdout.count("modules (help"), 2)
        self.assertIn("census.sync(url | table [, wait options]) -> result", r.stdout)
        self.assertIn("flow.retry(", r.stdout)
        self.assertIn("no help for 42", r.stdout)

    def test_e_and_script_run_first(self):
        path = tempfile.mktemp(suffix=".lua")
        with open(path, "w") as f:
            f.write("y = (x or 0) + 10\n")
        self.addCleanup(os.unlink, path)
        r = self.repl("y\n", args=("-e", "x = 1", "-i", path))
        self.assertEqual(r.stdout, "11\n")

    def test_completion_candidates(self):
        r = self.repl("require('engine.repl').complete('census.tr')\n"
                      "require('engine.repl').complete('fl')\n"
                      "h = flow.spawn(function() end)\nrequire('engine.repl').complete('h:wa')\n")
        self.assertEqual(r.stdout.splitlines()[:2], ['{"census.trigger"}', '{"flow"}'])
        self.assertEqual(r.stdout.splitlines()[-1], '{"h:wait"}')


def render(text):
    """What a terminal would show for text: lines of characters after
    carriage returns, backspaces and the cursor and erase sequences the
    engine and libedit use (CSI n G/C/D/A/F, CSI K, CSI J); other escapes
    are dropped."""
    lines, row, col = [[]], 0, 0
    i = 0
    while i < len(text):
        ch = text[i]
        m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", text[i:])
        if m:
            n = int(m.group(1) or 1) if m.group(1).isdigit() else 1
            cmd, line = m.group(2), lines[row]
            if cmd == "G":
                col = n - 1
            elif cmd == "C":
                col += n
            elif cmd == "D":
                col = max(0, col - n)
            elif cmd == "K":
                del line[col:]
            elif cmd in "AF":
                row = max(0, row - n)
                col = 0 if cmd == "F" else col
            elif cmd == "J":
                del lines[row][col:]
                del lines[row + 1:]
            i += len(m.group(0))
            continue
        if ch == "\x1b":
            i += 2
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append([])
        elif ch == "\b":
            col = max(0, col - 1)
        elif ch >= " ":
            line = lines[row]
            line.extend(" " * (col - len(line) + 1) if col >= len(line) else "")
            line[col] = ch
            col += 1
        i += 1
    return "\n".join("".join(line) for line in lines)


class Terminal(unittest.TestCase):
    """Runs `engine` on a pty and types into it."""

    def setUp(self):
        self.home = tempfile.mkdtemp()
        self.history = os.path.join(self.home, "history")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ.update({"ENGINE_HISTORY": self.history, "TERM": "xterm", "HOME": self.home})
            os.execv(ENGINE, [ENGINE])
        self.out = b""
        self.addCleanup(self.cleanup)
        self.expect("Ctrl-D leaves")
        self.expect("> ")

    def cleanup(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)
        text = self.out.decode(errors="replace")
        keep_output(text)
        check_no_secrets(text)

    def read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.out += os.read(self.fd, 65536)
            except OSError:
                return False
        return bool(ready)

    def screen(self):
        return render(self.out.decode(errors="replace"))

    def expect(self, text, timeout=5):
        """Waits until text appears after what earlier expects consumed."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            at = s.find(text, getattr(self, "mark", 0))
            if at >= 0:
                self.mark = at + len(text)
                return
            if time.monotonic() > deadline:
                self.fail("%r not shown within %s s; screen:\n%s" % (text, timeout, s))
            self.read(0.05)

    def type(self, keys):
        os.write(self.fd, keys.encode())

    def test_expression_multiline_completion_history(self):
        self.type("1 + 1\r")
        self.expect("\n2")
        self.type("function f(a)\r")
        self.expect(">> ")
        self.type("return a * 2\rend\r")
        self.expect("> ")
        self.type("f(21)\r")
        self.expect("42")
        self.expect("> ")
        self.type("census.tr\t")
        self.expect("census.trigger")
        self.type("\r")
        self.expect("function: 0x")
        self.expect("> ")
        self.type("\x1b[A\x1b[A\r")  # Up twice: f(21) again
        self.expect("42")
        self.expect("> ")
        self.type("print('other')\r")
        self.expect("\nother")
        self.expect("> ")
        self.type("\x12f(2")  # Ctrl-R, then part of an earlier line
        self.expect("f(21)")
        self.type("\r")
        self.expect("42")
        self.expect("> ")  # a chunk goes to the history once it ran
        with open(self.history) as f:
            saved = f.read()
        self.assertIn("f(21)", saved)
        self.assertIn("function\\040f(a)\\012return", saved, "a multi-line chunk is one entry")

    def test_ctrl_c_cancels_the_running_line(self):
        self.type("flow.sleep(30)\r")
        time.sleep(0.3)
        t0 = time.monotonic()
        self.type("\x03")
        self.expect("interrupted")
        self.expect("> ")
        self.assertLess(time.monotonic() - t0, 10.0)  # not the 30 s sleep
        self.type("print('alive')\r")
        self.expect("\nalive")
        self.type("dropped text\x03")
        self.expect("> ")
        self.type("print('next')\r")
        self.expect("\nnext")
        self.assertNotIn("dropped text\n", self.screen().replace("\r", ""))

    def test_background_report_while_typing(self):
        self.type("flow.spawn(function() flow.sleep(0.5) return 'finished' end)\r")
        self.expect("task ")
        self.type("print('half")
        self.expect('[task ')
        self.expect('done: "finished"')
        self.expect("> print('half")  # the half-typed line is redrawn below the report
        self.type("')\r")
        self.expect("\nhalf")

    def test_keys_typed_while_a_line_runs_are_kept(self):
        self.type("flow.sleep(0.5)\r")
        time.sleep(0.1)
        self.type("print('typed ahead')\r")
        self.expect("\ntyped ahead")  # the output, not the echo of the line
        self.assertEqual(self.screen().count("print('typed ahead')"), 1, "drawn once")

    def test_ctrl_d_asks_once_when_tasks_run(self):
        self.type("flow.spawn(flow.sleep, 30)\r")
        self.expect("> ")
        self.type("\x04")
        self.expect("1 background task(s) still running")
        self.type("\x04")
        deadline = time.monotonic() + 30
        done, status = os.waitpid(self.pid, os.WNOHANG)
        while not done and time.monotonic() < deadline:
            self.read(0.1)
            done, status = os.waitpid(self.pid, os.WNOHANG)
        self.assertTrue(done, "the REPL left after the second Ctrl-D")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)


if __name__ == "__main__":
    main()
