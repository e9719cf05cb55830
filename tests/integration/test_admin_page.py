"""test_admin_page.py - the admin listener's live view of contexts: GET /requests,
/cancellations, /events (Server-Sent Events) and the page GET / (issue 17), also in
a real browser (headless chromium, browser.py): a held request appears in the page,
the client hangs up, the cancellation row appears; its screenshot goes to
build/test-output/<test id>/admin-page.png (CTXPROXY_ADMIN_SCREENSHOT=FILE copies it)."""

import base64
import hashlib
import json
import os
import re
import shutil
import time

from browser import Browser, output_dir
from harness import SLOW, WAIT_TIMEOUT, Client, ProxyTest, route
from test_ops import http_get as admin_get

ADMIN = "127.0.0.1:0"
CAUSES = ("client_disconnect", "deadline_exceeded", "connect_timeout", "header_timeout",
          "idle_timeout", "upstream_error", "shutdown")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# The contract: a cancellation reaches an open /events stream within 1 s of
# the hang-up (not scaled: it is what the page promises).
EVENT_WITHIN = 1.0
# How long the admin side may take to notice a page that went away (it looks
# every 250 ms) and free its stream.
STREAM_GONE = 2.0 * SLOW
# The page learns of a cancellation from /events (within 1 s of the hang-up
# by contract) and redraws at once; the browser's own work gets room.
ROW_WITHIN = 5.0 * SLOW


def row_js(table, rid):
    """JS: the text of row data-id=rid in table #table, or null."""
    return ('(function () { var r = document.querySelector(%r); '
            'return r ? r.textContent : null; })()'
            % ('#%s tr[data-id="%s"]' % (table, rid)))


def admin_json(test, port, path):
    """GET path, checked to be 200 JSON that is never cached: the parsed body."""
    resp = admin_get(port, path)
    test.assertEqual(resp.status, 200, "GET %s: %r" % (path, resp))
    test.assertEqual(resp.header("content-type"), "application/json", path)
    test.assertEqual(resp.header("cache-control"), "no-store", path)
    return json.loads(resp.body.decode("utf-8"))


def streams_gauge(port):
    """ctxproxy_admin_streams from /metrics."""
    body = admin_get(port, "/metrics").body.decode("utf-8")
    m = re.search(r"^ctxproxy_admin_streams (\d+)$", body, re.M)
    if not m:
        raise AssertionError("no ctxproxy_admin_streams sample in /metrics")
    return int(m.group(1))


