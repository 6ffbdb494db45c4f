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
  POST /_sim/settings  {"rate_limit": ..., "storm": ..., "v1_retired": ...,
                       "extra_tokens": [...]}: sets those SETTINGS (below)
  POST /_sim/reset     forgets scenarios, runs, the request log, the counters
                       and the SETTINGS (the main token stays)
  GET  /_sim/requests  every API request: method, path, query, auth, time
  GET  /_sim/state     {"triggers", "cancels", "runs", "record_requests",
                       "records_count_requests", "requests_by_token",
                       "throttled", "during_pause", "pauses", "storm",
                       "rate_limit", "v1_retired"} (the attributes below)

API paths (under /api/v1 and /api/v2 alike, Bearer token): GET syncs, GET
syncs/ID, POST syncs/ID/trigger, GET syncs/ID/sync_runs, GET sync_runs/ID,
POST sync_runs/ID/cancel, GET sync_runs/ID/records (Fetch Records:
?status=&operation=&primary_identifier=&page=&per_page=, per_page default
25, above 100 (or below 1, or page below 1, or not a number) 400
{"status": "error", "message": ...}; {"status": "success", "data":
[RECORD...], "pagination": {total_records, per_page, prev_page, page,
next_page, last_page}}), GET sync_runs/ID/records_count?status=
({"status": "success", "data": [{"record_count": N}]}; it takes the same
filters). An unknown run's records are 404 {"status": "error", "message":
"Sync run ID not found"}. The filters compare case-insensitively (status:
succeeded, rejected, invalid, NULL, DUPLICATE; operation: upsert, delete);
primary_identifier compares exactly with the identifier.

