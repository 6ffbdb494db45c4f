"""test_recipes.py: what the docs tell operators to copy works as written.
The cron line of docs/scheduling.md runs under `env -i /bin/sh -c`, the
systemd units pass `systemd-analyze verify` and run as systemd would start
them, the Kubernetes CronJob is read (with a YAML-subset reader: the suite
uses the standard library only) and its container run on temporary
directories; every path of a recipe is swapped for a temporary one, and
Census is the simulator on 127.0.0.1. The alerting rules of docs/cli.md
pass `promtool check rules` and a `promtool test rules` case, and the file
--metrics writes (with --metrics-label) passes `promtool check metrics`.
promtool comes from Debian's prometheus package (./dev installs it); its
tests skip only when it is absent."""
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest

from harness import ENGINE, ROOT, SimTestCase, check_no_secrets, keep_output, main, run, wait_until, write_flow
from test_operability import check_prometheus, sample

ENGINE_PATH = os.path.abspath(ENGINE)
PROMTOOL = shutil.which("promtool")
NEEDS_PROMTOOL = unittest.skipUnless(PROMTOOL, "promtool is not installed (Debian package prometheus; ./dev installs it)")
DONE = {"status": "completed", "records_processed": 10, "records_updated": 10, "records_failed": 0}
# The default of ENGINE_STOP_TIMEOUT, and the margin the docs ask of a scheduler's stop timeout.
STOP_TIMEOUT_DEFAULT, STOP_MARGIN = 20, 10


def read_doc(name):
    with open(os.path.join(ROOT, "docs", name)) as f:
        return f.read()


def fenced(text, lang):
    """The bodies of the ```lang blocks of a Markdown text (not indented ones)."""
    return re.findall(r"^```%s\n(.*?)^```" % re.escape(lang), text, re.M | re.S)


def fenced_after(text, marker, lang):
    """The first ```lang block after the first line holding marker."""
    return fenced(text[text.index(marker):], lang)[0]


def sanitizer_env():
    """The sanitizer settings of the suite's own run (the ASan variant), which
    env -i and a service's environment would otherwise drop."""
    return {k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}


# --- a YAML subset, as Kubernetes reads it (YAML 1.1 scalars) --------------
# Block mappings and sequences (a sequence may sit at its key's indentation),
# flow mappings and sequences, plain, single- and double-quoted scalars,
# literal and folded block scalars, comments. No anchors, aliases, tags,
# multi-line plain or quoted scalars, or several documents: those raise.

class YamlError(ValueError):
    pass


def _strip_comment(line):
    quote, i = None, 0
    while i < len(line):
        c = line[i]
        if quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote = None
        elif quote == "'":
            if c == "'":
                quote = None  # '' (a quote inside) toggles twice
        elif c in "\"'" and (i == 0 or line[i - 1] in " \t-:[{,"):
            quote = c  # a quote that starts a scalar, not one inside a plain scalar
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
        i += 1
    if quote:
        raise YamlError("an unterminated quote (multi-line quoted scalars are beyond this reader): %r" % line)
    return line


def _resolve(s):
    """A plain scalar's value, as YAML 1.1 (Kubernetes' reader) types it."""
    if s in ("", "~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"):
        return True
    if s in ("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"):
        return False
    if re.fullmatch(r"[-+]?0[0-7]+", s):
        return int(s, 8)  # YAML 1.1 octal: defaultMode: 0400 is 256
    if re.fullmatch(r"[-+]?(0|[1-9][0-9_]*)", s):
        return int(s.replace("_", ""))
    if re.fullmatch(r"0x[0-9a-fA-F]+", s):
        return int(s, 16)
    if re.fullmatch(r"0o[0-7]+", s):
        return int(s[2:], 8)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", s):
        return float(s)
    if s[0] in "&*!%@`":
        raise YamlError("%r: anchors, aliases, tags and directives are beyond this reader" % s)
    return s


def _quoted(text, i):
    """A quoted scalar starting at text[i]: (value, index after it)."""
    q, out, i = text[i], [], i + 1
    while i < len(text):
        c = text[i]
        if q == "'" and c == "'":
            if text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if q == '"' and c == '"':
            return "".join(out), i + 1
        if q == '"' and c == "\\":
            e = text[i + 1:i + 2]
            simple = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "/": "/", "0": "\0", " ": " ", "r": "\r"}
            if e in simple:
                out.append(simple[e])
                i += 2
            elif e in ("x", "u", "U"):
                n = {"x": 2, "u": 4, "U": 8}[e]
                out.append(chr(int(text[i + 2:i + 2 + n], 16)))
                i += 2 + n
            else:
                raise YamlError("bad escape \\%s in %r" % (e, text))
            continue
        out.append(c)
        i += 1
    raise YamlError("an unterminated quote in %r" % text)


def _ws(text, i):
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def _flow_scalar(text, i):
    if text[i:i + 1] in ("'", '"'):
        return _quoted(text, i)
    j = i
    while j < len(text) and text[j] not in ",[]{}" and not (text[j] == ":" and text[j + 1:j + 2] in (" ", "")):
        j += 1
    return _resolve(text[i:j].strip()), j


