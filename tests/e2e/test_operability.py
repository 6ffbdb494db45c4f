"""test_operability.py: what an on-call person and a platform team see.
Failures read once at the right level, summaries that scale, syncs by name,
JSON logs, Prometheus metrics, flow.on_finish and flow.params."""
import json
import os
import re
import signal
import subprocess
import tempfile
import unittest

from harness import (ENGINE, ROOT, SimTestCase, TestServer, check_no_secrets, keep_output, main, run,
                     write_flow)

DONE = {"status": "completed", "records_processed": 10, "records_updated": 10, "records_failed": 0}


def log_lines(stderr):
    """The JSON log lines of a run's stderr (the end line and the summary stay text)."""
    return [json.loads(l) for l in stderr.splitlines() if l.startswith("{")]


# --- a Prometheus text-format check, from the exposition format's spec ----
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_labels(text):
    """Parses 'a="x",b="y\\"z"' into a dict; raises on bad syntax."""
    labels, i = {}, 0
    while i < len(text):
        m = re.match(r"([^=]+)=\"", text[i:])
        if not m or not LABEL_NAME.match(m.group(1)):
            raise AssertionError("bad label name at %r" % text[i:])
        name, i = m.group(1), i + m.end()
        value = ""
        while True:
            if i >= len(text):
                raise AssertionError("unterminated label value in %r" % text)
            c = text[i]
            if c == "\\":
                esc = text[i + 1:i + 2]
                if esc not in ("\\", '"', "n"):
                    raise AssertionError("bad escape \\%s in %r" % (esc, text))
                value += {"n": "\n"}.get(esc, esc)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise AssertionError("raw newline in a label value")
            else:
                value += c
                i += 1
        if name in labels:
            raise AssertionError("label %s twice" % name)
        labels[name] = value
        if i < len(text):
            if text[i] != ",":
                raise AssertionError("expected , in %r" % text)
            i += 1
    return labels


def check_prometheus(text):
    """Checks text against the Prometheus text exposition format; returns
    {(name, frozenset(labels)): value}."""
    if not text.endswith("\n"):
        raise AssertionError("the last line must end with a newline")
    samples, types, seen_families, current = {}, {}, [], None
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.match(name):
                    raise AssertionError("bad metric name %r" % name)
                if parts[1] == "TYPE":
                    if name in types or parts[3] not in TYPES:
                        raise AssertionError("bad or repeated TYPE line %r" % line)
                    if any(n == name for n, _ in samples):
                        raise AssertionError("TYPE for %s after its samples" % name)
                    types[name] = parts[3]
                if name != current:
                    if name in seen_families:
                        raise AssertionError("family %s is not contiguous" % name)
                    seen_families.append(name)
                    current = name
            continue
        if not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( -?\d+)?$", line)
        if not m:
            raise AssertionError("bad sample line %r" % line)
        name, labels, value = m.group(1), parse_labels(m.group(3) or ""), m.group(4)
        if name != current:
            if name in seen_families:
                raise AssertionError("samples of %s are not together" % name)
            seen_families.append(name)
            current = name
        if value not in ("NaN", "+Inf", "-Inf"):
            try:
                float(value)
            except ValueError:
                raise AssertionError("bad value in %r" % line)
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise AssertionError("series %r twice" % (key,))
        samples[key] = float(value)
    return samples


def sample(samples, metric, **labels):
    for (n, ls), v in samples.items():
        d = dict(ls)
        if n == metric and all(d.get(k) == str(x) for k, x in labels.items()):
            return v
    return None


