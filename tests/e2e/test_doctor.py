"""test_doctor.py: `engine doctor [FLOW.lua] [--json]` end to end against
the Census, Fivetran and dbt Cloud simulators (tokens, one cheap read per
provider, the Census API version, the resources a flow names, the journal,
usage errors), and Census API v1's retirement in runs (the WARN a month
before, the `retired` error after)."""
import json
import os
import re
import socket

from harness import ProvidersTestCase, main, run

PAT = "pat-v2-hunter3-secret"  # a Census personal access token (API v2)
WRONG = "secret-token:wrong-token-value"
FIX = "set api_version = 2 (CENSUS_API_VERSION=2) with a personal access token"
RETIRED = "Census API v1 was retired on 2027-01-15: " + FIX
# "%-4s  %s: %s": STATUS  CHECK: DETAIL, CHECK "journal", "providers" or
# "PROVIDER: WHAT" (WHAT without a colon outside quotes)
LINE = re.compile(r'^(ok  |warn|fail)  ((?:census|fivetran|dbt_cloud): (?:[^:"]|"[^"]*")+|journal|providers): (.*)$')

# A flow naming one resource of each kind the simulators know (set up in
# known()): a Census sync id, a trigger URL, a sync name, a Fivetran
# connection id, a dbt Cloud job id. doctor never runs it.
GOOD_FLOW = """
local URL = "https://bearer:secret-token:sim-test-token@app.getcensus.com/api/v1/syncs/7/trigger"
census.sync{sync_id = 1}
census.sync(URL)
census.sync({name = "orders"}, {poll = 1})
fivetran.sync{connection_id = "decisive_bloom"}
dbt_cloud.sync{job_id = 123}
"""


