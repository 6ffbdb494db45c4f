"""test_ui.py: `engine ui`, the read-only web UI over the journal, on a
journal made by real flows against the simulators, seen by a headless
chromium (tests/browser.py) and by plain HTTP: the runs list and a run's
page (timeline, jobs, log) with no console error and no CSP violation; the
JSON API equal to `engine runs --json`; a running run's page following it
to its end without a reload; hostile names inert; methods, 404s, headers;
the token off loopback; `engine runs ID --logs` and `--html FILE`;
screenshots (build/ui-screenshots, or ENGINE_UI_SCREENSHOTS); the same on
PostgreSQL."""
import http.client
import json
import os
import shutil
import signal
import threading
import unittest
import urllib.parse

from harness import ROOT, ProvidersTestCase, check_no_secrets, main, run, wait_until
from browser import DESKTOP, PHONE, Browser
from pg_server import HAVE_POSTGRES, shared_server

POLLS = {"CENSUS_POLL": "0.05", "FIVETRAN_POLL": "0.05", "DBT_CLOUD_POLL": "0.05"}
SCREENSHOTS = os.environ.get("ENGINE_UI_SCREENSHOTS") or os.path.join(ROOT, "build", "ui-screenshots")

# A step, two Fivetran connections, a dbt Cloud job, two Census syncs: the
# second fails its threshold, so the run fails.
ELT = """
flow.step("ingest", function()
  log.info("ingest starts: two connections")
  return flow.parallel({
    function() return fivetran.sync{connection_id = "decisive_bloom"} end,
    function() return fivetran.sync{connection_id = "warm_paw"} end,
  })
end)
dbt_cloud.run{job_id = 123}
census.sync{sync_id = 101}
census.sync({sync_id = 102, label = "contacts to Salesforce"}, {max_failed_ratio = 0.01})
"""
ELT_OUTCOMES = ["ok", "succeeded", "succeeded", "success", "completed", "threshold"]

# the journal keeps a run once it has a step or a job
ONE_STEP = "flow.step('one', function() log.info('one line') end)"

HOSTILE = "<script>alert(2)</script>"
HOSTILE_STEP = "<img src=x onerror=alert(1)>"
HOSTILE_ERROR = "<b>boom</b><img src=x onerror=alert(3)>"
HOSTILE_FLOW = """
flow.step(%r, function() log.info("<script>alert(4)</script> said the step") end)
fivetran.sync{connection_id = "warm_paw", label = %r}
census.sync{name = %r}
flow.step("bad", function() error(%r, 0) end)
""" % (HOSTILE_STEP, HOSTILE, HOSTILE, HOSTILE_ERROR)


_browser = None


def browser():
    """The test process's chromium (started on first use, while the test
    goes on), on a blank page with nothing collected."""
    global _browser
    if _browser is None:
        _browser = Browser().__enter__()
    _browser.reset()
    return _browser


def tearDownModule():
    if _browser:
        _browser.__exit__(None, None, None)


