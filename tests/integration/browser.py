"""browser.py - drives a headless Debian chromium over the DevTools Protocol, for page tests.

    with Browser() as b:
        b.goto(url)                          # navigate, wait for the load event
        b.wait_for("document.querySelectorAll('tr').length >= 2")
        n = b.eval("document.title")         # Runtime.evaluate, by value
        b.screenshot(os.path.join(output_dir(self), "page.png"))
        self.assertEqual(b.csp_violations(), [])

Only the standard library and Debian's python3-websockets (its sans-I/O
layer on a blocking socket: one connection, one thread, every read under a
deadline).  Chromium is Debian's own binary, run in a process group of its
own with a temporary profile; close() (or leaving the with block) kills the
group by chromium's pid, waits until none of it is left, and removes the
profile.  Its debugging port listens on 127.0.0.1 only, and it resolves no
host but the loopback ones.

Chromium missing: a test fails, saying to run scripts/deps.sh test, unless
CTXPROXY_ALLOW_NO_BROWSER=1, where it is skipped.  CTXPROXY_CHROMIUM names
another binary.
"""

import atexit
import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

try:
    from websockets.client import ClientConnection
except ImportError:  # a python3 (pyenv, venv) without Debian's dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    from websockets.client import ClientConnection
from websockets.frames import OP_CLOSE, OP_CONT, OP_TEXT
from websockets.http11 import Response
from websockets.uri import parse_uri

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Seconds.  Here (2 cores, a CI run going) chromium listens after 0.6-1.2 s
# and its page is ready after 1.5-3 s; the bounds are for a hung browser.
START_TIMEOUT = 30.0
CALL_TIMEOUT = 10.0
LOAD_TIMEOUT = 10.0
WAIT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
WIDTH, HEIGHT = 1280, 900

# Debian's real binary: /usr/bin/chromium is a shell script that sources
# /etc/chromium.d (which adds extension and GPU flags) before exec'ing it.
DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"

# Tried here (chromium 156, as root): only --no-sandbox is needed beyond
# headless mode and the debugging port; --disable-gpu and --no-first-run
# changed nothing (software GL either way; headless shows no first run).
FLAGS = [
    "--headless=new",
    # Chromium refuses to start as root with its sandbox on.
    "--no-sandbox",
    "--remote-debugging-port=0",
    "--window-size=%d,%d" % (WIDTH, HEIGHT),
    # No traffic off this machine: no background services, and no host but
    # localhost, 127.0.0.1 and ::1 resolves (the rule maps IP literals too).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE ::1",
]

_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")

# The CSP listener lives in an isolated world, so the page cannot see it
# (DOM events reach the listeners of every world); added to the window, for
# the capture phase, before any page script runs, it is the first listener
# on the event's path, so the page cannot stop the event before it.
_WORLD = "ctxproxy-browser"
_BINDING = "__ctxproxyCspViolation"
_CSP_LISTENER = """
window.addEventListener("securitypolicyviolation", function (e) {
  %s(JSON.stringify({
    directive: e.effectiveDirective, blocked: e.blockedURI,
    source: e.sourceFile, line: e.lineNumber, sample: e.sample,
    disposition: e.disposition, document: e.documentURI}));
}, true);
""" % _BINDING


class CdpError(Exception):
    """Chromium answered a DevTools command with an error."""


class JsError(Exception):
    """A script evaluated in the page threw."""


def find_chromium(environ=None):
    """The chromium binary to run.  Missing: raises unittest.SkipTest if
    CTXPROXY_ALLOW_NO_BROWSER=1 is set, else AssertionError (a failure)."""
    env = os.environ if environ is None else environ
    wanted = env.get("CTXPROXY_CHROMIUM")
    candidates = ([wanted] if wanted
                  else [DEBIAN_CHROMIUM, shutil.which("chromium", path=env.get("PATH"))])
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    what = ("CTXPROXY_CHROMIUM=%s is not an executable" % wanted if wanted
            else "chromium is not installed")
    if env.get("CTXPROXY_ALLOW_NO_BROWSER") == "1":
        raise unittest.SkipTest(what + " (CTXPROXY_ALLOW_NO_BROWSER=1)")
    raise AssertionError("%s: run scripts/deps.sh test (as root), or set "
                         "CTXPROXY_ALLOW_NO_BROWSER=1 to skip the browser tests" % what)


