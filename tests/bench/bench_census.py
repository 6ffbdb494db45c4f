#!/usr/bin/env python3
"""bench_census.py: N syncs waited on in parallel through the Census
simulator; prints the engine's wall time, CPU and peak memory, with the
journal (in a temporary state directory) and, with --no-state, without.
Not a test: run it by hand, e.g.
  python3 tests/bench/bench_census.py 500 build/engine [--no-state]"""
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from census_sim import DEFAULT_TOKEN, CensusSim  # noqa: E402

FLOW = """
local n, poll = tonumber(arg[1]), tonumber(arg[2])
local fns = {}
for i = 1, n do
  fns[i] = function()
    return census.sync({sync_id = i}, {poll = poll}).status
  end
end
local t0 = flow.now()
local res = flow.parallel(fns)
local ok = 0
for i = 1, n do if res[i] == "completed" then ok = ok + 1 end end
print(ok, flow.now() - t0)
"""


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    engine = sys.argv[2] if len(sys.argv) > 2 else "build/engine"
    extra = sys.argv[3:]
    state = tempfile.mkdtemp()
    poll = "1"
    sim = CensusSim(scenarios={i: {"steps": ["queued", "working", "working", "completed"]}
                               for i in range(1, n + 1)}).start()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(FLOW)
    env = dict(os.environ, CENSUS_BASE_URL=sim.url, CENSUS_API_KEY=DEFAULT_TOKEN,
               CENSUS_MIN_POLL="0.1", ENGINE_STATE_DIR=state)
    t0 = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([engine, "-q"] + extra + [f.name, str(n), poll], env=env, capture_output=True,
                       text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    journal = os.path.join(state, "journal.db")
    size = sum(os.path.getsize(journal + s) for s in ("", "-wal") if os.path.exists(journal + s))
    os.unlink(f.name)
    sim.stop()
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    ok, flow_wall = r.stdout.split() if r.returncode == 0 else ("?", "?")
    print("%d syncs (4 polls each, poll %s s)%s: %s completed, flow %.2f s, process %.2f s, "
          "CPU %.2f s, peak RSS %.1f MiB, %d requests, journal %d KiB"
          % (n, poll, " " + " ".join(extra) if extra else "", ok, float(flow_wall), wall, cpu,
             peak_kb / 1024, len(sim.log), size // 1024))
    if r.returncode != 0:
        print(r.stderr[-2000:])
        return 1


if __name__ == "__main__":
    sys.exit(main())