class EventStream:
    """A raw GET /events: its response head, then events one by one."""

    def __init__(self, port):
        self.client = Client(port)
        self.client.send_request("GET", "/events", [("Accept", "text/event-stream")])
        self.head = self.client.read_head()
        self.buf = ""

    def next(self, timeout):
        """The next event as (name, data, monotonic time it was complete);
        TimeoutError when none comes within timeout."""
        deadline = time.monotonic() + timeout
        while "\n\n" not in self.buf:
            chunk = self.client.read_chunk(max(0.0, deadline - time.monotonic()))
            if not chunk:
                raise AssertionError("the event stream ended")
            self.buf += chunk.decode("utf-8")
        block, self.buf = self.buf.split("\n\n", 1)
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        return name, "\n".join(data), time.monotonic()

    def wait(self, pred, timeout, what):
        """The first event (name, parsed data, time) for which pred(name, data) holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                name, data, at = self.next(left)
            except TimeoutError:
                raise AssertionError("no %s on /events within %.1fs" % (what, timeout)) from None
            parsed = json.loads(data) if data.startswith("{") else data
            if pred(name, parsed):
                return name, parsed, at

    def close(self):
        """Close the connection (the page goes away)."""
        return self.client.close()


class LiveView(ProxyTest):
    """One backend behind route "main"; the proxy's admin listener serves the live view."""

    def start(self, timeout_ms=3000 * SLOW, **top):
        """(backend, proxy, admin port)."""
        backend = self.start_backend()
        proxy = self.start_proxy([route("main", "/", backend, timeout_ms=timeout_ms)],
                                 admin=ADMIN, workers=2, **top)
        return backend, proxy, proxy.admin_port()

    def hold(self, backend, proxy, path, rid):
        """GET path with X-Request-Id rid, held until the backend has it: the client."""
        c = self.client(proxy)
        start = backend.mark()
        c.send_request("GET", path, [("X-Request-Id", rid)])
        backend.wait_request(path.split("?")[0], start=start)
        return c

    def poll(self, port, path, key, rid, timeout=WAIT_TIMEOUT):
        """(the body of GET path, the row of request rid in its list key), once
        rid shows there; a row listed twice fails."""
        deadline = time.monotonic() + timeout
        while True:
            doc = admin_json(self, port, path)
            rows = [r for r in doc[key] if r["id"] == rid]
            if rows:
                self.assertEqual(len(rows), 1, "request %s listed twice in %s" % (rid, path))
                return doc, rows[0]
            if time.monotonic() > deadline:
                raise AssertionError("request %s not in %s: %r" % (rid, path, doc))
            time.sleep(0.05)

    def in_flight(self, port, rid):
        """(the /requests body, the row of request rid) once it shows there."""
        return self.poll(port, "/requests", "requests", rid)

    def cancelled(self, port, rid):
        """The /cancellations entry of request rid, once it shows there."""
        return self.poll(port, "/cancellations", "cancellations", rid)[1]

    def open_stream(self, port):
        """An /events stream whose first summary has arrived."""
        s = EventStream(port)
        self.addCleanup(s.client.sock.close)
        self.assertEqual(s.head.status, 200)
        self.assertEqual(s.head.header("content-type"), "text/event-stream; charset=utf-8")
        self.assertEqual(s.head.header("cache-control"), "no-store")
        s.wait(lambda name, _: name == "summary", 2.0 * SLOW, "first summary")
        return s

    # -- /requests --

    def test_held_request_phase_and_budget(self):
        """A held request shows awaiting_headers, its route and attempt, and a budget
        under the route's 3000 ms that shrinks as time passes; workers count it."""
        backend, proxy, port = self.start(timeout_ms=3000)
        t_send = time.monotonic()
        self.hold(backend, proxy, "/hang", "held-1")
        doc, row = self.in_flight(port, "held-1")
        t_first = time.monotonic()
        self.assertTrue(doc["complete"], doc)
        self.assertEqual(len(doc["workers"]), 2)
        self.assertEqual(sum(doc["workers"]), len(doc["requests"]))
        self.assertEqual(row["method"], "GET")
        self.assertEqual(row["path"], "/hang")
        self.assertEqual(row["route"], "main")
        self.assertEqual(row["phase"], "awaiting_headers")
        self.assertEqual(row["attempts"], 1)
        self.assertIn(row["worker"], (0, 1))
        self.assertEqual(doc["workers"][row["worker"]], 1)
        self.assertWithin(row["age_ms"], 0, (t_first - t_send) * 1000 + 50,
                          "age_ms")
        self.assertWithin(row["budget_left_ms"], 3000 - (t_first - t_send) * 1000 - 50, 3000,
                          "budget_left_ms")
        self.assertEqual(set(doc["totals"]), set(CAUSES))
        time.sleep(0.5)
        _, later = self.in_flight(port, "held-1")
        waited = (time.monotonic() - t_send) * 1000
        self.assertWithin(row["budget_left_ms"] - later["budget_left_ms"], 450, waited + 50,
                          "budget spent between two looks 0.5 s apart (ms)")
        self.assertGreater(later["age_ms"], row["age_ms"])

    def test_client_deadline_bounds_budget(self):
        """A client deadline shorter than the route's timeout bounds the budget."""
        backend, proxy, port = self.start(timeout_ms=30000)
        c = self.client(proxy)
        start = backend.mark()
        c.send_request("GET", "/hang", [("X-Request-Id", "short-1"),
                                        ("X-Request-Timeout-Ms", "2000")])
        backend.wait_request("/hang", start=start)
        _, row = self.in_flight(port, "short-1")
        self.assertWithin(row["budget_left_ms"], 1, 2000, "budget under a 2000 ms client deadline")

    def test_finished_request_leaves(self):
        """A request that got its answer is no longer in flight."""
        backend, proxy, port = self.start()
        c = self.hold(backend, proxy, "/slow?ms=%d" % (1000 * SLOW), "slow-1")
        self.in_flight(port, "slow-1")
        self.assertEqual(c.read_response().status, 200)
        proxy.access("/slow", status=200)
        deadline = time.monotonic() + 2.0 * SLOW
        while any(r["id"] == "slow-1" for r in admin_json(self, port, "/requests")["requests"]):
            self.assertLess(time.monotonic(), deadline, "slow-1 still in flight")
            time.sleep(0.05)

    # -- /cancellations --

    def test_hangup_listed_with_cause_and_propagation(self):
        """A client hang-up while awaiting headers: cause client_disconnect, phase,
        status 499, a propagation time, newest first; the totals count it."""
        backend, proxy, port = self.start()
        before = admin_json(self, port, "/requests")["totals"]["client_disconnect"]
        for rid in ("gone-1", "gone-2"):
            self.hold(backend, proxy, "/hang", rid).close()
            proxy.access("/hang", status=499, id=rid)
        first, second = self.cancelled(port, "gone-1"), self.cancelled(port, "gone-2")
        for c in (first, second):
            self.assertEqual(c["cause"], "client_disconnect")
            self.assertEqual(c["phase"], "awaiting_headers")
            self.assertEqual(c["status"], 499)
            self.assertEqual(c["route"], "main")
            self.assertEqual(c["method"], "GET")
            self.assertEqual(c["path"], "/hang")
            self.assertIsInstance(c["propagation_us"], int)
            self.assertWithin(c["propagation_us"], 0, 100_000 * SLOW, "propagation_us")
            self.assertRegex(c["time"], ISO_MS)
            self.assertEqual(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(c["unix_ms"] // 1000))
                             + ".%03dZ" % (c["unix_ms"] % 1000), c["time"])
            self.assertLess(abs(c["unix_ms"] / 1000 - time.time()), 60)
        listed = admin_json(self, port, "/cancellations")["cancellations"]
        ids = [c["id"] for c in listed]
        self.assertLess(ids.index("gone-2"), ids.index("gone-1"), "newest first")
        self.assertGreater(second["seq"], first["seq"])
        totals = admin_json(self, port, "/requests")["totals"]
        self.assertEqual(totals["client_disconnect"] - before, 2)
        self.assertFalse([r for r in admin_json(self, port, "/requests")["requests"]
                          if r["id"] in ("gone-1", "gone-2")])

    def test_limit(self):
        """?limit=N: the newest N; one above what is kept gives all kept; a
        limit that is not a decimal number is a 400."""
        backend, proxy, port = self.start()
        for rid in ("lim-1", "lim-2", "lim-3"):
            self.hold(backend, proxy, "/hang", rid).close()
            proxy.access("/hang", status=499, id=rid)
        self.cancelled(port, "lim-3")
        one = admin_json(self, port, "/cancellations?limit=1")["cancellations"]
        self.assertEqual([c["id"] for c in one], ["lim-3"])
        self.assertEqual(admin_json(self, port, "/cancellations?limit=0")["cancellations"], [])
        for big in ("5000", "99999999999999999999999"):
            self.assertEqual(len(admin_json(self, port, "/cancellations?limit=" + big)
                                 ["cancellations"]), 3)
        for bad in ("bad", "-1", "", "1x", "%201", "+5", "0x10"):
            resp = admin_get(port, "/cancellations?limit=" + bad)
            self.assertEqual(resp.status, 400, "limit=%r: %r" % (bad, resp))

    # -- query strings --

    def test_query_hidden_by_default(self):
        """Without admin_show_query the query string is cut off, in flight and after."""
        backend, proxy, port = self.start()
        c = self.hold(backend, proxy, "/hang?token=secret", "q-1")
        _, row = self.in_flight(port, "q-1")
        self.assertEqual(row["path"], "/hang")
        c.close()
        self.assertEqual(self.cancelled(port, "q-1")["path"], "/hang")
        self.assertNotIn(b"secret", admin_get(port, "/cancellations").body)

    def test_query_shown_when_configured(self):
        """admin_show_query = true shows it."""
        backend, proxy, port = self.start(admin_show_query=True)
        c = self.hold(backend, proxy, "/hang?token=visible", "q-2")
        _, row = self.in_flight(port, "q-2")
        self.assertEqual(row["path"], "/hang?token=visible")
        c.close()
        self.assertEqual(self.cancelled(port, "q-2")["path"], "/hang?token=visible")

    # -- /events --

    def test_event_within_one_second_of_hangup(self):
        """An open stream gets the hang-up's cancellation event within 1 s of the
        close, once; summaries keep coming every second."""
        backend, proxy, port = self.start()
        stream = self.open_stream(port)
        c = self.hold(backend, proxy, "/hang", "ev-1")
        closed = time.monotonic()
        c.close()
        _, ev, at = stream.wait(lambda name, d: name == "cancellation" and d["id"] == "ev-1",
                                5.0 * SLOW, "cancellation of ev-1")
        self.assertLessEqual(at - closed, EVENT_WITHIN,
                             "the event came %.3f s after the hang-up" % (at - closed))
        self.assertEqual(ev["cause"], "client_disconnect")
        self.assertEqual(ev["status"], 499)
        self.assertEqual(ev, self.cancelled(port, "ev-1"))
        # Two more summaries, and no second copy of ev-1 meanwhile.
        seen = []
        for _ in range(2):
            _, d, _ = stream.wait(lambda name, d: seen.append((name, d)) or name == "summary",
                                  2.0 * SLOW, "summary")
            self.assertIn("requests", d)
        self.assertFalse([d for name, d in seen if name == "cancellation" and d["id"] == "ev-1"])

    def test_stream_starts_from_now(self):
        """A cancellation from before the stream opened is not an event on it."""
        backend, proxy, port = self.start()
        self.hold(backend, proxy, "/hang", "old-1").close()
        proxy.access("/hang", status=499, id="old-1")
        self.cancelled(port, "old-1")
        stream = self.open_stream(port)
        self.hold(backend, proxy, "/hang", "new-1").close()
        names = []
        stream.wait(lambda name, d: names.append((name, d)) or
                    (name == "cancellation" and d["id"] == "new-1"), 5.0 * SLOW, "new-1")
        self.assertFalse([d for name, d in names if name == "cancellation" and d["id"] == "old-1"])

    def test_summary_shows_held_request(self):
        """The summary event carries what /requests does."""
        backend, proxy, port = self.start()
        stream = self.open_stream(port)
        self.hold(backend, proxy, "/hang", "sum-1")
        _, d, _ = stream.wait(lambda name, d: name == "summary" and
                              any(r["id"] == "sum-1" for r in d["requests"]),
                              3.0 * SLOW, "summary with sum-1")
        self.assertEqual(set(d), {"complete", "workers", "requests", "totals"})

    def test_closed_stream_noticed(self):
        """A page that goes away: its stream is freed, the gauge back to 0."""
        _, proxy, port = self.start()
        self.assertEqual(streams_gauge(port), 0)
        stream = self.open_stream(port)
        self.assertEqual(streams_gauge(port), 1)
        stream.close()
        deadline = time.monotonic() + STREAM_GONE
        while streams_gauge(port) != 0:
            self.assertLess(time.monotonic(), deadline, "the stream still counted")
            time.sleep(0.05)

    def test_many_streams_leave_no_fds(self):
        """50 streams at once: 48 served, the rest 503; all closed, the proxy's
        descriptors and the gauge are back where they were."""
        _, proxy, port = self.start()
        admin_get(port, "/requests")
        before = proxy.fd_count()
        streams = [EventStream(port) for _ in range(50)]
        for s in streams:
            self.addCleanup(s.client.sock.close)
        statuses = sorted(s.head.status for s in streams)
        self.assertEqual(statuses, [200] * 48 + [503] * 2)
        self.assertEqual(streams_gauge(port), 48)
        for s in streams:
            s.close()
        deadline = time.monotonic() + STREAM_GONE + 2.0 * SLOW
        while streams_gauge(port) != 0 or proxy.fd_count() > before:
            self.assertLess(time.monotonic(), deadline,
                            "gauge %d, fds %d (before: %d)"
                            % (streams_gauge(port), proxy.fd_count(), before))
            time.sleep(0.05)

    def test_requests_leave_no_fds(self):
        """Each admin request's socket is closed once its client has gone (a
        thread per connection: the listening thread must be woken to close
        it; it once stayed open until the next accept)."""
        _, proxy, port = self.start()
        before = proxy.fd_count()        # no admin connection yet
        for path in ("/metrics", "/healthz", "/requests", "/cancellations") * 5:
            admin_get(port, path)
        deadline = time.monotonic() + 2.0 * SLOW
        while proxy.fd_count() > before:
            self.assertLess(time.monotonic(), deadline, "fds %d after 20 admin requests, "
                            "%d before" % (proxy.fd_count(), before))
            time.sleep(0.05)

    def test_head_and_methods(self):
        """HEAD /events answers at once without a stream; POST is 405; unknown 404."""
        _, _, port = self.start()
        c = Client(port)
        try:
            resp = c.request("HEAD", "/events")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.header("content-type"), "text/event-stream; charset=utf-8")
            resp = c.request("POST", "/requests", body=b"")
            self.assertEqual(resp.status, 405)
            self.assertEqual(resp.header("allow"), "GET, HEAD")
        finally:
            c.close()
        self.assertEqual(admin_get(port, "/nope").status, 404)
        self.assertEqual(streams_gauge(port), 0)

    # -- the page --

    def test_page_self_contained_with_strict_csp(self):
        """GET /: HTML whose CSP allows exactly its inline script and style (by
        hash), no source but its own origin, and no external URL anywhere."""
        _, _, port = self.start()
        resp = admin_get(port, "/")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(resp.header("cache-control"), "no-store")
        html = resp.body.decode("utf-8")
        csp = dict((d.strip().split(" ", 1) + [""])[:2]
                   for d in resp.header("content-security-policy").split(";"))
        self.assertEqual(csp["default-src"], "'none'")
        self.assertEqual(csp["connect-src"], "'self'")
        self.assertEqual(csp["frame-ancestors"], "'none'")
        self.assertEqual(csp["base-uri"], "'none'")
        for tag, directive in (("script", "script-src"), ("style", "style-src")):
            bodies = re.findall(r"<%s>(.*?)</%s>" % (tag, tag), html, re.S)
            self.assertEqual(len(bodies), 1, "one inline %s" % tag)
            digest = base64.b64encode(hashlib.sha256(bodies[0].encode()).digest()).decode()
            self.assertEqual(csp[directive], "'sha256-%s'" % digest, directive)
        self.assertFalse(re.findall(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I),
                         "an external URL in the page")
        self.assertNotIn("url(", html)
        self.assertNotIn("@import", html)
        self.assertNotIn("innerHTML", html)
        self.assertIn('id="inflight"', html)
        self.assertIn('id="cancellations"', html)
        self.assertIn('EventSource("/events")', html)

    # -- the page in a browser --

    def test_page_in_a_browser(self):
        """chromium: the held request appears, then its cancellation; no CSP breach."""
        backend, proxy, admin = self.start()
        b = Browser()
        self.addCleanup(b.close)
        b.goto("http://127.0.0.1:%d/" % admin)
        # the page is live once its first summary has drawn the worker counts
        b.wait_for("document.getElementById('status').className === 'status on' && "
                   "/^[0-9]+$/.test(document.getElementById('n-inflight').textContent)",
                   WAIT_TIMEOUT)
        c = self.hold(backend, proxy, "/hang?secret=1", "browser-held-1")
        text = b.wait_for(row_js("inflight", "browser-held-1"), ROW_WITHIN)
        self.assertIn("/hang", text)
        self.assertIn("awaiting_headers", text)
        self.assertNotIn("secret", text, "query strings are hidden by default")
        out = output_dir(self)
        b.screenshot(os.path.join(out, "admin-page-held.png"))

        c.close()
        text = b.wait_for(row_js("cancellations", "browser-held-1"), ROW_WITHIN)
        self.assertIn("client_disconnect", text)
        self.assertIn("awaiting_headers", text)
        # the held row leaves the in-flight table with the next summary
        b.wait_for("!document.querySelector('#inflight tr[data-id=\"browser-held-1\"]')",
                   ROW_WITHIN)
        # the histogram has drawn the cancellation's propagation time
        self.assertTrue(b.wait_for("document.querySelectorAll('#hist rect').length > 0",
                                   ROW_WITHIN))
        size = b.screenshot(os.path.join(out, "admin-page.png"))
        self.assertEqual(size, (1280, 900))
        self.assertEqual(b.csp_violations(), [], "the page broke its own CSP")
        errors = [m for m in b.console() if m.get("level") in ("error", "exception")]
        self.assertEqual(errors, [], b.diagnostics())
        keep = os.environ.get("CTXPROXY_ADMIN_SCREENSHOT")
        if keep:
            shutil.copyfile(os.path.join(out, "admin-page.png"), keep)