def closed_port():
    """A loopback port nothing listens on (bound, noted, closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DoctorCase(ProvidersTestCase):
    # A fixed date before the v1 warning starts (cases about it set their
    # own), and no proxy between the engine and the simulators.
    SIM_ENV = dict(ProvidersTestCase.SIM_ENV, ENGINE_TEST_TODAY="2026-06-01", CENSUS_API_VERSION=None,
                   https_proxy=None, HTTPS_PROXY=None, http_proxy=None, HTTP_PROXY=None,
                   all_proxy=None, ALL_PROXY=None)

    def known(self):
        """Resources the simulators know: Census syncs 1 ("orders") and 7,
        Fivetran connection decisive_bloom, dbt Cloud job 123 ("nightly"),
        and Census sync 13, which does not exist (404)."""
        self.sim.syncs.update({1: {"name": "orders"}, 7: {}, 13: {"missing": True}})
        self.fivetran.configure({"decisive_bloom": {}})
        self.dbt.configure({"123": {"name": "nightly"}})

    def doctor(self, args=(), env=None, flow=None, state=None):
        """Runs `engine [--state S] doctor [FLOW] ARGS` with the simulators'
        environment; returns the Result and its lines as (status, check,
        detail) (none for --json)."""
        argv = (["--state", state] if state else []) + ["doctor"]
        if flow is not None:
            argv.append(self.flow(flow))
        r = run(argv + list(args), env=self.sim_env(env), timeout=30)
        lines = []
        if "--json" not in args:
            for text in r.stdout.splitlines():
                m = LINE.match(text)
                self.assertIsNotNone(m, "not a doctor line: %r\n%r" % (text, r))
                lines.append((m.group(1).strip(), m.group(2), m.group(3)))
        return r, lines

    def check(self, lines, name):
        """The (status, detail) of the one line of that check."""
        found = [(s, d) for s, c, d in lines if c == name]
        self.assertEqual(len(found), 1, "one %r line in %r" % (name, lines))
        return found[0]

    def v1_warnings(self, stderr):
        return [l for l in stderr.splitlines() if "Census API v1" in l]


class Doctor(DoctorCase):
    # --- everything fine --------------------------------------------------
    def test_all_good_every_line_ok_and_json_ok(self):
        self.known()
        env = {"CENSUS_API_VERSION": "2"}
        r, lines = self.doctor(env=env, flow=GOOD_FLOW)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([c for _, c, _ in lines], [
            "census: token", "census: API", "census: API version", "census: sync 1", "census: sync 7",
            'census: sync named "orders"', "dbt_cloud: token", "dbt_cloud: API", "dbt_cloud: job 123",
            "fivetran: token", "fivetran: API", "fivetran: connection decisive_bloom", "journal"], r)
        self.assertEqual({s for s, _, _ in lines}, {"ok"}, r)
        self.assertEqual(self.check(lines, "census: token")[1], "from CENSUS_API_KEY")
        self.assertIn("API v2 answered and accepts the token", self.check(lines, "census: API")[1])
        self.assertEqual(self.check(lines, "census: API version")[1], "API v2")
        self.assertEqual(self.check(lines, "census: sync 1")[1], "sync 1 exists (orders)")
        self.assertEqual(self.check(lines, 'census: sync named "orders"')[1], 'sync "orders" is id 1')
        self.assertEqual(self.check(lines, "dbt_cloud: job 123")[1], "job 123 exists (nightly)")
        self.assertIn("connection decisive_bloom exists", self.check(lines, "fivetran: connection decisive_bloom")[1])
        self.assertEqual(r.stderr, "", "no WARN with API v2")
        # one cheap read per provider, and nothing but reads
        self.assertTrue(any(q["path"] == "/api/v2/syncs" and q["query"] == {"per_page": "1"} for q in self.sim.log),
                        self.sim.log)
        self.assertTrue(any(q["path"] == "/v1/connections" and q["query"].get("limit") == "1"
                            for q in self.fivetran.log), self.fivetran.log)
        self.assertTrue(any(q["path"].endswith("/jobs/") and q["query"].get("limit") == "1"
                            for q in self.dbt.log), self.dbt.log)
        for log in (self.sim.log, self.fivetran.log, self.dbt.log):
            self.assertEqual({q["method"] for q in log}, {"GET"}, "doctor only reads: %r" % log)
        self.assertEqual(self.sim.triggers, {})

        r, _ = self.doctor(["--json"], env=env, flow=GOOD_FLOW)
        self.assertEqual(r.rc, 0, r)
        report = json.loads(r.stdout)
        self.assertIs(report["ok"], True)
        self.assertEqual(len(report["checks"]), len(lines))
        for c in report["checks"]:
            self.assertEqual(set(c), {"status", "check", "detail"})
            self.assertEqual(c["status"], "ok", c)
        self.assertEqual([c["check"] for c in report["checks"]], [c for _, c, _ in lines])

    # --- what goes wrong ----------------------------------------------------
    def test_a_wrong_census_token_fails_the_api_line_without_printing_it(self):
        r, lines = self.doctor(env={"CENSUS_API_KEY": WRONG})
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(self.check(lines, "census: token"), ("ok", "from CENSUS_API_KEY"))
        status, detail = self.check(lines, "census: API")
        self.assertEqual(status, "fail", r)
        self.assertIn("HTTP 401", detail)
        self.assertIn("check CENSUS_API_KEY", detail)
        self.assertNotIn("check the network", detail)
        # no API version line for an API that did not answer
        self.assertNotIn("census: API version", [c for _, c, _ in lines])
        # the other providers still checked, and fine
        self.assertEqual(self.check(lines, "fivetran: API")[0], "ok")
        self.assertEqual(self.check(lines, "dbt_cloud: API")[0], "ok")
        self.assertNotIn("wrong-token-value", r.stdout + r.stderr)
        self.assertEqual([q["auth"] for q in self.sim.log], ["Bearer " + WRONG], "a 401 is not retried")

        r, _ = self.doctor(["--json"], env={"CENSUS_API_KEY": WRONG})
        self.assertEqual(r.rc, 1, r)
        report = json.loads(r.stdout)
        self.assertIs(report["ok"], False)
        self.assertIn({"status": "fail", "check": "census: API", "detail": detail}, report["checks"])

    def test_a_closed_network_fails_the_api_line_with_the_network_hint(self):
        port = closed_port()
        # (a first backoff beyond doctor's 4 s probe budget ends the probe
        # at its first refusal; a run would wait and retry)
        r, lines = self.doctor(env={"CENSUS_BASE_URL": "http://127.0.0.1:%d" % port, "CENSUS_RETRY_DELAY": "10"})
        self.assertEqual(r.rc, 1, r)
        status, detail = self.check(lines, "census: API")
        self.assertEqual(status, "fail", r)
        self.assertIn("127.0.0.1 port %d" % port, detail)
        self.assertTrue(detail.endswith("; check the network, a proxy (HTTPS_PROXY) or CENSUS_BASE_URL"), detail)
        self.assertNotIn("census: API version", [c for _, c, _ in lines])
        self.assertEqual(self.check(lines, "fivetran: API")[0], "ok")
        self.assertEqual(self.check(lines, "journal")[0], "ok")
        self.assertLess(r.seconds, 4.0, "the probe is bounded")
        self.assertEqual(self.sim.log, [])

    def test_an_unknown_sync_id_and_name_fail_their_lines_only(self):
        self.known()
        flow = ("census.sync{sync_id = 1}\ncensus.sync{sync_id = 13}\n"
                "census.trigger{name = \"orders\"}\ncensus.trigger{name = \"ordrs\"}\n")
        r, lines = self.doctor(env={"CENSUS_API_VERSION": "2"}, flow=flow)
        self.assertEqual(r.rc, 1, r)
        status, detail = self.check(lines, "census: sync 13")
        self.assertEqual(status, "fail")
        self.assertIn("HTTP 404", detail)
        self.assertIn("check the id", detail)
        status, detail = self.check(lines, 'census: sync named "ordrs"')
        self.assertEqual(status, "fail")
        self.assertIn('no sync is named "ordrs"', detail)
        for name in ["census: token", "census: API", "census: API version", "census: sync 1",
                     'census: sync named "orders"', "fivetran: API", "dbt_cloud: API", "journal"]:
            self.assertEqual(self.check(lines, name)[0], "ok", name)
        self.assertEqual(sum(s == "fail" for s, _, _ in lines), 2, r)

    def test_a_fivetran_connection_and_dbt_job_that_do_not_exist_fail(self):
        self.known()
        flow = ('fivetran.sync{connection_id = "decisive_blom"}\ndbt_cloud.sync{job_id = 124}\n'
                'dbt_cloud.sync{name = "nightly"}\n')
        r, lines = self.doctor(env={"CENSUS_API_VERSION": "2"}, flow=flow)
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(self.check(lines, "fivetran: connection decisive_blom")[0], "fail")
        self.assertIn("404", self.check(lines, "fivetran: connection decisive_blom")[1])
        self.assertEqual(self.check(lines, "dbt_cloud: job 124")[0], "fail")
        self.assertEqual(self.check(lines, 'dbt_cloud: job named "nightly"'), ("ok", 'job "nightly" is id 123'))
        self.assertEqual(sum(s == "fail" for s, _, _ in lines), 2, r)

    # --- the Census API version ---------------------------------------------
    def test_v1_ten_days_before_retirement_warns_and_passes(self):
        self.known()
        r, lines = self.doctor(env={"ENGINE_TEST_TODAY": "2027-01-05"}, flow="census.sync{sync_id = 1}\n")
        self.assertEqual(r.rc, 0, r)
        status, detail = self.check(lines, "census: API version")
        self.assertEqual(status, "warn")
        self.assertEqual(detail, "Census API v1 retires on 2027-01-15 (in 10 days): " + FIX)
        self.assertEqual([s for s, c, _ in lines if c != "census: API version"], ["ok"] * (len(lines) - 1), r)
        self.assertIn("API v1 answered", self.check(lines, "census: API")[1])
        self.assertEqual(len(self.v1_warnings(r.stderr)), 1, r.stderr)

    def test_v1_before_the_warning_still_warns_in_doctor(self):
        r, lines = self.doctor(env={"ENGINE_TEST_TODAY": "2026-06-01"})
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.check(lines, "census: API version"),
                         ("warn", "API v1 (it retires on 2027-01-15): " + FIX))
        self.assertEqual(self.v1_warnings(r.stderr), [], "no WARN before 2026-12-15")

    def test_v1_after_retirement_fails(self):
        self.known()
        r, lines = self.doctor(env={"ENGINE_TEST_TODAY": "2027-01-20"}, flow="census.sync{sync_id = 1}\n")
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(self.check(lines, "census: API version"), ("fail", RETIRED))
        self.assertEqual(sum(s == "fail" for s, _, _ in lines), 1, r)

    def test_v1_against_a_retired_api_fails_the_api_line_with_the_fix(self):
        self.sim.v1_retired = True
        r, lines = self.doctor(env={"ENGINE_TEST_TODAY": "2027-01-20"})
        self.assertEqual(r.rc, 1, r)
        status, detail = self.check(lines, "census: API")
        self.assertEqual(status, "fail")
        self.assertIn("HTTP 410", detail)
        self.assertIn(RETIRED, detail)
        self.assertNotIn("check the network", detail)

    def test_v2_with_a_personal_access_token_is_ok_after_retirement(self):
        self.known()
        self.sim.v1_retired = True
        self.sim.extra_tokens = {PAT}
        r, lines = self.doctor(env={"ENGINE_TEST_TODAY": "2027-01-20", "CENSUS_API_VERSION": "2",
                                    "CENSUS_API_KEY": PAT}, flow="census.sync{sync_id = 1}\n")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.check(lines, "census: API version"), ("ok", "API v2"))
        self.assertEqual({s for s, _, _ in lines}, {"ok"}, r)
        self.assertEqual(self.v1_warnings(r.stderr), [])
        self.assertTrue(self.sim.log)
        for q in self.sim.log:
            self.assertTrue(q["path"].startswith("/api/v2/"), q)
            self.assertEqual(q["auth"], "Bearer " + PAT)
        self.assertNotIn(PAT, r.stdout + r.stderr)

    # --- the journal ----------------------------------------------------------
    def test_journal_in_a_fresh_state_dir_is_made_by_the_first_run(self):
        state = os.path.join(self.dir, "state")
        os.mkdir(state)
        r, lines = self.doctor(env={"CENSUS_API_VERSION": "2"}, state=state)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.check(lines, "journal"),
                         ("ok", "no journal at %s/journal.db yet: the first run makes it" % state))
        self.assertFalse(os.path.exists(os.path.join(state, "journal.db")), "doctor made no journal")

    def test_journal_made_by_a_run_is_current_and_writable(self):
        state = os.path.join(self.dir, "state")
        env = {"CENSUS_API_VERSION": "2"}
        made = run(["--state", state, self.flow("census.sync({sync_id = 1}, {poll = 0.05})\n")],
                   env=self.sim_env(env))
        self.assertEqual(made.rc, 0, made)
        self.assertTrue(os.path.exists(os.path.join(state, "journal.db")))
        r, lines = self.doctor(env=env, state=state)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.check(lines, "journal"), ("ok", "%s/journal.db: schema current, writable" % state))
        # the run is still there, and doctor recorded none of its own
        history = run(["--state", state, "runs", "--json"], env=self.sim_env(env))
        self.assertEqual(history.rc, 0, history)
        self.assertEqual(len(json.loads(history.stdout)), 1, history)

    def test_journal_url_of_an_unsupported_scheme_fails_without_the_password(self):
        url = "ftp://bob:hunter2secret@db.example.com/engine"
        r, lines = self.doctor(env={"CENSUS_API_VERSION": "2"}, state=url)
        self.assertEqual(r.rc, 1, r)
        status, detail = self.check(lines, "journal")
        self.assertEqual(status, "fail")
        self.assertIn("ftp://***@db.example.com/engine", detail)
        self.assertIn("no store for ftp://", detail)
        self.assertIn("postgresql://", detail)
        self.assertNotIn("hunter2secret", r.stdout + r.stderr)
        # the providers were still checked
        self.assertEqual(self.check(lines, "census: API")[0], "ok")

    # --- usage ------------------------------------------------------------------
    def test_an_unknown_option_is_a_usage_error(self):
        r, lines = self.doctor(["--bogus"])
        self.assertEqual(r.rc, 2, r)
        self.assertEqual(lines, [])
        self.assertEqual(len(r.stderr.splitlines()), 1, r)
        self.assertIn("--bogus", r.stderr)
        self.assertIn("usage: engine [--state DIR|URL] doctor [FLOW.lua] [--json]", r.stderr)
        self.assertEqual(self.sim.log, [], "nothing checked")

    def test_a_flow_that_does_not_compile_is_one_usage_line(self):
        r, lines = self.doctor(flow="census.sync{sync_id = 1\n")
        self.assertEqual(r.rc, 2, r)
        self.assertEqual(lines, [])
        self.assertEqual(len(r.stderr.splitlines()), 1, r)
        self.assertIn("does not compile", r.stderr)
        self.assertEqual(self.sim.log, [], "nothing checked")

    def test_an_unreadable_flow_is_a_usage_error(self):
        missing = os.path.join(self.dir, "nowhere.lua")
        r = run(["doctor", missing], env=self.sim_env())
        self.assertEqual(r.rc, 2, r)
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(r.stderr.splitlines()), 1, r)
        self.assertIn("cannot read %s" % missing, r.stderr)


class CensusV1Retirement(DoctorCase):
    """API v1's retirement in runs: one WARN from a month before, none
    earlier, and a `retired` error (not a "check the id") after."""
    FLOW = "print(census.sync({sync_id = 1}, {poll = 0.05}).status)\n"
    CAUGHT = ("local ok, e = pcall(census.sync, {sync_id = 1}, {poll = 0.05})\n"
              "print(ok, e.kind, e.http_status)\nprint(tostring(e))\n")

    def go(self, code, today, env=None):
        return run([self.flow(code)], env=self.sim_env(dict(env or {}, ENGINE_TEST_TODAY=today)))

    def test_a_run_26_days_before_warns_once(self):
        r = self.go(self.FLOW + self.FLOW.replace("sync_id = 1", "sync_id = 2"), "2026-12-20")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "completed\ncompleted\n")
        warnings = self.v1_warnings(r.stderr)
        self.assertEqual(len(warnings), 1, r.stderr)
        self.assertIn("WARN  census: Census API v1 retires on 2027-01-15 (in 26 days): " + FIX, warnings[0])

    def test_a_run_one_day_before_says_one_day(self):
        r = self.go(self.FLOW, "2027-01-14")
        self.assertEqual(r.rc, 0, r)
        warnings = self.v1_warnings(r.stderr)
        self.assertEqual(len(warnings), 1, r.stderr)
        self.assertIn("Census API v1 retires on 2027-01-15 (in 1 day): ", warnings[0])

    def test_a_run_before_the_warning_starts_says_nothing(self):
        for today in ["2026-12-01", "2026-12-14"]:
            r = self.go(self.FLOW, today)
            self.assertEqual(r.rc, 0, r)
            self.assertEqual(self.v1_warnings(r.stderr), [], r.stderr)
            self.assertNotIn("retire", r.stderr)

    def test_a_run_on_v2_never_warns(self):
        r = self.go(self.FLOW, "2026-12-20", {"CENSUS_API_VERSION": "2"})
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.v1_warnings(r.stderr), [], r.stderr)

    def assert_retired(self, status):
        r = self.go(self.CAUGHT, "2027-01-20")
        self.assertEqual(r.rc, 0, r)  # the flow caught it and ended well
        out = r.stdout.splitlines()
        self.assertEqual(out[0], "false\tretired\t%d" % status, r)
        self.assertIn(RETIRED, out[1])
        self.assertNotIn("check the id", r.stdout + r.stderr)
        warnings = [l for l in r.stderr.splitlines() if "WARN" in l and "Census API v1" in l]
        self.assertEqual(len(warnings), 1, r.stderr)
        self.assertIn("WARN  census: " + RETIRED, warnings[0])
        posts = [q for q in self.sim.log if q["method"] == "POST"]
        self.assertEqual(len(posts), 1, "a retired API is not retried: %r" % self.sim.log)
        self.assertTrue(posts[0]["path"].startswith("/api/v1/"))
        return r

    def test_a_run_after_retirement_fails_retired_on_410(self):
        self.sim.v1_retired = True
        self.assert_retired(410)

    def test_a_run_after_retirement_fails_retired_on_404(self):
        self.sim.v1_retired = 404
        self.assert_retired(404)

    def test_an_uncaught_retired_error_fails_the_run(self):
        self.sim.v1_retired = 410
        r = self.go(self.FLOW, "2027-01-20")
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.stdout, "")
        self.assertIn(RETIRED, r.stderr)
        self.assertIn("summary: 1 sync: 1 retired;", r.stderr)
        self.assertNotIn("check the id", r.stderr)

    def test_a_404_before_retirement_is_still_not_found(self):
        self.sim.v1_retired = 404  # (Census retiring it early)
        r = self.go(self.CAUGHT, "2027-01-10")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout.splitlines()[0], "false\tnot_found\t404", r)
        self.assertIn("check the id", r.stdout)


if __name__ == "__main__":
    main()
