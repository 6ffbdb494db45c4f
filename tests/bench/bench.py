#!/usr/bin/env python3
"""bench.py: N Census syncs in parallel through the real engine and through
the floor (bench_floor.c: libcurl multi + libuv, no Lua), both against
bench_sim.c on 127.0.0.1; one row per N with wall time, CPU, peak RSS,
requests, TCP connections, CPU us per request, and each figure's ratio
engine / floor. Also: instructions per request (callgrind, at a smaller
N), the RSS a waiting sync costs, the worst poll lateness, and start-up.
Not a test (tests/bench/README.md has the latest table):
  ./dev bench            # N = 1, 100, 1000, 10000
  python3 tests/bench/bench.py --sizes 1,100 --callgrind 100"""
import argparse
import json
import os
import re
import resource
import shutil
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


def command(which, sim, n, poll, flow):
    if which == "engine":
        return [os.path.join(BUILD, "engine"), "-q"] + ENGINE_ARGS + [flow, str(n), str(poll)]
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
    on a throwaway PostgreSQL server on loopback (tests/pg_server.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from pg_server import HAVE_POSTGRES, PgServer
    if not HAVE_POSTGRES:
        print("stores: PostgreSQL is not installed (./dev deps installs it)")
        return
    pg = PgServer().start()
    try:
        print("| N | poll | store | wall s | CPU s | CPU us/request | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        rows = {}
        for name in ("sqlite", "postgres"):
            state = tempfile.mkdtemp(prefix="bench-state-")
            where = state if name == "sqlite" else pg.url(pg.new_database())
            ENGINE_ARGS[:] = ["--state", where]
            try:
                r = rows[name] = one_run("engine", n, poll, flow, state)
            finally:
                ENGINE_ARGS[:] = []
                shutil.rmtree(state, True)
            print("| %d | %g | %s | %.2f | %.2f | %.0f | %.1f |" % (n, poll, name, r["wall"], r["cpu"],
                  r["cpu"] / r["requests"] * 1e6, r["rss_kb"] / 1024))
            sys.stdout.flush()
        q, l = rows["postgres"], rows["sqlite"]
        print("| %d | %g | **postgres / sqlite** | %.2f× | %.2f× | %.2f× | %.2f× |" % (
            n, poll, q["wall"] / l["wall"], q["cpu"] / l["cpu"], q["cpu"] / l["cpu"], q["rss_kb"] / l["rss_kb"]))
        print("(the engine's own CPU; the PostgreSQL server's is not counted)")
    finally:
        pg.cleanup()


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
        eng, eng_no_state, lua = startup(a.startup_runs)
        print("start-up, median of %d: engine -e '' %.2f ms; engine --no-state -e '' %.2f ms; "
              "lua5.4 -e '' %s ms" % (a.startup_runs, eng, eng_no_state, "%.2f" % lua if lua else "?"))
    finally:
        os.unlink(f.name)
        shutil.rmtree(state, True)


if __name__ == "__main__":
    main()
