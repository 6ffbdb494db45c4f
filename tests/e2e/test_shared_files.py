"""test_shared_files.py: the files the engine shares a machine with other
local users for (played, as root, by uid 65534 "nobody" owning what they
planted): the run lock refuses a lock directory another user made or can
write and a lock file that is a symlink, and without a runtime directory
goes to the state directory before the shared temporary one;
--summary-json and --metrics never write through another user's symlink in
a shared directory nor through a temporary file someone planted, and never
wait for a FIFO's reader; reading the previous metrics back and
CENSUS_API_KEY_FILE never block on a FIFO or /dev/stdout. No network but
127.0.0.1."""
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import ENGINE, Result, check_no_secrets, free_port, keep_output, main, write_flow, wait_until

NOBODY = 65534
# Nowhere to keep a lock but the temporary directory.
NO_DIRS = {"XDG_RUNTIME_DIR": None, "HOME": None, "XDG_STATE_HOME": None, "ENGINE_STATE_DIR": None}
STEP = 'flow.step("x", function() end)'
# Waits until its argument names a file: holds the run lock meanwhile.
WAIT_FLOW = "local go = ...\nwhile not io.open(go) do flow.sleep(0.05) end\n"


def environment(env):
    full = dict(os.environ)
    full.update(env or {})
    return {k: v for k, v in full.items() if v is not None}  # None: unset


def run_bounded(args, env=None, timeout=20):
    """Runs the engine; a run that outlives timeout is killed and fails the
    test (the old engine blocked forever on FIFOs)."""
    start = time.monotonic()
    proc = subprocess.Popen([ENGINE] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=environment(env), text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError("the engine still ran after %d s (blocked):\n%s%s" % (timeout, out, err))
    keep_output(out + err)
    check_no_secrets(out + err)
    return Result(proc, out, err, time.monotonic() - start)


def lock_name(flow, args=()):
    """The lock file's name: FNV-1a of the flow's path and arguments (run.lua)."""
    h = 0xcbf29ce484222325
    for b in (os.path.realpath(flow) + "\0" + "\0".join(args)).encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x.lock" % h



class Case(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.victim = os.path.join(self.dir, "victim")
        with open(self.victim, "w") as f:
            f.write("precious\n")

    def mkdir(self, *parts, mode=0o700, owner=None):
        path = os.path.join(*parts)
        os.mkdir(path)
        os.chmod(path, mode)  # past the umask
        if owner is not None:
            os.chown(path, owner, owner)
        return path

    def assert_victim_untouched(self):
        with open(self.victim) as f:
            self.assertEqual(f.read(), "precious\n", "the victim file was overwritten")

    def assert_one_line(self, r, line):
        self.assertEqual(r.stderr, line + "\n", r)

    def need_root(self):
        if os.geteuid() != 0:
            self.skipTest("plays another user with chown: needs root")


class RunLock(Case):
    def setUp(self):
        super().setUp()
        self.flow = write_flow(STEP, self.dir)

    def test_a_temp_lock_directory_another_user_made_is_refused(self):
        self.need_root()
        for mode in [0o777, 0o755]:
            with self.subTest(mode=oct(mode)):
                tmp = self.mkdir(tempfile.mkdtemp(dir=self.dir), "tmp", mode=0o1777)
                top = self.mkdir(tmp, "engine-%d" % os.getuid(), mode=mode, owner=NOBODY)
                locks = self.mkdir(top, "locks", mode=mode, owner=NOBODY)
                link = os.path.join(locks, lock_name(self.flow))
                os.symlink(self.victim, link)
                os.lchown(link, NOBODY, NOBODY)
                r = run_bounded(["--no-state", self.flow], env=dict(NO_DIRS, TMPDIR=tmp))
                self.assertEqual(r.rc, 1, r)
                self.assert_one_line(r, "engine: cannot take the run lock: %s is owned by uid %d, not you "
                                        "(uid %d): remove it, or set XDG_RUNTIME_DIR" % (top, NOBODY, os.getuid()))
                self.assert_victim_untouched()
                self.assertTrue(os.path.islink(link))

    def test_a_temp_lock_directory_is_made_private(self):
        tmp = self.mkdir(self.dir, "tmp", mode=0o1777)
        r = run_bounded(["--no-state", self.flow], env=dict(NO_DIRS, TMPDIR=tmp))
        self.assertEqual(r.rc, 0, r)
        top = os.path.join(tmp, "engine-%d" % os.getuid())
        for d in [top, os.path.join(top, "locks")]:
            st = os.lstat(d)
            self.assertEqual((stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid),
                             (True, 0o700, os.geteuid()), d)
        self.assertTrue(os.path.isfile(os.path.join(top, "locks", lock_name(self.flow))))

    def test_a_lock_directory_others_can_write_is_refused(self):
        state = self.mkdir(self.dir, "state")
        locks = self.mkdir(state, "locks", mode=0o777)
        for args in [["--no-state"], []]:
            with self.subTest(args=args):
                r = run_bounded(args + [self.flow], env=dict(NO_DIRS, ENGINE_STATE_DIR=state))
                self.assertEqual(r.rc, 1, r)
                self.assert_one_line(r, "engine: cannot take the run lock: %s is writable by other users "
                                        "(mode 777): chmod go-w it" % locks)
        os.rmdir(locks)
        os.symlink(self.mkdir(self.dir, "elsewhere"), locks)
        r = run_bounded(["--no-state", self.flow], env=dict(NO_DIRS, ENGINE_STATE_DIR=state))
        self.assertEqual(r.rc, 1, r)
        self.assert_one_line(r, "engine: cannot take the run lock: %s is a symlink, not a directory: "
                                "remove it" % locks)

    def test_a_lock_file_that_is_a_symlink_is_refused(self):
        runtime = self.mkdir(self.dir, "runtime")
        locks = self.mkdir(self.mkdir(runtime, "engine"), "locks")
        link = os.path.join(locks, lock_name(self.flow))
        os.symlink(self.victim, link)
        r = run_bounded(["--no-state", self.flow], env=dict(NO_DIRS, XDG_RUNTIME_DIR=runtime))
        self.assertEqual(r.rc, 1, r)
        self.assert_one_line(r, "engine: cannot take the run lock: %s is a symlink, not a regular file: "
                                "remove it" % link)
        self.assert_victim_untouched()

    def hold_the_lock(self, env):
        """Starts a run that holds its lock until released; returns the
        release function and the arguments of the same run."""
        flow = write_flow(WAIT_FLOW, self.dir)
        go = os.path.join(self.dir, "go")
        args = ["--no-state", flow, go]
        proc = subprocess.Popen([ENGINE] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=environment(env), text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())

        def release():
            open(go, "w").close()
            out, err = proc.communicate(timeout=30)
            keep_output(out + err)
            self.assertEqual(proc.returncode, 0, err)
        return proc, release, args, lock_name(flow, [go])

    def test_no_state_lock_in_the_runtime_directory_still_stops_an_overlapping_run(self):
        runtime = self.mkdir(self.dir, "runtime")
        env = dict(NO_DIRS, XDG_RUNTIME_DIR=runtime)
        proc, release, args, name = self.hold_the_lock(env)
        lock = os.path.join(runtime, "engine", "locks", name)
        wait_until(lambda: os.path.exists(lock) and os.path.getsize(lock) > 0, what="the lock")
        r = run_bounded(args, env=env)
        self.assertEqual(r.rc, 75, r)
        self.assertRegex(r.stderr, r"^engine: .* is already running with these arguments \(pid %d, "
                                   r"started \d{4}-[^\n]*\n$" % proc.pid)
        release()
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(lock)).st_mode), 0o700)
        self.assertEqual(run_bounded(args, env=env).rc, 0)

    def test_no_state_lock_goes_to_the_state_directory_before_the_temp_one(self):
        state = os.path.join(self.dir, "state")  # made by the engine
        tmp = self.mkdir(self.dir, "tmp", mode=0o1777)
        env = dict(NO_DIRS, ENGINE_STATE_DIR=state, TMPDIR=tmp)
        proc, release, args, name = self.hold_the_lock(env)
        lock = os.path.join(state, "locks", name)
        wait_until(lambda: os.path.exists(lock) and os.path.getsize(lock) > 0, what="the lock in " + state)
        r = run_bounded(args, env=env)
        self.assertEqual(r.rc, 75, r)
        release()
        self.assertEqual(os.listdir(tmp), [])
        self.assertEqual(os.listdir(state), ["locks"], "only the lock: no journal under --no-state")