SETTINGS (attributes of the CensusSim; reset() clears them all):
  sim.extra_tokens  a set of further accepted tokens besides sim.token
                    (more accounts); default empty
  sim.rate_limit    None, or {"token": T or None (any token; each token is
                    an account with its own limit), "requests": N,
                    "retry_after": S (seconds, default 1)}: once more than N
                    requests of a token arrived within the last second (the
                    one at hand and 429-answered ones included), that request
                    and every request of the token in the next S seconds
                    answer 429 {"status": "error", "message": "Too many
                    requests"} with Retry-After: S
  sim.storm         None, or {"count": K, "retry_after": S or None (no
                    header), "token": T or None (any)}: the next K API
                    requests of that token answer 429 (count goes down)
  sim.v1_retired    False, True or 410 (every /api/v1/... path answers 410),
                    404 (answers 404); the body is {"status": "error",
                    "message": "API v1 has been retired"}; before the token
                    is checked. /api/v2/... keeps working.
The order per API request: logged and counted, unknown path 404, v1
retirement, token (401), storm, rate_limit, chaos, then the route.

COUNTERS (attributes, per key; reset() clears them):
  sim.record_requests[RUN_ID]         GETs of sync_runs/RUN_ID/records
  sim.records_count_requests[RUN_ID]  GETs of sync_runs/RUN_ID/records_count
                                      (both count every call: faults, unknown
                                      runs and 429s included)
  sim.requests_by_token[TOKEN]        arrival times (time.time()) of every
                                      API request carrying that Bearer token
                                      (the raw Authorization value when it is
                                      not a Bearer one; None without one)
  sim.throttled[TOKEN]                429s answered to it (storm, rate limit,
                                      scripted and chaos 429s alike)
  sim.pauses[TOKEN]                   [[SENT, UNTIL], ...]: per 429 with a
                                      Retry-After (seconds or an HTTP-date),
                                      when it was written and when its pause
                                      ends
  sim.during_pause[TOKEN]             requests that arrived while a pause of
                                      that token was open (a request already
                                      in flight when the 429 came counts too)
  sim.max_per_second(TOKEN)           the most requests of TOKEN within any
                                      one second (a sliding window)

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
  records    the records of every run of the sync (Fetch Records): a list of
             dicts, each with any of identifier (default "id_N", N its
             place from 1; null when status is "NULL"), status (default
             "succeeded"; "rejected", "invalid", "NULL", "DUPLICATE"),
             status_message (default by status: null, "Invalid email
             address", "Missing primary identifier", "Primary identifier is
             null", "Duplicate primary identifier"), operation (default
             "upsert"), record_payload (default {"email":
             "IDENTIFIER@example.com"}), batch_started_at (default the run's
             created_at), batch_completed_at (default the time of the run's
             first records call); or an integer N: N records id_1..id_N, of
             which the first records_failed (of the run's final step) are
             "rejected" ("Invalid email address"), the next records_invalid
             are "invalid" ("Missing primary identifier"), the rest
             "succeeded". Default: none.
  records_fault  a behaviour for every records and records_count call of the
             sync's runs, or a list of behaviours for a run's successive
             calls (records and records_count together), then "ok": the
             behaviours of get but "no_status" ({"http": 404} for a run
             whose records are gone; {"raw": TEXT} has RUN_ID replaced by
             the run asked about). The run itself is untouched.
"""
import argparse
import json
import sys
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from sim_server import SimHandler, SimServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "secret-token:sim-test-token"
DEFAULT_STEPS = ["working", "completed"]
RECORD_MESSAGES = {"rejected": "Invalid email address", "invalid": "Missing primary identifier",
                   "null": "Primary identifier is null", "duplicate": "Duplicate primary identifier"}


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def seconds_text(s):
    """A Retry-After value: whole seconds without a fraction."""
    return str(int(s)) if isinstance(s, (int, float)) and float(s).is_integer() else str(s)


def pause_end(value, now):
    """When a Retry-After value (seconds or an HTTP-date) ends its pause,
    or None."""
    try:
        return now + float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class Handler(SimHandler):
    server_version = "census-sim"
    account = None  # the token of the request at hand

    # --- plumbing -----------------------------------------------------
    def reply(self, code, payload, content_type="application/json", headers=()):
        super().reply(code, payload, content_type, headers)
        if code == 429:  # (once written: a pause starts when it can be read)
            self.server.note_429(self.account, dict(headers).get("Retry-After"))

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
        now, auth = time.time(), self.headers.get("Authorization")
        self.account = auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else auth
        with sim.lock:
            sim.log.append({"method": self.command, "path": url.path, "query": query,
                            "auth": auth, "time": now,
                            "accept_encoding": self.headers.get("Accept-Encoding")})
            sim.note_request(self.account, now)
        if len(parts) < 3 or parts[0] != "api" or parts[1] not in ("v1", "v2"):
            return self.reply(404, {"status": 404})
        if parts[1] == "v1" and sim.v1_retired:
            return self.reply(404 if sim.v1_retired == 404 else 410,
                              {"status": "error", "message": "API v1 has been retired"})
        with sim.lock:
            accepted = ["Bearer " + t for t in [sim.token] + sorted(sim.extra_tokens)]
        if auth not in accepted:
            return self.reply(401, {"status": "error", "message": "Unauthorized: invalid API token"})
        if self.limited(now):
            return
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
            if len(rest) == 2 and rest[1] in ("records", "records_count") and self.command == "GET":
                return self.records(run_id, rest[1], query)
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

    def limited(self, now):
        """Plays the storm and the rate limit of the request's account;
        returns True when it answered 429."""
        sim, token = self.server, self.account
        with sim.lock:
            storm, limit, retry_after = sim.storm, sim.rate_limit, None
            if storm and storm.get("count", 0) > 0 and storm.get("token") in (None, token):
                storm["count"] -= 1
                retry_after = storm.get("retry_after")
            elif limit and limit.get("token") in (None, token):
                retry_after = limit.get("retry_after", 1)
                if now >= sim.blocked_until.get(token, 0):
                    recent = 0
                    for t in reversed(sim.requests_by_token.get(token, [])):
                        if t <= now - 1.0:
                            break
                        recent += 1
                    if recent <= limit["requests"]:
                        return False
                    sim.blocked_until[token] = now + float(retry_after)
            else:
                return False
        headers = [("Retry-After", seconds_text(retry_after))] if retry_after is not None else []
        self.reply(429, {"status": "error", "message": "Too many requests"}, headers=headers)
        return True

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

    def records(self, run_id, what, query):
        """Fetch Records (what "records") and its count ("records_count")."""
        sim = self.server
        with sim.lock:
            counts = sim.record_requests if what == "records" else sim.records_count_requests
            counts[run_id] = counts.get(run_id, 0) + 1
            run = sim.runs.get(run_id)
            if run is not None:
                n = run["records_calls"]
                run["records_calls"] = n + 1
                run.setdefault("records_at", time.time())
                script = sim.scenario(run["sync_id"]).get("records_fault")
        if run is None:
            return self.reply(404, {"status": "error", "message": "Sync run %d not found" % run_id})
        if isinstance(script, list):
            behaviour = script[n] if n < len(script) else "ok"
        else:
            behaviour = script
        if SimHandler.behave(self, behaviour, lambda text: text.replace("RUN_ID", str(run_id))):
            return
        with sim.lock:
            items = sim.records_of(run)
        for key, field in [("status", "status"), ("operation", "operation")]:
            if key in query:
                items = [r for r in items if str(r[field]).lower() == query[key].lower()]
        if "primary_identifier" in query:
            items = [r for r in items if r["identifier"] is not None
                     and str(r["identifier"]) == query["primary_identifier"]]
        if what == "records_count":
            return self.reply(200, {"status": "success", "data": [{"record_count": len(items)}]})
        try:
            page, per_page = int(query.get("page", 1)), int(query.get("per_page", 25))
        except ValueError:
            return self.reply(400, {"status": "error", "message": "page and per_page must be integers"})
        if per_page > 100:
            return self.reply(400, {"status": "error", "message": "per_page must be less than or equal to 100"})
        if page < 1 or per_page < 1:
            return self.reply(400, {"status": "error", "message": "page and per_page must be at least 1"})
        self.reply(200, self.paginate(items, query))

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
        if parts == ["settings"] and self.command == "POST":
            order = json.loads(body or b"{}")
            with sim.lock:
                for key in ("rate_limit", "storm", "v1_retired"):
                    if key in order:
                        setattr(sim, key, order[key])
                if "extra_tokens" in order:
                    sim.extra_tokens = set(order["extra_tokens"])
            return self.reply(200, {"ok": True})
        if parts == ["reset"] and self.command == "POST":
            sim.reset()
            return self.reply(200, {"ok": True})
        if parts == ["requests"]:
            with sim.lock:
                return self.reply(200, list(sim.log))
        if parts == ["state"]:
            with sim.lock:
                return self.reply(200, {
                    "triggers": sim.triggers, "cancels": sim.cancels,
                    "runs": {i: sim.run_data(r) for i, r in sim.runs.items()},
                    "record_requests": sim.record_requests,
                    "records_count_requests": sim.records_count_requests,
                    "requests_by_token": sim.requests_by_token, "throttled": sim.throttled,
                    "during_pause": sim.during_pause, "pauses": sim.pauses,
                    "storm": sim.storm, "rate_limit": sim.rate_limit, "v1_retired": sim.v1_retired})
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
            self.record_requests, self.records_count_requests = {}, {}
            self.extra_tokens, self.rate_limit, self.storm, self.v1_retired = set(), None, None, False
            self.requests_by_token, self.throttled, self.during_pause = {}, {}, {}
            self.pauses, self.pause_until, self.blocked_until = {}, {}, {}

    def note_request(self, token, now):
        """Counts an API request of an account (called under the lock)."""
        self.requests_by_token.setdefault(token, []).append(now)
        if now < self.pause_until.get(token, 0):
            self.during_pause[token] = self.during_pause.get(token, 0) + 1

    def note_429(self, token, retry_after):
        """Counts a 429 and opens the pause its Retry-After asks for."""
        with self.lock:
            now = time.time()
            self.throttled[token] = self.throttled.get(token, 0) + 1
            until = pause_end(retry_after, now) if retry_after is not None else None
            if until is not None and until > now:
                self.pauses.setdefault(token, []).append([now, until])
                self.pause_until[token] = max(self.pause_until.get(token, 0), until)

    def max_per_second(self, token):
        """The most requests of token that arrived within one second."""
        with self.lock:
            times = sorted(self.requests_by_token.get(token, []))
        best, first = 0, 0
        for last, t in enumerate(times):
            while t - times[first] >= 1.0:
                first += 1
            best = max(best, last - first + 1)
        return best

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
                   "get_index": 0, "canceled": False, "force_full_sync": query.get("force_full_sync"),
                   "records_calls": 0}
            self.runs[run["id"]] = run
            return run

    def run_steps(self, run):
        scenario = self.scenario(run["sync_id"])
        per_run = scenario.get("runs", [])
        return per_run[run["ordinal"]] if run["ordinal"] < len(per_run) else \
            scenario.get("steps", DEFAULT_STEPS)

    def records_of(self, run):
        """The records of a run, from its sync's scenario (called under the
        lock)."""
        spec = self.scenario(run["sync_id"]).get("records", [])
        if isinstance(spec, int) and not isinstance(spec, bool):
            last = self.run_steps(run)[-1]
            last = last if isinstance(last, dict) else {}
            rejected = max(0, min(int(last.get("records_failed") or 0), spec))
            invalid = max(0, min(int(last.get("records_invalid") or 0), spec - rejected))
            spec = [{"status": "rejected"}] * rejected + [{"status": "invalid"}] * invalid + \
                [{}] * (spec - rejected - invalid)
        records = []
        for n, given in enumerate(spec, 1):
            status = given.get("status", "succeeded")
            ident = given.get("identifier", None if str(status).upper() == "NULL" else "id_%d" % n)
            record = {"record_payload": {"email": None if ident is None else "%s@example.com" % ident},
                      "identifier": ident, "batch_started_at": iso(run["created_at"]),
                      "batch_completed_at": iso(run.get("records_at", time.time())),
                      "operation": "upsert", "status": status,
                      "status_message": RECORD_MESSAGES.get(str(status).lower())}
            record.update(given)
            records.append(record)
        return records

    def run_data(self, run):
        steps = self.run_steps(run)
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
