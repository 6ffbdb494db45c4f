#!/usr/bin/env python3
"""dbt_cloud_sim.py: a dbt Cloud Administrative API v2 simulator on
127.0.0.1 (Python standard library only). Speaks the job-run paths, checks
the token and the account id, plays scripted runs per job, serves
run_results.json, and reports what it was asked.

Run it alone:  python3 tests/dbt_cloud_sim.py [--port N] [--token T] [--account N] [--scenario FILE]
It prints "dbt-cloud-sim listening on http://127.0.0.1:PORT" once ready.

API endpoints, all under /api/v2/accounts/{account_id}/ (auth:
`Authorization: Token <token>` or `Bearer <token>`, else 401 envelope with
user_message "Invalid token."; another account id is 404 "Unauthorized or
Not Found"). Every path needs its trailing slash, as in the spec: a POST
without it answers 405 {"detail": "Method \"GET\" not allowed."} (what a
client sees after the redirect turns its POST into a GET) and has no
effect; a GET without it is 404 {"detail": "Not found."}.
  POST jobs/{job_id}/run/      JSON body, "cause" required (1..255 chars,
                               else 400 envelope with data {"cause": ...});
                               the whole body is recorded; data = the new RUN
                               (status 1)
  POST jobs/{job_id}/rerun/    no body: when the job's most recent run (by
                               id, its current status) is 20 the new run is a
                               retry of it (is_retry true, retrying_run_id N,
                               trigger.cause "Retry of run N"), else a fresh
                               run (cause "Triggered via rerun API"); data = RUN
  GET  jobs/?project_id=&environment_id=&name__icontains=&limit=&offset=
  GET  jobs/{job_id}/
  GET  runs/{id}/?include_related=["trigger","run_steps","job"]   data = RUN
  GET  runs/?job_definition_id=&project_id=&environment_id=&status=
          &status__in=[1,2,3]&order_by=-id&limit=&offset=&include_related=
       order_by id|created_at|finished_at, "-" = newest first (default id)
  POST runs/{id}/cancel/       data = the RUN as it is; the cancel takes effect
                               at the run's next GET, which shows status 30
                               (after cancel_delay more GETs, see below).
                               Cancelling a finished run changes nothing.
  GET  runs/{id}/artifacts/    data = ["run_results.json"] once available
  GET  runs/{id}/artifacts/run_results.json[?step=N]   the document itself
                               (not enveloped) once the run is finished and
                               its scenario gives one, else 404 envelope
Lists are paged by limit (default 100, at most 100: larger is cut to 100,
and extra.filters.limit says so) and offset. include_related may be a JSON
list, repeated parameters or a comma list. A run always includes "trigger";
"run_steps" holds steps only when include_related asks for run_steps (else
[]); "job" is the job only when asked (else null). A JSON body needs
Content-Type application/json (form bodies are read too; another type is
415 {"detail": ...}).

Envelope: {"data": ..., "status": {"code": 200, "is_success": true,
"user_message": "Success!", "developer_message": ""}}, and for lists
"extra": {"filters": {"limit": L, "offset": O, ...}, "order_by": ...,
"pagination": {"count": n, "total_count": N}}. Answers carry a Date header.

RUN fields: id (from 70000000000 up: past int32), trigger_id, account_id,
job_definition_id, job_id, project_id, environment_id, status (1 Queued, 2
Starting, 3 Running, 10 Success, 20 Error, 30 Cancelled), status_humanized,
status_message, in_progress, is_complete, is_success, is_error,
is_cancelled, is_running, created_at, updated_at, dequeued_at, started_at,
finished_at ("YYYY-MM-DD HH:MM:SS.ffffff+00:00" as dbt Cloud writes them,
or null), duration, duration_humanized, href
("<base>/deploy/{account}/projects/{project}/runs/{id}/"), git_branch,
git_sha, dbt_version, artifacts_saved, is_retry, retrying_run_id, can_retry,
trigger {id, cause, cause_category "api", the body's overrides}, run_steps
[{index, name, status, status_humanized, logs, ...}]: "Clone git
repository", "Create profile from connection", then one "Invoke dbt with
`CMD`" per command (steps_override or the job's execute_steps); on error the
failing step (failed_step, default the last) has status 20 and the
status_message in its logs.

A run's status: 1 when created; each GET of the run (lists never advance
anything) applies its next step, the last repeating; a finished run (10, 20,
30) never changes again.

Control endpoints (no auth):
  POST /_sim/jobs       {"123": SCENARIO, ...} sets job scenarios (merged; an
                        id posted again gets the new scenario, its runs stay)
                        and creates the existing_runs they list
  POST /_sim/reset      forgets jobs, runs, the request log, throttling (run
                        ids start again at 70000000000)
  POST /_sim/throttle   {"count": N, "retry_after": "0" | null}: the next N
                        API requests answer 429, with Retry-After only when
                        retry_after is not null
  GET  /_sim/requests   every API request: method, path, query, raw_query,
                        auth, content_type, body (text), time
  GET  /_sim/state      {"jobs": {"123": {"triggers", "reruns", "retries",
                        "bodies" (the bodies of run/ POSTs that passed
                        validation, in order, lost ones included; triggers
                        counts the same POSTs), "runs": [{id,
                        status, status_humanized, cause, cancels, is_retry,
                        retry_of, polls, existing}]}}, "throttle": N}

SCENARIO fields per job id (all optional):
  name, project_id (default 1000), environment_id (default 2000),
  execute_steps (default ["dbt build"])
  steps           what successive GETs of a run report: an int status or a
                  dict of run fields ({"status": 20, "status_message": "x"});
                  the last repeats. Default [3, 10]. A status dbt Cloud
                  does not document (99) is served as is, "Unknown", and
                  does not finish the run
  runs            a list of steps lists, one per run created by run/ or
                  rerun/ in order; runs beyond the list use steps
  trigger         behaviours of successive run/ POSTs, then "ok"
  rerun           behaviours of successive rerun/ POSTs, then "ok"
  cancel          behaviours of successive cancel/ POSTs, then "ok"
  get             behaviours of each run's successive GETs before its steps
                  apply, then "ok"
  cancel_delay    GETs after a cancel that still follow the steps (default 0)
  status_message  the message of a run that ends in error (default a
                  database error text); failed_step: the failing dbt
                  command's position (1-based, default the last)
  run_results     "default" (3 models success, 2 tests pass),
                  "default_error" (2 models success, 1 error, 2 tests
                  skipped), a dict (served as is), or a list of these (null =
                  none) per run in order
  existing_runs   runs already there when the scenario is set: [{"status": 3,
                  "cause": "scheduled", "cause_category": "api", "steps":
                  [...] (default the job's steps), "age": seconds since
                  creation (default 60), "status_message", "run_results"}]
  missing         true: the job does not exist (404)
Behaviours: "ok"; {"http": CODE, "body": TEXT or JSON, "retry_after": V}
(no effect); "html" (502 HTML page); "html200"; "malformed" (a cut JSON
body); "no_data" (a success envelope with data null); {"slow": SECONDS}
(wait, then act normally); {"raw": TEXT} (200 with TEXT as the body, RUN_ID
replaced by the run's id, or the last run's for a POST); "cut_headers" (the
answer stops in its headers); "lost" (the connection drops, no effect);
"lost_created" (the effect happens, then the connection drops);
{"created_slow": SECONDS} (the effect happens, the answer comes SECONDS
later); {"raw_created": TEXT} (the effect happens, the answer is TEXT with
RUN_ID replaced). For a GET the "effect" is the run's next step.
"""
import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from sim_server import SimHandler, SimServer
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "sim-dbt-hunter6-token"
DEFAULT_ACCOUNT = 42
DEFAULT_STEPS = [3, 10]
FIRST_RUN_ID = 70000000000  # past int32 on purpose
STATUS_NAMES = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}
FINISHED = (10, 20, 30)
MAX_LIMIT = 100
ORDER_KEYS = {"id": "id", "created_at": "created_us", "finished_at": "finished_us"}
# trigger body fields a run keeps in its "trigger" object
TRIGGER_FIELDS = ("git_sha", "git_branch", "azure_pull_request_id", "github_pull_request_id",
                  "gitlab_merge_request_id", "non_native_pull_request_id", "schema_override",
                  "dbt_version_override", "threads_override", "target_name_override",
                  "generate_docs_override", "timeout_seconds_override", "steps_override")
