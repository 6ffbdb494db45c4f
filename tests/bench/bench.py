#!/usr/bin/env python3
"""bench.py: N Census syncs in parallel through the real engine and through
the floor (bench_floor.c: libcurl multi + libuv, no Lua), both against
bench_sim.c on 127.0.0.1; one row per N with wall time, CPU, peak RSS,
requests, TCP connections, CPU us per request, and each figure's ratio
engine / floor. Also: instructions per request (callgrind, at a smaller
N), the RSS a waiting sync costs, the worst poll lateness, start-up, and
the history over a journal of 100,000 runs (engine runs, engine ui).
Not a test (tests/bench/README.md has the latest table):
  ./dev bench            # N = 1, 100, 1000, 10000
  python3 tests/bench/bench.py --sizes 1,100 --callgrind 100"""
import argparse
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
TOKEN = "secret-token:bench-token"
JITTER = 0.1  # the engine's poll jitter: a poll is due within poll * (1 + JITTER)

FLOW = """
local n, poll = tonumber(arg[1]), tonumber(arg[2])
local fns = {}
for i = 1, n do fns[i] = function() return census.sync({sync_id = i}, {poll = poll}).status end end
local res = flow.parallel(fns)
local ok = 0
for i = 1, n do if res[i] == "completed" then ok = ok + 1 end end
print("completed", ok)
"""


class Sim:
    def __init__(self, poll):
        self.proc = subprocess.Popen([os.path.join(BUILD, "bench_sim"), str(poll), str(JITTER)],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[-1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stats(self):
        with urllib.request.urlopen(self.url + "/_stats") as r:
            return json.load(r)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def peak_rss_of(cmd, env):
    """Runs cmd alone and returns its peak RSS in KiB (see bench_rss.c)."""
    r = subprocess.run([os.path.join(BUILD, "bench_rss")] + cmd, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    return int(re.search(r"peak_rss_kb (\d+)", r.stderr).group(1))


def engine_env(sim, state):
    return dict(os.environ, CENSUS_BASE_URL=sim.url, CENSUS_API_KEY=TOKEN, CENSUS_MIN_POLL="0.01",
                ENGINE_STATE_DIR=state)


ENGINE_ARGS = []  # --engine-args
PIN = []  # taskset words for the engine (the stores comparison)


def command(which, sim, n, poll, flow):
    if which == "engine":
        return PIN + [os.path.join(BUILD, "engine"), "-q"] + ENGINE_ARGS + [flow, str(n), str(poll)]
    return [os.path.join(BUILD, "bench_floor"), sim.url, str(n), str(poll), str(JITTER)]


def one_run(which, n, poll, flow, state, rss=True):
    """Runs the engine or the floor for n syncs against a fresh simulator."""
    sim = Sim(poll)
    try:
        env = engine_env(sim, state)
        cmd = command(which, sim, n, poll, flow)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        stats = sim.stats()
        if proc.returncode != 0 or b"completed %d" % n not in out.replace(b"\t", b" "):
            sys.exit("bench: %s failed for N = %d:\n%s%s" % (which, n, out.decode(), err.decode()[-3000:]))
    finally:
        sim.stop()
    result = {"wall": wall, "cpu": cpu, "requests": stats["requests"], "connections": stats["connections"],
              "sim_cpu": stats["cpu_seconds"], "late_ms": stats["late_ms_max"]}
    if rss:  # again, alone, for its peak RSS (RUSAGE_CHILDREN's is the largest child's)
        sim = Sim(poll)
        try:
            result["rss_kb"] = peak_rss_of(command(which, sim, n, poll, flow), engine_env(sim, state))
        finally:
            sim.stop()
    return result


def instructions(which, n, poll, flow, state):
    """Instructions (callgrind's Ir) for n syncs, per request."""
    sim = Sim(poll)
    out = tempfile.mktemp(prefix="callgrind-")
    try:
        subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] +
                       command(which, sim, n, poll, flow), env=engine_env(sim, state), capture_output=True,
                       check=True)
        requests = sim.stats()["requests"]
        with open(out) as f:
            total = int(re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M).group(1))
    finally:
        sim.stop()
        if os.path.exists(out):
            os.unlink(out)
    return total, requests


