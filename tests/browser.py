"""browser.py: a small Chrome DevTools Protocol client (Python standard
library only) for the UI tests. It starts a headless chromium on a profile
of its own, drives its one page over the DevTools websocket, and collects
what the page said: console calls, log entries (CSP violations among
them), uncaught exceptions, dialogs (dismissed at once: a test asserts
there were none).

    with Browser() as b:
        b.navigate("http://127.0.0.1:8080/")
        title = b.eval("document.title")
        b.screenshot("runs.png")
        assert not b.errors() and not b.csp_violations() and not b.dialogs

chromium dies with the Browser (or with this process, however it ends) and
its profile directory is removed."""
import atexit
import base64
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP, PHONE = (1280, 900, False), (390, 844, True)  # width, height, mobile

_prctl = ctypes.CDLL(None).prctl  # looked up now: the forked child only calls it


def _die_with_parent():
    """In the child, before exec: SIGKILL when this process dies (PR_SET_PDEATHSIG)."""
    _prctl(1, int(signal.SIGKILL))


class WebSocket:
    """The client side of RFC 6455, as much as DevTools needs: text frames
    out (masked, as a client's must be), messages in (whole or in
    fragments), pings answered."""

    def __init__(self, url, timeout):
        host, port, path = re.match(r"ws://([^/:]+):(\d+)(/.*)", url).groups()
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (path, host, port, key)).encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: no frame is read with the headers
            head += self._exactly(1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError("DevTools refused the websocket: %r" % head[:200])

    def _exactly(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("DevTools closed the websocket")
            buf += chunk
        return buf

    def _frame(self, opcode, payload):
        n, mask = len(payload), os.urandom(4)
        if n < 126:
            size = bytes([0x80 | n])  # 0x80: masked
        elif n < 65536:
            size = bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            size = bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode]) + size + mask + masked)  # 0x80: FIN, one frame

    def send(self, text):
        self._frame(0x1, text.encode())

    def recv(self):
        """The next whole message (a server's frames are never masked)."""
        message = b""
        while True:
            b0, b1 = self._exactly(2)
            n = b1 & 0x7F
            if n >= 126:
                n = struct.unpack(">H" if n == 126 else ">Q", self._exactly(2 if n == 126 else 8))[0]
            opcode, payload = b0 & 0x0F, self._exactly(n)
            if opcode == 0x9:  # ping
                self._frame(0xA, payload)
            elif opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            elif opcode in (0x0, 0x1, 0x2):  # continuation, text, binary
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self):
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Browser:
    """One headless chromium and its page. It starts on __enter__ and is
    connected on first use, so it boots while a test prepares."""

    def __init__(self, timeout=30):
        self.timeout = timeout
        self.next_id, self.ws = 0, None
        self.events = []  # every event, in order (waits look here)
        self.console, self.logs, self.exceptions, self.dialogs = [], [], [], []

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="engine-chromium-")
        self.stderr = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             "--user-data-dir=" + os.path.join(self.dir, "profile"), "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-component-update",
             "--disable-dev-shm-usage", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",  # loopback only
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
            start_new_session=True, preexec_fn=_die_with_parent)  # its own group: killed as one
        atexit.register(self.__exit__)
        return self

    def __exit__(self, *exc):
        if self.ws:
            self.ws.close()
            self.ws = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this object started, nothing else
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _connect(self):
        # chromium says "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr
        deadline = time.monotonic() + self.timeout
        while True:
            with open(self.stderr.name) as f:
                said = f.read()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", said)
            if m:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start:\n" + said)
            time.sleep(0.02)
        port = m.group(1)
        # the page it opened (about:blank) has a websocket of its own
        with urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port, timeout=self.timeout) as r:
            page = [t for t in json.load(r) if t["type"] == "page"][0]
        self.ws = WebSocket(page["webSocketDebuggerUrl"], self.timeout)
        for domain in ("Page", "Runtime", "Log"):
            self.call(domain + ".enable")
        self.call("Page.setDownloadBehavior", behavior="deny")  # a download link writes no file

    # -- JSON-RPC over the websocket ---------------------------------------------

    def _send(self, method, params):
        if self.ws is None:
            self._connect()
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return self.next_id

    def _read(self):
        """One message; an event is recorded on the way."""
        msg = json.loads(self.ws.recv())
        method, params = msg.get("method"), msg.get("params", {})
        if method:
            self.events.append(msg)
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append({"type": params.get("type"), "text": text})
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(params["exceptionDetails"])
        elif method == "Log.entryAdded":
            self.logs.append(params["entry"])
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params)
            self._send("Page.handleJavaScriptDialog", {"accept": False})  # never leave the page blocked
        return msg

    def call(self, method, **params):
        """Sends a command and returns its result."""
        wanted = self._send(method, params)
        while True:
            msg = self._read()
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})

    def wait_event(self, method, since=0):
        """The params of the first event named method from self.events[since] on."""
        deadline = time.monotonic() + self.timeout
        while True:
            for msg in self.events[since:]:
                if msg["method"] == method:
                    return msg["params"]
            if time.monotonic() > deadline:
                raise AssertionError("no %s within %s s" % (method, self.timeout))
            # read only once a frame has begun to arrive: a timeout never cuts one in half
            if select.select([self.ws.sock], [], [], max(deadline - time.monotonic(), 0.01))[0]:
                self._read()

    # -- what the tests use ---------------------------------------------------------

    def navigate(self, url):
        """Opens url and waits for its load event."""
        since = len(self.events)
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError("cannot open %s: %s" % (url, result["errorText"]))
        self.wait_event("Page.loadEventFired", since)

    def eval(self, expression, await_promise=False):
        """The value of a JavaScript expression in the page (anything JSON can hold)."""
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def viewport(self, width, height, mobile):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=mobile)

    def color_scheme(self, scheme):
        """What prefers-color-scheme answers: "light" or "dark"."""
        self.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}])

    def screenshot(self, path, full_page=True):
        """The page as a PNG file: its whole height, or with full_page False the viewport."""
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))

    def reset(self):
        """A blank page, the default viewport and colours, nothing collected."""
        if self.ws:
            self.call("Emulation.clearDeviceMetricsOverride")
            self.call("Emulation.setEmulatedMedia", features=[])
            self.navigate("about:blank")
        del self.events[:], self.console[:], self.logs[:], self.exceptions[:], self.dialogs[:]

    def csp_violations(self):
        return ([e for e in self.logs if e.get("source") == "security" or "Content Security Policy" in e["text"]]
                + [c for c in self.console if "Content Security Policy" in c["text"]])

    def errors(self):
        """Console errors, uncaught exceptions, error log entries."""
        return ([c for c in self.console if c["type"] in ("error", "assert")] + self.exceptions
                + [e for e in self.logs if e.get("level") == "error"])