DEFAULT_ERROR = ("Database Error in model customers (models/customers.sql)\n"
                 "  relation \"raw.orders\" does not exist")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- time: integers of microseconds since the epoch --------------------------
def now_us():
    return time.time_ns() // 1000


def stamp(us):
    """dbt Cloud's timestamp text ("2024-06-01 12:00:00.123456+00:00"), or None."""
    if us is None:
        return None
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def iso_z(us):
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(start_us, end_us):
    """("HH:MM:SS", "N minutes, M seconds") between two moments."""
    seconds = max(0, (end_us - start_us) // 10 ** 6)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    human = "%d minutes, %d seconds" % (hours * 60 + minutes, secs) if seconds >= 60 \
        else "%d seconds" % secs
    return "%02d:%02d:%02d" % (hours, minutes, secs), human


def humanized(status):
    """A status's name; one dbt Cloud does not document (a test's 99) is
    "Unknown"."""
    return STATUS_NAMES.get(status, "Unknown")


def next_behaviour(script, index):
    """The behaviour for the index-th call: a list plays in order, then "ok"."""
    if isinstance(script, list):
        return script[index] if index < len(script) else "ok"
    return script if script is not None else "ok"


def int_list(text):
    """[1, 2, 3] from '[1,2,3]' or '1,2,3'; ValueError otherwise."""
    text = text.strip()
    values = json.loads(text) if text.startswith("[") else text.split(",")
    return [int(v) for v in values]


def related(values):
    """The include_related names, from a JSON list, repeats or a comma list."""
    names = set()
    for value in values:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value.split(",")
        if isinstance(parsed, str):
            parsed = [parsed]
        names.update(str(p).strip().strip("'\"") for p in parsed if isinstance(p, (str, int)))
    return names


# --- run_results.json ---------------------------------------------------------
def run_results_document(run_id, finished_us, failing=False):
    """A typical run_results.json of `dbt build`: three models (the last one
    in error when failing) and two tests (skipped when failing)."""
    results, clock = [], finished_us - 10 * 10 ** 6
    models = [("stg_customers", 100), ("stg_orders", 99), ("customers", 62)]
    for i, (name, rows) in enumerate(models):
        error = failing and i == len(models) - 1
        results.append(result_entry(
            "model.jaffle_shop." + name, "error" if error else "success", clock,
            message=DEFAULT_ERROR if error else "SUCCESS %d" % rows,
            adapter_response={} if error else {"_message": "SUCCESS %d" % rows, "code": "SUCCESS",
                                               "rows_affected": rows},
            failures=None, relation='"analytics"."dbt_sim"."%s"' % name,
            code="select * from {{ ref('raw_%s') }}" % name))
        clock += 10 ** 6
    for name in ("unique_customers_customer_id.c5af1ff4b1", "not_null_customers_customer_id.5c9bf9911d"):
        results.append(result_entry(
            "test.jaffle_shop." + name,
            "skipped" if failing else "pass", clock, message=None, adapter_response={},
            failures=None if failing else 0, relation=None,
            code="select customer_id from customers where customer_id is null"))
        clock += 10 ** 6
    return {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
                         "dbt_version": "1.9.0", "generated_at": iso_z(finished_us),
                         "invocation_id": "00000000-0000-4000-8000-%012d" % (run_id % 10 ** 12),
                         "env": {}},
            "results": results,
            "elapsed_time": round(len(results) * 1.0, 3),
            "args": {"which": "build", "invocation_command": "dbt build", "target": "prod",
                     "threads": 4}}


