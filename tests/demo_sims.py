#!/usr/bin/env python3
"""demo_sims.py: the Census, Fivetran and dbt Cloud simulators in one
process on 127.0.0.1, for ./dev demo. Reads a scenario file
{"census": {...}, "fivetran": {...}, "dbt_cloud": {...}} and prints one
line, "sims CENSUS_URL FIVETRAN_URL DBT_CLOUD_URL", once all listen; runs
until killed."""
import json
import signal
import sys
import threading

from census_sim import CensusSim
from dbt_cloud_sim import DbtCloudSim
from fivetran_sim import FivetranSim


def main():
    scenarios = {}
    if len(sys.argv) > 1:
        with open(sys.argv[1]) as f:
            scenarios = json.load(f)
    sims = [CensusSim(scenarios=scenarios.get("census")).start(),
            FivetranSim(scenarios=scenarios.get("fivetran")).start(),
            DbtCloudSim(scenarios=scenarios.get("dbt_cloud")).start()]
    print("sims " + " ".join(s.url for s in sims), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    for s in sims:
        s.stop()


if __name__ == "__main__":
    sys.exit(main())
