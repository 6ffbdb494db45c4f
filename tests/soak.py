#!/usr/bin/env python3
"""soak.py: 1,000 syncs against a Census simulator that injects random
faults (5xx, 429 with Retry-After, resets, slow answers, malformed bodies,
lost trigger answers with and without a run started), for a while:
  python3 tests/soak.py [SECONDS] [ENGINE]     (./dev soak [SECONDS])
Passes when every sync ends with the outcome its script dictates (every
fifth fails, every seventh is skipped and allowed, the rest complete), no
sync got two runs, and the engine's RSS and open descriptors in the last
stretch stay within bounds of the first. Prints one line of figures. The
suite runs it briefly (tests/e2e/test_soak.py)."""
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from census_sim import DEFAULT_TOKEN, CensusSim  # noqa: E402

N = 1000

FLOW = """
local n, per_sync = tonumber(arg[1]), tonumber(arg[2])
local fns = {}
for i = 1, n do
  fns[i] = function()
    local ok, r = pcall(census.sync, {sync_id = i}, {poll = per_sync, allow_skipped = true})
    if ok then return r.status end
    return r.kind
  end
end
local res = flow.parallel(fns, {limit = 200})
for i = 1, n do print(i, res[i]) end
"""


def expected(i):
    if i % 5 == 0:
        return "failed"
    if i % 7 == 0:
        return "skipped"
    return "completed"


def script(i, polls):
    final = {"failed": {"status": "failed", "error_message": "scripted failure"},
             "skipped": "skipped",
             "completed": {"status": "completed", "records_processed": i, "records_updated": i,
                           "records_failed": 0}}[expected(i)]
    return {"steps": ["queued"] + ["working"] * polls + [final]}


def sample(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, StopIteration):
        return None


def soak(seconds, engine, out=sys.stdout, check_rss=True):
    """check_rss: False for a sanitizer build, whose quarantine holds freed
    memory on purpose."""
    # each sync's life is about seconds / 5 long, so 1,000 syncs at 200 at
    # a time take about `seconds`
    poll = max(0.05, seconds / 5 / 8)
    sim = CensusSim(scenarios={i: script(i, 6) for i in range(1, N + 1)}, chaos=0.1, seed=7).start()
    state = tempfile.mkdtemp()
    env = dict(os.environ, CENSUS_BASE_URL=sim.url, CENSUS_API_KEY=DEFAULT_TOKEN, CENSUS_MIN_POLL="0.01",
               CENSUS_RETRY_DELAY="0.05", CENSUS_RETRY_BUDGET="120", ENGINE_STATE_DIR=state)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(FLOW)
    start = time.monotonic()
    proc = subprocess.Popen([engine, "-q", f.name, str(N), str(poll)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    samples = []

    def watch():
        while proc.poll() is None:
            s = sample(proc.pid)
            if s:
                samples.append((time.monotonic() - start,) + s)
            time.sleep(0.2)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate(timeout=seconds * 6 + 120)
    watcher.join()
    wall = time.monotonic() - start
    os.unlink(f.name)
    sim.stop()
    problems = []
    got = dict(line.split("\t") for line in stdout.splitlines() if "\t" in line)
    wrong = [i for i in range(1, N + 1) if got.get(str(i)) != expected(i)]
    if wrong:
        problems.append("%d syncs ended otherwise than scripted, e.g. %s" %
                        (len(wrong), ["%d: %s" % (i, got.get(str(i))) for i in wrong[:5]]))
    runs = {}
    for r in sim.runs.values():
        runs[r["sync_id"]] = runs.get(r["sync_id"], 0) + 1
    twice = [s for s, n in runs.items() if n > 1]
    if twice:
        problems.append("%d syncs got two runs: %s" % (len(twice), twice[:10]))
    first = [s for s in samples if s[0] <= wall / 4]
    last = [s for s in samples if s[0] >= wall * 3 / 4]
    rss0, rss1 = max((s[1] for s in first), default=0), max((s[1] for s in last), default=0)
    fd0, fd1 = max((s[2] for s in first), default=0), max((s[2] for s in last), default=0)
    if check_rss and first and last and rss1 > rss0 * 1.25 + 4096:
        problems.append("RSS grew from %d KiB to %d KiB" % (rss0, rss1))
    if first and last and fd1 > fd0 + 16:
        problems.append("open descriptors grew from %d to %d" % (fd0, fd1))
    injected = sum(sim.faults.values())
    print("soak: %d syncs in %.0f s, %d requests, %d faults injected (%s), RSS %d -> %d KiB, "
          "descriptors %d -> %d, exit %d" % (N, wall, len(sim.log), injected,
                                             ", ".join("%s %d" % kv for kv in sorted(sim.faults.items())),
                                             rss0, rss1, fd0, fd1, proc.returncode), file=out)
    if proc.returncode != 0:  # the flow catches the scripted failures itself
        problems.append("the engine exited %d" % proc.returncode)
    return problems, stderr


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 300
    engine = sys.argv[2] if len(sys.argv) > 2 else "build/engine"
    problems, stderr = soak(seconds, engine)
    for p in problems:
        print("soak: " + p)
    if problems:
        print(stderr[-3000:])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
