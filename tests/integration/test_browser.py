"""test_browser.py - browser.py's own tests: a headless chromium loads a page with a strict CSP.

The page is served by an http.server thread on 127.0.0.1: a table that
gets a row when its button is clicked or when an EventSource message comes
(pushed by the test), and a second page whose inline script its CSP blocks.
No ctxproxy here: the driver is for the admin page's tests.
"""

import http.server
import os
import queue
import threading
import time
import unittest
from unittest import mock

import browser
from browser import Browser, JsError, output_dir, png_size
import harness
from harness import free_port

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

INDEX = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>rows</title>
<link rel="stylesheet" href="/app.css"></head>
<body><h1>Rows</h1><button id="add">Add a row</button>
<table id="rows"><thead><tr><th>#</th><th>what</th></tr></thead><tbody></tbody></table>
<script src="/app.js"></script></body></html>
"""

INLINE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>inline</title></head>
<body><p>an inline script the CSP refuses</p>
<script>document.title = "inline ran";</script></body></html>
"""

APP_JS = b""""use strict";
var count = 0;
function addRow(what) {
  var tr = document.createElement("tr");
  var n = document.createElement("td");
  var w = document.createElement("td");
  tr.className = "row";
  n.textContent = String(++count);
  w.textContent = what;
  tr.append(n, w);
  document.querySelector("#rows tbody").append(tr);
}
document.getElementById("add").addEventListener("click", function () { addRow("clicked"); });
var events = new EventSource("/events");
events.addEventListener("open", function () { document.body.dataset.stream = "open"; });
events.addEventListener("message", function (e) { addRow(e.data); });
console.log("app.js loaded");
"""

APP_CSS = b"""body { font: 16px sans-serif; margin: 2em; }
body.tall { min-height: 2400px; }
table { border-collapse: collapse; margin-top: 1em; }
td, th { border: 1px solid #888; padding: 0.3em 1em; }
tr.row:last-child { background: #ffd; }
"""

FILES = {
    "/": ("text/html; charset=utf-8", INDEX),
    "/inline": ("text/html; charset=utf-8", INLINE),
    "/app.js": ("text/javascript", APP_JS),
    "/app.css": ("text/css", APP_CSS),
}

STREAM_LIMIT = 20.0   # seconds an /events answer stays open at most