def waiting_rss(n, flow, state):
    """KiB of RSS one waiting sync costs: n syncs triggered and polled once,
    then sleeping (poll 60 s), against one such sync."""
    def rss_waiting(count):
        sim = Sim(60)
        try:
            env = engine_env(sim, state)
            proc = subprocess.Popen([os.path.join(BUILD, "engine"), "-q", flow, str(count), "60"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while sim.stats()["polls"] < count and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1)  # the last answers read, every sync asleep
            with open("/proc/%d/status" % proc.pid) as f:
                rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
            proc.kill()
            proc.wait()
            return rss
        finally:
            sim.stop()
    base = rss_waiting(1)
    return (rss_waiting(n) - base) / (n - 1), base


def startup(runs):
    """Median wall time of `engine -e ''` (with and without the journal) and
    of `lua5.4 -e ''`."""
    def median(cmd):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    lua = shutil.which("lua5.4")
    engine = os.path.join(BUILD, "engine")
    return (median([engine, "-e", ""]), median([engine, "--no-state", "-e", ""]),
            lua and median([lua, "-e", ""]))


def stores(n, poll, flow):
    """The engine for n syncs with the journal in a directory (SQLite) and
    on a throwaway PostgreSQL server on loopback (tests/pg_server.py). With
    two cores or more the engine runs on CPU 0 and the simulator and the
    server elsewhere, so the loop's stalls are the engine's own, not the
    scheduler's (the longest hold is wall time)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from pg_server import HAVE_POSTGRES, PgServer
    if not HAVE_POSTGRES:
        print("stores: PostgreSQL is not installed (./dev deps installs it)")
        return
    cpus = os.sched_getaffinity(0)
    if len(cpus) >= 2 and shutil.which("taskset"):
        first = min(cpus)
        os.sched_setaffinity(0, cpus - {first})  # what this starts (the server, the simulator)
        PIN[:] = ["taskset", "-c", str(first)]
    try:
        pg = PgServer().start()
    except BaseException:
        os.sched_setaffinity(0, cpus)
        PIN[:] = []
        raise
    try:
        print("| N | poll | store | wall s | CPU s | CPU us/request | peak RSS MB | store's longest hold ms "
              "| longest loop turn ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        rows = {}
        for name in ("sqlite", "postgres"):
            state = tempfile.mkdtemp(prefix="bench-state-")
            where = state if name == "sqlite" else pg.url(pg.new_database())
            summary = os.path.join(state, "summary.json")
            ENGINE_ARGS[:] = ["--state", where, "--summary-json", summary]
            try:
                r = rows[name] = one_run("engine", n, poll, flow, state)
                with open(summary) as f:  # (the second run's: the one alone, for its RSS)
                    loop = json.load(f)["loop"]
            finally:
                ENGINE_ARGS[:] = []
                shutil.rmtree(state, True)
            print("| %d | %g | %s | %.2f | %.2f | %.0f | %.1f | %.2f | %.1f |" % (
                n, poll, name, r["wall"], r["cpu"], r["cpu"] / r["requests"] * 1e6, r["rss_kb"] / 1024,
                loop["longest_store_hold"] * 1000, loop["longest_turn"] * 1000))
            sys.stdout.flush()
        q, l = rows["postgres"], rows["sqlite"]
        print("| %d | %g | **postgres / sqlite** | %.2f× | %.2f× | %.2f× | %.2f× | | |" % (
            n, poll, q["wall"] / l["wall"], q["cpu"] / l["cpu"], q["cpu"] / l["cpu"], q["rss_kb"] / l["rss_kb"]))
        print("(the engine's own CPU; the PostgreSQL server's is not counted%s)"
              % ("; the engine on CPU %s, the simulator and the server on the others" % PIN[-1] if PIN else ""))
    finally:
        pg.cleanup()
        os.sched_setaffinity(0, cpus)
        PIN[:] = []


HISTORY_FLOWS = ["/srv/flows/nightly_%s.lua" % name for name in
                 ("census", "crm", "billing", "marketing", "finance", "support", "warehouse")]
HISTORY_HOSTS = ["etl-1", "etl-2", "etl-3"]
COUNTS = '{"records_processed": %d, "records_updated": %d, "records_failed": %d, "records_invalid": 0}'


def big_journal(state, n, big_jobs):
    """A journal in state (DIR/journal.db) with n runs, newest last, one a
    minute, each with one Census sync (one run in ten failed), the newest
    with big_jobs syncs and their status changes (queued, working,
    completed). The schema is the engine's own: it records one run first,
    which is then deleted. Returns the newest run's id."""
    subprocess.run([os.path.join(BUILD, "engine"), "-q", "--state", state, "-e", 'flow.step("x", function() end)'],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = sqlite3.connect(os.path.join(state, "journal.db"))
    try:
        with db:  # one transaction
            for table in ("logs", "job_statuses", "jobs", "steps", "runs"):
                db.execute("DELETE FROM " + table)
            first = time.time() - 600 - (n - 1) * 60  # the newest ends before now
            runs, jobs = [], []
            for i in range(1, n):
                t = first + (i - 1) * 60
                ok = i % 10 != 0
                runs.append((i, HISTORY_FLOWS[i % len(HISTORY_FLOWS)], "[]", 1000 + i % 30000,
                             HISTORY_HOSTS[i % len(HISTORY_HOSTS)], t, t + 30, "ok" if ok else "failed",
                             0 if ok else 1))
                sync = 100 + i % 50
                jobs.append((i, "census", str(sync), 1, "census run %d" % (i * 7), "completed" if ok else "failed",
                             1, int(ok), COUNTS % (1000, 900, 0 if ok else 100), t + 1, t + 29,
                             "https://app.getcensus.com/syncs/%d/sync-history" % sync))
            big = n
            t0 = first + (n - 1) * 60
            runs.append((big, HISTORY_FLOWS[0], "[]", 31000, HISTORY_HOSTS[0], t0, t0 + 200, "ok", 0))
            for k in range(big_jobs):
                sync = 1000 + k
                jobs.append((big, "census", str(sync), 1, "census run %d" % (10 ** 7 + k), "completed", 1, 1,
                             COUNTS % (k, k // 2, 0), t0 + k * 0.01, t0 + 60 + k * 0.012,
                             "https://app.getcensus.com/syncs/%d/sync-history" % sync))
            db.executemany("INSERT INTO runs (id, flow, args, pid, host, started_at, ended_at, outcome, exit_code) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", runs)
            db.executemany("INSERT INTO jobs (run, provider, resource, occurrence, remote_run, status, final, ok, "
                           "counts, started_at, ended_at, link) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", jobs)
            statuses = []
            for job, start, end in db.execute("SELECT id, started_at, ended_at FROM jobs WHERE run = ?", (big,)):
                statuses += [(job, start + 0.5, "queued"), (job, start + 20, "working"), (job, end, "completed")]
            db.executemany("INSERT INTO job_statuses (job, at, status) VALUES (?, ?, ?)", statuses)
    finally:
        db.close()
    return big


class Ui:
    """`engine ui` on a free loopback port, over the journal in state."""
    def __init__(self, state, log):
        self.proc = subprocess.Popen([os.path.join(BUILD, "engine"), "--state", state, "ui", "--listen",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=log, text=True)
        self.url = self.proc.stdout.readline().strip().rstrip("/")  # its first line: http://127.0.0.1:PORT/
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            sys.exit("bench: engine ui printed %r" % self.url)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy

    def get(self, path):
        """Seconds to fetch path (status 200, HTML), and the body."""
        t0 = time.perf_counter()
        with self.opener.open(self.url + path) as r:
            body = r.read()
            took = time.perf_counter() - t0
            if r.status != 200 or not r.headers.get("Content-Type", "").startswith("text/html"):
                sys.exit("bench: engine ui %s: %d %s" % (path, r.status, r.headers.get("Content-Type")))
        return took, body

    def median_ms(self, path, times):
        """Median ms of times fetches of path after one warm-up, and its body."""
        _, body = self.get(path)
        return statistics.median(self.get(path)[0] for _ in range(times)) * 1000, body

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def history(n, big_jobs=10000):
    """The history against a journal of n runs: `engine runs` (median of 5),
    `engine ui`'s list of runs (median of 10 after a warm-up) and its page
    of the newest run, which has big_jobs jobs (median of 5 after a
    warm-up)."""
    tmp = tempfile.mkdtemp(prefix="bench-history-")
    state = os.path.join(tmp, "state")
    try:
        t0 = time.perf_counter()
        big = big_journal(state, n, big_jobs)
        made = time.perf_counter() - t0
        engine = [os.path.join(BUILD, "engine"), "--state", state, "runs"]
        listed = subprocess.run(engine, capture_output=True, text=True)
        if listed.returncode != 0 or not listed.stdout.splitlines()[1].startswith(str(big) + " "):
            sys.exit("bench: engine runs failed:\n%s%s" % (listed.stdout, listed.stderr))
        times = []
        for _ in range(5):
            t = time.perf_counter()
            r = subprocess.run(engine, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
            if r.returncode != 0:
                sys.exit("bench: engine runs exited %d" % r.returncode)
        runs_ms = statistics.median(times) * 1000
        with open(os.path.join(tmp, "ui.log"), "w+") as log:
            ui = Ui(state, log)
            try:
                list_ms, body = ui.median_ms("/", 10)
                if b"/runs/%d" % big not in body:
                    sys.exit("bench: engine ui / does not list run %d" % big)
                run_ms, page = ui.median_ms("/runs/%d" % big, 5)
                if page.count(b"sync-history") != big_jobs:
                    sys.exit("bench: engine ui /runs/%d does not show its %d jobs" % (big, big_jobs))
            finally:
                ui.stop()
            log.seek(0)  # but the line that says it stopped as asked
            errors = [line for line in log.read().splitlines() if "interrupted by SIGTERM" not in line]
            if ui.proc.returncode != 0:
                errors.append("(engine ui exited %d on SIGTERM)" % ui.proc.returncode)
        print("| what | runs in journal | median ms | target ms |")
        print("|---|---|---|---|")
        print("| `engine runs` | %d | %.1f | 200 |" % (n, runs_ms))
        print("| ui `/` | %d | %.1f | 100 |" % (n, list_ms))
        print("| ui run page (%s jobs, %.0f KB) | %d | %.1f | 300 |" % (format(big_jobs, ","), len(page) / 1024, n,
                                                                       run_ms))
        print("(journal of %d runs and %d jobs made in %.1f s; the run page is %d bytes)"
              % (n, n - 1 + big_jobs, made, len(page)))
        if errors:
            print("engine ui wrote on stderr:\n" + "\n".join(errors))
    finally:
        shutil.rmtree(tmp, True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,100,1000,10000")
    ap.add_argument("--poll", type=float, default=0.05, help="poll seconds for N < 10000")
    ap.add_argument("--poll-large", type=float, default=5, help="poll seconds for N >= 10000")
    ap.add_argument("--callgrind", type=int, default=300, help="N for instruction counts (0: skip)")
    ap.add_argument("--waiting", type=int, default=10000, help="N for the waiting-sync RSS (0: skip)")
    ap.add_argument("--startup-runs", type=int, default=200, help="runs of engine -e '' to time")
    ap.add_argument("--engine-args", default="", help="more engine options, e.g. --no-state")
    ap.add_argument("--stores", type=int, default=1000,
                    help="N for the engine with each journal store, SQLite and PostgreSQL (0: skip)")
    ap.add_argument("--history", type=int, default=100000,
                    help="runs in the journal for engine runs and engine ui (0: skip)")
    a = ap.parse_args()
    ENGINE_ARGS.extend(a.engine_args.split())
    state = tempfile.mkdtemp(prefix="bench-state-")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(FLOW)
    try:
        print("machine: %s, %d cores; %s" % (os.uname().machine, os.cpu_count(),
                                               subprocess.run([os.path.join(BUILD, "engine"), "--version"],
                                                              capture_output=True, text=True).stdout.strip()))
        print()
        print("| N | poll | client | wall s | CPU s | CPU us/request | peak RSS MB | requests | connections "
              "| sim CPU s | worst poll lateness ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        per_request = {}
        for n in [int(x) for x in a.sizes.split(",")]:
            poll = a.poll_large if n >= 10000 else a.poll
            rows = {}
            for which in ("engine", "floor"):
                r = one_run(which, n, poll, f.name, state)
                rows[which] = r
                print("| %d | %g | %s | %.2f | %.2f | %.0f | %.1f | %d | %d | %.2f | %.0f |" % (
                    n, poll, which, r["wall"], r["cpu"], r["cpu"] / r["requests"] * 1e6, r["rss_kb"] / 1024,
                    r["requests"], r["connections"], r["sim_cpu"], r["late_ms"]))
                sys.stdout.flush()
            e, fl = rows["engine"], rows["floor"]
            per_request[n] = e["cpu"] / e["requests"]
            print("| %d | %g | **engine / floor** | %.2f× | %.2f× | %.2f× | %.2f× | | | | |" % (
                n, poll, e["wall"] / fl["wall"], e["cpu"] / fl["cpu"],
                (e["cpu"] / e["requests"]) / (fl["cpu"] / fl["requests"]), e["rss_kb"] / fl["rss_kb"]))
            sys.stdout.flush()
        print()
        if len(per_request) >= 2 and 1000 in per_request and 10000 in per_request:
            print("CPU per request at N = 10000 against N = 1000: %.2f×" % (per_request[10000] / per_request[1000]))
        if a.callgrind:
            ei, er = instructions("engine", a.callgrind, a.poll, f.name, state)
            fi, fr = instructions("floor", a.callgrind, a.poll, f.name, state)
            print("instructions per request (callgrind, N = %d): engine %.0f, floor %.0f: %.2f×"
                  % (a.callgrind, ei / er, fi / fr, (ei / er) / (fi / fr)))
        if a.waiting:
            per_sync, base = waiting_rss(a.waiting, f.name, state)
            print("RSS of a waiting sync (N = %d, poll 60 s, between polls): %.1f KiB (one sync: %.1f MB)"
                  % (a.waiting, per_sync, base / 1024))
        if a.stores:
            print()
            stores(a.stores, a.poll, f.name)
            print()
        if a.history:
            print()
            history(a.history)
            print()
        eng, eng_no_state, lua = startup(a.startup_runs)
        print("start-up, median of %d: engine -e '' %.2f ms; engine --no-state -e '' %.2f ms; "
              "lua5.4 -e '' %s ms" % (a.startup_runs, eng, eng_no_state, "%.2f" % lua if lua else "?"))
    finally:
        os.unlink(f.name)
        shutil.rmtree(state, True)


if __name__ == "__main__":
    main()
