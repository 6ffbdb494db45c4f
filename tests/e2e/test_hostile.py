"""test_hostile.py: answers that must never read as success. Counts that
are not whole numbers >= 0, a status with a NUL byte, a `canceled` that is
not a boolean, a 2xx trigger answer without a usable run id (never POSTed
again), an answer cut off in its headers, and options that are not what
they must be."""
import json
import resource
import subprocess

from harness import ENGINE, ServerTestCase, SimTestCase, keep_output, main, run

RUN = '{"status":"success","data":{"id":RUN_ID,"sync_id":1,"status":"completed","canceled":false,%s}}'

OUTCOME = """
local ok, r = pcall(census.sync, {sync_id = 1}, {poll = 0.05%s})
if ok then print("ok", r.status, r.records_failed) else print(r.kind, r.message) end
"""


class Answers(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_RETRY_BUDGET="0.3")

    def outcome(self, scenario, opts=""):
        self.sim.syncs[1] = scenario
        r = run(["-e", OUTCOME % opts], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        return r.stdout.split("\t", 1)[0], r

    def test_counts_that_are_not_whole_numbers_are_bad_responses(self):
        for value in ["1e400", "1e308", "NaN", "1.2e29", "40.5", "-1", '"3"', "true"]:
            self.sim.reset()
            kind, r = self.outcome({"get": [{"raw": RUN % ('"records_failed":' + value)}] * 50},
                                   ", max_records_failed = 0")
            self.assertEqual(kind, "bad_response", (value, r))
            self.assertIn("records_failed", r.stdout)
        self.sim.reset()
        kind, r = self.outcome({"get": [{"raw": RUN % '"records_failed":null,"records_processed":5.0'}]})
        self.assertEqual(kind, "ok", r)

    def test_a_status_with_a_nul_byte_is_not_completed(self):
        kind, r = self.outcome({"get": [{"raw": RUN.replace('"status":"completed"', '"status":"completed\\u0000x"')
                                         % '"records_failed":0'}] * 50})
        self.assertEqual(kind, "unknown_status", r)
        self.assertNotIn("\0", r.stdout + r.stderr)

    def test_canceled_must_be_a_boolean(self):
        for value, want in [('"yes"', "bad_response"), ("1", "bad_response"), ("true", "canceled"),
                            ("null", "ok")]:
            self.sim.reset()
            kind, r = self.outcome({"get": [{"raw": RUN.replace('"canceled":false', '"canceled":' + value)
                                             % '"records_failed":0'}] * 50})
            self.assertEqual(kind, want, (value, r))

    def test_duplicate_keys_are_a_bad_answer(self):
        for raw in [RUN.replace('"canceled":false', '"canceled":true,"canceled":false') % '"records_failed":0',
                    RUN % '"records_failed":5,"records_failed":0',
                    RUN.replace('"status":"completed"', '"status":"failed","status":"completed"')
                    % '"records_failed":0']:
            self.sim.reset()
            kind, r = self.outcome({"get": [{"raw": raw}] * 50})
            self.assertEqual(kind, "bad_response", (raw, r))
            self.assertIn("twice", r.stdout)
        self.sim.reset()
        kind, r = self.outcome({"get": [{"raw": RUN % '"records_failed":0,"x":{"a":1},"y":{"a":2}'}]})
        self.assertEqual(kind, "ok", "the same key in two objects is fine")

    def test_a_2xx_trigger_answer_without_a_usable_run_id_is_never_posted_again(self):
        for value in ['"1001"', "10.5", "1e30", "1e400", "null", "-4"]:
            self.sim.reset()
            self.sim.syncs[1] = {"trigger": [{"raw_created": '{"status":"success","data":{"sync_run_id":%s}}'
                                              % value}], "steps": ["completed"]}
            r = run(["-e", OUTCOME % ""], env=self.sim_env())
            self.assertEqual(self.sim.triggers.get(1), 1, (value, r))
            self.assertTrue(r.stdout.startswith("ok\tcompleted"), (value, r))
            self.assertIn("adopting run 1001", r.stderr)

    def test_a_2xx_trigger_answer_with_no_run_to_find_fails_without_a_second_post(self):
        self.sim.syncs[1] = {"trigger": [{"raw": '{"status":"success","data":{"sync_run_id":"x"}}'}]}
        r = run(["-e", OUTCOME % ""], env=self.sim_env())
        self.assertEqual(self.sim.triggers.get(1), 1, r)
        self.assertTrue(r.stdout.startswith("bad_response\t"), r)

    def test_an_answer_cut_off_in_its_headers_is_a_network_error(self):
        self.sim.syncs[1] = {"get": ["cut_headers", "cut_headers"], "steps": ["completed"]}
        r = run(["-e", OUTCOME % ""], env=self.sim_env({"CENSUS_RETRY_BUDGET": "30"}))
        self.assertTrue(r.stdout.startswith("ok\tcompleted"), r)
        self.assertIn("retrying in", r.stderr)
        self.sim.syncs[3] = {"get": ["cut_headers"]}
        r = run(["-e", "local ok, e = pcall(http.get, os.getenv('CENSUS_BASE_URL') .. "
                       "'/api/v1/sync_runs/' .. census.trigger({sync_id = 3}).sync_run_id, "
                       "{headers = {Authorization = 'Bearer ' .. os.getenv('CENSUS_API_KEY')}})\n"
                       "print(ok, ok and e.status or e.kind)"],
                env=self.sim_env())
        self.assertEqual(r.stdout, "false\tnetwork\n", r)

    def test_threshold_options_must_be_numbers(self):
        for value in ["0/0", "'5'", "math.huge", "-1", "{}"]:
            r = run(["-e", "local ok, e = pcall(census.wait, {sync_id = 1, sync_run_id = 2}, "
                           "{max_records_failed = %s}) print(e.kind, e.message)" % value],
                    env=self.sim_env())
            self.assertTrue(r.stdout.startswith("invalid_argument\t"), (value, r))
            self.assertIn("max_records_failed must be a number >= 0", r.stdout)


class Options(SimTestCase):
    def test_wrong_types_and_nul_bytes_are_refused(self):
        url = "http://127.0.0.1:9/"
        for code, text in [
                ("http.get(URL, {timeout = 0.0004})", "timeout must be seconds from 0.001 to 86400"),
                ("http.get(URL, {timeout = '5'})", "timeout must be a number of seconds, got a string"),
                ("http.get(URL, {follow_redirects = 'no'})", "follow_redirects must be true or false"),
                ("http.request{url = URL, method = 5}", "method must be a string"),
                ("http.get(URL .. 'a\\0b')", "url contains a NUL byte"),
                ("http.get(URL, {headers = {X = 'a\\0b'}})", "header 'X' contains a NUL byte"),
                ("http.get(URL, {headers = {['X\\0Y'] = 'v'}})", "contains a NUL byte")]:
            r = run(["-e", "URL = %r\nlocal ok, e = pcall(function() return %s end) print(ok, e)" % (url, code)])
            self.assertTrue(r.stdout.startswith("false\t"), (code, r))
            self.assertIn(text, r.stdout, code)

    def test_bad_numbers_in_the_environment_are_refused(self):
        r = run(["-e", "print(pcall(http.get, 'http://127.0.0.1:9/'))"],
                env={"ENGINE_HTTP_MAX_HOST_CONNECTIONS": "abc"})
        self.assertIn('ENGINE_HTTP_MAX_HOST_CONNECTIONS must be a whole number >= 1, got "abc"', r.stdout)
        r = run(["-e", "local ok, e = pcall(census.trigger, {sync_id = 1}) print(e.kind, e.message)"],
                env=self.sim_env({"CENSUS_REQUEST_TIMEOUT": "0.0001"}))
        self.assertIn("invalid_argument\tCENSUS_REQUEST_TIMEOUT must be at least 0.001 seconds", r.stdout)
        self.assertEqual(self.sim.triggers.get(1), None)


def peak_rss_mib(args, env=None):
    """Runs the engine alone; returns (result, its peak RSS in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    p = subprocess.run([ENGINE] + args, capture_output=True, text=True, timeout=60,
                       env=dict(__import__("os").environ, **(env or {})))
    keep_output(p.stdout + p.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return p, max(peak, before) / 1024


class Bounded(ServerTestCase):
    def test_a_gzip_bomb_stops_at_max_bytes(self):
        url = self.server.url + "/gzip/%d" % (256 * 1024 * 1024)
        p, rss = peak_rss_mib(["--no-state", "-e", "local ok, e = pcall(http.get, %r, {compressed = true, "
                                                   "max_bytes = 1000000}) print(ok, e.kind, e.message)" % url])
        self.assertIn("false\tnetwork", p.stdout)
        self.assertIn("larger than 1000000 bytes (max_bytes)", p.stdout)
        self.assertLess(rss, 64, "a 256 MiB bomb cost %.0f MiB" % rss)

    def test_answers_in_flight_share_one_budget(self):
        code = ("local fns = {} for i = 1, 4 do fns[i] = function() return select(2, pcall(http.get, %r)) end end\n"
                "for _, r in ipairs(flow.parallel(fns)) do print(r.status or r.kind, r.message) end"
                % (self.server.url + "/half/40000"))
        r = run(["-e", code], env={"ENGINE_HTTP_MAX_BUFFERED": "100000"})
        self.assertIn("network", r.stdout, r)
        self.assertIn("hold more than 100000 bytes (ENGINE_HTTP_MAX_BUFFERED)", r.stdout)
        r = run(["-e", code])
        self.assertEqual(r.stdout, "200\tnil\n" * 4, r)

    def test_max_bytes_must_be_a_number(self):
        r = run(["-e", "print(pcall(http.get, 'http://127.0.0.1:9/', {max_bytes = 'lots'}))"])
        self.assertIn("max_bytes must be a number of bytes", r.stdout)

    def test_log_lines_are_cut(self):
        r = run(["-e", "log.info(string.rep('x', 20000))"])
        line = r.stderr.strip()
        self.assertLess(len(line), 8 * 1024 + 100)
        self.assertTrue(line.endswith("[... %d bytes cut]" % (20000 - 8192)), line[-60:])


class CensusAnswers(SimTestCase):
    def test_a_census_answer_is_capped(self):
        big = RUN % ('"records_failed":0,"pad":"%s"' % ("y" * (5 * 1024 * 1024)))
        self.sim.syncs[1] = {"get": [{"raw": big}] * 50}
        r = run(["-e", OUTCOME % ""], env=self.sim_env({"CENSUS_RETRY_BUDGET": "0.3"}))
        self.assertTrue(r.stdout.startswith("network\t"), r.stdout[:300])
        self.assertIn("larger than 4194304 bytes", r.stdout)
        self.sim.reset()
        self.sim.syncs[1] = {"get": [{"raw": big}] * 50}
        r = run(["-e", OUTCOME % ""], env=self.sim_env({"CENSUS_MAX_ANSWER_BYTES": "8000000"}))
        self.assertTrue(r.stdout.startswith("ok\tcompleted"), r.stdout[:300])


class Descriptors(SimTestCase):
    def test_500_syncs_with_64_descriptors_queue_instead_of_failing(self):
        import os
        self.sim.syncs.update({i: {"steps": ["working", "completed"]} for i in range(1, 501)})
        code = ("local fns = {} for i = 1, 500 do fns[i] = function() "
                "return census.sync({sync_id = i}, {poll = 0.05}).status end end\n"
                "local n = 0 for _, s in ipairs(flow.parallel(fns)) do if s == 'completed' then n = n + 1 end end\n"
                "print(n)")
        p = subprocess.run([ENGINE, "--no-state", "-e", code], capture_output=True, text=True, timeout=240,
                           env=dict(os.environ, **self.sim_env()),
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
        keep_output(p.stdout + p.stderr)
        self.assertEqual((p.returncode, p.stdout), (0, "500\n"), p.stderr[-2000:])
        self.assertNotIn("connect", p.stderr.lower())
        self.assertNotIn("adopting", p.stderr)
        self.assertEqual(sum(self.sim.triggers.values()), 500)
        self.assertEqual(max(self.sim.triggers.values()), 1)


if __name__ == "__main__":
    main()