class PageServer(http.server.ThreadingHTTPServer):
    """The test pages on 127.0.0.1:0; push(text) sends an EventSource message."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.messages = queue.Queue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def push(self, text):
        self.messages.put(text)

    def stop(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/events":
            return self._events()
        if path == "/favicon.ico":      # chromium asks for it, even headless
            self.send_response(204)
            self.end_headers()
            return
        if path not in FILES:
            self.send_error(404)
            return
        ctype, body = FILES[path]
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(body)

    def _events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(b"retry: 60000\n\n")
        self.wfile.flush()
        deadline = time.monotonic() + STREAM_LIMIT
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            try:
                text = self.server.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                self.wfile.write(b"data: " + text.encode() + b"\n\n")
                self.wfile.flush()
            except OSError:
                return


ROWS = "[...document.querySelectorAll('#rows tbody tr')].map(r => r.cells[1].textContent)"


class BrowserTest(unittest.TestCase):
    def setUp(self):
        if harness.VALGRIND:
            # the driver's own test starts no daemon: nothing for memcheck
            self.skipTest("no daemon here: nothing for valgrind (the plain run has it)")
        self.server = PageServer()
        self.addCleanup(self.server.stop)
        self.b = None

    def start_browser(self):
        self.b = Browser()
        self.addCleanup(self.b.close)
        return self.b

    def diagnostics(self):
        return self.b.diagnostics() if self.b else ""

    def test_missing_chromium_fails_unless_allowed(self):
        """No chromium: a failure naming scripts/deps.sh test, or a skip with
        CTXPROXY_ALLOW_NO_BROWSER=1."""
        with mock.patch.object(browser, "DEBIAN_CHROMIUM", "/nonexistent/chromium"):
            with self.assertRaises(AssertionError) as failed:
                browser.find_chromium({"PATH": "/nonexistent"})
            self.assertEqual(str(failed.exception).split(":")[0], "chromium is not installed")
            self.assertIn("run scripts/deps.sh test", str(failed.exception))
            with self.assertRaises(unittest.SkipTest) as skipped:
                browser.find_chromium({"PATH": "/nonexistent", "CTXPROXY_ALLOW_NO_BROWSER": "1"})
            self.assertIn("CTXPROXY_ALLOW_NO_BROWSER=1", str(skipped.exception))
        with self.assertRaises(AssertionError) as named:
            browser.find_chromium({"CTXPROXY_CHROMIUM": "/nonexistent/chromium"})
        self.assertIn("/nonexistent/chromium is not an executable", str(named.exception))

    def test_rows_eval_and_screenshots(self):
        """The page loads under its CSP; a click and a pushed event each add a
        row; eval gives values and raises the page's exceptions; nothing is
        logged as an error or violates the CSP; screenshots are PNGs of the
        viewport (1280x900) and of the whole page."""
        b = self.start_browser()
        b.goto(self.server.url + "/")
        self.assertEqual(b.eval("document.title"), "rows")
        self.assertEqual(b.eval(ROWS), [])
        b.wait_for("document.body.dataset.stream === 'open'")
        b.eval("document.getElementById('add').click()")
        self.assertEqual(b.wait_for(ROWS + ".length >= 1 && " + ROWS), ["clicked"])
        self.server.push("held GET /slow")
        rows = b.wait_for(ROWS + ".length >= 2 && " + ROWS)
        self.assertEqual(rows, ["clicked", "held GET /slow"])
        self.assertEqual(b.eval("Promise.resolve(6 * 7)"), 42)
        self.assertIsNone(b.eval("undefined"))
        with self.assertRaises(JsError) as thrown:
            b.eval("no_such_name.x")
        self.assertIn("ReferenceError", str(thrown.exception))
        self.assertEqual(b.csp_violations(), [])
        console = b.console()
        self.assertIn("app.js loaded", [c["text"] for c in console if c["source"] == "console"])
        self.assertEqual([c for c in console if c["level"] == "error"], [])

        out = output_dir(self)
        path = os.path.join(out, "viewport.png")
        self.assertEqual(b.screenshot(path), (1280, 900))
        with open(path, "rb") as f:
            self.assertEqual(png_size(f.read()), (1280, 900))
        b.eval("document.body.classList.add('tall')")
        width, height = b.screenshot(os.path.join(out, "full.png"), full_page=True)
        self.assertEqual(width, 1280)
        self.assertGreaterEqual(height, 2400)

    def test_csp_violation_failures_and_close(self):
        """An inline script under script-src 'self' is blocked and reported;
        wait_for's timeout names the last value and the page's messages; a
        refused navigation fails; close() ends every process of chromium's
        group and removes its folder."""
        b = self.start_browser()
        b.goto(self.server.url + "/inline")
        violations = b.csp_violations()
        self.assertEqual(len(violations), 1, violations)
        self.assertEqual(violations[0]["directive"], "script-src-elem")
        self.assertEqual(violations[0]["blocked"], "inline")
        self.assertEqual(violations[0]["disposition"], "enforce")
        self.assertEqual(b.eval("document.title"), "inline")
        self.assertTrue([c for c in b.console() if c["source"] == "security"], b.console())
        with self.assertRaises(AssertionError) as late:
            b.wait_for("document.title === 'inline ran'", timeout=0.3)
        self.assertIn("last value: False", str(late.exception))
        self.assertIn("script-src-elem", str(late.exception))
        with self.assertRaises(AssertionError) as refused:
            b.goto("http://127.0.0.1:%d/" % free_port())
        self.assertIn("ERR_CONNECTION_REFUSED", str(refused.exception))

        pid, tmp = b.pid, b.tmp
        self.assertIn(pid, b.pids())
        b.close()
        self.assertEqual(browser._group(pid), [])
        self.assertFalse(os.path.exists(tmp))
        b.close()

if __name__ == "__main__":
    unittest.main()