def _flow(text, i):
    """A flow value (mapping, sequence or scalar) at text[i]: (value, index after it)."""
    i = _ws(text, i)
    opening = text[i:i + 1]
    if opening not in ("[", "{"):
        return _flow_scalar(text, i)
    closing, out = ("]", []) if opening == "[" else ("}", {})
    i = _ws(text, i + 1)
    while text[i:i + 1] != closing:
        if opening == "[":
            value, i = _flow(text, i)
            out.append(value)
        else:
            key, i = _flow_scalar(text, i)
            i = _ws(text, i)
            if text[i:i + 1] != ":":
                raise YamlError("expected ':' after %r in %r" % (key, text))
            value, i = _flow(text, i + 1)
            if key in out:
                raise YamlError("key %r twice in %r" % (key, text))
            out[key] = value
        i = _ws(text, i)
        if text[i:i + 1] == ",":
            i = _ws(text, i + 1)
        elif text[i:i + 1] != closing:
            raise YamlError("expected ',' or %r in %r" % (closing, text))
    return out, i + 1


def _key(text):
    """(key, rest) when text is a 'key: value' line, else None."""
    if text[:1] in ("'", '"'):
        key, i = _quoted(text, 0)
    else:
        m = re.match(r"([^\"'{}\[\]#,][^\"'{}\[\]]*?):( |$)", text)
        if not m:
            return None
        key, i = m.group(1).strip(), m.end(1)
        if key.startswith("- ") or key == "-":
            return None
    if text[i:i + 1] != ":" or text[i + 1:i + 2] not in (" ", ""):
        return None
    return key, text[i + 1:].strip()


def _is_item(text):
    return text == "-" or text.startswith("- ")


class _Yaml:
    def __init__(self, text):
        self.lines = []  # [indent, text without comment, raw line]
        for raw in text.split("\n"):
            if "\t" in raw[:len(raw) - len(raw.lstrip())]:
                raise YamlError("a tab in the indentation: %r" % raw)
            body = _strip_comment(raw).rstrip()
            self.lines.append([len(body) - len(body.lstrip(" ")), body.strip(), raw])
        self.i = 0

    def more(self):
        """Skips blank and comment lines; true while lines remain."""
        while self.i < len(self.lines) and not self.lines[self.i][1]:
            self.i += 1
        return self.i < len(self.lines)

    def document(self):
        if self.more() and self.lines[self.i][1] == "---":
            self.i += 1
        if not self.more():
            return None
        value = self.block(self.lines[self.i][0])
        if self.more():
            raise YamlError("unexpected line (a second document, or bad indentation): %r" % self.lines[self.i][2])
        return value

    def block(self, indent):
        text = self.lines[self.i][1]
        if _is_item(text):
            return self.sequence(indent)
        if text[:1] not in ("[", "{") and _key(text) is not None:
            return self.mapping(indent)
        self.i += 1
        return self.inline(text)

    def after_block(self, indent):
        if self.more() and self.lines[self.i][0] > indent:
            raise YamlError("bad indentation: %r" % self.lines[self.i][2])

    def sequence(self, indent):
        out = []
        while self.more() and self.lines[self.i][0] == indent and _is_item(self.lines[self.i][1]):
            line = self.lines[self.i]
            rest = line[1][1:].lstrip(" ")
            if not rest:
                self.i += 1
                nested = self.more() and self.lines[self.i][0] > indent
                out.append(self.block(self.lines[self.i][0]) if nested else None)
            elif _is_item(rest) or (rest[:1] not in ("[", "{") and _key(rest) is not None):
                # "- key: value": the item's first line, as if on a line of its own
                line[0], line[1] = indent + len(line[1]) - len(rest), rest
                out.append(self.block(line[0]))
            else:
                self.i += 1
                out.append(self.inline(rest))
        self.after_block(indent)
        return out

    def mapping(self, indent):
        out = {}
        while self.more() and self.lines[self.i][0] == indent and not _is_item(self.lines[self.i][1]):
            raw = self.lines[self.i][2]
            kv = _key(self.lines[self.i][1])
            if kv is None:
                raise YamlError("expected 'key: value': %r" % raw)
            key, rest = kv
            if key in out:
                raise YamlError("key %r twice" % key)
            self.i += 1
            if rest in ("|", "|-", "|+", ">", ">-", ">+"):
                out[key] = self.block_scalar(indent, rest)
            elif rest:
                out[key] = self.inline(rest)
            elif self.more() and (self.lines[self.i][0] > indent or
                                  (self.lines[self.i][0] == indent and _is_item(self.lines[self.i][1]))):
                out[key] = self.block(self.lines[self.i][0])
            else:
                out[key] = None
        self.after_block(indent)
        return out

    def block_scalar(self, indent, style):
        body, inner = [], None
        while self.i < len(self.lines):
            raw = self.lines[self.i][2]
            if raw.strip():
                n = len(raw) - len(raw.lstrip(" "))
                if n <= indent:
                    break
                inner = n if inner is None else inner
                if n < inner:
                    raise YamlError("a block scalar line less indented than its first: %r" % raw)
                body.append(raw[inner:])
            else:
                body.append("")
            self.i += 1
        trailing = 0
        while body and body[-1] == "":
            body.pop()
            trailing += 1
        if style[0] == "|":
            text = "\n".join(body)
        else:  # folded: lines of a paragraph joined by spaces, blank lines kept as newlines
            text, prev = "", None
            for line in body:
                if prev is None:
                    text = line
                elif line == "" or prev == "" or line[:1] == " ":
                    text += "\n" + line if line else "\n"
                else:
                    text += " " + line
                prev = line
        if not body or style.endswith("-"):
            return text
        return text + "\n" * (1 + trailing if style.endswith("+") else 1)

    def inline(self, text):
        if text[:1] in ("[", "{", "'", '"'):
            value, end = _flow(text, 0)
            if text[end:].strip():
                raise YamlError("unexpected %r after a value" % text[end:])
            return value
        return _resolve(text)  # a plain scalar: the rest of the line


def yaml_load(text):
    return _Yaml(text).document()


