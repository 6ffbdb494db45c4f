#!/usr/bin/env python3
"""fivetran_sim.py: a Fivetran REST API simulator on 127.0.0.1 (Python
standard library only). Speaks the current /v1/connections paths, checks
Basic auth (API key and secret), plays a scripted sync state machine per
connection, and reports what it was asked.

Run it alone:  python3 tests/fivetran_sim.py [--port N] [--key K] [--secret S] [--scenario FILE]
It prints "fivetran-sim listening on http://127.0.0.1:PORT" once ready.

Fivetran has no sync id: a client triggers, then reads the connection until
max(succeeded_at, failed_at) moves past what it saw before. The simulator
models exactly that. Every connection has a sync state machine:
  - a trigger (POST .../sync) on a connection that is not paused starts a
    sync: sync_state "syncing". With force false while a sync runs nothing
    new starts (still 200); with force true the running sync is stopped and
    a new one starts (counted in "restarts"). A trigger on a paused
    connection answers 200 and starts nothing.
  - each later GET of that connection (and only that; lists never advance
    anything) applies the sync's next step; the last step repeats:
      "syncing"      keeps syncing
      "succeeded"    succeeded_at = now, sync_state "scheduled", tasks
                     cleared; the sync is over
      "failed"       failed_at = now, sync_state "scheduled", status.tasks
                     holds [{"code": fail_code, "message": fail_message}];
                     the sync is over (failed_at is never cleared)
      "rescheduled"  sync_state "rescheduled", status.rescheduled_for = now +
                     3600 s (or the scenario's rescheduled_for); the sync goes
                     on only if further steps follow
      "paused"       paused true, sync_state "paused"; the sync is over
    A new succeeded_at / failed_at is max(now, latest of the two + 1 ms), so
    it is always strictly later than any earlier timestamp.
  - a resync (POST .../resync) on a connection that is not paused starts a
    historical sync (status.is_historical_sync true until it ends); when a
    sync already runs, that sync becomes the historical one (Fivetran
    completes a running sync first).
  - PATCH changes nothing: it is counted ("patches") and answered 200 with
    the unchanged connection, so a test can assert nobody ever PATCHed.

API endpoints (all need `Authorization: Basic base64(key:secret)`, else 401
{"code": "AuthFailed"}; an Accept header naming neither JSON nor */* is 406;
answers carry a Date header):
  GET   /v1/connections/{id}                 {"code": "Success", "data": CONNECTION}
  GET   /v1/connections?group_id=&schema=&cursor=&limit=
  GET   /v1/groups/{group}/connections?schema=&cursor=&limit=
        {"code": "Success", "data": {"items": [...], "next_cursor": C}};
        next_cursor is absent on the last page; limit 1..1000 (default
        100, else 400); schema is an exact match; an unknown group is 404
  POST  /v1/connections/{id}/sync            body optional {"force": bool}
  POST  /v1/connections/{id}/resync          body optional {"scope": {"schema": ["t1"]}}
  PATCH /v1/connections/{id}                 counted, no effect
  anything under /v1/connectors/             404 {"code": "NotFound", "message":
                                             "deprecated /v1/connectors/ endpoint"}
A POST with a body needs Content-Type application/json (415 otherwise); a
body that is not a JSON object is 400 {"code": "InvalidInput"}. An unknown
connection id is 404 {"code": "NotFound_Connection"}.

CONNECTION: id, group_id, service, service_version 1, schema, paused,
schedule_type, sync_frequency, created_at, data_delay_sensitivity "NORMAL",
pause_after_trial false, succeeded_at, failed_at (ISO-8601 UTC with
microseconds and Z, or null), status {setup_state, schema_status,
sync_state, update_state, is_historical_sync, rescheduled_for, tasks,
warnings}.

Control endpoints (no auth):
  POST /_sim/connections  {"ID": SCENARIO, ...} creates connections (merged:
                          an ID posted again is rebuilt from its new scenario,
                          its counters start again)
  POST /_sim/reset        forgets connections, the request log, throttling
  POST /_sim/throttle     {"count": N, "retry_after": "0" | null}: the next N
                          API requests answer 429 {"code": "TooManyRequests"},
                          with Retry-After only when retry_after is not null
  GET  /_sim/requests     every API request: method, path, query, auth,
                          content_type, accept, body (text), time
  GET  /_sim/state        {"connections": {ID: {triggers, forced, resyncs
                          (POSTs that passed validation, scripted failures
                          and lost ones included),
                          resync_scopes, restarts, syncs (started), gets,
                          patches, sync_state, paused, schedule_type,
                          succeeded_at, failed_at, rescheduled_for,
                          is_historical_sync}}, "patches": every PATCH
                          request seen (any path, any auth),
                          "throttle": 429s still to come}

SCENARIO fields per connection id (string ids like "decisive_bloom"; all
optional):
  name             the schema name (default: the id)
  group_id         default "sim_group"
  service          default "salesforce"
  paused           default false (true also means sync_state "paused")
  schedule_type    "auto" (default) or "manual"
  sync_frequency   minutes, default 360
  setup_state      default "connected"; update_state default "on_schedule"
  succeeded_at, failed_at   initial values: ISO text or null (default null)
  sync_state       initial: "scheduled" (default), "syncing" (a sync already
                   runs and counts as the first sync, finishing per its
                   steps), "rescheduled" (no sync runs; rescheduled_for set),
                   "paused"
  rescheduled_for  ISO text used whenever the connection is rescheduled
  steps            the steps of every sync (default ["syncing", "succeeded"])
  runs             a list of steps lists, one per successive sync (restarts
                   and resyncs included); syncs beyond the list use steps
  fail_message     text of the task a failed sync leaves (fail_code: its code,
                   default "sync_failed")
  trigger          behaviours of successive triggers, then "ok"
  get              behaviours of successive GETs of the connection before
                   the state machine applies, then "ok"
  resync           "ok" | "conflict" (409 {"code": "Conflict"}, no effect)
                   | another behaviour, or a list of these per successive
                   resync, then "ok"
  missing          true: the connection does not exist (404)

Behaviours: "ok"; {"http": CODE, "body": TEXT or JSON, "retry_after": V}
(no effect); "html" (502 HTML page); "html200"; "malformed" (a cut JSON
body); "no_data" ({"code": "Success"} without data); {"slow": SECONDS}
(wait, then act normally); {"raw": TEXT} (200 with TEXT as the body,
CONNECTION_ID replaced); "cut_headers" (the answer stops in its headers);
"lost" (the connection drops, no effect); "lost_created" (the effect
happens, then the connection drops); {"created_slow": SECONDS} (the effect
happens, the answer comes SECONDS later); {"raw_created": TEXT} (the effect
happens, the answer is TEXT). For a GET the "effect" is the state machine's
step.
"""
import argparse
import base64
import binascii
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from sim_server import SimHandler, SimServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_KEY = "sim-fivetran-key"
DEFAULT_SECRET = "sim-fivetran-hunter5-secret"
DEFAULT_STEPS = ["syncing", "succeeded"]
STEPS = ("syncing", "succeeded", "failed", "rescheduled", "paused")
CREATED_AT = "2024-01-15T09:30:00.000000Z"  # every connection's, for determinism
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_LIMIT = 1000