def request(url, method="GET", headers=None):
    """One request without following redirects: status, headers (lower-case
    names), body."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, u.path + ("?" + u.query if u.query else ""), headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class UiBase(ProvidersTestCase):
    """Runs flows into the test's journal (self.state: a directory, or a
    PostgreSQL URL) and serves it with `engine ui`."""

    def setUp(self):
        super().setUp()
        self.state = os.environ["ENGINE_STATE_DIR"]
        self.scenarios(1)

    def scenarios(self, slow):
        """The ELT's jobs: each polled a few times (slow times more: the
        screenshots' timeline)."""
        self.fivetran.configure({
            "decisive_bloom": {"name": "salesforce", "steps": ["syncing"] * 2 * slow + ["succeeded"]},
            "warm_paw": {"name": "stripe", "steps": ["syncing"] * 4 * slow + ["succeeded"]}})
        self.dbt.configure({"123": {"name": "nightly", "steps": [3] * 3 * slow + [10], "run_results": "default"}})
        self.sim.syncs[101] = {"steps": ["working"] * 2 * slow + [
            {"status": "completed", "records_processed": 1200, "records_updated": 1187, "records_failed": 0}]}
        self.sim.syncs[102] = {"steps": ["working"] * 2 * slow + [
            {"status": "completed", "records_processed": 100, "records_updated": 90, "records_failed": 10}]}

    def engine(self, args, env=None):
        """Starts the engine on the test's journal."""
        return self.start(["--state", self.state] + list(args), env=dict(POLLS, **(env or {})))

    def flow_run(self, code, args=(), rc=None, name=None):
        """Runs a flow to its end: stderr (what the terminal showed)."""
        path = self.flow(code)
        if name:  # a readable path for the pages (screenshots)
            os.makedirs(os.path.join(self.dir, "flows"), exist_ok=True)
            path = shutil.move(path, os.path.join(self.dir, "flows", name))
        code_, _, err = self.finish(self.engine([path] + list(args)))
        if rc is not None:
            self.assertEqual(code_, rc, err)
        return err

    def engine_runs(self, *args):
        r = run(["--state", self.state, "runs"] + list(args))
        self.assertEqual(r.rc, 0, r)
        return r

    def ui(self, listen="127.0.0.1:0", env=None):
        """Starts `engine ui`: its URL (the first line on stdout). At the
        test's end it is stopped with SIGINT; its stderr must be clean."""
        proc = self.engine(["ui", "--listen", listen], env)
        line = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        if not (line and line[0].startswith("http://")):
            proc.kill()
            self.fail("engine ui printed no URL: %r %r" % (line, self.finish(proc)))

        def stop():
            proc.send_signal(signal.SIGINT)
            rc, out, err = self.finish(proc, timeout=30)
            self.assertEqual(rc, 0, err)  # a stop as asked: a clean exit
            self.assertNotIn("Traceback", err)
            self.assertNotIn("ERROR", err)
            self.assertEqual(out, "", "engine ui prints only its URL")
        self.addCleanup(stop)
        return line[0].strip()

    def local(self, url):
        """The UI's address on 127.0.0.1 (it prints 0.0.0.0 when listening there)."""
        return url.replace("//0.0.0.0:", "//127.0.0.1:")

    def elt_journal(self):
        """The ELT run (run 1): it fails (the threshold)."""
        err = self.flow_run(ELT, rc=1)
        self.assertIn("more than max_failed_ratio = 0.01", err)
        return err

    def clean(self, b):
        """The pages b opened said nothing wrong and opened no dialog."""
        self.assertEqual(b.errors(), [])
        self.assertEqual(b.csp_violations(), [])
        self.assertEqual(b.dialogs, [])

    # -- the ELT run in chromium; the API ---------------------------------------

    def check_elt_pages(self):
        b = browser()  # chromium starts while the flow runs
        self.elt_journal()
        url = self.ui()
        b.navigate(url)
        self.assertEqual(b.eval("document.querySelectorAll('main tbody tr').length"), 1)
        row = b.eval("document.querySelector('main tbody tr').textContent")
        self.assertIn("failed", row)
        self.assertEqual(b.eval("document.querySelector('tbody .badge').className"), "badge fail")
        self.assertEqual(b.eval("document.querySelector('svg.jobs title').textContent"), "4 ok, 1 failed")
        self.assertEqual(b.eval("document.querySelectorAll('svg.jobs rect').length"), 2)

        b.eval("document.querySelector('tbody a[href=\"/runs/1\"]').click()")
        wait_until(lambda: b.eval("location.pathname") == "/runs/1" and b.eval("document.readyState")
                   == "complete", 10, "the run's page")
        self.assertIsNone(b.eval("document.body.dataset.live || null"), "a finished run is not live")
        self.assertEqual(b.eval("document.querySelector('h1 .badge').textContent"), "failed")
        bars = b.eval("Array.from(document.querySelectorAll('svg.timeline g.bar')).map(g => "
                      "[g.dataset.outcome, g.classList[1], g.querySelectorAll(':scope > title').length,"
                      " g.querySelector('title').textContent])")
        self.assertEqual([x[0] for x in bars], ELT_OUTCOMES, bars)
        self.assertEqual([x[1] for x in bars], ["ok"] * 5 + ["fail"], bars)
        self.assertEqual([x[2] for x in bars], [1] * 6, bars)
        self.assertTrue(bars[0][3].startswith("step ingest: ok in "), bars)
        self.assertTrue(bars[5][3].startswith("Census sync 102 (contacts to Salesforce): threshold"), bars)
        # the jobs table, as {column: text} per row
        rows = b.eval("(() => { const t = Array.from(document.querySelectorAll('section')).find(s => "
                      "/^Jobs/.test(s.querySelector('h2').textContent)).querySelector('table');"
                      " const head = Array.from(t.tHead.rows[0].cells).map(th => th.textContent);"
                      " const rows = []; for (const tr of t.tBodies[0].rows) {"
                      " const text = td => td.textContent.replace(/\\s+/g, ' ');"
                      " if (tr.classList.contains('error-row')) { rows[rows.length - 1].Error = text(tr.cells[0]); continue }"
                      " rows.push(Object.assign(Object.fromEntries(Array.from(tr.cells).map((td, i) => [head[i], text(td)])),"
                      " {Error: ''})) } return rows })()")
        self.assertEqual([r["Job"] for r in rows], ["Fivetran sync"] * 2 + ["dbt Cloud job"] + ["Census sync"] * 2)
        # (the two connections start at once: in either order)
        self.assertEqual(sorted(r["Resource"] for r in rows[:2]), ["decisive_bloom", "warm_paw"])
        self.assertEqual([r["Resource"] for r in rows[2:]], ["123", "101", "102"])
        self.assertEqual([r["Outcome"] for r in rows[2:]], ["success", "completed", "threshold"])
        self.assertEqual(rows[4]["Label"], "contacts to Salesforce")
        self.assertEqual(rows[4]["Remote run"], "1002")
        for count in ["records_failed 10", "records_processed 100", "records_updated 90"]:
            self.assertIn(count, rows[4]["Counts"])
        self.assertIn("passed 5", rows[2]["Counts"])
        self.assertIn("completed with 10 of 100 records failed, more than max_failed_ratio = 0.01", rows[4]["Error"])
        self.assertEqual(rows[3]["Error"], "")
        self.assertEqual(rows[4]["Link"], "open in Census")
        links = b.eval("Array.from(document.querySelectorAll('a[target=_blank]')).map(a => [a.href, a.rel])")
        self.assertIn(["https://fivetran.com/dashboard/connections/decisive_bloom/status", "noopener noreferrer"],
                      links[:2])
        self.assertEqual(links[4][0], self.sim.url + "/syncs/102/sync-history")
        self.assertEqual(b.eval("document.querySelector('a[href=\"/jobs/census/102\"]').textContent"), "102")
        log = b.eval("document.querySelector('pre.log').textContent")
        self.assertIn("INFO  ingest starts: two connections", log)
        self.assertIn("ERROR census: sync 102 run 1002 (contacts to Salesforce) completed with 10 of 100", log)
        self.assertEqual(b.eval("document.querySelectorAll('pre.log .error').length"), 2)
        summary = b.eval("fetch(document.querySelector('a[download]').href).then(r => r.json())",
                         await_promise=True)
        self.assertEqual((summary["status"], summary["exit_code"]), ("failed", 1))
        # the resource and flow links lead to their pages
        b.navigate(url + "jobs/census/102")
        self.assertEqual(b.eval("document.querySelector('h1').textContent"), "Census 102")
        b.navigate(b.eval("location.origin") + "/runs/1")
        b.navigate(b.eval("document.querySelector('.sub a').href"))
        self.assertEqual(b.eval("document.querySelectorAll('svg.chart g.bar').length"), 1)
        self.clean(b)

        status, headers, body = request(url + "runs/1/summary.json")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-disposition"], 'attachment; filename="run-1-summary.json"')
        self.assertEqual(json.loads(body)["status"], "failed")
        # the API is `engine runs --json`
        for path, args in [("api/runs", ["--json"]), ("api/runs/1", ["1", "--json"]),
                           ("api/runs?limit=1", ["--json", "--limit", "1"])]:
            status, headers, body = request(url + path)
            self.assertEqual((status, headers["content-type"]), (200, "application/json"), path)
            self.assertEqual(json.loads(body), json.loads(self.engine_runs(*args).stdout), path)
        status, _, body = request(url + "api/runs?outcome=ok")
        self.assertEqual(json.loads(body), [])