def result_entry(unique_id, status, started_us, message, adapter_response, failures,
                 relation, code):
    compile_end = started_us + 100000
    end = started_us + 900000
    return {"unique_id": unique_id, "status": status, "thread_id": "Thread-1 (worker)",
            "execution_time": 0.9,
            "timing": [{"name": "compile", "started_at": iso_z(started_us),
                        "completed_at": iso_z(compile_end)},
                       {"name": "execute", "started_at": iso_z(compile_end),
                        "completed_at": iso_z(end)}] if status != "skipped" else [],
            "message": message, "adapter_response": adapter_response, "failures": failures,
            "compiled": status != "skipped", "compiled_code": code, "relation_name": relation,
            "batch_results": None}


class Handler(SimHandler):
    server_version = "dbt-cloud-sim"

    # --- plumbing -----------------------------------------------------

    def ok(self, data, extra=None):
        payload = {"data": data, "status": {"code": 200, "is_success": True,
                                            "user_message": "Success!", "developer_message": ""}}
        if extra is not None:
            payload["extra"] = extra
        self.reply(200, payload)

    def fail(self, code, user_message, data=None, developer_message="", headers=()):
        self.reply(code, {"status": {"code": code, "is_success": False, "user_message": user_message,
                                     "developer_message": developer_message}, "data": data},
                   headers=headers)

    def not_found(self):
        self.fail(404, "Unauthorized or Not Found")

    def invalid(self, data):
        self.fail(400, "The request was invalid. Please double check the provided data and try again.",
                  data)

    def error_body(self, code):
        return {"status": {"code": code, "is_success": False, "user_message": "simulated HTTP %d" % code,
                           "developer_message": ""}, "data": None}

    MALFORMED = '{"status": {"code": 200, "is_success": true'

    def no_data_body(self):
        return {"data": None, "status": {"code": 200, "is_success": True, "user_message": "Success!",
                                         "developer_message": ""}}

    def behave(self, behaviour, run_id=None):
        """Plays a scripted failure (sim_server.py); {"raw": TEXT} has
        "RUN_ID" replaced by the run's id."""
        return super().behave(behaviour, lambda text: text.replace("RUN_ID", str(run_id)))

    def play(self, behaviour, act, answer, run_id=None):
        """Plays a behaviour around a request's effect: act() makes the
        effect and returns the run concerned, answer(run) sends the normal
        answer."""
        if behaviour == "lost_created":
            act()
            return self.drop()
        if isinstance(behaviour, dict) and "created_slow" in behaviour:
            run = act()
            time.sleep(behaviour["created_slow"])
            return answer(run)
        if isinstance(behaviour, dict) and "raw_created" in behaviour:
            run = act()
            return self.reply(200, behaviour["raw_created"].replace("RUN_ID", str(run["id"])))
        if self.behave(behaviour, run_id):
            return
        answer(act())

    def read_body(self, body):
        """The request body as a dict ({} when empty), or None after
        answering 415 (a type neither JSON nor form) or 400."""
        if not body.strip():
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", "replace"))
            return {k: v if k == "steps_override" else v[-1] for k, v in form.items()}
        if ctype != "application/json":
            self.reply(415, {"detail": "Unsupported media type \"%s\" in request." % ctype})
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.invalid({"non_field_errors": "the body must be a JSON object"})
            return None
        return payload

    def authorized(self):
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme in ("Token", "Bearer") and token.strip() == self.server.token

    # --- dispatch -----------------------------------------------------
    def handle_any(self):
        sim = self.server
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in params.items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = [p for p in url.path.split("/") if p]
        if parts[:1] == ["_sim"]:
            return self.control(parts[1:], body)
        sim.record(self, url, query, body)
        throttled, retry_after = sim.take_throttle()
        if throttled:
            headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
            return self.fail(429, "Too many requests. Please wait before retrying.", headers=headers)
        if not self.authorized():
            return self.fail(401, "Invalid token.", developer_message=None)
        if len(parts) < 4 or parts[:3] != ["api", "v2", "accounts"]:
            return self.not_found()
        if parts[3] != str(sim.account_id):
            return self.not_found()
        rest = parts[4:]
        if not url.path.endswith("/") and not self.is_artifact(rest):
            if self.command == "POST":
                return self.reply(405, {"detail": "Method \"GET\" not allowed."})
            return self.reply(404, {"detail": "Not found."})
        self.route(rest, query, params, body)

    @staticmethod
    def is_artifact(rest):
        """runs/{id}/artifacts/{file}: a file name, without trailing slash."""
        return len(rest) >= 4 and rest[0] == "runs" and rest[2] == "artifacts"

    def route(self, rest, query, params, body):
        sim = self.server
        include = related(params.get("include_related", []))
        if rest == ["jobs"]:
            return self.only("GET") or self.list_jobs(query)
        if rest == ["runs"]:
            return self.only("GET") or self.list_runs(query, include)
        if len(rest) >= 2 and rest[0] in ("jobs", "runs") and not rest[1].isdigit():
            return self.not_found()
        if rest[:1] == ["jobs"] and len(rest) in (2, 3):
            job_id = int(rest[1])
            if sim.job(job_id) is None:
                return self.not_found()
            if len(rest) == 2:
                return self.only("GET") or self.ok(sim.job_data(job_id))
            if rest[2] == "run":
                return self.only("POST") or self.run_job(job_id, body)
            if rest[2] == "rerun":
                return self.only("POST") or self.rerun_job(job_id)
        if rest[:1] == ["runs"] and len(rest) >= 2:
            run = sim.run(int(rest[1]))
            if run is None:
                return self.not_found()
            if len(rest) == 2:
                return self.only("GET") or self.get_run(run, include)
            if rest[2:] == ["cancel"]:
                return self.only("POST") or self.cancel_run(run, include)
            if rest[2:] == ["artifacts"]:
                return self.only("GET") or self.ok(["run_results.json"]
                                                   if sim.run_results(run) is not None else [])
            if rest[2:] == ["artifacts", "run_results.json"]:
                return self.only("GET") or self.artifact(run)
        self.not_found()

    def only(self, method):
        """Answers 405 and returns True unless the request uses method."""
        if self.command == method:
            return False
        self.reply(405, {"detail": "Method \"%s\" not allowed." % self.command})
        return True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = SimHandler.handle_quietly

    # --- API ------------------------------------------------------------
    def run_job(self, job_id, body):
        sim = self.server
        payload = self.read_body(body)
        if payload is None:
            return
        cause = payload.get("cause")
        if not isinstance(cause, str) or not cause:
            return self.invalid({"cause": "required key not provided"})
        if len(cause) > 255:
            return self.invalid({"cause": "length of value must be at most 255"})
        behaviour = sim.count_call(job_id, "trigger", payload)
        self.play(behaviour, lambda: sim.new_run(job_id, payload),
                  lambda run: self.ok(sim.run_data(run, set())), sim.last_run_id)

    def rerun_job(self, job_id):
        sim = self.server
        behaviour = sim.count_call(job_id, "rerun")
        self.play(behaviour, lambda: sim.rerun(job_id),
                  lambda run: self.ok(sim.run_data(run, set())), sim.last_run_id)

    def get_run(self, run, include):
        sim = self.server
        behaviour = sim.next_get(run)
        self.play(behaviour, lambda: sim.advance(run),
                  lambda _: self.ok(sim.run_data(run, include)), run["id"])

    def cancel_run(self, run, include):
        sim = self.server
        behaviour = sim.count_cancel(run)
        self.play(behaviour, lambda: sim.cancel(run),
                  lambda _: self.ok(sim.run_data(run, include)), run["id"])

    def artifact(self, run):
        document = self.server.run_results(run)
        if document is None:
            return self.not_found()
        self.reply(200, document)

    def page(self, query):
        """(limit, offset, filters) from the query, or None after a 400."""
        try:
            limit = min(int(query.get("limit", MAX_LIMIT)), MAX_LIMIT)
            offset = int(query.get("offset", 0))
        except ValueError:
            self.invalid({"limit": "expected an integer"})
            return None
        if limit < 1 or offset < 0:
            self.invalid({"limit": "limit must be positive and offset not negative"})
            return None
        filters = {k: v for k, v in query.items() if k not in ("limit", "offset", "order_by")}
        filters.update({"limit": limit, "offset": offset})
        return limit, offset, filters

    def list_answer(self, items, paging, order_by):
        limit, offset, filters = paging
        chunk = items[offset:offset + limit]
        self.ok(chunk, {"filters": filters, "order_by": order_by,
                        "pagination": {"count": len(chunk), "total_count": len(items)}})

    def list_jobs(self, query):
        sim = self.server
        paging = self.page(query)
        if paging is None:
            return
        try:
            wanted = {k: int(query[k]) for k in ("project_id", "environment_id") if k in query}
        except ValueError:
            return self.invalid({"project_id": "expected an integer"})
        needle = query.get("name__icontains", "").lower()
        jobs = [j for j in sim.jobs_data()
                if all(j[k] == v for k, v in wanted.items()) and needle in j["name"].lower()]
        self.list_answer(jobs, paging, "id")

    def list_runs(self, query, include):
        sim = self.server
        order_by = query.get("order_by", "id")
        if order_by.lstrip("-") not in ORDER_KEYS:
            return self.invalid({"order_by": "unknown field %s" % order_by})
        paging = self.page(query)
        if paging is None:
            return
        try:
            wanted = {k: int(query[k]) for k in ("job_definition_id", "project_id",
                                                 "environment_id", "status") if k in query}
            statuses = int_list(query["status__in"]) if "status__in" in query else None
        except (ValueError, TypeError):
            return self.invalid({"status__in": "expected a list of integers"})
        runs = sim.runs_data(order_by, include)
        runs = [r for r in runs if all(r[k] == v for k, v in wanted.items())
                and (statuses is None or r["status"] in statuses)]
        self.list_answer(runs, paging, order_by)

    SCENARIOS = "jobs"  # POST /_sim/jobs sets scenarios (sim_server.py has the rest)


