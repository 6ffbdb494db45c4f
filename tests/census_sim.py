#!/usr/bin/env python3
"""census_sim.py: a Census API simulator on 127.0.0.1 (Python standard
library only). Speaks the v1 and v2 paths the engine uses, checks the Bearer
token, plays scripted per-sync scenarios, and reports what it was asked.

Run it alone:  python3 tests/census_sim.py [--port N] [--token T] [--scenario FILE]
It prints "census-sim listening on http://127.0.0.1:PORT" once ready.

Chaos (CensusSim(chaos=0.1)): that share of API requests meets a random
fault: HTTP 500, 429 with Retry-After: 0, a reset, a slow answer, a
malformed or HTML body, and for triggers a lost answer with or without a
run started. faults counts what was injected.

Control endpoints (no auth):
  POST /_sim/syncs     {"42": SCENARIO, ...} sets scenarios (merged)
  POST /_sim/reset     forgets scenarios, runs and the request log
  GET  /_sim/requests  every API request: method, path, query, auth, time
  GET  /_sim/state     runs and trigger counts per sync

SCENARIO fields (all optional):
  steps      what successive polls of a run report: a status string or a
             dict of run fields; the last one repeats. Default: working, completed.
  runs       a list of steps lists, one per run of the sync in order (the
             first run uses runs[0]); runs beyond the list use steps
  trigger    behaviours of successive triggers, then "ok": "ok",
             {"http": CODE, "body": TEXT, "retry_after": VALUE}, "lost" (the
             connection drops and no run starts), "lost_created" (a run
             starts, then the connection drops), "html", "malformed", "no_id",
             {"slow": SECONDS}, {"created_slow": SECONDS} (a run starts, the
             answer comes SECONDS later)
  get        behaviours of successive polls of the sync's runs before the
             steps apply: "ok", {"http": ...}, "html", "malformed", "no_data",
             "no_status", {"slow": SECONDS}, {"raw": TEXT} (a 200 with TEXT as
             the body, RUN_ID replaced), "cut_headers" (the answer stops in its
             headers); trigger also takes {"raw_created": TEXT} (a run starts,
             the answer is TEXT)
  missing    true: the sync does not exist (404)
  name       the sync's label
"""
import argparse
import json
import sys
import time
from datetime import datetime, timezone
from sim_server import SimHandler, SimServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "secret-token:sim-test-token"
DEFAULT_STEPS = ["working", "completed"]


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Handler(SimHandler):
    server_version = "census-sim"

    # --- plumbing -----------------------------------------------------

    def error_body(self, code):
        return {"status": "error", "message": "simulated HTTP %d" % code}

    MALFORMED = '{"status": "success", "data": {'

    def no_data_body(self):
        return {"status": "success"}

    def behave(self, behaviour):
        """Plays a scripted failure (sim_server.py); {"raw": TEXT} has
        "RUN_ID" replaced by the last run's id."""
        return super().behave(behaviour, lambda text: text.replace("RUN_ID", str(self.server.next_run_id)))

    def handle_any(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = url.path.strip("/").split("/")
        sim = self.server
        if parts[0] == "_sim":
            return self.control(parts[1:], body)
        with sim.lock:
            sim.log.append({"method": self.command, "path": url.path, "query": query,
                            "auth": self.headers.get("Authorization"), "time": time.time(),
                            "accept_encoding": self.headers.get("Accept-Encoding")})
        if len(parts) < 3 or parts[0] != "api" or parts[1] not in ("v1", "v2"):
            return self.reply(404, {"status": 404})
        if self.headers.get("Authorization") != "Bearer " + sim.token:
            return self.reply(401, {"status": "error", "message": "Unauthorized: invalid API token"})
        route, rest = parts[2], parts[3:]
        if sim.chaos and self.chaos(route, rest):
            return
        if route == "syncs" and not rest and self.command == "GET":
            return self.list_syncs(query)
        if route == "syncs" and rest and rest[0].isdigit():
            sync_id = int(rest[0])
            if sim.scenario(sync_id).get("missing"):
                return self.reply(404, {"status": 404})
            if len(rest) == 1 and self.command == "GET":
                return self.reply(200, {"status": "success", "data": sim.sync_data(sync_id)})
            if len(rest) == 2 and rest[1] == "trigger" and self.command == "POST":
                return self.trigger(sync_id, query)
            if len(rest) == 2 and rest[1] == "sync_runs" and self.command == "GET":
                return self.list_runs(sync_id, query)
        if route == "sync_runs" and rest and rest[0].isdigit():
            run_id = int(rest[0])
            run = sim.runs.get(run_id)
            if run is None:
                return self.reply(404, {"status": 404})
            if len(rest) == 1 and self.command == "GET":
                return self.get_run(run)
            if len(rest) == 2 and rest[1] == "cancel" and self.command == "POST":
                with sim.lock:
                    run["canceled"] = True
                    sim.cancels[run_id] = sim.cancels.get(run_id, 0) + 1
                return self.reply(200, {"status": "cancelled", "data": {}})
        return self.reply(404, {"status": 404})

    do_GET = do_POST = SimHandler.handle_quietly

    def do_CONNECT(self):
        # As an https_proxy it shows which real host a client would reach,
        # without reaching it.
        with self.server.lock:
            self.server.log.append({"method": "CONNECT", "path": self.path, "query": {},
                                    "auth": None, "time": time.time()})
        self.reply(403, {"status": "error", "message": "census-sim is not a proxy"})

    def chaos(self, route, rest):
        """With chaos on, a random share of API requests meets a fault the
        engine must ride out; returns True when it answered (or hung up)."""
        sim = self.server
        with sim.lock:
            roll = sim.random.random()
            if roll >= sim.chaos:
                return False
            fault = sim.random.choice(["http500", "http429", "reset", "slow", "malformed", "html"]
                                      + (["lost", "lost_created"] if rest[-1:] == ["trigger"] else []))
            sim.faults[fault] = sim.faults.get(fault, 0) + 1
        if fault == "lost_created":
            sim.new_run(int(rest[0]), {})
            self.drop()
            return True
        if fault == "slow":
            time.sleep(0.3)
            return False
        return self.behave({"http500": {"http": 500}, "http429": {"http": 429, "retry_after": 0},
                            "reset": "lost", "lost": "lost", "malformed": "malformed",
                            "html": "html"}[fault])

    # --- API ------------------------------------------------------------
    def trigger(self, sync_id, query):
        sim = self.server
        with sim.lock:
            sim.triggers[sync_id] = sim.triggers.get(sync_id, 0) + 1
            script = sim.scenario(sync_id).get("trigger", [])
            n = sim.trigger_index.get(sync_id, 0)
            sim.trigger_index[sync_id] = n + 1
        behaviour = script[n] if n < len(script) else "ok"
        if behaviour == "lost_created":
            sim.new_run(sync_id, query)
            return self.drop()
        if behaviour == "no_id":
            sim.new_run(sync_id, query)
            return self.reply(200, {"status": "success", "data": {}})
        if isinstance(behaviour, dict) and "raw_created" in behaviour:
            run = sim.new_run(sync_id, query)
            return self.reply(200, behaviour["raw_created"].replace("RUN_ID", str(run["id"])), "application/json")
        if isinstance(behaviour, dict) and "created_slow" in behaviour:
            run = sim.new_run(sync_id, query)
            time.sleep(behaviour["created_slow"])
            return self.reply(200, {"status": "success", "data": {"sync_run_id": run["id"]}})
        if self.behave(behaviour):
            return
        run = sim.new_run(sync_id, query)
        self.reply(200, {"status": "success", "data": {"sync_run_id": run["id"]}})

    def get_run(self, run):
        sim = self.server
        with sim.lock:
            script = sim.scenario(run["sync_id"]).get("get", [])
            n = run["get_index"]
            run["get_index"] = n + 1
        behaviour = script[n] if n < len(script) else "ok"
        if behaviour == "no_status":
            data = sim.run_data(run)
            del data["status"]
            return self.reply(200, {"status": "success", "data": data})
        if self.behave(behaviour):
            return
        with sim.lock:
            run["polls"] += 1
        self.reply(200, {"status": "success", "data": sim.run_data(run)})

    def paginate(self, items, query):
        page = int(query.get("page", 1))
        per_page = min(int(query.get("per_page", 25)), 100)
        last = max(1, (len(items) + per_page - 1) // per_page)
        chunk = items[(page - 1) * per_page: page * per_page]
        return {"status": "success", "data": chunk, "pagination": {
            "total_records": len(items), "per_page": per_page, "page": page,
            "prev_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None, "last_page": last}}

    def list_syncs(self, query):
        sim = self.server
        ids = sorted(set(sim.syncs) | set(r["sync_id"] for r in sim.runs.values()))
        items = [sim.sync_data(i) for i in ids if not sim.scenario(i).get("missing")]
        self.reply(200, self.paginate(items, query))

    def list_runs(self, sync_id, query):
        sim = self.server
        runs = [sim.run_data(r) for r in sim.runs.values() if r["sync_id"] == sync_id]
        runs.sort(key=lambda r: r["id"], reverse=query.get("order", "desc") == "desc")
        self.reply(200, self.paginate(runs, query))

    # --- control --------------------------------------------------------
    def control(self, parts, body):
        sim = self.server
        if parts == ["syncs"] and self.command == "POST":
            with sim.lock:
                for k, v in json.loads(body or b"{}").items():
                    sim.syncs[int(k)] = v
            return self.reply(200, {"ok": True})
        if parts == ["reset"] and self.command == "POST":
            sim.reset()
            return self.reply(200, {"ok": True})
        if parts == ["requests"]:
            with sim.lock:
                return self.reply(200, list(sim.log))
        if parts == ["state"]:
            with sim.lock:
                return self.reply(200, {"triggers": sim.triggers, "cancels": sim.cancels,
                                        "runs": {i: sim.run_data(r) for i, r in sim.runs.items()}})
        self.reply(404, {"status": 404})


class CensusSim(SimServer):
    def __init__(self, port=0, token=DEFAULT_TOKEN, scenarios=None, tls=None, chaos=0.0, seed=1):
        super().__init__(port, Handler)
        self.tls = tls
        self.scheme = "https" if tls else "http"
        import random
        self.chaos = chaos  # the share of API requests that meet a random fault
        self.random = random.Random(seed)
        self.faults = {}
        if tls:  # (certificate file, key file): serve https
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.token = token
        self.reset()
        self.syncs.update({int(k): v for k, v in (scenarios or {}).items()})

    def reset(self):
        with self.lock:
            self.syncs, self.runs, self.log = {}, {}, []
            self.triggers, self.trigger_index, self.cancels = {}, {}, {}
            self.next_run_id = 1000

    def scenario(self, sync_id):
        return self.syncs.get(sync_id, {})

    def sync_data(self, sync_id):
        return {"id": sync_id, "label": self.scenario(sync_id).get("name", "sync %d" % sync_id),
                "paused": False, "operation": "upsert"}

    def new_run(self, sync_id, query):
        with self.lock:
            self.next_run_id += 1
            ordinal = sum(1 for r in self.runs.values() if r["sync_id"] == sync_id)
            run = {"id": self.next_run_id, "sync_id": sync_id, "created_at": time.time(),
                   "ordinal": ordinal,
                   "full_sync": query.get("force_full_sync") == "true", "polls": 0,
                   "get_index": 0, "canceled": False, "force_full_sync": query.get("force_full_sync")}
            self.runs[run["id"]] = run
            return run

    def run_data(self, run):
        scenario = self.scenario(run["sync_id"])
        per_run = scenario.get("runs", [])
        steps = per_run[run["ordinal"]] if run["ordinal"] < len(per_run) else \
            scenario.get("steps", DEFAULT_STEPS)
        step = steps[min(max(run["polls"] - 1, 0), len(steps) - 1)]
        if isinstance(step, str):
            step = {"status": step}
        data = {"id": run["id"], "sync_id": run["sync_id"], "status": "queued",
                "canceled": run["canceled"], "full_sync": run["full_sync"],
                "created_at": iso(run["created_at"]), "updated_at": iso(time.time()),
                "completed_at": None, "scheduled_execution_time": None, "current_step": None,
                "error_code": None, "error_message": None, "error_detail": None,
                "source_record_count": None, "records_processed": None, "records_updated": None,
                "records_failed": None, "records_invalid": None,
                "sync_trigger_reason": {"ui_tag": "API", "ui_detail": "Triggered via API"}}
        data.update(step)
        if data["status"] == "completed" and data["completed_at"] is None:
            data["completed_at"] = iso(time.time())
        return data


def main():
    parser = argparse.ArgumentParser(description="Census API simulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--scenario", help="JSON file: {sync_id: SCENARIO}")
    args = parser.parse_args()
    scenarios = None
    if args.scenario:
        with open(args.scenario) as f:
            scenarios = json.load(f)
    sim = CensusSim(args.port, args.token, scenarios)
    sim.serve_main("census-sim")


if __name__ == "__main__":
    sys.exit(main())