class SharedDirectories(Case):
    def shared(self, mode=0o1777):
        return self.mkdir(tempfile.mkdtemp(dir=self.dir), "shared", mode=mode)

    def plant(self, directory, name, owner=NOBODY):
        link = os.path.join(directory, name)
        os.symlink(self.victim, link)
        os.lchown(link, owner, owner)
        return link

    def test_another_users_symlink_in_a_shared_directory_is_not_written_through(self):
        self.need_root()
        for mode in [0o1777, 0o775, 0o1770]:
            for flag, what in [("--summary-json", "summary"), ("--metrics", "metrics")]:
                with self.subTest(mode=oct(mode), flag=flag):
                    link = self.plant(self.shared(mode), "out")
                    r = run_bounded(["-q", "--no-state", flag, link, "-e", ""])
                    self.assertEqual(r.rc, 1, r)
                    self.assert_one_line(r, "engine: cannot write the %s: %s is a symlink owned by uid %d in a "
                                            "directory other users can write: remove it, or use a path in a "
                                            "directory of your own" % (what, link, NOBODY))
                    self.assert_victim_untouched()
                    self.assertTrue(os.path.islink(link))

    def test_own_symlinks_and_symlinks_in_private_directories_are_written_through(self):
        self.need_root()
        for directory, owner in [(self.shared(), os.geteuid()), (self.shared(0o755), NOBODY)]:
            with self.subTest(directory=directory, owner=owner):
                link = self.plant(directory, "summary.json", owner)
                r = run_bounded(["-q", "--no-state", "--summary-json", link, "-e", ""])
                self.assertEqual(r.rc, 0, r)
                with open(self.victim) as f:
                    self.assertEqual(json.load(f)["status"], "ok")
                self.assertTrue(os.path.islink(link))

    def test_a_planted_temporary_file_is_never_opened(self):
        shared = self.shared()
        metrics, summary = os.path.join(shared, "m.prom"), os.path.join(shared, "s.json")
        # sh waits for the go-ahead, so the links carry the engine's pid
        proc = subprocess.Popen(["sh", "-c", 'umask 027; read go; exec "$@"', "sh", ENGINE, "-q", "--no-state",
                                 "--metrics", metrics, "--summary-json", summary, "-e", ""],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        planted = [self.plant(shared, "m.prom.tmp.%d" % proc.pid), self.plant(shared, "s.json.tmp.%d" % proc.pid)]
        out, err = proc.communicate("go\n", timeout=30)
        keep_output(out + err)
        self.assertEqual(proc.returncode, 0, err)
        self.assert_victim_untouched()
        for path in [metrics, summary]:
            st = os.lstat(path)
            self.assertTrue(stat.S_ISREG(st.st_mode), path + " is not a regular file")
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o640, "0644 minus the umask")
        self.assertTrue(all(os.path.islink(p) for p in planted), "the planted links are left alone")
        self.assertEqual(sorted(os.listdir(shared)), sorted(["m.prom", "s.json"] + [os.path.basename(p)
                                                                                   for p in planted]))

    def test_a_fifo_no_one_reads_is_an_error_not_a_hang(self):
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        for flag, what in [("--summary-json", "summary"), ("--metrics", "metrics")]:
            with self.subTest(flag=flag):
                r = run_bounded(["-q", "--no-state", flag, fifo, "-e", ""], timeout=15)
                self.assertEqual(r.rc, 1, r)
                self.assert_one_line(r, "engine: cannot write the %s: %s is a FIFO no one reads: start its "
                                        "reader first, or use a file" % (what, fifo))
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))


