"""test_fidelity.py: flow code sees stock Lua 5.4. Each probe runs under the
stock interpreter (lua5.4) and under the engine, and what it prints, its
error line and its exit status must be the same; the engine's additions
(nested waits, os.exit ending the run, LUA_INIT and -l) are checked
against the engine alone."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import ENGINE, keep_output, main, run, run_flow, write_flow

LUA = shutil.which("lua5.4")
LUAC = shutil.which("luac5.4")


def stock(path):
    p = subprocess.run([LUA, path], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def first_error_line(stderr, prog):
    for line in stderr.splitlines():
        if line.startswith(prog + ": "):
            return line[len(prog) + 2:]
    return None


@unittest.skipUnless(LUA, "needs lua5.4 (Debian package lua5.4)")
class SameAsStock(unittest.TestCase):
    def same(self, code):
        """Runs code under lua5.4 and the engine; compares stdout, the
        error line and the exit status. Returns the engine's Result."""
        path = write_flow(code)
        try:
            rc, out, err = stock(path)
            r = run([path])
        finally:
            os.unlink(path)
        self.assertEqual(r.stdout, out, "stdout differs from lua5.4:\n%s\nstock stderr:\n%s" % (r, err))
        self.assertEqual(first_error_line(r.stderr, "engine"), first_error_line(err, LUA),
                         "error line differs from lua5.4:\n%s\nstock:\n%s" % (r.stderr, err))
        self.assertEqual(r.rc, rc, r)
        return r

    def test_the_main_chunk_and_tasks_look_like_the_main_thread(self):
        probe = """
            local co, main = coroutine.running()
            print(type(co), main, coroutine.isyieldable(), coroutine.status(co))
            print(pcall(coroutine.yield, 1))
            print(pcall(function() return coroutine.yield() end))
            print(coroutine.isyieldable(co), select(2, pcall(coroutine.close, co)))
            print(coroutine.resume(co))
            local inner = coroutine.create(function()
              local c, m = coroutine.running()
              print(c == inner, m, coroutine.isyieldable(), coroutine.status(co))
              coroutine.yield("y")
            end)
            print(coroutine.resume(inner))
            print(coroutine.status(inner), coroutine.resume(inner))
            print(coroutine.status(inner), coroutine.resume(inner))
        """
        self.same(probe)
        # the same, inside a task the flow spawned
        r = run_flow("local h = flow.spawn(function()\n" + probe + "\nend)\nh:wait()")
        self.assertEqual(r.stdout, self.same(probe).stdout, r)

    def test_resume_and_wrap_behave_as_stock(self):
        self.same("""
            print(debug.getinfo(coroutine.resume, "S").what, debug.getinfo(coroutine.wrap, "S").what)
            print(pcall(coroutine.resume))
            print(pcall(function() return coroutine.resume(42) end))
            print(pcall(coroutine.wrap, "x"))
            local gen = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
            print(gen(1), gen(5), pcall(gen))
            local f = coroutine.wrap(function() error("boom") end)
            print(pcall(f))
            local g = coroutine.wrap(function() error({code = 7}) end)
            local ok, e = pcall(g) print(ok, type(e), e.code)
            -- wrap closes a coroutine that failed: its <close> runs, and
            -- an error while closing propagates
            local closed = false
            local h = coroutine.wrap(function()
              local x <close> = setmetatable({}, {__close = function() closed = true end})
              error("fails")
            end)
            print(pcall(h)) print("closed", closed)
            local k = coroutine.wrap(function()
              local x <close> = setmetatable({}, {__close = function() error("in close", 0) end})
              error("first")
            end)
            print(pcall(k))
            table, string, require, pairs = nil, nil, nil, nil
            local w = coroutine.wrap(function(...) coroutine.yield(...) return "end" end)
            print(w(1, 2, 3)) print(w())
            print(coroutine.resume(coroutine.create(function(...) return select("#", ...) end), nil, nil))
        """)

    def test_close_and_status_behave_as_stock(self):
        self.same("""
            local co = coroutine.create(function()
              local x <close> = setmetatable({}, {__close = function(_, e) print("close", e) end})
              coroutine.yield()
            end)
            coroutine.resume(co)
            print(coroutine.status(co), coroutine.close(co), coroutine.status(co))
            local bad = coroutine.create(function() error("x", 0) end)
            print(coroutine.resume(bad)) print(coroutine.close(bad))
            print(pcall(coroutine.close, coroutine.running()))
        """)

    def test_error_values_print_like_lua(self):
        for value in ["nil", "{}", "setmetatable({}, {__tostring = function() return 1 end})",
                      "setmetatable({}, {__tostring = function() return {} end})",
                      "42", "'plain text'", "setmetatable({}, {__tostring = function() return 'custom' end})"]:
            self.same("error(%s)" % value)
            # the same from a task the flow waits for
            r = run_flow("local h = flow.spawn(function() error(%s) end)\nh:wait()" % value)
            self.assertEqual(r.rc, 1, r)
            self.assertNotIn("PANIC", r.stderr)
        r = run_flow("error(setmetatable({}, {__tostring = function() error('bad tostring') end}))")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("engine: (error object is a table value)", r.stderr)
        # a task nobody waits for fails with such an error: still one clean line
        r = run_flow("flow.spawn(function() error(setmetatable({}, {__tostring = function() return false end})) end)")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("nobody waited for it: (error object is a table value)", r.stderr)

    def test_the_engine_does_not_depend_on_the_flows_globals(self):
        r = self.same("""
            require, table, string, pairs, ipairs, tostring, type, setmetatable = nil
            coroutine.wrap(function() print("still fine") end)()
        """)
        self.assertEqual(r.rc, 0, r)
        # the official test suite clears require; flows that do keep working
        r = run_flow("""
            local parallel, sleep, step = flow.parallel, flow.sleep, flow.step
            require, table, string, pairs, ipairs, tostring, type, error, pcall, select = nil
            step("s", function() parallel({function() sleep(0.01) return 1 end, function() return 2 end}) end)
            print("done")
        """)
        self.assertEqual((r.rc, r.stdout), (0, "done\n"), r)

    def test_os_exit_codes(self):
        for args, code in [("3", 3), ("true", 0), ("false", 1), ("", 0), ("0, true", 0)]:
            self.same("print('before') os.exit(%s) print('after')" % args)
        self.same("""
            local x <close> = setmetatable({}, {__close = function() print("closed main") end})
            os.exit(5, true)
        """)
        self.same("""
            local x <close> = setmetatable({}, {__close = function() print("not closed") end})
            os.exit(6)
        """)
        self.same("print(pcall(os.exit, 'x'))")