class Case(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")


class PrometheusCheck(unittest.TestCase):
    def test_the_checker_refuses_what_the_format_forbids(self):
        check_prometheus('# HELP a b\n# TYPE a gauge\na{x="1\\"2"} 3\n')
        for bad in ['a{x="1} 2\n', 'a{x="1"} two\n', "a 1\na 2\n", 'a{x="\\q"} 1\n', "1a 1\n",
                    "a 1\nb 1\na 2\n", "a 1"]:
            with self.assertRaises(AssertionError, msg=bad):
                check_prometheus(bad)


class Failures(Case):

    def test_an_error_object_is_one_line_and_v_adds_the_traceback(self):
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota exceeded"}]}
        path = write_flow("census.sync{sync_id = 2}\n")
        self.addCleanup(os.unlink, path)
        r = run([path], env=self.sim_env())
        self.assertEqual(r.rc, 1)
        end = [l for l in r.stderr.splitlines() if l.startswith("engine:")]
        self.assertEqual(len(end), 1)
        self.assertRegex(end[0], r"^engine: %s:1: sync 2 run \d+ failed: quota exceeded \(%s/syncs/2/sync-history\)$"
                         % (re.escape(path), re.escape(self.sim.url)))
        self.assertNotIn("traceback", r.stderr)
        r = run(["-v", path], env=self.sim_env())
        self.assertIn("stack traceback", r.stderr)

    def test_a_lua_error_keeps_its_traceback(self):
        r = run(["-e", "local t\nprint(t.x)"])
        self.assertEqual(r.rc, 1)
        self.assertIn("engine: (command line):2: attempt to index a nil value (local 't')\nstack traceback:",
                      r.stderr)

    def test_a_flows_own_usage_error_exits_2(self):
        r = run(["-e", "error(flow.error('usage', 'give a sync id'))"])
        self.assertEqual((r.rc, r.stderr), (2, "engine: (command line):1: give a sync id\n"))

    def test_census_outcomes_are_logged_once_at_their_level(self):
        link = self.sim.url + "/syncs/%d/sync-history"
        self.sim.syncs[1] = {"steps": ["working", {"status": "failed", "error_message": "bad mapping"}]}
        self.sim.syncs[2] = {"steps": ["skipped"]}
        self.sim.syncs[3] = {"steps": [{"status": "exploded"}]}
        self.sim.syncs[4] = {"steps": ["completed"]}  # counts null
        self.sim.syncs[5] = {"steps": [dict(DONE, records_failed=2, records_updated=8)]}
        self.sim.syncs[6] = {"steps": [DONE]}
        r = run(["-e", "for id = 1, 6 do pcall(census.sync, {sync_id = id}) end"], env=self.sim_env())
        lines = r.stderr.splitlines()

        def about(sync_id):
            return [l[25:] for l in lines if re.search(r"census: sync %d run \d+ " % sync_id, l)]
        self.assertRegex(about(1)[0], r"^ERROR census: sync 1 run \d+ failed: bad mapping \(%s\)$"
                         % re.escape(link % 1))
        self.assertRegex(about(2)[0], r"^ERROR census: sync 2 run \d+ was skipped: .* \(%s\)$" % re.escape(link % 2))
        self.assertRegex(about(3)[0], r'^ERROR census: sync 3 run \d+ reported status "exploded"')
        self.assertRegex(about(4)[0], r"^INFO  census: sync 4 run \d+ completed in \d+\.\d s: counts not reported"
                         r" \(%s\)$" % re.escape(link % 4))
        self.assertRegex(about(5)[0], r"^WARN  census: sync 5 run \d+ completed in \d+\.\d s: 10 processed, "
                         r"8 updated, 2 failed \(%s\)$" % re.escape(link % 5))
        self.assertRegex(about(6)[0], r"^INFO  census: sync 6 run \d+ completed in \d+\.\d s: 10 processed, "
                         r"10 updated, 0 failed")
        for sync_id in range(1, 7):
            self.assertEqual(len(about(sync_id)), 1, "one line per outcome:\n" + r.stderr)
        self.assertNotIn("0 processed", "\n".join(about(4)))

    def test_errors_carry_url_run_id_and_result_and_auth_errors_the_sync(self):
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        r = run(["-e", "local ok, e = pcall(census.sync, {sync_id = 2})\n"
                       "print(e.kind, e.sync_id, e.run_id == e.sync_run_id, e.url, e.result.error_message)\n"
                       "ok, e = pcall(census.sync, {sync_id = 3, token = 'secret-token:wrong-token-value'})\n"
                       "print(e.kind, e.sync_id, e.url)"], env=self.sim_env())
        self.assertEqual(r.stdout, "failed\t2\ttrue\t{0}/syncs/2/sync-history\tquota\n"
                                   "auth\t3\t{0}/syncs/3/sync-history\n".format(self.sim.url), r)


class Retries(Case):

    def test_attempts_are_logged_and_a_retried_sync_is_one_row(self):
        self.sim.syncs[7] = {"runs": [["failed"], ["failed"], [DONE]]}
        out = os.path.join(tempfile.mkdtemp(), "s.json")
        r = run(["--summary-json", out, "-e",
                 "flow.step('load', flow.retry, {attempts = 3, delay = 0.01}, census.sync, {sync_id = 7})"],
                env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        attempts = [l[25:] for l in r.stderr.splitlines() if "retrying in" in l]
        self.assertEqual(len(attempts), 2, r.stderr)
        self.assertRegex(attempts[0], r"^WARN  attempt 1/3 failed: .*sync 7 run \d+ failed: .*; retrying in \d+\.\d s$")
        self.assertTrue(attempts[1].startswith("WARN  attempt 2/3 failed: "))
        self.assertIn("summary: 1 step, 1 sync: 1 ok, 1 completed;", r.stderr)
        self.assertRegex(r.stderr, r"\n  sync 7 +completed \(3 attempts\) +\d+\.\d s +10 +10 +0 +-\n")
        with open(out) as f:
            doc = json.load(f)
        self.assertEqual([(e["name"], e["status"], e["attempts"]) for e in doc["entries"]],
                         [("load", "ok", 1), ("sync 7", "completed", 3)])
        self.assertEqual(doc["syncs"], {"total": 1, "failed": 0})

    def test_the_final_error_says_how_many_attempts(self):
        self.sim.syncs[7] = {"steps": ["failed"]}
        r = run(["-e", "flow.retry({attempts = 2, delay = 0.01}, census.sync, {sync_id = 7})"], env=self.sim_env())
        self.assertEqual(r.rc, 1)
        self.assertRegex(r.stderr, r"\nengine: .*sync 7 run \d+ failed: .* \(gave up after 2 attempts\)\n")
        self.assertRegex(r.stderr, r"\n  sync 7 +failed \(2 attempts\)")


class Summaries(Case):

    def test_parallel_failures_read_at_any_size(self):
        r = run(["--no-state", "-e",
                 "local fns = {}\nfor i = 1, 10000 do fns[i] = function()\n"
                 "  if i % 2 == 0 then error('even ' .. i % 3, 0) end\n"
                 "  if i == 5 then error('five', 0) end end end\n"
                 "local ok, e = pcall(flow.parallel, fns)\n"
                 "print(#e.errors, #tostring(e)) print(tostring(e))"])
        count, length = map(int, r.stdout.splitlines()[0].split("\t"))
        self.assertEqual(count, 5001)
        self.assertLess(length, 1000)
        self.assertEqual(r.stdout.splitlines()[1],
                         "(command line):5: 5001 of 10000 branches failed: [branch 2, branch 8, branch 14 and "
                         "1664 more] even 2; [branch 4, branch 10, branch 16 and 1664 more] even 1; [branch 5] five; "
                         "and 1 more different errors (see .errors)")

    def test_a_summary_of_many_rows_shows_totals_and_the_failed_ones(self):
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        r = run(["--no-state", "-e",
                 "local fns = {}\nfor i = 1, 200 do fns[i] = function()\n"
                 "  census.sync{sync_id = i % 100 == 2 and 2 or 1, label = 'sync number ' .. i} end end\n"
                 "flow.parallel(fns, {limit = 50})"], env=self.sim_env())
        self.assertEqual(r.rc, 1)
        summary = r.stderr[r.stderr.index("summary:"):].splitlines()
        # outcomes in order of first appearance: which wait starts first is a race
        self.assertRegex(summary[0], r"^summary: 200 syncs: (198 completed, 2 failed|2 failed, 198 completed); ")
        self.assertEqual(summary[1], "  200 rows: the failed ones below (--summary-json has every row)")
        rows = [l for l in summary[3:] if l.startswith("  sync number")]
        self.assertEqual(sorted(l.split()[2] for l in rows), ["102", "2"])
        self.assertEqual(len(summary), 3 + 2 * 2, "\n".join(summary))

    def test_ten_thousand_rows_stay_short_and_aligned(self):
        r = run(["--no-state", "-e",
                 "for i = 1, 10000 do pcall(flow.step, 'step ' .. i, function()\n"
                 "  if i % 100 == 0 then error('broke', 0) end end) end"])
        summary = r.stderr[r.stderr.index("summary:"):].splitlines()
        self.assertTrue(summary[0].startswith("summary: 10000 steps: 9900 ok, 100 failed; "), summary[0])
        self.assertEqual(summary[1], "  10000 rows: the failed ones below, the first 40 of 100 "
                                     "(--summary-json has every row)")
        self.assertLess(len(summary), 100)
        header = summary[2]
        for row in summary[3::2]:
            self.assertEqual(row.index("failed"), header.index("OUTCOME"), row)

    def test_columns_stay_aligned_for_every_outcome(self):
        self.sim.syncs[1] = {"steps": [DONE]}
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        self.sim.syncs[3] = {"steps": [dict(DONE, records_invalid=4)]}
        r = run(["-e", "pcall(census.sync, {sync_id = 1, label = 'a much longer sync label here'})\n"
                       "pcall(census.sync, {sync_id = 2})\n"
                       "pcall(census.sync, {sync_id = 3}, {max_records_failed = 0, allow_skipped = true})\n"
                       "pcall(flow.retry, {attempts = 2, delay = 0}, flow.step, 's', error, 'x')"],
                env=self.sim_env())
        summary = r.stderr[r.stderr.index("summary:"):].splitlines()
        header = summary[1]
        self.assertEqual(header.split(), ["STEP", "/", "SYNC", "OUTCOME", "DURATION", "PROCESSED", "UPDATED",
                                          "FAILED", "INVALID"])
        rows = [l for l in summary[2:] if not l.startswith("      ")]
        self.assertEqual(len(rows), 4)
        for row in rows:
            self.assertEqual(len(row.rstrip()) <= len(header), True, row)
            self.assertNotEqual(row[header.index("OUTCOME") - 1], "x", row)
            self.assertEqual(row[header.index("OUTCOME") - 2:header.index("OUTCOME")], "  ", row)
        self.assertRegex(rows[2], r"^  sync 3 +completed +\d+\.\d s +10 +10 +0 +4$")
        self.assertRegex(rows[3], r"^  s +failed \(2 attempts\) +\d+\.\d s$")


class Names(Case):

    def setUp(self):
        super().setUp()
        self.sim.syncs.update({1: {"name": "Salesforce Contacts", "steps": [DONE]},
                               2: {"name": "Salesforce Accounts", "steps": [DONE]},
                               3: {"name": "HubSpot", "steps": [DONE]},
                               4: {"name": "HubSpot", "steps": [DONE]}})

    def test_a_sync_by_name_is_listed_once_and_named_in_rows(self):
        r = run(["-e", "local fns = {}\nfor i = 1, 5 do fns[i] = function()\n"
                       "  return census.sync{name = 'Salesforce Contacts'} end end\n"
                       "local res = flow.parallel(fns)\nprint(res[1].sync_id)"], env=self.sim_env())
        self.assertEqual((r.rc, r.stdout), (0, "1\n"), r)
        self.assertEqual(self.sim.triggers, {1: 5})
        lists = [q for q in self.sim.log if q["path"] == "/api/v1/syncs"]
        self.assertEqual(len(lists), 1, "the syncs list is read once")
        self.assertRegex(r.stderr, r"census: sync 1 run \d+ \(Salesforce Contacts\) completed")
        self.assertRegex(r.stderr, r"\n  Salesforce Contacts +completed ")

    def test_a_missing_or_ambiguous_name_is_a_clear_error(self):
        r = run(["-e", "census.sync{name = 'salesforce contact'}"], env=self.sim_env())
        self.assertEqual(r.rc, 1)
        self.assertIn('census.trigger: no sync is named "salesforce contact"; close matches: '
                      '"Salesforce Contacts" (id 1)\n', r.stderr)
        r = run(["-e", "census.sync{name = 'Salesforce'}"], env=self.sim_env())
        self.assertIn('no sync is named "Salesforce"; close matches: "Salesforce Accounts" (id 2), '
                      '"Salesforce Contacts" (id 1)\n', r.stderr)
        r = run(["-e", "local ok, e = pcall(census.sync, {name = 'HubSpot'}) print(e.kind, e.message)"],
                env=self.sim_env())
        self.assertEqual(r.stdout, 'invalid_argument\tcensus.trigger: 2 syncs are named "HubSpot" '
                                   '(ids 3, 4): pass sync_id instead\n')
        r = run(["-e", "census.sync{name = 'Zendesk Tickets'}"], env=self.sim_env())
        self.assertIn('no sync is named "Zendesk Tickets"; census.syncs() lists them, or pass sync_id', r.stderr)
        r = run(["-e", "census.sync{name = 'HubSpot', sync_id = 3}"], env=self.sim_env())
        self.assertIn("give sync_id or name, not both", r.stderr)
        self.assertEqual(self.sim.triggers, {})

    def test_a_label_names_the_row(self):
        r = run(["-e", "census.sync({sync_id = 3, label = 'leads to HubSpot'})\n"
                       "local run = census.trigger{sync_id = 3, label = 'again'} census.wait(run)"],
                env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.stderr, r"\n  leads to HubSpot +completed ")
        self.assertRegex(r.stderr, r"\n  again +completed ")
        r = run(["-e", "census.sync{sync_id = 3, label = ''}"], env=self.sim_env())
        self.assertIn("census.trigger: label must be a non-empty string", r.stderr)


class Logs(Case):

    def test_json_lines_parse_and_carry_the_context(self):
        self.sim.syncs[7] = {"runs": [["failed"], [DONE]]}
        path = write_flow("flow.step('load', flow.retry, {attempts = 2, delay = 0}, census.sync, {sync_id = 7})\n"
                          "log.info('odd \\1 bytes \\255 and \"quotes\" and a secret-token:hunter2secret')\n")
        self.addCleanup(os.unlink, path)
        r = run(["--log-format=json", path], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        lines = log_lines(r.stderr)
        self.assertGreater(len(lines), 5)
        for l in lines:
            self.assertRegex(l["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(l["level"], ("DEBUG", "INFO", "WARN", "ERROR"))
            self.assertEqual(l["flow"], os.path.realpath(path))
            self.assertIsInstance(l["run"], int)
        failed = next(l for l in lines if l["level"] == "ERROR")
        self.assertEqual((failed["step"], failed["attempt"], failed["sync_id"], failed["status"]),
                         ("load", 1, 7, "failed"))
        self.assertIn("sync_run_id", failed)
        done = next(l for l in lines if "completed in" in l["msg"])
        self.assertEqual((done["attempt"], done["status"], done["records_processed"], done["records_updated"],
                          done["records_failed"]), (2, "completed", 10, 10, 0))
        retry = next(l for l in lines if "retrying in" in l["msg"])
        self.assertEqual((retry["level"], retry["attempt"]), ("WARN", 1))
        odd = next(l for l in lines if l["msg"].startswith("odd"))
        self.assertEqual(odd["msg"], 'odd \\x01 bytes \u00ff and "quotes" and a secret-token:***')
        self.assertNotIn("step", odd)
        summary = lines[-1]  # the summary is one object too, with the document
        self.assertTrue(summary["msg"].startswith("summary: 1 step, 1 sync"), summary)
        self.assertEqual(len(summary["summary"]["entries"]), 2)

    def test_the_variable_and_bad_values(self):
        r = run(["--no-state", "-e", "log.warn('w')"], env={"ENGINE_LOG_FORMAT": "json"})
        self.assertEqual([(l["level"], l["msg"]) for l in log_lines(r.stderr)], [("WARN", "w")])
        r = run(["--no-state", "--log-format=text", "-e", "log.warn('w')"], env={"ENGINE_LOG_FORMAT": "json"})
        self.assertRegex(r.stderr, r"^\S+ WARN  w\n$")
        r = run(["--log-format=xml", "-e", ""])
        self.assertEqual((r.rc, r.stderr), (2, "engine: --log-format=xml: use --log-format=text or json "
                                               "(see engine --help)\n"))
        r = run(["-e", ""], env={"ENGINE_LOG_FORMAT": "yaml"})
        self.assertEqual(r.rc, 2)
        self.assertIn("ENGINE_LOG_FORMAT=yaml", r.stderr)


class Metrics(Case):

    def test_the_metrics_file_passes_the_format_check_and_says_what_happened(self):
        self.sim.syncs[1] = {"steps": [dict(DONE, records_invalid=1)]}
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        out = os.path.join(tempfile.mkdtemp(), "engine.prom")
        path = write_flow("local ok = pcall(census.sync, {sync_id = 1, label = 'a \"quoted\" \\\\ label'})\n"
                          "if arg[1] == 'fail' then census.sync{sync_id = 2} end\n")
        self.addCleanup(os.unlink, path)
        r = run(["--metrics", out, path], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        with open(out) as f:
            samples = check_prometheus(f.read())
        flow = os.path.realpath(path)
        self.assertEqual(sample(samples, "engine_syncs", flow=flow, outcome="completed"), 1)
        self.assertEqual(sample(samples, "engine_records", flow=flow, kind="processed"), 10)
        self.assertEqual(sample(samples, "engine_records", flow=flow, kind="invalid"), 1)
        self.assertGreater(sample(samples, "engine_sync_duration_seconds", sync_id=1,
                                  name='a "quoted" \\ label'), 0)
        self.assertEqual(sample(samples, "engine_run_exit_code", flow=flow), 0)
        success = sample(samples, "engine_last_success_timestamp_seconds", flow=flow)
        self.assertGreater(success, 1.7e9)
        r = run(["--metrics", out, path, "fail"], env=self.sim_env())
        self.assertEqual(r.rc, 1)
        with open(out) as f:
            samples = check_prometheus(f.read())
        self.assertEqual(sample(samples, "engine_run_exit_code", flow=flow), 1)
        self.assertEqual(sample(samples, "engine_syncs", flow=flow, outcome="failed"), 1)
        self.assertEqual(sample(samples, "engine_last_success_timestamp_seconds", flow=flow), success,
                         "a failed run keeps the last success")
        self.assertEqual([f for f in os.listdir(os.path.dirname(out)) if f != "engine.prom"], [])

    def test_a_flow_that_holds_the_loop_shows_in_the_summary_and_the_metrics(self):
        self.sim.syncs[1] = {"steps": [DONE]}
        d = tempfile.mkdtemp()
        prom, summary = os.path.join(d, "engine.prom"), os.path.join(d, "s.json")
        path = write_flow("census.sync{sync_id = 1}\n"
                          "local t = os.clock() while os.clock() - t < 0.2 do end\n")
        self.addCleanup(os.unlink, path)
        r = run(["--metrics", prom, "--summary-json", summary, path], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        with open(summary) as f:
            loop = json.load(f)["loop"]
        self.assertGreaterEqual(loop["longest_turn"], 0.2)
        self.assertGreater(loop["longest_store_hold"], 0, "the journal wrote the sync")
        self.assertLess(loop["longest_store_hold"], loop["longest_turn"])
        with open(prom) as f:
            samples = check_prometheus(f.read())
        flow = os.path.realpath(path)
        self.assertGreaterEqual(sample(samples, "engine_loop_longest_turn_seconds", flow=flow), 0.2)
        self.assertGreater(sample(samples, "engine_journal_longest_hold_seconds", flow=flow), 0)

    def test_an_unwritable_metrics_file_fails_the_run(self):
        r = run(["--no-state", "--metrics", "/no/such/dir/m.prom", "-e", ""])
        self.assertEqual(r.rc, 1)
        self.assertIn("engine: cannot write the metrics: /no/such/dir/m.prom", r.stderr)
        r = run(["--metrics"])
        self.assertEqual(r.rc, 2)


class OnFinish(Case):

    HANDLER = ("flow.on_finish(function(run)\n"
               "  local r = http.post(os.getenv('HOOK'), json.encode{status = run.status, exit_code = run.exit_code,\n"
               "    error = run.error, failed = run.syncs.failed, n = #run.entries})\n"
               "  print('posted', r.status) io.stdout:flush()\n"
               "end)\n")

    def setUp(self):
        super().setUp()
        self.hook = TestServer()
        self.addCleanup(self.hook.stop)

    def posted(self):
        return [json.loads(b) for b in self.hook.bodies]

    def test_it_runs_once_on_success_and_failure(self):
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        env = self.sim_env({"HOOK": self.hook.url + "/echo"})
        r = run(["-e", self.HANDLER + "census.sync{sync_id = 1}"], env=env)
        self.assertEqual((r.rc, r.stdout), (0, "posted\t200\n"), r)
        r = run(["-e", self.HANDLER + "census.sync{sync_id = 2}"], env=env)
        self.assertEqual((r.rc, r.stdout), (1, "posted\t200\n"), r)
        self.assertLess(r.stderr.index("engine: "), r.stderr.index("summary:"))
        first, second = self.posted()
        self.assertEqual(first, {"status": "ok", "exit_code": 0, "failed": 0, "n": 1})
        self.assertEqual((second["status"], second["exit_code"], second["failed"]), ("failed", 1, 1))
        self.assertRegex(second["error"], r"sync 2 run \d+ failed: quota")

    def test_it_runs_after_os_exit_and_an_interrupt(self):
        env = self.sim_env({"HOOK": self.hook.url + "/echo"})
        r = run(["-e", self.HANDLER + "os.exit(3)"], env=env)
        self.assertEqual((r.rc, r.stdout), (3, "posted\t200\n"), r)
        self.sim.syncs[1] = {"steps": ["working"]}
        path = write_flow(self.HANDLER + "flow.spawn(function() flow.sleep(0.3) print('ready') io.stdout:flush() end)\n"
                                         "census.sync{sync_id = 1}")
        self.addCleanup(os.unlink, path)
        proc = subprocess.Popen([ENGINE, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **env))
        self.assertEqual(proc.stdout.readline(), "ready\n")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        keep_output(out + err)
        check_no_secrets(out + err)
        self.assertEqual((proc.returncode, out), (130, "posted\t200\n"), err)
        statuses = [(p["status"], p["exit_code"]) for p in self.posted()]
        self.assertEqual(statuses, [("failed", 3), ("interrupted", 130)])
        self.assertRegex(self.posted()[1]["error"], r":\d+: interrupted by SIGINT$")

    def test_a_slow_or_failing_handler_is_bounded_and_keeps_the_exit_status(self):
        r = run(["--no-state", "-e",
                 "flow.on_finish(function() flow.sleep(60) end, {timeout = 0.2})\n"
                 "flow.on_finish(function() error('webhook down') end)\n"
                 "flow.on_finish(function(s) flow.spawn(flow.sleep, 60) print('third', s.status) end)"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "third\tok\n")
        self.assertIn("ERROR flow.on_finish: handler 1 did not finish within 0.2 s; stopped it", r.stderr)
        self.assertRegex(r.stderr, r"ERROR flow.on_finish: handler 2 failed: .*webhook down")
        self.assertLess(r.seconds, 30)
        r = run(["--no-state", "-e", "flow.on_finish(42)"])
        self.assertIn("flow.on_finish: expected a function", r.stderr)

    def test_the_notify_example_is_under_ten_lines(self):
        with open(os.path.join(ROOT, "flows", "notify_on_failure.lua")) as f:
            code = [l for l in f if l.strip() and not l.startswith("--")]
        self.assertLess(len(code), 10)
        self.sim.syncs[9] = {"steps": [{"status": "failed", "error_message": "boom"}]}
        r = run([os.path.join(ROOT, "flows", "notify_on_failure.lua"), "9"],
                env=self.sim_env({"NOTIFY_URL": self.hook.url + "/echo"}))
        self.assertEqual(r.rc, 1)
        text = json.loads(self.hook.bodies[0])["text"]
        self.assertRegex(text, r"^engine run failed: .*sync 9 run \d+ failed: boom.*\n"
                               r"sync 9 failed: %s/syncs/9/sync-history$" % re.escape(self.sim.url))


class Params(Case):
    FLOW = ("local p = flow.params({\n"
            "  syncs = {type = 'list', of = 'integer', default = {1, 2}, help = 'Census sync ids', env = 'SYNCS'},\n"
            "  full = {type = 'boolean', default = false, help = 'force full syncs'},\n"
            "  ratio = {type = 'number', default = 0.5},\n"
            "  target = {required = true, help = 'where to build'},\n"
            "}, 'Builds, then syncs.')\n"
            "print(table.concat(p.syncs, ','), p.full, p.ratio, p.target, p[1], p[2])\n")

    def setUp(self):
        super().setUp()
        self.path = write_flow(self.FLOW)
        self.addCleanup(os.unlink, self.path)

    def run_params(self, *args, env=None):
        return run(["--no-state", self.path] + list(args), env=env)

    def test_values_from_arguments_environment_and_defaults(self):
        r = self.run_params("--syncs=3,4", "--full", "--target", "prod", "extra", "--ratio=0.25", "--", "--x")
        self.assertEqual((r.rc, r.stdout), (0, "3,4\ttrue\t0.25\tprod\textra\t--x\n"), r)
        r = self.run_params("--target=dev", "--no-full", env={"SYNCS": "7, 8"})
        self.assertEqual(r.stdout, "7,8\tfalse\t0.5\tdev\tnil\tnil\n")
        r = self.run_params("--target=dev", "--syncs=", env={"SYNCS": "7"})
        self.assertEqual(r.stdout, "\tfalse\t0.5\tdev\tnil\tnil\n")

    def test_help_lists_the_parameters(self):
        r = self.run_params("--help")
        self.assertEqual(r.rc, 0)
        self.assertEqual(r.stdout,
                         "usage: engine %s [PARAMETERS] [ARGS...]\n"
                         "Builds, then syncs.\n\nparameters:\n"
                         "  --full                   force full syncs (boolean; default false)\n"
                         "  --ratio=NUMBER           (number; default 0.5)\n"
                         "  --syncs=A,B,...          Census sync ids (list of integer; default 1,2; env SYNCS)\n"
                         "  --target=STRING          where to build (string; required)\n"
                         "  --help                   show this help and exit\n" % self.path)

    def test_bad_values_are_usage_errors_naming_the_parameter(self):
        cases = [(["--target=x", "--syncs=1,two"],
                  'engine: --syncs: expected a comma-separated list of whole numbers, got "1,two" (see --help)'),
                 (["--target=x", "--ratio=lots"], 'engine: --ratio: expected a number, got "lots" (see --help)'),
                 (["--target=x", "--bogus"], "engine: unknown parameter --bogus (see --help)"),
                 ([], "engine: --target is required (see --help)"),
                 (["--target"], "engine: --target needs a value (see --help)")]
        for args, line in cases:
            r = self.run_params(*args)
            self.assertEqual((r.rc, r.stderr), (2, line + "\n"), args)
        r = self.run_params("--target=x", env={"SYNCS": "a"})
        self.assertEqual(r.rc, 2)
        self.assertIn("engine: SYNCS: expected", r.stderr)
        r = run(["--no-state", "-e", "flow.params{x = {type = 'date'}}"])
        self.assertEqual(r.rc, 1)
        self.assertIn("flow.params: x: type must be string, number, integer, boolean or list", r.stderr)

    def test_the_nightly_example_takes_its_parameters(self):
        r = run([os.path.join(ROOT, "flows", "nightly.lua"), "--help"])
        self.assertEqual(r.rc, 0)
        self.assertIn("--syncs=A,B,...", r.stdout)
        r = run([os.path.join(ROOT, "flows", "nightly.lua"), "--skip-dbt", "--syncs=5"], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sim.triggers, {5: 1})


if __name__ == "__main__":
    main()