class ReadBack(Case):
    def test_metrics_on_stdout_after_a_failed_run_do_not_hang(self):
        r = run_bounded(["--no-state", "--metrics", "/dev/stdout", "-e", "error('boom')"], timeout=15)
        self.assertEqual(r.rc, 1, r)
        self.assertIn('engine_run_exit_code{flow="(command line)"} 1\n', r.stdout)
        # nothing read back from /dev/stdout: no success yet is 0
        self.assertIn('engine_last_success_timestamp_seconds{flow="(command line)"} 0\n', r.stdout)

    def test_metrics_into_a_fifo_after_a_failed_run_do_not_hang(self):
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        got = []

        def read():
            with open(fifo) as f:
                got.append(f.read())
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            r = run_bounded(["--no-state", "--metrics", fifo, "-e", "error('boom')"], timeout=15)
        finally:
            if reader.is_alive():  # unblock it
                with open(fifo, "w"):
                    pass
            reader.join(10)
        self.assertEqual(r.rc, 1, r)
        self.assertIn('engine_run_exit_code{flow="(command line)"} 1\n', got[0])

    def test_last_success_is_read_back_through_an_own_symlink(self):
        target = os.path.join(self.dir, "real.prom")
        link = os.path.join(self.dir, "m.prom")
        os.symlink(target, link)
        self.assertEqual(run_bounded(["--no-state", "--metrics", link, "-q", "-e", ""]).rc, 0)
        with open(target) as f:
            first = [l for l in f if l.startswith("engine_last_success_timestamp_seconds")]
        self.assertEqual(len(first), 1)
        self.assertEqual(run_bounded(["--no-state", "--metrics", link, "-q", "-e", "error('boom')"]).rc, 1)
        with open(target) as f:
            self.assertIn(first[0], f.read().splitlines(True), "a failed run keeps the last success")
        self.assertTrue(os.path.islink(link))

    def test_a_key_file_that_is_not_a_regular_file_is_refused_at_once(self):
        fifo = os.path.join(self.dir, "key")
        os.mkfifo(fifo, 0o600)
        code = "local ok, e = pcall(census.trigger, {sync_id = 1}) print(e.kind, e.message)"
        env = {"CENSUS_API_KEY": "", "CENSUS_BASE_URL": "http://127.0.0.1:%d" % free_port()}
        for path, kind in [(fifo, "a FIFO"), (self.dir, "a directory")]:
            with self.subTest(kind=kind):
                r = run_bounded(["--no-state", "-e", code], timeout=15,
                                env=dict(env, CENSUS_API_KEY_FILE=path, CENSUS_API_KEY_FILE_ANY_MODE="1"))
                self.assertEqual(r.rc, 0, r)
                self.assertEqual(r.stdout, "invalid_argument\tcensus: CENSUS_API_KEY_FILE: %s is not a regular "
                                           "file (%s): point it at the key file\n" % (path, kind), r)


if __name__ == "__main__":
    main()