def output_dir(test):
    """A folder for what a test leaves to be looked at (screenshots), made if
    needed: $CTXPROXY_TEST_OUT (default build/test-output) / the test's id."""
    base = os.environ.get("CTXPROXY_TEST_OUT", os.path.join(ROOT, "build", "test-output"))
    path = os.path.join(base, test.id() if hasattr(test, "id") else str(test))
    os.makedirs(path, exist_ok=True)
    return path


def png_size(data):
    """(width, height) of PNG bytes; ValueError if they are not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack("!II", data[16:24])


class _Wire:
    """A WebSocket client for text messages on a blocking socket."""

    def __init__(self, url, timeout):
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws = ClientConnection(parse_uri(url), max_size=None)
        self.ws.send_request(self.ws.connect())
        self._flush()
        self.inbox = []
        self.partial = None
        self.closed = False
        deadline = time.monotonic() + timeout
        answer = None
        while answer is None:
            for event in self._read(deadline):
                if isinstance(event, Response):
                    answer = event
        if answer.status_code != 101 or self.ws.handshake_exc is not None:
            raise ConnectionError("DevTools handshake refused: %s %s"
                                  % (answer.status_code, self.ws.handshake_exc))

    def _flush(self):
        for data in self.ws.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read(self, deadline):
        """Read once (TimeoutError at deadline, ConnectionError at the end)
        and return the protocol's events; pongs and close answers are sent."""
        if self.closed:
            raise ConnectionError("DevTools connection closed")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError() from None
        if data:
            self.ws.receive_data(data)
        else:
            self.ws.receive_eof()
        events = self.ws.events_received()
        try:
            self._flush()
        except OSError:
            pass
        if not data or any(getattr(e, "opcode", None) is OP_CLOSE for e in events):
            self.closed = True
        return events

    def send(self, text):
        self.ws.send_text(text.encode())
        self._flush()

    def recv(self, deadline):
        """The next whole text message; TimeoutError at deadline."""
        while not self.inbox:
            for frame in self._read(deadline):
                if getattr(frame, "opcode", None) is OP_TEXT:
                    self.partial = bytearray(frame.data)
                elif getattr(frame, "opcode", None) is OP_CONT and self.partial is not None:
                    self.partial += frame.data
                else:
                    continue
                if frame.fin:
                    self.inbox.append(self.partial.decode())
                    self.partial = None
        return self.inbox.pop(0)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


_live = set()


@atexit.register
def _kill_live():
    for b in list(_live):
        b._kill()