class DbtCloudSim(SimServer):
    def __init__(self, port=0, token=DEFAULT_TOKEN, account_id=DEFAULT_ACCOUNT, scenarios=None):
        super().__init__(port, Handler)
        self.token, self.account_id = token, int(account_id)
        self.reset()
        self.configure(scenarios or {})

    def reset(self):
        with self.lock:
            self.jobs, self.runs, self.log, self.stats = {}, {}, [], {}
            self.next_run_id = FIRST_RUN_ID
            self.last_run_id = None
            self.throttle_left, self.throttle_retry_after = 0, None

    # --- configuration and bookkeeping ------------------------------------
    def configure(self, scenarios):
        """Sets job scenarios (merged) and creates their existing runs."""
        with self.lock:
            for key, scenario in scenarios.items():
                job_id = int(key)
                self.jobs[job_id] = scenario
                self.job_stats(job_id)
                for entry in scenario.get("existing_runs", []):
                    self.add_existing_run(job_id, entry)

    def job_stats(self, job_id):
        """The job's counters (called under the lock)."""
        return self.stats.setdefault(job_id, {"triggers": 0, "reruns": 0, "retries": 0,
                                              "bodies": [], "ordinal": 0, "index": {}})

    def record(self, handler, url, query, body):
        with self.lock:
            self.log.append({"method": handler.command, "path": url.path, "query": query,
                             "raw_query": url.query, "auth": handler.headers.get("Authorization"),
                             "content_type": handler.headers.get("Content-Type"),
                             "body": body.decode("utf-8", "replace"), "time": time.time()})

    def job(self, job_id):
        """The job's scenario, or None when unknown or missing."""
        with self.lock:
            scenario = self.jobs.get(job_id)
            return None if scenario is None or scenario.get("missing") else scenario

    def run(self, run_id):
        with self.lock:
            return self.runs.get(run_id)

    def count_call(self, job_id, kind, body=None):
        """Counts a run/ ("trigger") or rerun/ POST; returns its behaviour."""
        with self.lock:
            stats = self.job_stats(job_id)
            stats["triggers" if kind == "trigger" else "reruns"] += 1
            if body is not None:
                stats["bodies"].append(body)
            return self.next_script(stats["index"], kind, self.jobs[job_id])

    def count_cancel(self, run):
        with self.lock:
            run["cancels"] += 1
            stats = self.job_stats(run["job_id"])
            return self.next_script(stats["index"], "cancel", self.jobs.get(run["job_id"], {}))

    def next_get(self, run):
        with self.lock:
            return self.next_script(run["index"], "get", self.jobs.get(run["job_id"], {}))

    @staticmethod
    def next_script(index, kind, scenario):
        n = index.get(kind, 0)
        index[kind] = n + 1
        return next_behaviour(scenario.get(kind), n)

    # --- runs (the helpers without "with self.lock" run under it) ---------
    def make_run(self, job_id, cause, steps, body=None, category="api", results=None):
        run_id = self.next_run_id
        self.next_run_id += 1
        self.last_run_id = run_id
        run = {"id": run_id, "job_id": job_id, "status": 1, "steps": steps, "polls": 0,
               "overrides": {}, "body": body or {}, "cause": cause, "cause_category": category,
               "created_us": now_us(), "dequeued_us": None, "started_us": None,
               "finished_us": None, "cancels": 0, "cancel_pending": False, "cancel_in": 0,
               "is_retry": False, "retry_of": None, "results": results, "existing": False,
               "index": {}}
        self.runs[run_id] = run
        return run

    def per_run(self, job_id, field, default):
        """The job's field for its next created run: field "runs" is a list
        per run; run_results may be a list per run."""
        scenario = self.jobs[job_id]
        ordinal = self.job_stats(job_id)["ordinal"]
        if field == "steps":
            runs = scenario.get("runs", [])
            return runs[ordinal] if ordinal < len(runs) else scenario.get("steps", default)
        value = scenario.get(field, default)
        if isinstance(value, list):
            return value[ordinal] if ordinal < len(value) else None
        return value

    def new_run(self, job_id, body, cause=None):
        """A run created by run/ or rerun/."""
        with self.lock:
            return self.create_run(job_id, body, cause or body["cause"])

    def create_run(self, job_id, body, cause):
        run = self.make_run(job_id, cause, self.per_run(job_id, "steps", DEFAULT_STEPS), body,
                            results=self.per_run(job_id, "run_results", None))
        self.job_stats(job_id)["ordinal"] += 1
        return run

    def rerun(self, job_id):
        """rerun/: a retry of the job's latest run when it ended in error,
        else a fresh run."""
        with self.lock:
            mine = [r for r in self.runs.values() if r["job_id"] == job_id]
            latest = max(mine, key=lambda r: r["id"]) if mine else None
            if latest is None or latest["status"] != 20:
                return self.create_run(job_id, {}, "Triggered via rerun API")
            run = self.create_run(job_id, {}, "Retry of run %d" % latest["id"])
            run["is_retry"], run["retry_of"] = True, latest["id"]
            self.job_stats(job_id)["retries"] += 1
            return run

    def add_existing_run(self, job_id, entry):
        """A run that was there before the test (scheduled or someone else's)."""
        scenario = self.jobs[job_id]
        run = self.make_run(job_id, entry.get("cause", "scheduled"),
                            entry.get("steps", scenario.get("steps", DEFAULT_STEPS)),
                            category=entry.get("cause_category", "api"),
                            results=entry.get("run_results"))
        run["existing"] = True
        run["created_us"] -= int(entry.get("age", 60) * 10 ** 6)
        if entry.get("status_message"):
            run["overrides"]["status_message"] = entry["status_message"]
        # it left the queue a second after its creation
        self.set_status(run, entry.get("status", 3), run["created_us"] + 10 ** 6)

    def set_status(self, run, status, moment=None):
        """Moves a run to status, stamping the moments it passes (now, or
        moment)."""
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError("a run status is an integer, got %r" % (status,))
        run["status"] = status
        moment = now_us() if moment is None else moment
        if status >= 2 and run["dequeued_us"] is None:
            run["dequeued_us"] = max(moment, run["created_us"])
        if status >= 3 and run["started_us"] is None:
            run["started_us"] = run["dequeued_us"]
        if status in FINISHED and run["finished_us"] is None:
            run["finished_us"] = max(moment, run["started_us"])

    def advance(self, run):
        """A GET's effect: a pending cancel lands, or the next step applies;
        a finished run never changes."""
        with self.lock:
            if run["status"] in FINISHED:
                return
            if run["cancel_pending"]:
                if run["cancel_in"] <= 0:
                    run["cancel_pending"] = False
                    return self.set_status(run, 30)
                run["cancel_in"] -= 1
            step = run["steps"][min(run["polls"], len(run["steps"]) - 1)]
            run["polls"] += 1
            if isinstance(step, dict):
                fields = dict(step)
                status = fields.pop("status", run["status"])
                run["overrides"].update(fields)
            else:
                status = step
            self.set_status(run, status)

    def cancel(self, run):
        """A cancel's effect: status 30 from the run's next GET on."""
        with self.lock:
            if run["status"] not in FINISHED and not run["cancel_pending"]:
                run["cancel_pending"] = True
                run["cancel_in"] = self.jobs.get(run["job_id"], {}).get("cancel_delay", 0)
            return run

    def run_results(self, run):
        """The run's run_results.json, or None (none given, or not finished)."""
        with self.lock:
            spec = run["results"]
            if spec is None or run["status"] not in FINISHED:
                return None
            if spec in ("default", "default_error"):
                return run_results_document(run["id"], run["finished_us"], spec == "default_error")
            return spec

    # --- rendering --------------------------------------------------------
    def job_data(self, job_id):
        with self.lock:
            return self.render_job(job_id)

    def render_job(self, job_id):
        scenario = self.jobs[job_id]
        return {"id": job_id, "account_id": self.account_id,
                "project_id": scenario.get("project_id", 1000),
                "environment_id": scenario.get("environment_id", 2000),
                "name": scenario.get("name", "job %d" % job_id), "description": "",
                "state": 1, "job_type": "other", "dbt_version": None, "generate_docs": False,
                "execute_steps": scenario.get("execute_steps", ["dbt build"]),
                "triggers": {"github_webhook": False, "schedule": False, "on_merge": False}}

    def jobs_data(self):
        with self.lock:
            return [self.render_job(j) for j in sorted(self.jobs) if not self.jobs[j].get("missing")]

    def run_data(self, run, include):
        with self.lock:
            return self.render_run(run, include)

    def runs_data(self, order_by, include):
        """Every run, rendered, in order_by's order (ties by id)."""
        key = ORDER_KEYS[order_by.lstrip("-")]
        with self.lock:
            runs = sorted(self.runs.values(), key=lambda r: (r[key] or 0, r["id"]),
                          reverse=order_by.startswith("-"))
            return [self.render_run(r, include) for r in runs]

    def status_message(self, run):
        if "status_message" in run["overrides"]:
            return run["overrides"]["status_message"]
        if run["status"] == 20:
            return self.jobs.get(run["job_id"], {}).get("status_message", DEFAULT_ERROR)
        return None

    def render_run(self, run, include):
        job = self.render_job(run["job_id"])
        status, body = run["status"], run["body"]
        end = run["finished_us"] or now_us()
        length, human = duration(run["created_us"], end)
        data = {"id": run["id"], "trigger_id": run["id"] + 10 ** 11,
                "account_id": self.account_id, "environment_id": job["environment_id"],
                "project_id": job["project_id"], "job_definition_id": run["job_id"],
                "job_id": run["job_id"], "status": status,
                "status_humanized": humanized(status), "status_message": self.status_message(run),
                "dbt_version": "versionless", "git_branch": body.get("git_branch", "main"),
                "git_sha": body.get("git_sha", "4f1c2e0d9b8a7c6e5f4d3c2b1a0f9e8d7c6b5a49"),
                "created_at": stamp(run["created_us"]), "updated_at": stamp(now_us()),
                "dequeued_at": stamp(run["dequeued_us"]), "started_at": stamp(run["started_us"]),
                "finished_at": stamp(run["finished_us"]),
                "duration": length, "duration_humanized": human,
                "in_progress": status in (1, 2, 3), "is_complete": status in FINISHED,
                "is_success": status == 10, "is_error": status == 20,
                "is_cancelled": status == 30, "is_running": status == 3,
                "artifacts_saved": status in FINISHED and run["results"] is not None,
                "has_docs_generated": False, "has_sources_generated": False,
                "is_retry": run["is_retry"], "retrying_run_id": run["retry_of"],
                "can_retry": status == 20,
                "retry_not_supported_reason": None if status == 20 else "RETRY_NOT_FAILED_RUN",
                "href": "%s/deploy/%d/projects/%d/runs/%d/" % (self.url, self.account_id,
                                                                job["project_id"], run["id"]),
                "trigger": self.render_trigger(run),
                "job": job if "job" in include else None,
                "run_steps": self.render_steps(run, job) if "run_steps" in include else []}
        data.update({k: v for k, v in run["overrides"].items() if k != "status_message"})
        return data

    def render_trigger(self, run):
        trigger = {"id": run["id"] + 10 ** 11, "cause": run["cause"],
                   "cause_category": run["cause_category"], "job_definition_id": run["job_id"],
                   "created_at": stamp(run["created_us"])}
        trigger.update({k: run["body"].get(k) for k in TRIGGER_FIELDS})
        return trigger

    def render_steps(self, run, job):
        """Setup steps then one step per dbt command, as far as the run got."""
        status = run["status"]
        if status in (1, 2):
            return []
        commands = run["body"].get("steps_override") or job["execute_steps"]
        names = ["Clone git repository", "Create profile from connection Snowflake"] + \
            ["Invoke dbt with `%s`" % c for c in commands]
        last = len(names)
        if status == 20:
            failed = self.jobs.get(run["job_id"], {}).get("failed_step", len(commands))
            last = 2 + min(max(failed, 1), len(commands))
        steps = []
        for index in range(1, last + 1):
            step_status = 10
            if index == last and status in (3, 20, 30):
                step_status = status
            logs = {3: "Running...", 10: "Completed successfully", 30: "Cancelled",
                    20: self.status_message(run) or "Error"}[step_status]
            steps.append({"run_id": run["id"], "account_id": self.account_id, "index": index,
                          "name": names[index - 1], "status": step_status,
                          "status_humanized": humanized(step_status), "logs": logs,
                          "debug_logs": "", "truncated_debug_logs": None})
        return steps

    def state(self):
        with self.lock:
            jobs = {}
            for job_id, stats in self.stats.items():
                runs = [{"id": r["id"], "status": r["status"],
                         "status_humanized": humanized(r["status"]), "cause": r["cause"],
                         "cancels": r["cancels"], "is_retry": r["is_retry"],
                         "retry_of": r["retry_of"], "polls": r["polls"], "existing": r["existing"]}
                        for r in sorted(self.runs.values(), key=lambda r: r["id"])
                        if r["job_id"] == job_id]
                jobs[str(job_id)] = {"triggers": stats["triggers"], "reruns": stats["reruns"],
                                     "retries": stats["retries"], "bodies": list(stats["bodies"]),
                                     "runs": runs}
            return {"jobs": jobs, "throttle": self.throttle_left}


def main():
    parser = argparse.ArgumentParser(description="dbt Cloud API simulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--account", type=int, default=DEFAULT_ACCOUNT)
    parser.add_argument("--scenario", help="JSON file: {job_id: SCENARIO}")
    args = parser.parse_args()
    scenarios = None
    if args.scenario:
        with open(args.scenario) as f:
            scenarios = json.load(f)
    sim = DbtCloudSim(args.port, args.token, args.account, scenarios)
    sim.serve_main("dbt-cloud-sim")


if __name__ == "__main__":
    sys.exit(main())