class YamlSubset(unittest.TestCase):
    """The reader the recipe tests use reads what they need, and refuses what it cannot."""

    def test_it_reads_mappings_sequences_flows_and_scalars(self):
        doc = yaml_load(
            "# a comment\n"
            "a: 1\n"
            "b: 'it''s'   # quoted, then a comment\n"
            "c: \"x # not a comment \\\"q\\\"\"\n"
            "d: [1, \"two\", {e: 0400, f: [yes, off]}]\n"
            "g:\n"
            "- h: 1\n"
            "  i: time() - m{flow=\"/x\"} > 26 * 3600\n"
            "- - nested\n"
            "-\n"
            "  j: null\n"
            "k:\n"
            "  l: |\n"
            "    line 1\n"
            "    # kept\n"
            "\n"
            "    line 3\n"
            "  m: >-\n"
            "    folded\n"
            "    text\n"
            "n: registry.example.com/flows:latest\n"
            "o: {p: \"15 2 * * *\", q: 0x10, r: 1.5, s: ~}\n")
        self.assertEqual(doc, {
            "a": 1, "b": "it's", "c": "x # not a comment \"q\"",
            "d": [1, "two", {"e": 256, "f": [True, False]}],
            "g": [{"h": 1, "i": "time() - m{flow=\"/x\"} > 26 * 3600"}, ["nested"], {"j": None}],
            "k": {"l": "line 1\n# kept\n\nline 3\n", "m": "folded text"},
            "n": "registry.example.com/flows:latest",
            "o": {"p": "15 2 * * *", "q": 16, "r": 1.5, "s": None}})

    def test_it_refuses_what_it_cannot_read(self):
        for bad in ["a: 1\na: 2\n", "a: &x 1\n", "a: *x\n", "a: !!str 1\n", "a: 'open\n", "a: [1, 2\n",
                    "a:\n  b: 1\n   c: 2\n", "a: 1\n---\nb: 2\n", "a:\n\tb: 1\n", "a: {b 1}\n"]:
            with self.assertRaises(YamlError, msg=bad):
                yaml_load(bad)


# --- systemd units ---------------------------------------------------------