# --- time: integers of microseconds since the epoch, exact to the digit ---
def now_us():
    return time.time_ns() // 1000


def iso(us):
    """ISO-8601 UTC with microseconds and Z, or None."""
    if us is None:
        return None
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text):
    """Microseconds since the epoch from ISO text (naive means UTC), or None."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // timedelta(microseconds=1)


# --- cursors: opaque base64 of {"skip": N}, like Fivetran's ---------------
def encode_cursor(skip):
    return base64.urlsafe_b64encode(json.dumps({"skip": skip}).encode()).decode().rstrip("=")


def decode_cursor(cursor):
    """The skip count in a cursor; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        skip = json.loads(raw)["skip"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("bad cursor")
    if not isinstance(skip, int) or skip < 0:
        raise ValueError("bad cursor")
    return skip


def next_behaviour(script, index):
    """The behaviour for the index-th call: a list plays in order, then
    "ok"; a single behaviour applies to every call."""
    if isinstance(script, list):
        return script[index] if index < len(script) else "ok"
    return script if script is not None else "ok"


class Handler(SimHandler):
    server_version = "fivetran-sim"

    # --- plumbing -----------------------------------------------------

    def error(self, code, fivetran_code, message, headers=()):
        self.reply(code, {"code": fivetran_code, "message": message}, headers=headers)

    def error_body(self, code):
        return {"code": "TooManyRequests" if code == 429 else "SimulatedError",
                "message": "simulated HTTP %d" % code}

    MALFORMED = '{"code": "Success", "data": {'

    def no_data_body(self):
        return {"code": "Success"}

    def behave(self, behaviour, conn_id=""):
        """Plays a scripted failure (sim_server.py); {"raw": TEXT} has
        "CONNECTION_ID" replaced by the connection's id."""
        return super().behave(behaviour, lambda text: text.replace("CONNECTION_ID", conn_id))

    def play(self, behaviour, act, answer, conn_id=""):
        """Plays a behaviour around a request's effect: act() makes the
        effect, answer(result) sends the normal answer."""
        if behaviour == "lost_created":
            act()
            return self.drop()
        if isinstance(behaviour, dict) and "created_slow" in behaviour:
            result = act()
            time.sleep(behaviour["created_slow"])
            return answer(result)
        if isinstance(behaviour, dict) and "raw_created" in behaviour:
            act()
            return self.reply(200, behaviour["raw_created"].replace("CONNECTION_ID", conn_id))
        if self.behave(behaviour, conn_id):
            return
        answer(act())

    def read_json(self, body):
        """The request body as a dict ({} when empty), or None after
        answering 415 (not JSON) or 400 (not a JSON object)."""
        if not body.strip():
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self.error(415, "UnsupportedMediaType", "Content-Type must be application/json")
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.error(400, "InvalidInput", "the request body must be a JSON object")
            return None
        return payload

    def authorized(self):
        scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            pair = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return pair == "%s:%s" % (self.server.key, self.server.secret)

    def acceptable(self):
        """Fivetran answers 406 to an Accept it cannot serve; JSON (any
        version parameter), application/* and */* are fine."""
        accept = self.headers.get("Accept")
        if not accept:
            return True
        kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
        return any(k in ("*/*", "application/*", "application/json") for k in kinds)

    # --- dispatch -----------------------------------------------------
    def handle_any(self):
        sim = self.server
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = [p for p in url.path.split("/") if p]
        if parts[:1] == ["_sim"]:
            return self.control(parts[1:], body)
        sim.record(self, url.path, query, body)
        throttled, retry_after = sim.take_throttle()
        if throttled:
            headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
            return self.error(429, "TooManyRequests", "Rate limit exceeded (simulated)", headers)
        if not self.authorized():
            return self.error(401, "AuthFailed", "Missing or invalid API key/secret")
        if not self.acceptable():
            return self.error(406, "NotAcceptable", "Unsupported Accept header")
        self.route(parts, query, body)

    def route(self, parts, query, body):
        sim = self.server
        if parts[:2] == ["v1", "connectors"]:
            return self.error(404, "NotFound", "deprecated /v1/connectors/ endpoint")
        if parts == ["v1", "connections"]:
            return self.only("GET") or self.list_connections(query, query.get("group_id"))
        if len(parts) == 4 and parts[:2] == ["v1", "groups"] and parts[3] == "connections":
            if self.only("GET"):
                return
            if not sim.group_exists(parts[2]):
                return self.error(404, "NotFound_Group", "Group with id '%s' does not exist." % parts[2])
            return self.list_connections(query, parts[2])
        if len(parts) in (3, 4) and parts[:2] == ["v1", "connections"]:
            return self.connection_route(parts[2], parts[3:], body)
        self.error(404, "NotFound", "no such endpoint: %s %s" % (self.command, self.path))

    def connection_route(self, conn_id, rest, body):
        sim = self.server
        conn = sim.connection(conn_id)
        if conn is None:
            return self.error(404, "NotFound_Connection",
                              "Connection with id '%s' does not exist." % conn_id)
        if rest == []:
            if self.command == "PATCH":
                return self.patch(conn)
            return self.only("GET") or self.get_connection(conn)
        if rest == ["sync"]:
            return self.only("POST") or self.trigger(conn, body)
        if rest == ["resync"]:
            return self.only("POST") or self.resync(conn, body)
        self.error(404, "NotFound", "no such endpoint: %s %s" % (self.command, self.path))

    def only(self, method):
        """Answers 405 and returns True unless the request uses method."""
        if self.command == method:
            return False
        self.error(405, "MethodNotAllowed", "Method %s is not allowed here" % self.command)
        return True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = SimHandler.handle_quietly

    # --- API ------------------------------------------------------------
    def get_connection(self, conn):
        sim = self.server
        behaviour = sim.next_script_step(conn, "get")
        self.play(behaviour, lambda: sim.advance(conn),
                  lambda _: self.reply(200, {"code": "Success", "data": sim.connection_data(conn)}),
                  conn["id"])

    def trigger(self, conn, body):
        sim = self.server
        payload = self.read_json(body)
        if payload is None:
            return
        force = payload.get("force", False)
        if not isinstance(force, bool):
            return self.error(400, "InvalidInput", "force must be a boolean")
        behaviour = sim.count_trigger(conn, force)
        message = "Sync has been successfully triggered for connection with id '%s'" % conn["id"]
        self.play(behaviour, lambda: sim.start_sync(conn, force),
                  lambda _: self.reply(200, {"code": "Success", "message": message}), conn["id"])

    def resync(self, conn, body):
        sim = self.server
        payload = self.read_json(body)
        if payload is None:
            return
        scope = payload.get("scope")
        if "scope" in payload and (not isinstance(scope, dict) or not scope):
            return self.error(400, "InvalidInput", "scope must name at least one schema")
        behaviour = sim.count_resync(conn, scope)
        if behaviour == "conflict":
            return self.error(409, "Conflict", "Cannot re-sync connection with id '%s': "
                              "the running sync cannot be completed first" % conn["id"])
        self.play(behaviour, lambda: sim.start_resync(conn),
                  lambda _: self.reply(200, {"code": "Success",
                                             "message": "Re-sync has been triggered successfully"}),
                  conn["id"])

    def patch(self, conn):
        sim = self.server
        with sim.lock:
            conn["patches"] += 1
        self.reply(200, {"code": "Success", "message": "Connection has been updated",
                         "data": sim.connection_data(conn)})

    def list_connections(self, query, group_id):
        sim = self.server
        try:
            limit = int(query.get("limit", 100))
            skip = decode_cursor(query["cursor"]) if query.get("cursor") else 0
        except ValueError:
            return self.error(400, "InvalidInput", "invalid cursor or limit")
        if not 1 <= limit <= MAX_LIMIT:
            return self.error(400, "InvalidInput", "limit must be between 1 and %d" % MAX_LIMIT)
        items = sim.list_data(group_id, query.get("schema"))
        data = {"items": items[skip:skip + limit]}
        if skip + limit < len(items):
            data["next_cursor"] = encode_cursor(skip + limit)
        self.reply(200, {"code": "Success", "data": data})

    SCENARIOS = "connections"  # POST /_sim/connections sets scenarios (sim_server.py has the rest)


class FivetranSim(SimServer):
    def __init__(self, port=0, key=DEFAULT_KEY, secret=DEFAULT_SECRET, scenarios=None):
        super().__init__(port, Handler)
        self.key, self.secret = key, secret
        self.reset()
        self.configure(scenarios or {})

    def reset(self):
        with self.lock:
            self.scenarios, self.connections, self.log = {}, {}, []
            self.patches = 0  # every PATCH request seen, whatever its path or auth
            self.throttle_left, self.throttle_retry_after = 0, None

    # --- configuration and bookkeeping ------------------------------------
    def configure(self, scenarios):
        """Sets scenarios (merged) and builds their connections afresh."""
        with self.lock:
            for conn_id, scenario in scenarios.items():
                self.scenarios[conn_id] = scenario
                self.connections[conn_id] = self.new_connection(conn_id, scenario)

    def new_connection(self, conn_id, scenario):
        """A connection's live state, from its scenario (called under the lock)."""
        conn = {"id": conn_id, "scenario": scenario,
                "paused": bool(scenario.get("paused")),
                "schedule_type": scenario.get("schedule_type", "auto"),
                "succeeded_at": parse_iso(scenario.get("succeeded_at")),
                "failed_at": parse_iso(scenario.get("failed_at")),
                "sync_state": "scheduled", "rescheduled_for": None, "historical": False,
                "tasks": [], "sync": None,
                "triggers": 0, "forced": 0, "resyncs": 0, "resync_scopes": [], "restarts": 0,
                "syncs": 0, "gets": 0, "patches": 0, "index": {}}
        initial = scenario.get("sync_state", "paused" if conn["paused"] else "scheduled")
        if initial == "syncing":
            self.begin_sync(conn)
        elif initial == "rescheduled":
            self.reschedule(conn)
        elif initial == "paused":
            conn["paused"], conn["sync_state"] = True, "paused"
        elif initial != "scheduled":
            raise ValueError("unknown initial sync_state %r" % (initial,))
        return conn

    def record(self, handler, path, query, body):
        with self.lock:
            if handler.command == "PATCH":
                self.patches += 1
            self.log.append({"method": handler.command, "path": path, "query": query,
                             "auth": handler.headers.get("Authorization"),
                             "content_type": handler.headers.get("Content-Type"),
                             "accept": handler.headers.get("Accept"),
                             "body": body.decode("utf-8", "replace"), "time": time.time()})

    def connection(self, conn_id):
        """The live connection, or None when unknown or missing."""
        with self.lock:
            conn = self.connections.get(conn_id)
            return None if conn is None or conn["scenario"].get("missing") else conn

    def group_exists(self, group_id):
        with self.lock:
            return any(self.group_of(c) == group_id for c in self.connections.values()
                       if not c["scenario"].get("missing"))

    @staticmethod
    def group_of(conn):
        return conn["scenario"].get("group_id", "sim_group")

    def next_script_step(self, conn, kind):
        """The behaviour of this call of kind ("trigger", "get", "resync")."""
        with self.lock:
            n = conn["index"].get(kind, 0)
            conn["index"][kind] = n + 1
            return next_behaviour(conn["scenario"].get(kind), n)

    def count_trigger(self, conn, force):
        with self.lock:
            conn["triggers"] += 1
            conn["forced"] += 1 if force else 0
        return self.next_script_step(conn, "trigger")

    def count_resync(self, conn, scope):
        with self.lock:
            conn["resyncs"] += 1
            conn["resync_scopes"].append(scope)
        return self.next_script_step(conn, "resync")

    # --- the sync state machine (the helpers below run under the lock) ----
    def start_sync(self, conn, force):
        """A trigger's effect: start a sync unless paused, or unless one
        runs and force is false; force restarts a running sync."""
        with self.lock:
            if conn["paused"]:
                return
            if conn["sync_state"] == "syncing":
                if not force:
                    return
                conn["restarts"] += 1
            self.begin_sync(conn)

    def start_resync(self, conn):
        """A resync's effect: the running sync, or a new one, is historical."""
        with self.lock:
            if conn["paused"]:
                return
            if conn["sync_state"] != "syncing":
                self.begin_sync(conn)
            conn["historical"] = True

    def begin_sync(self, conn):
        conn["sync"] = {"ordinal": conn["syncs"], "polls": 0}
        conn["syncs"] += 1
        conn["sync_state"], conn["rescheduled_for"], conn["historical"] = "syncing", None, False

    def end_sync(self, conn, sync_state):
        conn["sync"], conn["sync_state"], conn["historical"] = None, sync_state, False

    def reschedule(self, conn):
        if conn["sync_state"] != "rescheduled":
            given = parse_iso(conn["scenario"].get("rescheduled_for"))
            conn["rescheduled_for"] = given if given is not None else now_us() + 3600 * 10 ** 6
        conn["sync_state"] = "rescheduled"

    def stamp(self, conn):
        """Now, but strictly later than the connection's latest timestamp."""
        latest = max([t for t in (conn["succeeded_at"], conn["failed_at"]) if t is not None],
                     default=None)
        return now_us() if latest is None else max(now_us(), latest + 1000)

    def steps_of(self, conn, ordinal):
        scenario = conn["scenario"]
        per_sync = scenario.get("runs", [])
        return per_sync[ordinal] if ordinal < len(per_sync) else scenario.get("steps", DEFAULT_STEPS)

    def advance(self, conn):
        """A GET's effect: the running sync takes its next step."""
        with self.lock:
            conn["gets"] += 1
            sync = conn["sync"]
            if sync is None:
                return
            steps = self.steps_of(conn, sync["ordinal"])
            step = steps[min(sync["polls"], len(steps) - 1)]
            sync["polls"] += 1
            self.apply_step(conn, step)

    def apply_step(self, conn, step):
        if step == "syncing":
            conn["sync_state"], conn["rescheduled_for"] = "syncing", None
        elif step == "succeeded":
            conn["succeeded_at"], conn["tasks"] = self.stamp(conn), []
            self.end_sync(conn, "scheduled")
        elif step == "failed":
            conn["failed_at"] = self.stamp(conn)
            scenario = conn["scenario"]
            conn["tasks"] = [{"code": scenario.get("fail_code", "sync_failed"),
                              "message": scenario.get("fail_message", "Sync failed (simulated)")}]
            self.end_sync(conn, "scheduled")
        elif step == "rescheduled":
            self.reschedule(conn)
        elif step == "paused":
            conn["paused"] = True
            self.end_sync(conn, "paused")
        else:
            raise ValueError("unknown step %r (one of %s)" % (step, ", ".join(STEPS)))

    # --- rendering --------------------------------------------------------
    def connection_data(self, conn):
        with self.lock:
            return self.render(conn)

    def render(self, conn):
        scenario = conn["scenario"]
        return {"id": conn["id"], "group_id": self.group_of(conn),
                "service": scenario.get("service", "salesforce"), "service_version": 1,
                "schema": scenario.get("name", conn["id"]), "connected_by": "sim_user",
                "created_at": CREATED_AT,
                "succeeded_at": iso(conn["succeeded_at"]), "failed_at": iso(conn["failed_at"]),
                "paused": conn["paused"], "pause_after_trial": False,
                "sync_frequency": scenario.get("sync_frequency", 360),
                "schedule_type": conn["schedule_type"], "data_delay_sensitivity": "NORMAL",
                "status": {"setup_state": scenario.get("setup_state", "connected"),
                           "schema_status": "ready", "sync_state": conn["sync_state"],
                           "update_state": scenario.get("update_state", "on_schedule"),
                           "is_historical_sync": conn["historical"],
                           "rescheduled_for": iso(conn["rescheduled_for"]),
                           "tasks": [dict(t) for t in conn["tasks"]], "warnings": []}}

    def list_data(self, group_id, schema):
        """Every existing connection matching the filters, ordered by id."""
        with self.lock:
            found = [self.render(c) for _, c in sorted(self.connections.items())
                     if not c["scenario"].get("missing")]
        return [c for c in found if (group_id is None or c["group_id"] == group_id)
                and (schema is None or c["schema"] == schema)]

    def state(self):
        with self.lock:
            conns = {}
            for conn_id, c in self.connections.items():
                conns[conn_id] = {
                    k: c[k] for k in ("triggers", "forced", "resyncs", "resync_scopes", "restarts",
                                      "syncs", "gets", "patches", "sync_state", "paused",
                                      "schedule_type")}
                conns[conn_id].update({"succeeded_at": iso(c["succeeded_at"]),
                                       "failed_at": iso(c["failed_at"]),
                                       "rescheduled_for": iso(c["rescheduled_for"]),
                                       "is_historical_sync": c["historical"]})
            return {"connections": conns, "patches": self.patches, "throttle": self.throttle_left}


def main():
    parser = argparse.ArgumentParser(description="Fivetran API simulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default=DEFAULT_KEY)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--scenario", help="JSON file: {connection_id: SCENARIO}")
    args = parser.parse_args()
    scenarios = None
    if args.scenario:
        with open(args.scenario) as f:
            scenarios = json.load(f)
    sim = FivetranSim(args.port, args.key, args.secret, scenarios)
    sim.serve_main("fivetran-sim")


if __name__ == "__main__":
    sys.exit(main())
