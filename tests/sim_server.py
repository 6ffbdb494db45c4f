"""sim_server.py: what the vendor simulators (census_sim.py,
fivetran_sim.py, dbt_cloud_sim.py) share: a threaded server on 127.0.0.1
that starts and stops at once and ignores clients that hang up, and the
handler plumbing (answers with a Date header, dropping the connection,
quiet handling of a client gone away, the scripted faults every simulator
plays), plus the throttle that answers the next N API requests 429.
Python standard library only."""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, payload, content_type="application/json", headers=()):
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)  # (with a Date header: the engine reads the server's clock)
        self.send_header("Content-Type", content_type)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drop(self):
        self.close_connection = True  # no answer: the client sees an empty reply

    # What differs by vendor (a simulator's handler says): the body of a
    # simulated HTTP error, of a malformed answer, of one without data.
    def error_body(self, code):
        return {"message": "simulated HTTP %d" % code}

    MALFORMED = '{"data": {'

    def no_data_body(self):
        return {}

    def behave(self, behaviour, raw=lambda text: text):
        """Plays a scripted fault; returns True when it answered (or hung
        up). raw(TEXT): the body of {"raw": TEXT}, its placeholders filled.
        Behaviours: "ok", {"slow": SECONDS}, {"http": CODE, "body": ...,
        "retry_after": ...}, {"raw": TEXT}, "cut_headers", "html",
        "html200", "malformed", "no_data", "lost", "lost_created"."""
        if behaviour in (None, "ok"):
            return False
        if isinstance(behaviour, dict) and "slow" in behaviour:
            time.sleep(behaviour["slow"])
            return False
        if isinstance(behaviour, dict) and "http" in behaviour:
            code = behaviour["http"]
            headers = []
            if behaviour.get("retry_after") is not None:
                headers.append(("Retry-After", str(behaviour["retry_after"])))
            body = behaviour.get("body", self.error_body(code))
            self.reply(code, body, headers=headers,
                       content_type="text/html" if isinstance(body, str) else "application/json")
            return True
        if isinstance(behaviour, dict) and "raw" in behaviour:
            self.reply(200, raw(behaviour["raw"]), "application/json")
            return True
        if behaviour == "cut_headers":  # the status line and half a header, then close
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
            self.wfile.flush()
            self.drop()
            return True
        if behaviour == "html":
            self.reply(502, "<html><body><h1>502 Bad Gateway</h1> proxy error</body></html>", "text/html")
            return True
        if behaviour == "html200":
            self.reply(200, "<html><body>maintenance</body></html>", "text/html")
            return True
        if behaviour == "malformed":
            self.reply(200, self.MALFORMED, "application/json")
            return True
        if behaviour == "no_data":
            self.reply(200, self.no_data_body())
            return True
        if behaviour in ("lost", "lost_created"):
            self.drop()
            return True
        raise ValueError("unknown behaviour %r" % (behaviour,))

    # The control endpoints (/_sim/...) of a simulator whose server has
    # configure, reset, set_throttle, log and state: POST SCENARIOS (the
    # simulator's word: "jobs", "connections"), reset, throttle; GET
    # requests, state.
    SCENARIOS = None

    def control(self, parts, body):
        sim = self.server
        if parts == [self.SCENARIOS] and self.command == "POST":
            sim.configure(json.loads(body or b"{}"))
            return self.reply(200, {"ok": True})
        if parts == ["reset"] and self.command == "POST":
            sim.reset()
            return self.reply(200, {"ok": True})
        if parts == ["throttle"] and self.command == "POST":
            order = json.loads(body or b"{}")
            sim.set_throttle(int(order.get("count", 1)), order.get("retry_after"))
            return self.reply(200, {"ok": True})
        if parts == ["requests"] and self.command == "GET":
            with sim.lock:
                return self.reply(200, list(sim.log))
        if parts == ["state"] and self.command == "GET":
            return self.reply(200, sim.state())
        self.reply(404, self.error_body(404))

    def handle_any(self):
        raise NotImplementedError

    def handle_quietly(self):
        try:
            self.handle_any()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (killed on purpose by a test)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    scheme = "http"

    def __init__(self, port, handler):
        super().__init__(("127.0.0.1", port), handler)
        self.lock = threading.Lock()
        self.throttle_left, self.throttle_retry_after = 0, None

    def handle_error(self, request, client_address):
        # a client that hung up or refused our certificate (tests do both)
        if isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.server_address[1])

    def serve_main(self, name):
        """Serves until Ctrl-C, after saying where (a simulator run alone)."""
        print("%s listening on %s" % (name, self.url), flush=True)
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()

    def start(self):
        # a short poll: stop() (shutdown) returns within it, not half a second
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()

    def set_throttle(self, count, retry_after):
        with self.lock:
            self.throttle_left, self.throttle_retry_after = count, retry_after

    def take_throttle(self):
        """(True, retry_after) when this request is to be answered 429."""
        with self.lock:
            if self.throttle_left <= 0:
                return False, None
            self.throttle_left -= 1
            return True, self.throttle_retry_after
