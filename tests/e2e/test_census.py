"""test_census.py: every Census rule end to end: the built engine runs flows
against the Census simulator on 127.0.0.1, and each test checks the exit
code, the output and what the simulator saw."""
import os
import time
from email.utils import formatdate

from harness import SimTestCase, main, run_flow
from census_sim import DEFAULT_TOKEN

URL = "https://bearer:%s@app.getcensus.com/api/v1/syncs/%%d/trigger" % DEFAULT_TOKEN


class CensusTest(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_API_VERSION="", https_proxy="", HTTPS_PROXY="")

    def scenario(self, **syncs):
        self.sim.syncs.update({int(k.lstrip("s")): v for k, v in syncs.items()})

    def flow(self, code, env=None, rc=0, args=()):
        r = run_flow("local URL = %r\n%s" % (URL, code), args, env=self.sim_env(env))
        if rc is not None:
            self.assertEqual(r.rc, rc, r)
        return r

    def requests(self, method=None, path_part=""):
        return [q for q in self.sim.log
                if (method is None or q["method"] == method) and path_part in q["path"]]

    def polls(self, run_id):
        return self.requests("GET", "/sync_runs/%d" % run_id)

    # --- the happy path -------------------------------------------------
    def test_sync_returns_the_run_data_with_extras(self):
        self.scenario(s42={"steps": ["queued", {"status": "working", "current_step": "loading"},
                                     {"status": "completed", "records_processed": 10,
                                      "records_updated": 9, "records_failed": 0,
                                      "new_field": "passed through"}]})
        r = self.flow("local res = census.sync(URL:format(42), {poll = 0.1})\n"
                      "print(res.status, res.records_updated, res.sync_id, res.sync_run_id, res.new_field)\n"
                      "print(res.url, res.error_message == nil, res.error_code == nil, type(res.elapsed))\n"
                      "print(res.sync_trigger_reason.ui_tag)")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "completed\t9\t42\t1001\tpassed through")
        self.assertEqual(lines[1], "%s/syncs/42/sync-history\ttrue\ttrue\tnumber" % self.sim.url)
        self.assertEqual(lines[2], "API")
        triggers = self.requests("POST", "/trigger")
        self.assertEqual(len(triggers), 1)
        self.assertEqual(triggers[0]["path"], "/api/v1/syncs/42/trigger")
        for q in self.sim.log:
            self.assertEqual(q["auth"], "Bearer " + DEFAULT_TOKEN)
            self.assertNotIn("secret-token", q["path"])
        # started, each status change once, finished with the link
        self.assertIn("census: sync 42 triggered: run 1001", r.stderr)
        self.assertIn("census: sync 42 run 1001: waiting, polling every 0.1 s", r.stderr)
        self.assertEqual(r.stderr.count("census: sync 42 run 1001: working"), 1)
        self.assertIn("census: sync 42 run 1001: working (loading)", r.stderr)
        self.assertRegex(r.stderr, r"INFO  census: sync 42 run 1001 completed in [\d.]+ s: 10 processed, 9 updated, "
                                   r"0 failed \(%s/syncs/42/sync-history\)" % self.sim.url)

    def test_polls_are_spaced_by_the_interval_and_stop_at_the_end(self):
        self.scenario(s7={"steps": ["queued", "working", "preparing", "new", "retrying", "completed"]})
        self.flow("census.sync(URL:format(7), {poll = 0.2})")
        polls = self.polls(1001)
        self.assertEqual(len(polls), 6, "one poll per step, none after the end")
        gaps = [b["time"] - a["time"] for a, b in zip(polls, polls[1:])]
        self.assertTrue(all(g >= 0.18 for g in gaps), gaps)
        time.sleep(0.3)
        self.assertEqual(len(self.polls(1001)), 6)

    def test_table_form_with_token_from_the_environment(self):
        self.scenario(s5={"steps": ["completed"]})
        r = self.flow("local run = census.trigger{sync_id = 5, force_full_sync = true}\n"
                      "print(run.sync_id, run.sync_run_id)\n"
                      "print(census.wait(run, {poll = 0.1}).status)\n"
                      "print(census.sync({sync_id = '5', token = %r}, {poll = 0.1}).full_sync)" % DEFAULT_TOKEN)
        self.assertEqual(r.stdout, "5\t1001\ncompleted\nfalse\n")
        triggers = self.requests("POST", "/trigger")
        self.assertEqual([t["query"] for t in triggers], [{"force_full_sync": "true"}, {}])

    def test_force_full_sync_from_the_url(self):
        self.flow("census.trigger(URL:format(3) .. '?force_full_sync=true')\n"
                  "census.trigger(URL:format(3) .. '?force_full_sync=false')")
        self.assertEqual([t["query"] for t in self.requests("POST")],
                         [{"force_full_sync": "true"}, {"force_full_sync": "false"}])

    def test_api_v2_uses_v2_paths(self):
        self.flow("census.sync({sync_id = 9, api_version = 2}, {poll = 0.1})\n"
                  "census.sync(URL:format(9), {poll = 0.1})", env={"CENSUS_API_VERSION": "2"})
        self.assertTrue(self.sim.log)
        self.assertTrue(all(q["path"].startswith("/api/v2/") for q in self.sim.log), self.sim.log)

    def test_regions_pick_the_host(self):
        eu_url = URL.replace("app.getcensus.com", "app-eu.getcensus.com")
        proxy = {"CENSUS_BASE_URL": "", "https_proxy": self.sim.url, "HTTPS_PROXY": self.sim.url}
        for code, host in [("census.trigger(%r)" % (eu_url % 4), "app-eu.getcensus.com:443"),
                           ("census.trigger{sync_id = 4, region = 'eu'}", "app-eu.getcensus.com:443"),
                           ("census.trigger{sync_id = 4}", "app.getcensus.com:443")]:
            self.sim.reset()
            r = self.flow(code, env=dict(proxy, CENSUS_RETRY_BUDGET="0"), rc=1)
            self.assertEqual([q["path"] for q in self.requests("CONNECT")][:1], [host], r)
        r = self.flow("print(census.sync(%r, {poll = 0.1}).status)" % (eu_url % 4))
        self.assertEqual(r.stdout, "completed\n", "the EU URL works with CENSUS_BASE_URL")

    # --- validation -----------------------------------------------------
    def invalid(self, code, text, env=None):
        r = self.flow("local ok, e = pcall(function() %s end)\nprint(e.kind)\nprint(tostring(e))" % code,
                      env=env)
        kind, message = r.stdout.splitlines()
        self.assertEqual(kind, "invalid_argument", r)
        self.assertIn(text, message)
        self.assertEqual(self.sim.log, [], "nothing was sent")
        return message

    def test_prefect_url_cases(self):
        self.invalid("census.trigger(nil)", "a trigger URL must be provided")
        self.invalid("census.trigger('')", "a trigger URL must be provided")
        self.invalid("census.task{}:run()", "a value for api_trigger must be provided")
        form = "https://bearer:secret-token:<token>@app.getcensus.com/api/v1/syncs/<sync id>/trigger"
        for bad in [URL.replace("app.getcensus.com", "app.example.com") % 1,
                    URL.replace("bearer", "Bearer") % 1,
                    URL.replace("/api/v1/", "/API/v1/") % 1,
                    URL.replace("https://", "http://") % 1,
                    URL.replace("%d", "") % (),
                    (URL % 1) + "/extra",
                    (URL % 1) + "?force_full_sync=yes",
                    URL.replace("app.getcensus.com", "appXgetcensus.com") % 1]:
            message = self.invalid("census.trigger(%r)" % bad, "invalid trigger URL")
            self.assertIn(form, message)
            self.assertIn("case-sensitive", message)
            self.assertIn("configuration page", message)
            self.assertIn("***", message)

    def test_bad_options(self):
        self.invalid("census.trigger{}", "sync_id must be a positive whole number")
        self.invalid("census.trigger{sync_id = 'x1'}", "sync_id must be a positive whole number")
        self.invalid("census.trigger{sync_id = 1, region = 'asia'}", 'region must be "us" or "eu"')
        self.invalid("census.trigger{sync_id = 1, api_version = 3}", "must be 1 or 2, got 3")
        self.invalid("census.trigger{sync_id = 1, sync = 2}", "unknown option 'sync'")
        self.invalid("census.wait({sync_id = 1, sync_run_id = 2}, {pol = 3})", "unknown option 'pol'")
        self.invalid("census.wait({sync_id = 1})", "the run has no sync_run_id")
        self.invalid("census.wait({sync_run_id = 2}, {timeout = -1})", "timeout must be")
        self.invalid("census.wait({sync_run_id = 2}, {max_records_failed = 'x'})", "max_records_failed must be")
        self.invalid("census.trigger{sync_id = 1}", "no API token", env={"CENSUS_API_KEY": ""})
        self.invalid("census.trigger{sync_id = 1}", "CENSUS_BASE_URL must be scheme://host[:port]",
                     env={"CENSUS_BASE_URL": "http://127.0.0.1:1/api"})
        self.invalid("census.runs(1, {per_page = 500})", "per_page must be")

    def test_poll_floor(self):
        self.scenario(s8={"steps": ["completed"]})
        r = self.flow("census.sync(URL:format(8), {poll = 1})", env={"CENSUS_MIN_POLL": ""})
        self.assertIn("poll every 1 s is below the 5 s floor; polling every 5 s", r.stderr)
        self.assertIn("polling every 5 s", r.stderr)
        r = self.flow("census.sync(URL:format(8), {poll = 0.01})")
        self.assertIn("CENSUS_MIN_POLL=0.05 lowers the poll floor from 5 s", r.stderr)
        self.assertIn("polling every 0.05 s", r.stderr)
        r = self.flow("census.sync(URL:format(8))", env={"CENSUS_MIN_POLL": ""})
        self.assertIn("polling every 60 s", r.stderr, "the default poll")
        r = self.flow("census.sync(URL:format(8))", env={"CENSUS_POLL": "7"})
        self.assertIn("polling every 7 s", r.stderr, "CENSUS_POLL sets the default")

    # --- transport ------------------------------------------------------
    def test_gets_retry_5xx_429_and_network_errors(self):
        date = formatdate(time.time() + 2, usegmt=True)  # whole seconds: waits at least 1 s
        self.scenario(s11={"get": [{"http": 503}, {"http": 429, "retry_after": "0"},
                                   {"http": 429, "retry_after": date}, {"slow": 1.5}, "ok"],
                           "steps": ["completed"]})
        t0 = time.monotonic()
        r = self.flow("print(census.sync(URL:format(11), {poll = 0.05}).status)",
                      env={"CENSUS_REQUEST_TIMEOUT": "0.5"})
        self.assertEqual(r.stdout, "completed\n")
        self.assertGreaterEqual(time.monotonic() - t0, 1.4, "the HTTP-date Retry-After and the 0.5 s timeout")
        self.assertEqual(len(self.polls(1001)), 5)
        self.assertIn("Census answered HTTP 503", r.stderr)
        self.assertIn("Census answered HTTP 429", r.stderr)
        self.assertIn("no complete response within 0.5 s", r.stderr)
        self.assertIn("retrying in", r.stderr)

    def test_auth_and_not_found_fail_at_once(self):
        self.scenario(s13={"missing": True})
        r = self.flow("local ok, e = pcall(census.trigger, {sync_id = 12, token = 'secret-token:wrong-token-value'})\n"
                      "print(e.kind, e.http_status)\nprint(tostring(e))\n"
                      "ok, e = pcall(census.trigger, URL:format(13))\nprint(e.kind, e.http_status, e.sync_id)\n"
                      "print(tostring(e))\n"
                      "ok, e = pcall(census.get_run, 999)\nprint(e.kind)")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "auth\t401")
        self.assertIn("check CENSUS_API_KEY", lines[1])
        self.assertEqual(lines[2], "not_found\t404\t13")
        self.assertIn("sync 13: trigger: Census answered HTTP 404", lines[3])
        self.assertIn("check the id and the region", lines[3])
        self.assertEqual(lines[4], "not_found")
        self.assertEqual(len(self.sim.log), 3, "no retries")

    def test_lost_trigger_that_created_a_run_is_adopted(self):
        self.scenario(s21={"trigger": ["lost_created"], "steps": ["completed"]})
        r = self.flow("print(census.sync(URL:format(21), {poll = 0.05}).sync_run_id)")
        self.assertEqual(r.stdout, "1001\n")
        self.assertEqual(self.sim.triggers, {21: 1})
        self.assertEqual(len(self.sim.runs), 1)
        self.assertIn("adopting run 1001", r.stderr)
        latest = self.requests("GET", "/syncs/21/sync_runs")
        self.assertEqual(latest[0]["query"], {"per_page": "1", "order": "desc"})

    def test_lost_trigger_without_a_run_triggers_again(self):
        self.scenario(s22={"trigger": ["lost", {"http": 502}, "html"], "steps": ["completed"]})
        r = self.flow("print(census.sync(URL:format(22), {poll = 0.05}).sync_run_id)")
        self.assertEqual(r.stdout, "1001\n")
        self.assertEqual(self.sim.triggers, {22: 4})
        self.assertEqual(len(self.sim.runs), 1)
        self.assertEqual(len(self.requests("GET", "/syncs/22/sync_runs")), 3, "looked before each re-trigger")

    def test_an_older_run_is_not_adopted(self):
        self.scenario(s23={"trigger": ["ok", "lost"], "steps": ["completed"]})
        r = self.flow("census.sync(URL:format(23), {poll = 0.05})\nflow.sleep(2.5)\n"
                      "print(census.sync(URL:format(23), {poll = 0.05}).sync_run_id)")
        self.assertEqual(r.stdout, "1002\n", "run 1001 predates the lost trigger")
        self.assertEqual(self.sim.triggers, {23: 3})

    def test_trigger_429_waits_and_retries_without_looking(self):
        self.scenario(s24={"trigger": [{"http": 429, "retry_after": "0"}], "steps": ["completed"]})
        self.flow("census.sync(URL:format(24), {poll = 0.05})")
        self.assertEqual(self.sim.triggers, {24: 2})
        self.assertEqual(self.requests("GET", "/syncs/24/sync_runs"), [])

    def test_retry_budget_ends_with_the_last_error(self):
        self.scenario(s25={"get": [{"http": 503}] * 1000})
        r = self.flow("local ok, e = pcall(census.sync, URL:format(25), {poll = 0.05})\n"
                      "print(e.kind, e.http_status, e.attempts > 1)",
                      env={"CENSUS_RETRY_BUDGET": "0.3"})
        self.assertEqual(r.stdout, "http\t503\ttrue\n")

    def test_bad_bodies_are_retried_then_reported(self):
        self.scenario(s26={"get": ["html", "malformed", "no_data", "no_status", "html200"],
                           "steps": ["completed"]},
                      s27={"get": ["no_status"] * 1000})
        r = self.flow("print(census.sync(URL:format(26), {poll = 0.05}).status)")
        self.assertEqual(r.stdout, "completed\n")
        self.assertEqual(len(self.polls(1001)), 6)
        self.assertIn("body that is not JSON", r.stderr)
        self.assertIn("502 Bad Gateway proxy error", r.stderr, "HTML reduced to text")
        r2 = self.flow("local ok, e = pcall(census.sync, URL:format(27), {poll = 0.05})\n"
                       "print(e.kind)\nprint(tostring(e))", env={"CENSUS_RETRY_BUDGET": "0.3"})
        lines = r2.stdout.splitlines()
        self.assertEqual(lines[0], "bad_response")
        self.assertIn("the sync run has no status", lines[1])
        self.assertLess(len(lines[1]), 400, "a short excerpt")

    # --- statuses -------------------------------------------------------
    def outcome(self, steps, opts="", env=None):
        self.sim.reset()
        self.scenario(s31={"steps": steps})
        r = self.flow("local ok, e = pcall(census.sync, URL:format(31), {poll = 0.05%s})\n"
                      "if ok then print('ok', e.status) return end\n"
                      "print(e.kind, e.sync_id, e.sync_run_id, e.result and e.result.status, e.error_code, e.error_message)\n"
                      "print(tostring(e))" % opts, env=env)
        return r.stdout.splitlines()

    def test_failed_run_raises_with_details(self):
        lines = self.outcome(["working", {"status": "failed", "error_code": "E42",
                                          "error_message": "destination rejected", "error_detail": "d"}])
        self.assertEqual(lines[0], "failed\t31\t1001\tfailed\tE42\tdestination rejected")
        self.assertIn("sync 31 run 1001 failed: destination rejected", lines[1])
        self.assertIn("/syncs/31/sync-history", lines[1])

    def test_skipped_run(self):
        lines = self.outcome(["skipped"])
        self.assertEqual(lines[0].split("\t")[0], "skipped")
        self.assertIn("an earlier run of the sync was still running", lines[1])
        self.assertEqual(self.outcome(["skipped"], ", allow_skipped = true"), ["ok\tskipped"])

    def test_unknown_status_is_never_success(self):
        lines = self.outcome(["working", "succeeded"])
        self.assertEqual(lines[0].split("\t")[0], "unknown_status")
        self.assertIn('reported status "succeeded"', lines[1])

    def test_canceled_run(self):
        lines = self.outcome([{"status": "working", "canceled": True}])
        self.assertEqual(lines[0].split("\t")[0], "canceled")
        self.assertIn("was canceled in Census", lines[1])

    def test_thresholds(self):
        done = {"status": "completed", "records_processed": 100, "records_updated": 90, "records_failed": 10}
        self.assertEqual(self.outcome([done], ", max_records_failed = 10"), ["ok\tcompleted"])
        lines = self.outcome([done], ", max_records_failed = 9")
        self.assertEqual(lines[0].split("\t")[:4], ["threshold", "31", "1001", "completed"])
        self.assertIn("completed with 10 failed records, more than max_records_failed = 9", lines[1])
        lines = self.outcome([done], ", max_failed_ratio = 0.05")
        self.assertIn("10 of 100 records failed, more than max_failed_ratio = 0.05", lines[1])
        self.assertEqual(self.outcome([done], ", max_failed_ratio = 0.1"), ["ok\tcompleted"])

    def test_null_record_counts_read_as_nil(self):
        self.scenario(s32={"steps": [{"status": "completed", "records_failed": None}]})
        r = self.flow("local res = census.sync(URL:format(32), {poll = 0.05, max_records_failed = 0})\n"
                      "print(res.records_failed, res.records_processed, res.completed_at ~= nil)")
        self.assertEqual(r.stdout, "nil\tnil\ttrue\n")

    # --- timeout and cancellation ---------------------------------------
    def test_timeout_cancels_the_run_when_asked(self):
        self.scenario(s41={"steps": ["working"]}, s42={"steps": ["working"]})
        r = self.flow("local ok, e = pcall(census.sync, URL:format(41), {poll = 0.05, timeout = 0.3, cancel_on_timeout = true})\n"
                      "print(e.kind, e.sync_run_id)\nprint(tostring(e))\n"
                      "ok, e = pcall(census.sync, URL:format(42), {poll = 0.05, timeout = 0.2})\nprint(e.kind)")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "timeout\t1001")
        self.assertIn("still working after the 0.3 s timeout; cancelled it", lines[1])
        self.assertEqual(lines[2], "timeout")
        self.assertEqual(self.sim.cancels, {1001: 1}, "only the run with cancel_on_timeout")

    def test_cancelling_the_task_stops_polling(self):
        self.scenario(s43={"steps": ["working"]})
        r = self.flow("local ok, e = pcall(flow.timeout, 0.3, census.sync, URL:format(43), {poll = 0.05})\n"
                      "print(e.kind)\nflow.sleep(0.3)")
        self.assertEqual(r.stdout, "timeout\n")
        n = len(self.polls(1001))
        time.sleep(0.2)
        self.assertEqual(len(self.polls(1001)), n)

    # --- the rest of the API --------------------------------------------
    def test_task_defaults_and_overrides(self):
        self.scenario(s51={"steps": ["working", "completed"]})
        r = self.flow("local job = census.task{api_trigger = URL:format(51), poll = 0.3}\n"
                      "print(tostring(job))\n"
                      "local t0 = flow.now()\nprint(job:run{poll = 0.05}.status, flow.now() - t0 < 0.25)\n"
                      "print(job:run{api_trigger = URL:format(52), poll = 0.05}.sync_id)")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "census task (sync 51)")
        self.assertEqual(lines[1], "completed\ttrue")
        self.assertEqual(lines[2], "52")

    def test_cancel_get_run_syncs_and_runs(self):
        self.scenario(**{"s%d" % i: {"name": "sync %d" % i} for i in range(60, 63)})
        r = self.flow("local run = census.trigger(URL:format(60))\ncensus.trigger(URL:format(60))\n"
                      "census.cancel(run)\n"
                      "print(census.get_run(run.sync_run_id).canceled)\n"
                      "local syncs, pages = census.syncs({per_page = 2})\n"
                      "print(#syncs, syncs[3].label, pages.last_page)\n"
                      "print(census.get_sync(61).label)\n"
                      "local runs, p = census.runs(60, {per_page = 1, page = 2})\n"
                      "print(#runs, runs[1].id, p.page, p.total_records)")
        self.assertEqual(r.stdout, "true\n3\tsync 62\t2\nsync 61\n1\t1001\t2\t2\n")
        self.assertEqual(self.sim.cancels, {1001: 1})

    def test_run_and_task_printing_never_shows_the_token(self):
        r = self.flow("local run = census.trigger(URL:format(70))\n"
                      "for k, v in pairs(run) do print(k, v) end\n"
                      "local job = census.task{api_trigger = URL:format(70)}\n"
                      "for k, v in pairs(job) do print(k, v) end\nprint(job)")
        self.assertNotIn("secret-token", r.stdout)

    def test_failures_never_print_the_token(self):
        self.scenario(s71={"trigger": [{"http": 500, "body": "echo Bearer %s" % DEFAULT_TOKEN}] * 100})
        r = self.flow("census.sync(URL:format(71))", env={"CENSUS_RETRY_BUDGET": "0.2"}, rc=1)
        self.assertIn("echo Bearer ***", r.stderr)  # the known token, whole
        r = self.flow("census.trigger(%r)" % (URL.replace("bearer", "BEARER") % 1), rc=1)
        self.assertIn("engine: ", r.stderr)

    def test_five_hundred_syncs_in_parallel(self):
        self.scenario(**{"s%d" % i: {"steps": ["queued", "working", "completed"]} for i in range(1, 501)})
        r = self.flow("local fns = {}\nfor i = 1, 500 do\n"
                      "  fns[i] = function() return census.sync(URL:format(i), {poll = 0.25}).status end\nend\n"
                      "local t0 = flow.now()\nlocal res = flow.parallel(fns)\n"
                      "local n = 0 for i = 1, 500 do if res[i] == 'completed' then n = n + 1 end end\n"
                      "print(n, flow.now() - t0)", args=(), env={})
        n, wall = r.stdout.split()
        self.assertEqual(n, "500")
        self.assertLess(float(wall), 10, "500 waits overlap (one takes about 0.5 s)")
        self.assertEqual(len(self.requests("POST", "/trigger")), 500)


if __name__ == "__main__":
    main()
