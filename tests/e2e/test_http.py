"""test_http.py: http.request against a local server on 127.0.0.1: status
codes, headers, bodies, timeouts, refused connections, concurrency,
connection reuse, TLS verification and argument checks."""
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest

from harness import ServerTestCase, TestServer, free_port, main, run_flow


class Http(ServerTestCase):
    def flow(self, code, **kw):
        r = run_flow("local base = ...\n" + code, [self.server.url], **kw)
        self.assertEqual(r.rc, 0, r)
        return r.stdout

    def test_status_codes_are_returned_not_raised(self):
        out = self.flow("for _, c in ipairs{200, 201, 204, 301, 404, 500, 503} do\n"
                        "  local r = http.get(base .. '/status/' .. c)\n"
                        "  io.write(r.status, ' ', r.body, '\\n')\nend")
        self.assertEqual(out, "200 status 200\n201 status 201\n204 \n301 status 301\n"
                              "404 status 404\n500 status 500\n503 status 503\n")

    def test_response_headers_lowercased_and_joined(self):
        out = self.flow("local r = http.get(base .. '/headers')\n"
                        "print(r.headers['x-test'], r.headers['x-multi'], r.headers['content-length'])")
        self.assertEqual(out, "yes\ta, b\t1\n")

    def test_request_method_headers_and_body(self):
        out = self.flow(
            "for _, m in ipairs{'GET', 'POST', 'PUT', 'PATCH', 'DELETE'} do\n"
            "  local r = http.request{method = m, url = base .. '/echo?q=1', body = m ~= 'GET' and ('body-' .. m) or nil,\n"
            "    headers = {['X-Token'] = 'abc', ['Content-Type'] = 'text/plain'}}\n"
            "  local e = json.decode(r.body)\n"
            "  print(e.method, e.path, e.headers['x-token'], e.headers['content-type'], e.body, e.headers.expect)\n"
            "end\n"
            "local h = http.request{method = 'HEAD', url = base .. '/bytes/10'}\n"
            "print(h.status, #h.body, h.headers['content-length'])\n"
            "local p = http.post(base .. '/echo', '')\n"
            "print(json.decode(p.body).method, json.decode(p.body).headers['content-length'])")
        lines = out.splitlines()
        self.assertEqual(lines[0], "GET\t/echo?q=1\tabc\ttext/plain\t\tnil")
        for line, m in zip(lines[1:5], ["POST", "PUT", "PATCH", "DELETE"]):
            self.assertEqual(line, "%s\t/echo?q=1\tabc\ttext/plain\tbody-%s\tnil" % (m, m))
        self.assertEqual(lines[5], "200\t0\t10")
        self.assertEqual(lines[6], "POST\t0")

    def test_large_bodies_both_ways(self):
        out = self.flow("local r = http.get(base .. '/bytes/20000000')\n"
                        "print(#r.body, r.body:sub(1, 16))\n"
                        "local big = string.rep('x', 5000000)\n"
                        "local e = json.decode(http.post(base .. '/echo', big).body)\n"
                        "print(#e.body)")
        self.assertEqual(out, "20000000\t0123456789abcdef\n5000000\n")

    def test_slow_response_hits_the_timeout(self):
        out = self.flow("local t0 = flow.now()\n"
                        "local ok, e = pcall(http.get, base .. '/slow/3', {timeout = 0.3})\n"
                        "print(ok, e.kind, flow.now() - t0 < 2)\nprint(tostring(e))\n"
                        "local ok2, e2 = pcall(http.get, base .. '/stall/3', {timeout = 0.3})\n"
                        "print(ok2, e2.kind)")
        lines = out.splitlines()
        self.assertEqual(lines[0], "false\ttimeout\ttrue")
        self.assertRegex(lines[1], r"\.lua:3: GET http://127\.0\.0\.1:\d+/slow/3: no complete response within 0\.3 s$")
        self.assertEqual(lines[2], "false\ttimeout")

    def test_connection_refused_is_a_network_error(self):
        port = free_port()
        out = self.flow("local ok, e = pcall(http.get, 'http://127.0.0.1:%d/x')\n"
                        "print(ok, e.kind, e.url)\nprint(tostring(e))" % port)
        lines = out.splitlines()
        self.assertEqual(lines[0], "false\tnetwork\thttp://127.0.0.1:%d/x" % port)
        self.assertIn("Couldn't connect to server", lines[1])

    def test_hundred_concurrent_requests_take_the_time_of_one(self):
        out = self.flow("local fns = {}\n"
                        "for i = 1, 100 do fns[i] = function() return http.get(base .. '/slow/0.5').status end end\n"
                        "local t0 = flow.now()\nlocal r = flow.parallel(fns)\n"
                        "local ok = 0 for i = 1, 100 do if r[i] == 200 then ok = ok + 1 end end\n"
                        "print(ok, flow.now() - t0)", timeout=60)
        ok, wall = out.split()
        self.assertEqual(ok, "100")
        self.assertLess(float(wall), 10.0, "100 requests of 0.5 s each overlap (50 s one by one)")

    def test_connections_are_reused(self):
        before = self.server.connections
        self.flow("for i = 1, 20 do assert(http.get(base .. '/status/200').status == 200) end")
        self.assertLessEqual(self.server.connections - before, 2)

    def test_at_most_64_transfers_per_host_by_default(self):
        before = self.server.connections
        out = self.flow("local fns = {}\n"
                        "for i = 1, 100 do fns[i] = function() return http.get(base .. '/slow/0.2').status end end\n"
                        "local res = flow.parallel(fns)\nprint(#res, res[1], res[100])")
        self.assertEqual(out.strip(), "100\t200\t200")
        self.assertLessEqual(self.server.connections - before, 64, "the rest waited and reused connections")

    def test_libcurl_is_loaded_by_the_first_request_only(self):
        out = self.flow("local function loaded()\n"
                        "  local f = io.open('/proc/self/maps') local maps = f:read('a') f:close()\n"
                        "  return maps:find('libcurl', 1, true) ~= nil end\n"
                        "print(loaded()) http.get(base .. '/status/200') print(loaded())")
        self.assertEqual(out, "false\ntrue\n")

    def test_connection_cap_per_host(self):
        before = self.server.connections
        out = self.flow("local fns = {}\n"
                        "for i = 1, 6 do fns[i] = function() return http.get(base .. '/slow/0.3').status end end\n"
                        "local t0 = flow.now()\nflow.parallel(fns)\nprint(flow.now() - t0)",
                        env={"ENGINE_HTTP_MAX_HOST_CONNECTIONS": "2"})
        self.assertLessEqual(self.server.connections - before, 2)
        self.assertGreaterEqual(float(out), 0.85, "six requests two at a time")

    def test_userinfo_never_appears_in_errors(self):
        port = free_port()
        r = run_flow("http.get('http://user:hunter2secret@127.0.0.1:%d/')" % port)
        self.assertEqual(r.rc, 1)
        self.assertNotIn("hunter2secret", r.stderr + r.stdout)
        self.assertIn("http://***@127.0.0.1", r.stderr)

    def test_bad_arguments(self):
        cases = [
            ("http.request{url = 'ftp://x/'}", "url must be a string starting with http:// or https://"),
            ("http.request{}", "url must be a string"),
            ("http.request{url = 'http://x/', timout = 3}", "unknown option 'timout'"),
            ("http.request{url = 'http://x/', method = 'get'}", "method must be an upper-case HTTP method"),
            ("http.request{url = 'http://x/', headers = {['X'] = 'a\\r\\nInjected: 1'}}", "contains a line break"),
            ("http.request{url = 'http://x/', body = {}}", "body must be a string"),
            ("http.request{url = 'http://x/', timeout = 0}", "timeout must be seconds"),
            ("http.get('http://x/', 5)", "expected an options table"),
            ("http.request('http://x/')", "table expected"),
        ]
        for code, text in cases:
            r = run_flow(code)
            self.assertEqual(r.rc, 1, (code, r))
            self.assertIn(text, r.stderr.splitlines()[0], code)


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class Tls(unittest.TestCase):
    def test_self_signed_certificate_is_rejected(self):
        d = tempfile.mkdtemp()
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server = TestServer(ctx)
        try:
            r = run_flow("local ok, e = pcall(http.get, ...)\nprint(ok, e.kind)\nprint(tostring(e))",
                         [server.url + "/status/200"])
        finally:
            server.stop()
            shutil.rmtree(d)
        self.assertEqual(r.rc, 0, r)
        first, second = r.stdout.splitlines()
        self.assertEqual(first, "false\tnetwork")
        self.assertRegex(second, "certificate|SSL")


if __name__ == "__main__":
    main()