@unittest.skipUnless(LUA, "needs lua5.4 (Debian package lua5.4)")
class CommandLine(unittest.TestCase):
    def test_lua_init_runs_first_and_dash_upper_e_ignores_it(self):
        env = {"LUA_INIT": "print('init') x = 1", "LUA_INIT_5_4": None}
        r = run(["-e", "print(x)"], env=env)
        self.assertEqual(r.stdout, "init\n1\n", r)
        r = run(["-E", "-e", "print(x)"], env=env)
        self.assertEqual(r.stdout, "nil\n", r)
        r = run(["-e", "print(x)"], env={"LUA_INIT": "x = 1", "LUA_INIT_5_4": "x = 2"})
        self.assertEqual(r.stdout, "2\n", r)
        with tempfile.TemporaryDirectory() as d:
            init = os.path.join(d, "init.lua")
            with open(init, "w") as f:
                f.write("y = 'from file'\n")
            r = run(["-e", "print(y)"], env={"LUA_INIT": "@" + init})
            self.assertEqual(r.stdout, "from file\n", r)
        r = run(["-e", "print(1)"], env={"LUA_INIT": "error('init failed', 0)"})
        self.assertEqual(r.rc, 1, r)
        self.assertIn("engine: init failed", r.stderr)

    def test_dash_upper_e_ignores_lua_path(self):
        env = {"LUA_PATH": "/nowhere/?.lua", "LUA_INIT": None}
        r = run(["-e", "print(package.path:find('/nowhere/', 1, true) ~= nil)"], env=env)
        self.assertEqual(r.stdout, "true\n", r)
        r = run(["-E", "-e", "print(package.path:find('/nowhere/', 1, true) ~= nil)"], env=env)
        self.assertEqual(r.stdout, "false\n", r)

    def test_dash_l_requires_modules_in_order(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "mymod.lua"), "w") as f:
                f.write("print('loading mymod') return {answer = 42}\n")
            env = {"LUA_PATH": os.path.join(d, "?.lua"), "LUA_INIT": None}
            r = run(["-e", "print('first')", "-l", "mymod", "-lg=mymod", "-e", "print(mymod.answer, g == mymod)"],
                    env=env)
            self.assertEqual((r.rc, r.stdout), (0, "first\nloading mymod\n42\ttrue\n"), r)
            r = run(["-l", "nosuchmod", "-e", "print(1)"], env=env)
            self.assertEqual(r.rc, 1, r)
            self.assertIn("module 'nosuchmod' not found", r.stderr)
            r = run(["-l"])
            self.assertEqual(r.rc, 2, r)

    def test_attached_e_and_warnings(self):
        r = run(["-eprint('attached')"])
        self.assertEqual(r.stdout, "attached\n", r)
        r = run(["-W", "-e", "warn('hello')"])
        self.assertIn("Lua warning: hello", r.stderr)
        r = run(["-e", "warn('hello')"])
        self.assertNotIn("hello", r.stderr)

    @unittest.skipUnless(LUAC, "needs luac5.4")
    def test_precompiled_flows_run(self):
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "f.lua"), os.path.join(d, "f.luac")
            with open(src, "w") as f:
                f.write("flow.sleep(0.01) print('compiled', ...)\n")
            subprocess.run([LUAC, "-o", out, src], check=True)
            r = run([out, "a", "b"])
            self.assertEqual((r.rc, r.stdout), (0, "compiled\ta\tb\n"), r)

    def test_verbose_stays_verbose(self):
        r = run(["-v", "-e", "log.debug('dbg line')"])
        self.assertIn("dbg line", r.stderr)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class OsExit(unittest.TestCase):
    def test_os_exit_cancels_tasks_stops_children_and_writes_the_summary(self):
        with tempfile.TemporaryDirectory() as d:
            pidfile, summary = os.path.join(d, "pid"), os.path.join(d, "summary.json")
            code = """
                local closed = {}
                local child = flow.spawn(function()
                  local c <close> = setmetatable({}, {__close = function() print("child cleanup") end})
                  flow.step("long", flow.sh, "sleep 60 & echo $! > %s; wait")
                end)
                flow.step("quick", function() end)
                while not io.open(%r) do flow.sleep(0.01) end
                flow.sleep(0.05)
                local c <close> = setmetatable({}, {__close = function() print("main closed") end})
                os.exit(3, true)
            """ % (pidfile, pidfile)
            r = run(["--summary-json", summary, write_flow(code, d)])
            self.assertEqual(r.rc, 3, r)
            self.assertIn("main closed", r.stdout)
            self.assertIn("child cleanup", r.stdout)
            with open(pidfile) as f:
                pid = int(f.read())
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(alive(pid), "the child of flow.sh outlived os.exit")
            with open(summary) as f:
                doc = json.load(f)
            self.assertEqual(doc["exit_code"], 3)
            by_name = {e["name"]: e for e in doc["entries"]}
            self.assertEqual(by_name["quick"]["status"], "ok")
            self.assertEqual(by_name["long"]["status"], "canceled")
            self.assertIn("summary:", r.stderr)

    def test_os_exit_without_close_keeps_close_variables_and_from_a_task(self):
        r = run_flow("""
            local h = flow.spawn(function()
              local c <close> = setmetatable({}, {__close = function() print("closed") end})
              flow.sleep(0.01)
              os.exit(4)
            end)
            flow.sleep(10)
        """)
        self.assertEqual((r.rc, r.stdout), (4, ""), r)

    def test_os_exit_inside_pcall_and_a_coroutine_is_not_caught(self):
        r = run_flow("""
            print(pcall(function()
              coroutine.wrap(function() os.exit(7) end)()
            end))
            print("not reached")
        """)
        self.assertEqual((r.rc, r.stdout), (7, ""), r)

    def test_os_exit_where_the_task_cannot_stop_at_once(self):
        r = run_flow("""
            table.sort({3, 2, 1}, function(a, b) os.exit(9) end)
            print("not reached")
        """)
        self.assertEqual((r.rc, r.stdout), (9, ""), r)


if __name__ == "__main__":
    main()