class Ui(UiBase):
    def test_the_elt_run_renders_in_chromium_and_the_api_is_engine_runs_json(self):
        self.check_elt_pages()

    # -- a running run ----------------------------------------------------------

    def test_a_running_runs_page_follows_it_to_its_end_without_a_reload(self):
        self.sim.syncs[7] = {"steps": ["working"]}  # until the test says otherwise
        b = browser()
        proc = self.engine([self.flow("flow.step('wait', function() census.sync{sync_id = 7} end)")])
        # (engine ui needs the journal there: it refuses to start on none)
        wait_until(lambda: run(["--state", self.state, "runs", "--json"]).stdout.startswith("[{"), 30,
                   "the run in the journal")
        url = self.ui()
        wait_until(lambda: [j["outcome"] for j in json.loads(request(url + "api/runs/1")[2] or "{}")
                            .get("jobs", [])] == ["working"], 30, "the sync working")
        b.navigate(url + "runs/1")
        self.assertEqual(b.eval("document.body.dataset.live"), "3")
        self.assertEqual(b.eval("document.querySelector('h1 .badge').textContent"), "running")
        self.assertEqual(b.eval("Array.from(document.querySelectorAll('g.bar')).map(g => g.dataset.outcome)"),
                         ["running", "working"])
        b.eval("window.__marker = 1")
        self.sim.syncs[7] = {"steps": ["completed"]}
        rc, _, err = self.finish(proc)
        self.assertEqual(rc, 0, err)
        wait_until(lambda: b.eval("document.querySelector('h1 .badge').textContent") == "ok", 15,
                   "the page showing the run's end")
        self.assertEqual(b.eval("window.__marker"), 1, "the page was not reloaded")
        self.assertEqual(b.eval("performance.getEntriesByType('navigation').length"), 1)
        self.assertEqual(b.eval("Array.from(document.querySelectorAll('g.bar')).map(g => g.dataset.outcome)"),
                         ["ok", "completed"])
        self.assertIn("Run 1", b.eval("document.title"))
        self.assertIsNone(b.eval("document.body.dataset.live || null"), "a finished run stops refreshing")
        self.clean(b)

    # -- hostile names ----------------------------------------------------------

    def test_hostile_names_stay_text(self):
        self.sim.syncs[55] = {"name": HOSTILE, "steps": ["completed"]}
        self.fivetran.configure({"warm_paw": {"steps": ["succeeded"]}})
        b = browser()
        self.flow_run(HOSTILE_FLOW, ["<svg onload=alert(5)>"], rc=1)
        url = self.ui()
        doc = json.loads(request(url + "api/runs/1")[2])
        pages = ["", "runs/1", "flows/" + urllib.parse.quote(doc["flow"], safe=""), "jobs/census/55",
                 "jobs/fivetran/warm_paw", "?flow=" + urllib.parse.quote(HOSTILE)]
        for page in pages:
            b.navigate(url + page)
            self.assertEqual(b.eval("document.querySelectorAll('img[src=x], script:not([src]), svg[onload]')"
                                    ".length"), 0, page)
            self.assertEqual(b.eval("Array.from(document.scripts).map(s => s.getAttribute('src'))"),
                             ["/assets/ui.js"], page)
            text = b.eval("document.body.textContent")
            if page in ("", "runs/1") or page.startswith("flows/"):
                self.assertIn("<svg onload=alert(5)>", text, page)  # the run's argument
            if page == "runs/1":
                for literal in [HOSTILE_STEP, HOSTILE, HOSTILE_ERROR, "<script>alert(4)</script> said the step",
                                "step " + HOSTILE_STEP, "Fivetran sync warm_paw (%s)" % HOSTILE]:
                    self.assertIn(literal, text)
            if page.startswith("?flow="):
                self.assertIn("No runs match these filters.", text)
        self.clean(b)

    # -- HTTP -------------------------------------------------------------------

    def test_methods_404s_head_and_security_headers(self):
        self.flow_run(ONE_STEP, rc=0)
        url = self.ui()
        flow = json.loads(request(url + "api/runs/1")[2])["flow"]
        answers = {}
        for path in ["", "?outcome=ok&flow=x&before=5", "runs/1", "runs/1/summary.json", "api/runs",
                     "api/runs?limit=1&outcome=ok", "api/runs/1", "assets/ui.css", "assets/ui.js",
                     "flows/" + urllib.parse.quote(flow, safe=""), "nope", "runs/999999", "runs/abc",
                     "runs/1/nope", "api/runs/999999", "assets/nope.css", "jobs/census/1", "flows/nope.lua"]:
            for method in ["GET", "HEAD", "POST", "PUT", "DELETE"]:
                status, headers, body = request(url + path, method)
                answers[method, path] = status, headers, body
                self.assertEqual(headers["content-security-policy"],
                                 "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                                 "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
                                 (method, path))
                self.assertEqual(headers["x-content-type-options"], "nosniff", (method, path))
                self.assertEqual(headers["x-frame-options"], "DENY", (method, path))
                self.assertEqual(headers["referrer-policy"], "no-referrer", (method, path))
                if method in ("POST", "PUT", "DELETE"):
                    self.assertEqual((status, headers["allow"]), (405, "GET, HEAD"), (method, path))
                    self.assertIn(b"405 Method not allowed", body)
                elif method == "HEAD":
                    self.assertEqual(body, b"", path)
                    self.assertEqual(status, answers["GET", path][0], path)
                    self.assertEqual(headers["content-type"], answers["GET", path][1]["content-type"], path)
        for path in ["", "runs/1", "runs/1/summary.json", "api/runs", "api/runs/1", "assets/ui.css",
                     "assets/ui.js", "flows/" + urllib.parse.quote(flow, safe="")]:
            self.assertEqual(answers["GET", path][0], 200, path)
        for path in ["nope", "runs/999999", "runs/abc", "runs/1/nope", "assets/nope.css", "jobs/census/1",
                     "flows/nope.lua"]:
            status, headers, body = answers["GET", path]
            self.assertEqual((status, headers["content-type"]), (404, "text/html; charset=utf-8"), path)
            self.assertIn(b"<h1>404 Not found</h1>", body, path)
        self.assertEqual(answers["GET", "api/runs/999999"][0], 404)
        self.assertEqual(json.loads(answers["GET", "api/runs/999999"][2]), {"error": "there is no run 999999"})
        self.assertEqual(answers["GET", "assets/ui.css"][1]["content-type"], "text/css; charset=utf-8")
        self.assertEqual(answers["GET", "assets/ui.js"][1]["content-type"], "text/javascript; charset=utf-8")

    # -- the token --------------------------------------------------------------

    def test_off_loopback_a_token_is_required_and_works_as_bearer_or_cookie(self):
        for token, why in [(None, "ENGINE_UI_TOKEN"), ("", "ENGINE_UI_TOKEN"), ("short-token", "ENGINE_UI_TOKEN"),
                           ("a" * 16 + "/", "ENGINE_UI_TOKEN must be 16 or more")]:
            r = run(["--state", self.state, "ui", "--listen", "0.0.0.0:0"], env={"ENGINE_UI_TOKEN": token},
                    timeout=30)
            self.assertEqual(r.rc, 2, r)
            self.assertEqual(r.stdout, "", r)
            self.assertEqual(len(r.stderr.splitlines()), 1, r)
            self.assertIn(why, r.stderr)
        self.flow_run(ONE_STEP, rc=0)
        token = "k3y-0f-the.ui_~" + "x" * 8
        url = self.local(self.ui("0.0.0.0:0", {"ENGINE_UI_TOKEN": token}))
        self.assertTrue(url.startswith("http://127.0.0.1:"), url)
        for path in ["", "runs/1", "api/runs", "assets/ui.css", "nope"]:
            status, headers, body = request(url + path)
            self.assertEqual(status, 401, path)
            self.assertEqual(headers["www-authenticate"], 'Bearer realm="engine"')
            self.assertNotIn(token.encode(), body)
        for header in [{"Authorization": "Bearer " + token[:-1] + "y"}, {"Authorization": "Basic " + token},
                       {"Cookie": "engine_ui_token=" + token + "z"}, {"Cookie": "other=" + token}]:
            self.assertEqual(request(url + "runs/1", headers=header)[0], 401, header)
        self.assertEqual(request(url + "runs/1?token=" + token[:-1])[0], 401)
        self.assertEqual(request(url + "runs/1", headers={"Authorization": "Bearer " + token})[0], 200)
        self.assertEqual(request(url + "api/runs", headers={"Authorization": "bearer " + token})[0], 200)
        status, headers, body = request(url + "runs/1?outcome=a%20b&token=" + token)
        self.assertEqual(status, 303)
        self.assertEqual(headers["location"], "/runs/1?outcome=a%20b")
        self.assertEqual(headers["set-cookie"], "engine_ui_token=%s; Path=/; HttpOnly; SameSite=Strict" % token)
        self.assertEqual(request(url + "?token=" + token)[1]["location"], "/")
        cookie = headers["set-cookie"].split(";")[0]
        status, _, body = request(url + "runs/1", headers={"Cookie": "theme=x; " + cookie})
        self.assertEqual(status, 200)
        self.assertIn(b"<h1>Run 1 ", body)
        self.assertEqual(request(url + "api/runs/1", headers={"Cookie": cookie})[0], 200)
        self.assertEqual(request(url + "runs/1", "POST", {"Cookie": cookie})[0], 405)

    # -- engine runs ID --logs / --html -----------------------------------------

    def test_runs_logs_prints_the_terminals_lines_and_html_writes_one_page(self):
        b = browser()
        # the flow logs the Census key: the terminal showed it hidden, and so does --logs
        err = self.flow_run(ELT.replace("log.info(", "log.info('the key is ' .. os.getenv('CENSUS_API_KEY'))\n"
                                                     "  log.info(", 1), rc=1)
        self.assertIn("INFO  the key is ***\n", err)
        logs = self.engine_runs("1", "--logs").stdout
        check_no_secrets(logs)
        self.assertIn("INFO  the key is ***\n", logs)
        self.assertIn("INFO  ingest starts: two connections\n", logs)
        shown = [line for line in err.splitlines() if line[:2] == "20" and line[24:25] == " "]
        self.assertGreater(len(shown), 20)
        # every line, in order, with its time; then the line the terminal
        # showed as "engine: <error>"
        kept = logs.splitlines()
        self.assertEqual(kept[:-1], shown)
        self.assertEqual("engine: " + kept[-1][31:], [line for line in err.splitlines()
                                                      if line.startswith("engine: ")][0])
        r = run(["--state", self.state, "runs", "9", "--logs"])
        self.assertEqual(r.rc, 1, r)
        page_file = os.path.join(self.dir, "run-1.html")
        self.engine_runs("1", "--html", page_file)
        with open(page_file) as f:
            page = f.read()
        check_no_secrets(page)
        self.assertIn("the key is ***", page)
        self.assertNotIn("<script", page)
        self.assertNotIn("/assets/", page)
        self.assertNotIn("href=\"/", page, "no link into the UI")
        self.assertIn("<style>", page)
        b.navigate("file://" + page_file)
        self.assertEqual(b.eval("Array.from(document.querySelectorAll('svg.timeline g.bar')).map(g => "
                                "g.dataset.outcome)"), ELT_OUTCOMES)
        fills = b.eval("['ok', 'fail'].map(c => getComputedStyle(document.querySelector('g.bar.' + c + ' rect'))"
                       ".fill)")
        self.assertNotIn("rgb(0, 0, 0)", fills, "the inline stylesheet colours the bars")
        self.assertNotEqual(fills[0], fills[1])
        self.assertIn("ingest starts: two connections", b.eval("document.querySelector('pre.log').textContent"))
        self.assertEqual(b.eval("document.scripts.length"), 0)
        self.clean(b)

    # -- screenshots ------------------------------------------------------------

    def test_screenshots(self):
        os.makedirs(SCREENSHOTS, exist_ok=True)
        b = browser()
        self.scenarios(2)
        self.flow_run(ELT.replace("census.sync({sync_id = 102", "-- "), rc=0, name="elt.lua")
        self.flow_run(ELT, rc=1, name="elt.lua")
        url = self.ui()
        shots = []

        def shot(name, path, size, scheme="light", full_page=True):
            b.viewport(*size)
            b.color_scheme(scheme)
            b.navigate(url + path)
            tmp = os.path.join(SCREENSHOTS, ".%s.%d.png" % (name, os.getpid()))
            b.screenshot(tmp, full_page)
            os.replace(tmp, os.path.join(SCREENSHOTS, name))  # two builds may write at once
            shots.append(name)
        shot("ui-runs.png", "", DESKTOP)
        shot("ui-run.png", "runs/2", DESKTOP)
        light = b.eval("getComputedStyle(document.body).backgroundColor")
        shot("ui-run-phone.png", "runs/2", PHONE, full_page=False)
        self.assertEqual(b.eval("document.documentElement.scrollWidth"), 390, "nothing wider than a phone")
        shot("ui-run-dark.png", "runs/2", DESKTOP, "dark")
        self.assertNotEqual(b.eval("getComputedStyle(document.body).backgroundColor"), light, "dark colours")
        self.clean(b)
        for name in shots:
            with open(os.path.join(SCREENSHOTS, name), "rb") as f:
                data = f.read()
            self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n", name)
            self.assertGreater(len(data), 20000, name)


@unittest.skipUnless(HAVE_POSTGRES, "PostgreSQL is not installed (./dev installs it)")
class UiPostgres(UiBase):
    """The ELT case with the journal on PostgreSQL."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = shared_server()

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.state = self.pg.url(self.pg.new_database())

    def test_the_elt_run_renders_in_chromium_and_the_api_is_engine_runs_json(self):
        self.check_elt_pages()


if __name__ == "__main__":
    main()