def unit_sections(text):
    """{section: [(key, value), ...]}: a unit file, keys in order (Environment= repeats)."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            raise AssertionError("a continued line, which this reader does not join: %r" % raw)
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, eq, value = line.partition("=")
        if not eq or current is None:
            raise AssertionError("not a unit line: %r" % raw)
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(sections, section, key):
    return [v for k, v in sections.get(section, []) if k == key]


SPAN_UNITS = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "ms": 0.001, "m": 60, "min": 60,
              "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
              "d": 86400, "day": 86400, "days": 86400, "w": 604800}


def timespan(text):
    """systemd's time span (30, 30s, 10min, 1h 30min) in seconds."""
    parts = re.findall(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s", "", text):
        raise AssertionError("not a time span: %r" % text)
    return sum(float(n) * SPAN_UNITS[u] for n, u in parts)


def unit_environment(sections, specifiers):
    """The Environment= assignments of [Service], specifiers (%d...) replaced."""
    env = {}
    for value in unit_values(sections, "Service", "Environment"):
        for word in shlex.split(value):
            for spec, replacement in specifiers.items():
                word = word.replace(spec, replacement)
            name, _, v = word.partition("=")
            env[name] = v
    return env


def env_file(path):
    """A KEY=value file as systemd's EnvironmentFile= reads it."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and line[0] not in "#;":
                name, _, value = line.partition("=")
                env[name.strip()] = (shlex.split(value) or [""])[0]
    return env


class Alerts(unittest.TestCase):
    """The alerts of docs/cli.md: promtool accepts them, the stale and failed
    alerts fire on stale and failed series (and on what the engine writes for
    a flow that never succeeded), and a fresh success fires none."""
    FLOW = "/srv/flows/nightly.lua"

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="engine-alerts-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.rules_text = [b for b in fenced(read_doc("cli.md"), "yaml") if "groups:" in b][0]
        self.rules = os.path.join(self.dir, "rules.yml")
        with open(self.rules, "w") as f:
            f.write(self.rules_text)
        self.alerts = {r["alert"]: r for g in yaml_load(self.rules_text)["groups"] for r in g["rules"]}

    @NEEDS_PROMTOOL
    def test_the_documented_rules_pass_promtool_check_rules(self):
        p = subprocess.run([PROMTOOL, "check", "rules", self.rules], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: %d rules found" % len(self.alerts), p.stdout)
        for name in ["NightlySyncsStale", "NightlySyncsFailed", "NightlySyncNotCompleted"]:
            self.assertIn(self.FLOW, self.alerts[name]["expr"], name)

    def expect(self, alert, labels, value):
        """One expected alert: its labels and annotations, {{ $value }} and
        {{ $labels.X }} rendered as Prometheus would."""
        rule = self.alerts[alert]
        shown = str(int(value)) if float(value).is_integer() else repr(float(value))

        def render(text):
            text = re.sub(r"\{\{\s*\$value\s*\}\}", shown, text)
            text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), text)
            if "{{" in text:
                raise AssertionError("a template this test cannot render: %r" % text)
            return text
        return {"exp_labels": dict(labels, **(rule.get("labels") or {})),
                "exp_annotations": {k: render(v) for k, v in (rule.get("annotations") or {}).items()}}

    @staticmethod
    def series(name, labels, value):
        """An input series: the value held every 10 minutes for 33 hours."""
        text = ",".join('%s="%s"' % (k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
                        for k, v in sorted(labels.items()))
        return {"series": "%s{%s}" % (name, text), "values": "%r+0x200" % value}

    def case(self, series, at, firing):
        """A promtool test case: at `at` seconds, the alerts in firing (name:
        [expected alerts]) fire, and every other alert of the file does not."""
        return {"interval": "10m", "input_series": series,
                "alert_rule_test": [{"eval_time": "%ds" % at, "alertname": name,
                                     "exp_alerts": firing.get(name, [])} for name in sorted(self.alerts)]}

    def promtool_test(self, cases):
        # JSON is YAML: the test file needs no YAML writer
        path = os.path.join(self.dir, "rules_test.yml")
        with open(path, "w") as f:
            json.dump({"rule_files": [self.rules], "evaluation_interval": "1m", "tests": cases}, f, indent=1)
        p = subprocess.run([PROMTOOL, "test", "rules", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @NEEDS_PROMTOOL
    def test_stale_and_failed_series_fire_the_alerts_and_a_fresh_success_does_not(self):
        run_labels = {"flow": self.FLOW, "env": "prod"}
        day = 27 * 3600  # evaluated 27 h after the series start
        fresh = day - 200  # a success 200 s before

        def sync(sync_id, outcome):
            return dict(run_labels, sync_id=str(sync_id), name="sync %d" % sync_id, outcome=outcome)
        stale = [self.series("engine_last_success_timestamp_seconds", run_labels, 3600),
                 self.series("engine_run_exit_code", run_labels, 0),
                 self.series("engine_sync_outcome", sync(7, "completed"), 1)]
        failed = [self.series("engine_last_success_timestamp_seconds", run_labels, fresh),
                  self.series("engine_run_exit_code", run_labels, 1),
                  self.series("engine_sync_outcome", sync(7, "failed"), 1),
                  self.series("engine_sync_outcome", sync(8, "completed"), 1)]
        success = [self.series("engine_last_success_timestamp_seconds", run_labels, fresh),
                   self.series("engine_run_exit_code", run_labels, 0),
                   self.series("engine_sync_outcome", sync(7, "completed"), 1)]
        self.promtool_test([
            # 28 h: the last success (at 1 h) is 27 h old
            self.case(stale, 28 * 3600, {"NightlySyncsStale": [self.expect("NightlySyncsStale", run_labels,
                                                                          28 * 3600 - 3600)]}),
            # 26 h: 25 h old, not yet stale
            self.case(stale, 26 * 3600, {}),
            self.case(failed, day, {"NightlySyncsFailed": [self.expect("NightlySyncsFailed", run_labels, 1)],
                                    "NightlySyncNotCompleted": [self.expect("NightlySyncNotCompleted",
                                                                            sync(7, "failed"), 1)]}),
            self.case(success, day, {}),
        ])

    @NEEDS_PROMTOOL
    def test_a_flow_that_never_succeeded_fires_the_stale_alert_without_absent(self):
        flow = write_flow("flow.step('dbt', function() error('boom') end)\n")
        self.addCleanup(os.unlink, flow)
        out = os.path.join(self.dir, "engine.prom")
        r = run(["--no-state", "--metrics", out, flow])
        self.assertEqual(r.rc, 1, r)
        with open(out) as f:
            samples = check_prometheus(f.read())
        # what the engine wrote, as if the flow were the documented one
        series = [self.series(name, dict(dict(labels), flow=self.FLOW), value)
                  for (name, labels), value in samples.items()]
        labels = {"flow": self.FLOW}
        self.promtool_test([self.case(series, 27 * 3600, {
            "NightlySyncsStale": [self.expect("NightlySyncsStale", labels, 27 * 3600)],
            "NightlySyncsFailed": [self.expect("NightlySyncsFailed", labels, 1)]})])


class Metrics(SimTestCase):
    """--metrics-label, the per-sync series, the last success before any."""
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="engine-metrics-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.out = os.path.join(self.dir, "engine.prom")

    def metrics(self):
        with open(self.out) as f:
            return check_prometheus(f.read())

    def flow(self, code):
        path = write_flow(code, self.dir)
        return path, os.path.realpath(path)

    def test_every_series_carries_the_metrics_labels(self):
        self.sim.syncs[1] = {"steps": [DONE]}
        path, flow = self.flow("census.sync{sync_id = 1}\n")
        team = 'data "platform" \\ eu'
        r = run(["--metrics", self.out, "--metrics-label", "region=eu", "--metrics-label=team=" + team, path],
                env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        samples = self.metrics()
        families = {name for name, _ in samples}
        self.assertGreaterEqual(len(families), 9, families)
        for (name, labels), _ in samples.items():
            labels = dict(labels)
            self.assertEqual((labels.get("flow"), labels.get("region"), labels.get("team")), (flow, "eu", team),
                             name)
        with open(self.out) as f:
            self.assertIn('{flow="%s",region="eu",team="data \\"platform\\" \\\\ eu"' % flow, f.read(),
                          "flow first, then the labels in the order given, escaped")

    def test_bad_metrics_labels_are_one_line_usage_errors(self):
        r = run(["--no-state", "--metrics", self.out, "--metrics-label"])
        self.assertEqual((r.rc, r.stderr), (2, "engine: --metrics-label needs NAME=VALUE after it "
                                               "(see engine --help)\n"))
        cases = [
            (["--metrics-label", "env"], "--metrics-label env: give NAME=VALUE"),
            (["--metrics-label", "9env=x"], "--metrics-label 9env=x: NAME must match [a-zA-Z_][a-zA-Z0-9_]*"),
            (["--metrics-label", "en-v=x"], "--metrics-label en-v=x: NAME must match [a-zA-Z_][a-zA-Z0-9_]*"),
            (["--metrics-label", "=x"], "--metrics-label =x: NAME must match [a-zA-Z_][a-zA-Z0-9_]*"),
            (["--metrics-label", "__name=x"],
             "--metrics-label __name=x: names starting with __ are Prometheus' own; pick another"),
            (["--metrics-label", "env="], "--metrics-label env=: the value is empty; give one, or leave the label out"),
            (["--metrics-label", "env=a", "--metrics-label", "env=b"],
             "--metrics-label env=b: this NAME is given twice; give each label once"),
            ([a for i in range(33) for a in ("--metrics-label", "l%d=x" % i)],
             "--metrics-label l32=x: too many labels (at most 32)"),
        ]
        for name in ["flow", "outcome", "kind", "sync_id", "name", "provider", "resource"]:
            cases.append((["--metrics-label", name + "=x"],
                          "--metrics-label %s=x: the engine sets this label itself; pick another name" % name))
        for args, message in cases:
            r = run(["--no-state", "--metrics", self.out] + args + ["-e", ""])
            self.assertEqual((r.rc, r.stderr), (2, "engine: %s (see engine --help)\n" % message), args)
        r = run(["--no-state", "--metrics-label", "env=prod", "-e", ""])
        self.assertEqual((r.rc, r.stderr), (2, "engine: --metrics-label needs --metrics FILE: give both, or "
                                               "neither (see engine --help)\n"))
        self.assertFalse(os.path.exists(self.out))
        self.assertIn("--metrics-label NAME=VALUE", run(["--help"]).stdout)

    def test_each_sync_has_its_outcome_and_its_records(self):
        self.sim.syncs[1] = {"steps": [dict(DONE, records_invalid=1)]}
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        self.sim.syncs[3] = {"runs": [[{"status": "failed", "error_message": "first"}],
                                      [dict(DONE, records_failed=2, records_updated=8)]]}
        path, flow = self.flow("census.sync{sync_id = 1}\n"
                               "pcall(census.sync, {sync_id = 2})\n"
                               "pcall(census.sync, {sync_id = 3, label = 'orders'})\n"
                               "census.sync{sync_id = 3, label = 'orders'}\n")
        r = run(["--metrics", self.out, path], env=self.sim_env())
        self.assertEqual(r.rc, 0, r)
        samples = self.metrics()

        def outcomes(sync_id):
            return {dict(l)["outcome"]: v for (n, l), v in samples.items()
                    if n == "engine_sync_outcome" and dict(l).get("sync_id") == str(sync_id)}
        self.assertEqual(outcomes(1), {"completed": 1})
        self.assertEqual(outcomes(2), {"failed": 1})
        self.assertEqual(outcomes(3), {"completed": 1}, "one series per sync: its last run")
        self.assertEqual(sample(samples, "engine_sync_outcome", flow=flow, sync_id=3, name="orders"), 1)
        for kind, n in [("processed", 10), ("updated", 10), ("failed", 0), ("invalid", 1)]:
            self.assertEqual(sample(samples, "engine_sync_records", flow=flow, sync_id=1, name="sync 1", kind=kind),
                             n, kind)
        self.assertEqual(sample(samples, "engine_sync_records", sync_id=3, kind="failed"), 2)
        self.assertEqual(sample(samples, "engine_sync_records", sync_id=3, kind="updated"), 8)
        self.assertIsNone(sample(samples, "engine_sync_records", sync_id=2), "Census reported no counts")
        self.assertGreater(sample(samples, "engine_sync_duration_seconds", sync_id=2, name="sync 2"), 0)
        # the run-wide families are as before
        self.assertEqual(sample(samples, "engine_syncs", flow=flow, outcome="completed"), 2)
        self.assertEqual(sample(samples, "engine_syncs", flow=flow, outcome="failed"), 2)

    def test_the_last_success_is_0_until_a_run_succeeds(self):
        path, flow = self.flow("if arg[1] == 'fail' then error('boom') end\n")
        args = ["--metrics", self.out, path]
        self.assertEqual(run(args + ["fail"]).rc, 1)
        self.assertEqual(sample(self.metrics(), "engine_last_success_timestamp_seconds", flow=flow), 0)
        self.assertEqual(run(args).rc, 0)
        success = sample(self.metrics(), "engine_last_success_timestamp_seconds", flow=flow)
        self.assertGreater(success, 1.7e9)
        self.assertEqual(run(args + ["fail"]).rc, 1)
        self.assertEqual(sample(self.metrics(), "engine_last_success_timestamp_seconds", flow=flow),
                         success, "a failed run keeps the last success")
        # other labels make another series, with its own last success: none yet
        self.assertEqual(run(["--metrics-label", "env=staging"] + args + ["fail"]).rc, 1)
        self.assertEqual(sample(self.metrics(), "engine_last_success_timestamp_seconds", env="staging"), 0)

    @NEEDS_PROMTOOL
    def test_the_metrics_file_passes_promtool_check_metrics(self):
        self.sim.syncs[1] = {"steps": [DONE]}
        self.sim.syncs[2] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        path, _ = self.flow("census.sync{sync_id = 1}\npcall(census.sync, {sync_id = 2, label = 'a \"b\"'})\n"
                            "flow.step('dbt', function() error('boom') end)\n")
        r = run(["--metrics", self.out, "--metrics-label", "env=prod", path], env=self.sim_env())
        self.assertEqual(r.rc, 1, r)
        with open(self.out) as f:
            text = f.read()
        self.assertIn('engine_sync_outcome{flow="', text)
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""), text)


class Recipes(SimTestCase):
    """The cron line, the systemd units and the Kubernetes CronJob of
    docs/scheduling.md, run as far as this machine allows."""
    SETTINGS = {"CENSUS_MIN_POLL": "0.05", "CENSUS_POLL": "0.05", "CENSUS_RETRY_DELAY": "0.01"}
    # The flow every recipe runs: without the settings the engine would call
    # the real Census, so it stops first; the sync proves the key arrived
    # (the simulator refuses any other token).
    FLOW = ("if not os.getenv('CENSUS_BASE_URL') then print('settings missing') os.exit(3) end\n"
            "print('key file: ' .. tostring(os.getenv('CENSUS_API_KEY_FILE') ~= nil))\n"
            "if os.getenv('HOLD') then print('holding') io.stdout:flush() flow.sleep(60) end\n"
            "census.sync{sync_id = 1}\n")

    def setUp(self):
        super().setUp()
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="engine-recipe-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.doc = read_doc("scheduling.md")
        for d in ["flows", "home", "log", "bin", "state"]:
            os.mkdir(self.path(d))
        with open(self.path("flows", "nightly.lua"), "w") as f:
            f.write(self.FLOW)
        # settings in systemd's KEY=value form, a comment and a quoted value among them
        with open(self.path("census.env"), "w") as f:
            f.write("# Census settings\nCENSUS_BASE_URL=%s\n" % self.sim.url)
            f.write("".join('%s="%s"\n' % kv for kv in self.SETTINGS.items()))
        self.key = self.path("census.key")
        with open(self.key, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.key, 0o400)
        self.mail = self.path("mail.txt")
        with open(self.path("bin", "mail"), "w") as f:
            f.write('#!/bin/sh\n{ echo "mail $*"; cat; } >>%s\n' % shlex.quote(self.mail))
        os.chmod(self.path("bin", "mail"), 0o755)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, *parts):
        with open(self.path(*parts)) as f:
            return f.read()

    def swap(self, text, paths, every=False):
        """text with each documented path replaced by a temporary one (every:
        each path must be there, so a renamed path fails here, not on a
        server); no documented path may be left."""
        for old, new in paths.items():
            if every:
                self.assertIn(old, text)
            text = text.replace(old, new)
        left = re.findall(r"(?<![\w.])/(?:srv|etc|var|usr/local|flows|state|run/secrets)\b[^\s\"',\]]*", text)
        self.assertEqual(left, [], "a documented path the test does not swap")
        return text

    # --- cron ---

    def cron_line(self):
        lines = [l for l in fenced(self.doc, "cron")[0].splitlines() if l.strip() and not l.startswith("#")]
        self.assertEqual(len(lines), 1, lines)
        command = re.match(r"(?:\S+\s+){5}(.*)$", lines[0]).group(1)  # after the five time fields
        self.assertNotRegex(command, r"(?<!\\)%", "cron turns % into a newline")
        return self.swap(command, every=True, paths={"/srv/flows": self.path("flows"), "/etc/engine/census.env": self.path("census.env"),
                                   "/etc/engine/census.key": self.key, "/usr/local/bin/engine": ENGINE_PATH,
                                   "/var/log/engine/nightly.log": self.path("log", "nightly.log")})

    def cron(self, command):
        """Runs command as cron would: /bin/sh -c, with cron's few variables."""
        env = dict(sanitizer_env(), HOME=self.path("home"), LOGNAME="engine", SHELL="/bin/sh",
                   PATH=self.path("bin") + ":/usr/bin:/bin")
        p = subprocess.run(["env", "-i"] + ["%s=%s" % kv for kv in env.items()] + ["/bin/sh", "-c", command],
                           capture_output=True, text=True, timeout=60)
        log = self.read("log", "nightly.log") if os.path.exists(self.path("log", "nightly.log")) else ""
        keep_output(p.stdout + p.stderr + log)
        check_no_secrets(p.stdout + p.stderr + log)
        mail = self.read("mail.txt") if os.path.exists(self.mail) else None
        return p.returncode, log, mail

    def test_the_cron_line_runs_the_flow_with_the_env_file_and_the_key(self):
        self.sim.syncs[1] = {"steps": [DONE]}
        rc, log, mail = self.cron(self.cron_line())
        self.assertEqual((rc, mail), (0, None), log)
        self.assertIn("key file: true\n", log)
        self.assertRegex(log, r"census: sync 1 run \d+ completed")
        self.assertEqual(self.sim.triggers, {1: 1})
        self.assertTrue(os.path.exists(self.path("home", ".local", "state", "engine", "journal.db")))

    def test_the_cron_line_mails_a_failure_and_skips_an_overlap(self):
        line = self.cron_line()
        self.sim.syncs[1] = {"steps": [{"status": "failed", "error_message": "quota"}]}
        rc, log, mail = self.cron(line)
        self.assertRegex(log, r"census: sync 1 run \d+ failed: quota")
        self.assertEqual(mail, "mail -s engine ops@example.com\nnightly failed: 1\n")
        os.unlink(self.mail)
        # another engine runs the flow (the same file, arguments and state)
        holder = subprocess.Popen([ENGINE_PATH, self.path("flows", "nightly.lua")], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True,
                                  env=dict(sanitizer_env(), HOME=self.path("home"), PATH="/usr/bin:/bin", HOLD="1",
                                           CENSUS_BASE_URL=self.sim.url))
        self.addCleanup(lambda: holder.poll() is None and holder.kill())
        self.assertEqual(holder.stdout.readline(), "key file: false\n")
        self.assertEqual(holder.stdout.readline(), "holding\n")
        rc, log, mail = self.cron(line)
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=30)
        self.assertEqual((rc, mail), (0, None), log)
        self.assertIn("nightly.lua is already running with these arguments", log)
        self.assertEqual(self.sim.triggers, {1: 1}, "the skipped run triggered nothing")

    def test_a_plain_dot_would_not_export_the_env_file(self):
        # why the line says set -a: without it the settings stay in the shell
        line = self.cron_line()
        for part in ["set -a && ", " && set +a"]:
            self.assertIn(part, line)
            line = line.replace(part, "")
        rc, log, mail = self.cron(line)
        self.assertIn("settings missing", log)
        self.assertEqual(mail, "mail -s engine ops@example.com\nnightly failed: 3\n")

    # --- systemd ---

    def units(self):
        """The service and the timer, ExecStart pointed at the engine under test."""
        service = fenced_after(self.doc, "`/etc/systemd/system/engine-nightly.service`:", "ini")
        timer = fenced_after(self.doc, "`/etc/systemd/system/engine-nightly.timer`:", "ini")
        self.assertIn("/usr/local/bin/engine", service)
        return service.replace("/usr/local/bin/engine", ENGINE_PATH), timer

    def analyze_verify(self, directory, *names):
        paths = [os.path.join(directory, n) for n in names]
        p = subprocess.run(["systemd-analyze", "verify"] + paths, capture_output=True, text=True, timeout=60,
                           cwd=directory)
        return p.returncode, (p.stdout + p.stderr).strip()

    def test_the_units_pass_systemd_analyze_verify(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        service, timer = self.units()
        units = self.path("units")
        os.mkdir(units)
        # a trivial unit first: where it fails too, this machine cannot verify units
        with open(os.path.join(units, "probe.service"), "w") as f:
            f.write("[Service]\nType=oneshot\nExecStart=%s --version\n" % ENGINE_PATH)
        rc, out = self.analyze_verify(units, "probe.service")
        if rc != 0 or out:
            self.skipTest("systemd-analyze verify does not work here: %s" % (out or "exit %d" % rc))
        for name, text in [("engine-nightly.service", service), ("engine-nightly.timer", timer)]:
            with open(os.path.join(units, name), "w") as f:
                f.write(text)
        rc, out = self.analyze_verify(units, "engine-nightly.service", "engine-nightly.timer")
        self.assertEqual((rc, out), (0, ""))

    def test_the_service_settings_hold_together(self):
        unit = unit_sections(self.units()[0])
        for key in ["StartLimitIntervalSec", "StartLimitBurst"]:
            self.assertEqual(len(unit_values(unit, "Unit", key)), 1, key + " belongs in [Unit]")
            self.assertEqual(unit_values(unit, "Service", key), [], key + " in [Service] is the old place")
        interval = timespan(unit_values(unit, "Unit", "StartLimitIntervalSec")[0])
        burst = int(unit_values(unit, "Unit", "StartLimitBurst")[0])
        restart = timespan(unit_values(unit, "Service", "RestartSec")[0])
        self.assertEqual(unit_values(unit, "Service", "Restart"), ["on-failure"])
        self.assertGreater(interval, burst * (restart + 3600), "the start limit trips for runs of an hour")
        self.assertLess(interval, 24 * 3600, "the next night starts again")
        success = set(" ".join(unit_values(unit, "Service", "SuccessExitStatus")).split())
        self.assertLessEqual({"75", "143"}, success)
        prevent = set(" ".join(unit_values(unit, "Service", "RestartPreventExitStatus")).split())
        self.assertLessEqual({"2", "75"}, prevent)
        env = unit_environment(unit, {"%d": "CREDS"})
        stop = int(env.get("ENGINE_STOP_TIMEOUT", STOP_TIMEOUT_DEFAULT))
        self.assertGreaterEqual(timespan(unit_values(unit, "Service", "TimeoutStopSec")[0]), stop + STOP_MARGIN)
        (credential,) = unit_values(unit, "Service", "LoadCredential")
        name, _, source = credential.partition(":")
        self.assertEqual((env.get("CENSUS_API_KEY_FILE"), source), ("CREDS/" + name, "/etc/engine/census.key"))
        self.assertNotIn("CENSUS_API_KEY", env)
        self.assertIn("--resume", unit_values(unit, "Service", "ExecStart")[0].split())

    def service(self, **popen):
        """Starts the service's command as systemd would: its working
        directory, EnvironmentFile= then Environment= (%d: a credentials
        directory holding a 0400 copy of the key), and nothing else."""
        unit = unit_sections(self.units()[0])
        creds = self.path("credentials")
        os.mkdir(creds, 0o700)
        (credential,) = unit_values(unit, "Service", "LoadCredential")
        name, _, _ = credential.partition(":")
        shutil.copy(self.key, os.path.join(creds, name))
        os.chmod(os.path.join(creds, name), 0o400)
        paths = {"/var/lib/engine": self.path("state"), "/srv/flows": self.path("flows"),
                 "/etc/engine/census.env": self.path("census.env"), "/etc/engine/census.key": self.key}
        env = dict(sanitizer_env(), PATH="/usr/bin:/bin")
        (env_path,) = unit_values(unit, "Service", "EnvironmentFile")
        env.update(env_file(self.swap(env_path.lstrip("-"), paths)))
        env.update({k: self.swap(v, paths) if v.startswith("/var") else v
                    for k, v in unit_environment(unit, {"%d": creds}).items()})
        (command,) = unit_values(unit, "Service", "ExecStart")
        (cwd,) = unit_values(unit, "Service", "WorkingDirectory")
        self.assertEqual(unit_values(unit, "Service", "StateDirectory"), ["engine"])  # /var/lib/engine
        proc = subprocess.Popen(shlex.split(self.swap(command, paths)), cwd=self.swap(cwd, paths), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return unit, proc

    def finish(self, proc, timeout=60):
        out, err = proc.communicate(timeout=timeout)
        keep_output(out + err)
        check_no_secrets(out + err)
        return proc.returncode, out, err

    def test_the_service_runs_as_systemd_would_start_it(self):
        self.sim.syncs[1] = {"steps": [DONE]}
        _, proc = self.service()
        rc, out, err = self.finish(proc)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "key file: true\n")
        with open(self.path("state", "nightly.json")) as f:
            self.assertEqual(json.load(f)["syncs"], {"total": 1, "failed": 0})
        self.assertTrue(os.path.exists(self.path("state", "journal.db")))

    def test_a_stopped_service_exits_with_a_success_status_within_its_stop_timeout(self):
        self.sim.syncs[1] = {"steps": ["working"]}
        unit, proc = self.service()
        wait_until(lambda: self.sim.triggers.get(1) == 1 and self.sim.runs, what="the trigger")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # systemctl stop, KillMode=mixed: the engine alone
        rc, _, err = self.finish(proc)
        elapsed = time.monotonic() - t0
        success = set(" ".join(unit_values(unit, "Service", "SuccessExitStatus")).split())
        self.assertEqual(rc, 143, err)
        self.assertIn(str(rc), success, "a stop is not a failure")
        self.assertLess(elapsed, timespan(unit_values(unit, "Service", "TimeoutStopSec")[0]))
        self.assertEqual(list(self.sim.cancels.values()), [1], "the Census run was cancelled")

    # --- Kubernetes ---

    def cronjob(self):
        blocks = [b for b in fenced(self.doc, "yaml") if "kind: CronJob" in b]
        self.assertEqual(len(blocks), 1)
        return yaml_load(blocks[0])

    def pod(self, job):
        return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]

    def test_the_cronjob_has_what_matters(self):
        job = self.cronjob()
        self.assertEqual((job["apiVersion"], job["kind"]), ("batch/v1", "CronJob"))
        self.assertEqual(job["spec"]["concurrencyPolicy"], "Forbid")
        spec = job["spec"]["jobTemplate"]["spec"]
        self.assertGreaterEqual(spec["backoffLimit"], 1)
        rules = spec["podFailurePolicy"]["rules"]
        fail = [r for r in rules if r["action"] == "FailJob"]
        self.assertTrue(any(2 in r["onExitCodes"]["values"] and r["onExitCodes"]["operator"] == "In" for r in fail),
                        "a usage error is not retried")
        pod = self.pod(job)
        self.assertEqual(pod["restartPolicy"], "Never")  # what podFailurePolicy requires
        (container,) = pod["containers"]
        self.assertIn("--resume", container["args"], "retries resume")
        env = {e["name"]: e for e in container["env"]}
        stop = int(env["ENGINE_STOP_TIMEOUT"]["value"]) if "ENGINE_STOP_TIMEOUT" in env else STOP_TIMEOUT_DEFAULT
        self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], stop + STOP_MARGIN)
        self.assertNotIn("CENSUS_API_KEY", env, "the key is a file, not a variable")
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        key_file = env["CENSUS_API_KEY_FILE"]["value"]
        secret = mounts[os.path.dirname(key_file)]["secret"]
        self.assertEqual(secret["defaultMode"], 0o400, "the engine refuses a key its group or others may read")
        self.assertIn("persistentVolumeClaim", mounts[env["ENGINE_STATE_DIR"]["value"]], "state outlives the pod")

    def test_the_container_runs_with_its_volumes_on_temporary_directories(self):
        self.sim.syncs[1] = {"steps": [DONE]}
        job = self.cronjob()
        (container,) = self.pod(job)["containers"]
        volumes = {v["name"]: v for v in self.pod(job)["volumes"]}
        # each mount on a directory of its own; a secret laid out as the
        # kubelet does: KEY -> ..data/KEY, ..data -> a timestamped directory
        paths = {"/flows/nightly.lua": self.path("flows", "nightly.lua")}
        for mount in container["volumeMounts"]:
            local = self.path("mount-" + mount["name"])
            paths[mount["mountPath"]] = local
            os.mkdir(local)
            secret = volumes[mount["name"]].get("secret")
            if secret:
                os.mkdir(os.path.join(local, "..2026_01_31_02_15_00.1"))
                os.symlink("..2026_01_31_02_15_00.1", os.path.join(local, "..data"))
                self.assertEqual(secret["secretName"], "census")
                key = os.path.join(local, "..data", "api-key")
                shutil.copy(self.key, key)
                os.chmod(key, secret["defaultMode"])
                os.symlink("..data/api-key", os.path.join(local, "api-key"))
        env = dict(sanitizer_env(), PATH="/usr/bin:/bin", HOME="/nonexistent", CENSUS_API_KEY=None, **self.SETTINGS)
        env["CENSUS_BASE_URL"] = self.sim.url  # the settings' config map
        for e in container["env"]:
            env[e["name"]] = self.swap(e["value"], paths) if e["value"].startswith("/") else e["value"]
        args = [self.swap(a, paths) if a.startswith("/") else a for a in container["args"]]
        r = run(args, env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.stdout, "key file: true\n")
        state = paths["/state"]
        with open(os.path.join(state, "nightly.json")) as f:
            self.assertEqual(json.load(f)["status"], "ok")
        self.assertTrue(os.path.exists(os.path.join(state, "journal.db")))
        # with a pod fsGroup the kubelet makes the key 0440: refused, as the doc says
        os.chmod(os.path.join(paths["/run/secrets/census"], "..data", "api-key"), 0o440)
        r = run(args + ["again"], env=env)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("is readable by other users (mode 440)", r.stderr)
        self.assertIn("CENSUS_API_KEY_FILE_ANY_MODE=1", self.doc)


if __name__ == "__main__":
    main()