def _group(pgid):
    """The pids of the processes of group pgid that are not zombies."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(name))
    return pids


def _describe(remote):
    """A console argument (a CDP RemoteObject) as text."""
    if "value" in remote:
        v = remote["value"]
        return v if isinstance(v, str) else json.dumps(v)
    return (remote.get("unserializableValue") or remote.get("description")
            or remote.get("type", "?"))


class Browser:
    """A headless chromium with one page (viewport width x height) attached.

    Every method is bounded in time and is called from one thread.  Console
    messages, uncaught exceptions, browser log entries and CSP violations are
    collected from the start (clear_logs() forgets them)."""

    def __init__(self, width=WIDTH, height=HEIGHT, args=(), start_timeout=START_TIMEOUT):
        self.binary = find_chromium()
        self.width, self.height = width, height
        self.tmp = tempfile.mkdtemp(prefix="ctxproxy-browser-")
        self.proc = None
        self.pid = None
        self.wire = None
        self.session = None
        self.startup_s = None
        self._next_id = 0
        self._console = []
        self._csp = []
        self._lifecycle = set()
        self._gone = None
        _live.add(self)
        try:
            self._launch(list(args), start_timeout)
            self._attach()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- start --

    def _launch(self, args, timeout):
        log_path = os.path.join(self.tmp, "chromium.log")
        cmd = ([self.binary] + FLAGS + args
               + ["--user-data-dir=" + os.path.join(self.tmp, "profile"), "about:blank"])
        started = time.monotonic()
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        self.pid = self.proc.pid
        deadline = started + timeout
        while True:
            with open(log_path, "rb") as f:
                m = _LISTENING.search(f.read())
            if m:
                break
            if self.proc.poll() is not None:
                raise AssertionError("chromium exited with status %s before listening:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            if time.monotonic() >= deadline:
                raise AssertionError("chromium did not listen within %.0fs:\n%s"
                                     % (timeout, self.log_tail()))
            time.sleep(0.02)
        self.wire = _Wire(m.group(1).decode(), max(1.0, deadline - time.monotonic()))
        self.startup_s = time.monotonic() - started

    def _attach(self):
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        pages = [t["targetId"] for t in targets if t["type"] == "page"]
        if pages:
            target = pages[0]
        else:
            target = self.call("Target.createTarget", {"url": "about:blank"},
                               session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.enable")
        self.call("Page.setLifecycleEventsEnabled", {"enabled": True})
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Runtime.addBinding", {"name": _BINDING, "executionContextName": _WORLD})
        self.call("Page.addScriptToEvaluateOnNewDocument",
                  {"source": _CSP_LISTENER, "worldName": _WORLD})
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1,
                   "mobile": False})

    # -- protocol --

    def call(self, method, params=None, timeout=CALL_TIMEOUT, session=True):
        """Send a DevTools command (to the page's session, or to the browser
        if session is False) and return its result; events read meanwhile are
        collected.  CdpError on an error answer, TimeoutError after timeout."""
        if self._gone:
            raise CdpError("%s: the page is gone (%s)" % (method, self._gone))
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.wire.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = json.loads(self.wire.recv(deadline))
            except TimeoutError:
                raise TimeoutError("chromium did not answer %s within %.1fs"
                                   % (method, timeout)) from None
            if m.get("id") == msg["id"]:
                if "error" in m:
                    raise CdpError("%s: %s" % (method, m["error"].get("message", m["error"])))
                return m.get("result", {})
            if "method" in m:
                self._on_event(m)
            if self._gone:
                raise CdpError("%s: the page is gone (%s)" % (method, self._gone))

    def _pump(self, seconds):
        """Collect events for seconds (or until the connection ends)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                m = json.loads(self.wire.recv(deadline))
            except (TimeoutError, ConnectionError):
                return
            if "method" in m:
                self._on_event(m)

    def _on_event(self, m):
        method, p = m["method"], m.get("params", {})
        if ((method == "Target.detachedFromTarget" and p.get("sessionId") == self.session)
                or (method == "Inspector.targetCrashed" and m.get("sessionId") == self.session)):
            self._gone = method
        if m.get("sessionId") != self.session:
            return
        if method == "Page.lifecycleEvent":
            self._lifecycle.add((p.get("loaderId"), p.get("name")))
        elif method == "Runtime.consoleAPICalled":
            frames = (p.get("stackTrace") or {}).get("callFrames") or [{}]
            self._console.append({"source": "console", "level": p.get("type"),
                                  "text": " ".join(_describe(a) for a in p.get("args", [])),
                                  "url": frames[0].get("url")})
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = (d.get("exception") or {}).get("description") or d.get("text")
            self._console.append({"source": "exception", "level": "error", "text": text,
                                  "url": d.get("url")})
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            self._console.append({"source": e.get("source"), "level": e.get("level"),
                                  "text": e.get("text"), "url": e.get("url")})
        elif method == "Runtime.bindingCalled" and p.get("name") == _BINDING:
            try:
                self._csp.append(json.loads(p.get("payload", "")))
            except ValueError:
                self._csp.append({"unparsed": p.get("payload")})

    # -- page --

    def goto(self, url, timeout=LOAD_TIMEOUT):
        """Navigate the page to url and wait for its load event.  AssertionError
        if the navigation fails (e.g. connection refused) or does not load in time."""
        result = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise AssertionError("navigation to %s failed: %s" % (url, result["errorText"]))
        loader = result.get("loaderId")
        if not loader:          # a same-document navigation (only the fragment changed)
            return
        deadline = time.monotonic() + timeout
        while (loader, "load") not in self._lifecycle:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s did not load within %.1fs\n%s"
                                     % (url, timeout, self.diagnostics()))
            self._pump(min(left, 0.1))

    def eval(self, js, timeout=CALL_TIMEOUT):
        """The value of the expression js in the page (a promise is awaited),
        as JSON gives it: None for undefined.  JsError if it throws."""
        result = self.call("Runtime.evaluate",
                           {"expression": js, "returnByValue": True, "awaitPromise": True,
                            "userGesture": True}, timeout=timeout)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise JsError("%s\n  in: %s" % ((d.get("exception") or {}).get("description")
                                           or d.get("text"), js))
        r = result.get("result", {})
        return r.get("value", r.get("unserializableValue"))

    def wait_for(self, js, timeout=WAIT_TIMEOUT, interval=0.05):
        """Evaluate js every interval until its value is truthy and return it.
        An exception, or no page to evaluate in (while it navigates), counts
        as not yet.  AssertionError after timeout, with the last value, the
        console and the CSP violations."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                last = self.eval(js, timeout=max(1.0, deadline - time.monotonic()))
                if last:
                    return last
            except (JsError, CdpError) as e:   # CdpError: no page context (navigating)
                last = e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("still not true after %.1fs: %s\n  last value: %r\n%s"
                                     % (timeout, js, last, self.diagnostics()))
            self._pump(min(interval, left))

    def screenshot(self, path, full_page=False):
        """Write a PNG of the viewport (or the whole page) to path, making its
        folder; returns its (width, height) in pixels."""
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "scale": 1,
                              "width": max(self.width, int(size["width"])),
                              "height": max(self.height, int(size["height"]))}
        data = base64.b64decode(self.call("Page.captureScreenshot", params)["data"])
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return png_size(data)

    # -- what the page said --

    def _settle(self):
        """Let the page run the tasks it has queued (a violation event is one)
        and read what they reported: the page's messages come in order."""
        try:
            self.eval("new Promise(function (r) { setTimeout(r, 0); })")
        except JsError:
            pass

    def console(self):
        """The console messages, uncaught exceptions and browser log entries so
        far: dicts with source ("console", "exception", or a Log source such as
        "security", "network"), level, text, url."""
        self._settle()
        return list(self._console)

    def csp_violations(self):
        """The securitypolicyviolation events so far: dicts with directive,
        blocked, source, line, sample, disposition, document."""
        self._settle()
        return list(self._csp)

    def clear_logs(self):
        """Forget the console messages and CSP violations collected so far."""
        self._settle()
        self._console.clear()
        self._csp.clear()

    def log_tail(self, lines=30):
        """The last lines of chromium's own output, less its D-Bus complaints
        (there is no bus here, and it says so a dozen times a start)."""
        try:
            with open(os.path.join(self.tmp, "chromium.log"), "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no chromium output)"
        kept = [ln for ln in text.splitlines() if ln.strip() and ":ERROR:dbus/" not in ln]
        return "\n".join(kept[-lines:])

    def diagnostics(self):
        """Console, CSP violations and chromium's output, for a failure message."""
        parts = ["--- page console (%d):" % len(self._console)]
        parts += ["  [%s %s] %s%s" % (c["source"], c["level"], c["text"],
                                      " (%s)" % c["url"] if c.get("url") else "")
                  for c in self._console[-40:]]
        parts.append("--- CSP violations (%d):" % len(self._csp))
        parts += ["  %s" % json.dumps(v) for v in self._csp]
        parts.append("--- chromium output (tail):\n" + self.log_tail())
        return "\n".join(parts)

    # -- end --

    def close(self):
        """Kill chromium's process group by its pid (the profile is thrown away,
        so nothing needs an orderly exit), wait until no process of it is left,
        remove the temporary folder.  Idempotent; bounded by 2 x CLOSE_TIMEOUT."""
        self._kill()

    def pids(self):
        """The live (not zombie) processes of chromium's process group."""
        return _group(self.pid) if self.pid else []

    def memory_kib(self):
        """The proportional set size (PSS, KiB) of chromium's processes, summed:
        shared pages are counted once in all."""
        total = 0
        for pid in self.pids():
            try:
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    total += sum(int(ln.split()[1]) for ln in f if ln.startswith("Pss:"))
            except (OSError, ValueError, IndexError):
                pass
        return total

    def _kill(self):
        if self.wire is not None:
            self.wire.close()
        if self.proc is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            # The zygotes and renderers were chromium's children, not ours:
            # init reaps them, maybe a second later, so a zombie counts as gone.
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while _group(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        shutil.rmtree(self.tmp, ignore_errors=True)
        _live.discard(self)
