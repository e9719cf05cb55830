"""test_trace.py - W3C trace context across the proxy and OTLP span export (SPEC section 11):
what the backend saw, what the access log and the collector stand-in saw."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

from harness import (ROOT, SLOW, START_TIMEOUT, VALGRIND, WAIT_TIMEOUT, ProxyTest, _register,
                     _stop_process, config_text, free_port, route)
from test_ops import http_get, parse_prometheus, poll

COLLECTOR = os.path.join(ROOT, "tests", "otlp_collector.py")
ADMIN = "127.0.0.1:0"
# Time bounds are generous (a loaded 2-core machine); daemons under valgrind
# run many times slower, under the sanitizers 2-3 times.
SCALE = 6 if VALGRIND else SLOW
TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def new_ids():
    """A random (trace id, parent span id) pair in lower-case hex."""
    return os.urandom(16).hex(), os.urandom(8).hex()


class Collector:
    """tests/otlp_collector.py: its port from the first stdout line, then every
    export (one JSON line each) kept with the monotonic time it arrived."""

    def __init__(self, *mode):
        self.proc = _register(subprocess.Popen(
            [sys.executable, COLLECTOR] + list(mode), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        self.mode = " ".join(mode) or "normal"
        self.port = None
        self.exports = []        # (arrival, doc)
        self.errors = []         # stderr lines, and stdout lines that are not JSON
        self.eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        with self._cond:
            ok = self._cond.wait_for(lambda: self.port is not None or self.eof,
                                     START_TIMEOUT)
        if not ok or self.port is None:
            _stop_process(self.proc, timeout=2)
            raise AssertionError("otlp_collector.py printed no port: %s" % self.errors)
        self.url = "http://127.0.0.1:%d/v1/traces" % self.port

    def _pump_out(self):
        try:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._cond:
                    if self.port is None:
                        self.port = int(line)
                    else:
                        try:
                            self.exports.append((time.monotonic(), json.loads(line)))
                        except ValueError:
                            self.errors.append("not JSON: " + line[:200])
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def _pump_err(self):
        for raw in self.proc.stderr:
            with self._cond:
                self.errors.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def spans(self):
        """[(arrival, span)] of every export so far, each export's shape checked:
        one resource with service.name "ctxproxy", scope "ctxproxy"."""
        with self._cond:
            exports = list(self.exports)
        out = []
        for arrival, doc in exports:
            rss = doc.get("resourceSpans")
            if not isinstance(rss, list) or len(rss) != 1:
                raise AssertionError("export without one resourceSpans: %.300s" % doc)
            attrs = rss[0].get("resource", {}).get("attributes")
            if attrs != [{"key": "service.name", "value": {"stringValue": "ctxproxy"}}]:
                raise AssertionError("resource attributes %r" % (attrs,))
            for ss in rss[0].get("scopeSpans", []):
                if ss.get("scope", {}).get("name") != "ctxproxy":
                    raise AssertionError("scope %r" % (ss.get("scope"),))
                spans = ss.get("spans")
                if not isinstance(spans, list) or not spans:
                    raise AssertionError("scopeSpans without spans: %.300s" % ss)
                out += [(arrival, s) for s in spans]
        return out

    def wait_spans(self, count, pred=lambda s: True, timeout=WAIT_TIMEOUT, what="spans"):
        """Wait until at least count spans match pred; returns [(arrival, span)]."""
        deadline = time.monotonic() + timeout
        while True:
            found = [(t, s) for t, s in self.spans() if pred(s)]
            with self._cond:
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0 or self.eof:
                    break
                n = len(self.exports)
                self._cond.wait_for(lambda: len(self.exports) > n or self.eof, left)
        if len(found) < count:
            raise AssertionError("collector (%s): %d %s, wanted %d"
                                 % (self.mode, len(found), what, count))
        return found

    def export_count(self):
        with self._cond:
            return len(self.exports)

    def stop(self):
        _stop_process(self.proc, timeout=5)


def attrs_of(span):
    """A span's attributes as key -> value dict ({"stringValue": ...} or
    {"intValue": "decimal"}), each checked to be one typed value."""
    out = {}
    for a in span.get("attributes", []):
        v = a["value"]
        if len(v) != 1 or next(iter(v)) not in ("stringValue", "intValue"):
            raise AssertionError("attribute %r" % (a,))
        if "intValue" in v and not re.fullmatch(r"-?\d+", str(v["intValue"])):
            raise AssertionError("intValue not a decimal string: %r" % (a,))
        if a["key"] in out:
            raise AssertionError("attribute %s twice" % a["key"])
        out[a["key"]] = v
    return out


class TraceTest(ProxyTest):
    """ProxyTest plus collectors, exact-path lookups and metrics."""

    def setUp(self):
        super().setUp()
        self.collectors = []

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for c in self.collectors:
                c.stop()

    def start_collector(self, *mode):
        c = Collector(*mode)
        self.collectors.append(c)
        return c

    def diagnostics(self):
        parts = [super().diagnostics()]
        for c in self.collectors:
            parts.append("--- collector (%s) on %s: %d exports; stderr:\n%s"
                         % (c.mode, c.port, c.export_count(), "\n".join(c.errors)))
        return "\n".join(parts)

    def access_exact(self, proxy, path, timeout=WAIT_TIMEOUT):
        """The access line whose path (query included) is exactly path."""
        return proxy.log.wait(lambda e: e.get("type") == "access" and e.get("path") == path,
                              timeout, what="type=access path=%s" % path)

    def check_log_ids(self, proxy, expected):
        """Each access line (path, trace id, span id) of expected has these ids.
        Checked after the requests: the log is flushed every 100 ms or so."""
        for path, tid, span in expected:
            self.assertAccess(self.access_exact(proxy, path), trace_id=tid, span_id=span)

    def upstream_headers(self, backend, path):
        """The headers the backend saw on the request whose target is exactly path."""
        req = backend.wait(lambda e: e.get("path") == path, ev="request")
        return backend.headers_of(req)

    def upstream_traceparent(self, backend, path):
        """(trace id, span id, flags) of the one traceparent the backend got for path."""
        h = self.upstream_headers(backend, path)
        tps = h.get("traceparent", [])
        self.assertEqual(len(tps), 1, "traceparent fields upstream for %s: %r" % (path, tps))
        m = TP_RE.match(tps[0])
        self.assertTrue(m, "upstream traceparent %r for %s" % (tps[0], path))
        return m.groups()

    def metric(self, proxy, name):
        resp = http_get(proxy.admin_port(), "/metrics")
        self.assertEqual(resp.status, 200)
        return parse_prometheus(resp.body.decode("utf-8")).value(name)

    def export_proxy(self, collector_url, backend, routes=(), **top):
        """A proxy exporting every span to collector_url, route "main" = backend."""
        settings = {"admin": ADMIN, "otlp_endpoint": collector_url,
                    "trace_sample_percent": 100}
        settings.update(top)
        return self.start_proxy([route("main", "/", backend)] + list(routes), **settings)


# ---------------------------------------------------------------------------
# Propagation
# ---------------------------------------------------------------------------

class Join(TraceTest):
    """A valid incoming traceparent is joined: same trace and flags, a new span id."""

    def test_valid_traceparent_joined(self):
        backend, proxy = self.setup_pair()
        state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        spans, logged = set(), []
        for i, flags in enumerate(("01", "00", "03")):
            tid, pid = new_ids()
            path = "/fast?join=%d" % i
            resp = self.client(proxy).request("GET", path, headers=[
                ("traceparent", "00-%s-%s-%s" % (tid, pid, flags)), ("tracestate", state)])
            self.assertEqual(resp.status, 200)
            got_tid, span, got_flags = self.upstream_traceparent(backend, path)
            self.assertEqual(got_tid, tid, "trace id upstream")
            self.assertEqual(got_flags, flags, "flags upstream")
            self.assertNotEqual(span, pid, "the caller's span id went upstream as this hop's")
            self.assertNotEqual(span, "0" * 16)
            self.assertNotIn(span, spans, "span id reused")
            spans.add(span)
            self.assertEqual(self.upstream_headers(backend, path).get("tracestate"), [state])
            logged.append((path, tid, span))
        self.check_log_ids(proxy, logged)

    def test_tracestate_joined_and_bounded(self):
        backend, proxy = self.setup_pair()
        a255, b256, b257 = "x=" + "a" * 253, "y=" + "b" * 254, "y=" + "b" * 255
        self.assertEqual([len(a255), len(b256), len(b257)], [255, 256, 257])
        cases = [
            ("two fields", ["a=1", "b=2,c=3"], "a=1,b=2,c=3"),
            ("512 bytes", ["k=" + "v" * 510], "k=" + "v" * 510),
            ("513 bytes", ["k=" + "v" * 511], None),
            ("two fields, 512 bytes joined", [a255, b256], a255 + "," + b256),
            ("two fields, 513 bytes joined", [a255, b257], None),
            ("one of 600 bytes", ["k=" + "v" * 598], None),
        ]
        logged = []
        for i, (what, fields, want) in enumerate(cases):
            tid, pid = new_ids()
            path = "/fast?state=%d" % i
            hdrs = [("traceparent", "00-%s-%s-01" % (tid, pid))]
            hdrs += [("tracestate", f) for f in fields]
            self.assertEqual(self.client(proxy).request("GET", path, headers=hdrs).status,
                             200, what)
            got_tid, span, _ = self.upstream_traceparent(backend, path)
            self.assertEqual(got_tid, tid, "%s: the traceparent still goes" % what)
            seen = self.upstream_headers(backend, path).get("tracestate")
            self.assertEqual(seen, None if want is None else [want], what)
            logged.append((path, tid, span))
        self.check_log_ids(proxy, logged)


class Malformed(TraceTest):
    """An invalid traceparent starts a new trace; the caller's tracestate stays behind."""

    BAD = [
        ("too short", "00-%s-%s-0" % (TRACE, PARENT)),
        ("too long", "00-%s-%s-011" % (TRACE, PARENT)),
        ("short trace id", "00-%s-%s-01" % (TRACE[:-1], PARENT)),
        ("long trace id", "00-%s0-%s-01" % (TRACE, PARENT)),
        ("short parent id", "00-%s-%s-01" % (TRACE, PARENT[:-1])),
        ("long parent id", "00-%s-%s0-01" % (TRACE, PARENT)),
        ("upper-case trace id", "00-%s-%s-01" % (TRACE.upper(), PARENT)),
        ("upper-case parent id", "00-%s-%s-01" % (TRACE, PARENT.upper())),
        ("upper-case flags", "00-%s-%s-0A" % (TRACE, PARENT)),
        ("upper-case version", "0A-%s-%s-01" % (TRACE, PARENT)),
        ("all-zero trace id", "00-%s-%s-01" % ("0" * 32, PARENT)),
        ("all-zero parent id", "00-%s-%s-01" % (TRACE, "0" * 16)),
        ("version ff", "ff-%s-%s-01" % (TRACE, PARENT)),
        ("version 00 with an extra field", "00-%s-%s-01-extra" % (TRACE, PARENT)),
        ("non-hex trace id", "00-%sg-%s-01" % (TRACE[:-1], PARENT)),
        ("non-hex parent id", "00-%s-%sz-01" % (TRACE, PARENT[:-1])),
        ("non-hex flags", "00-%s-%s-0x" % (TRACE, PARENT)),
        ("non-hex version", "0g-%s-%s-01" % (TRACE, PARENT)),
        ("wrong separator", "00_%s_%s_01" % (TRACE, PARENT)),
        ("later version, no dash after the flags", "cc-%s-%s-01x" % (TRACE, PARENT)),
        ("empty", ""),
        ("garbage", "not a traceparent"),
    ]

    def _check_new_trace(self, backend, proxy, path, hdrs, what, trace_ids, logged):
        """The request got a new (unsampled) trace upstream and in the log, and
        the caller's tracestate did not go upstream."""
        resp = self.client(proxy).request("GET", path, headers=hdrs)
        self.assertEqual(resp.status, 200, what)
        tid, span, flags = self.upstream_traceparent(backend, path)
        self.assertNotEqual(tid, TRACE, "%s: the caller's trace was joined" % what)
        self.assertNotEqual(tid, "0" * 32, what)
        self.assertNotIn(tid, trace_ids, "%s: trace id reused" % what)
        trace_ids.add(tid)
        self.assertNotEqual(span, PARENT, what)
        self.assertEqual(flags, "00", "%s: a new trace with trace_sample_percent 0" % what)
        self.assertNotIn("tracestate", self.upstream_headers(backend, path),
                         "%s: the caller's tracestate went on with a new trace" % what)
        logged.append((path, tid, span))

    def test_malformed_traceparents_start_a_new_trace(self):
        backend, proxy = self.setup_pair()
        trace_ids, logged = set(), []
        for i, (what, value) in enumerate(self.BAD):
            hdrs = [("traceparent", value), ("tracestate", "caller=keep-out")]
            self._check_new_trace(backend, proxy, "/fast?bad=%02d" % i, hdrs, what,
                                  trace_ids, logged)
        valid = "00-%s-%s-01" % (TRACE, PARENT)
        other = "00-%s-%s-01" % (new_ids()[0], PARENT)
        for i, (what, values) in enumerate((("repeated, same value", [valid, valid]),
                                            ("repeated, two traces", [valid, other]))):
            hdrs = [("traceparent", v) for v in values] + [("tracestate", "caller=keep-out")]
            self._check_new_trace(backend, proxy, "/fast?twice=%d" % i, hdrs, what,
                                  trace_ids, logged)
        self.check_log_ids(proxy, logged)
        self.assertTrue(proxy.alive())

    def test_later_version_joined_as_00(self):
        backend, proxy = self.setup_pair()
        cases = [
            ("version cc with more fields", "cc-%s-%s-01-extra-stuff", "01"),
            ("version cc, four fields", "cc-%s-%s-00", "00"),
            ("version 01 with a field", "01-%s-%s-01-x", "01"),
            ("version fe", "fe-%s-%s-01", "01"),
        ]
        logged = []
        for i, (what, fmt, flags) in enumerate(cases):
            tid, pid = new_ids()
            path = "/fast?later=%d" % i
            resp = self.client(proxy).request("GET", path, headers=[
                ("traceparent", fmt % (tid, pid)), ("tracestate", "v=%d" % i)])
            self.assertEqual(resp.status, 200, what)
            # TP_RE demands version 00 upstream.
            got_tid, span, got_flags = self.upstream_traceparent(backend, path)
            self.assertEqual((got_tid, got_flags), (tid, flags), what)
            self.assertNotEqual(span, pid, what)
            self.assertEqual(self.upstream_headers(backend, path).get("tracestate"),
                             ["v=%d" % i], what)
            logged.append((path, tid, span))
        self.check_log_ids(proxy, logged)


class NewTrace(TraceTest):
    """Without a traceparent: a new trace, sampled by trace_sample_percent."""

    def _new_traces(self, backend, proxy, tag, want_flags):
        c = self.client(proxy)
        trace_ids, span_ids, logged = set(), set(), []
        for i in range(20):
            path = "/fast?%s=%d" % (tag, i)
            hdrs = [("tracestate", "lonely=1")] if i % 2 else []
            self.assertEqual(c.request("GET", path, headers=hdrs).status, 200)
            tid, span, flags = self.upstream_traceparent(backend, path)
            self.assertEqual(flags, want_flags, "flags of new trace %d (%s)" % (i, tag))
            self.assertNotIn("tracestate", self.upstream_headers(backend, path),
                             "a tracestate without a traceparent went upstream")
            logged.append((path, tid, span))
            trace_ids.add(tid)
            span_ids.add(span)
        self.check_log_ids(proxy, logged)
        self.assertEqual((len(trace_ids), len(span_ids)), (20, 20), "ids repeated")
        return trace_ids

    def test_sample_percent_0_and_100(self):
        backend = self.start_backend()
        p0 = self.start_proxy([route("main", "/", backend)], trace_sample_percent=0)
        p100 = self.start_proxy([route("main", "/", backend)], trace_sample_percent=100)
        unsampled = self._new_traces(backend, p0, "p0", "00")
        sampled = self._new_traces(backend, p100, "p100", "01")
        self.assertFalse(unsampled & sampled)

    def test_default_is_unsampled(self):
        backend, proxy = self.setup_pair()
        self._new_traces(backend, proxy, "dflt", "00")


class ContextOff(TraceTest):
    """trace_context = false: both fields pass untouched, the log has no ids."""

    def test_fields_untouched(self):
        backend, proxy = self.setup_pair(trace_context=False)
        tid, pid = new_ids()
        big_state = "k=" + "v" * 598
        cases = [
            ("valid", [("traceparent", "00-%s-%s-01" % (tid, pid)),
                       ("tracestate", "congo=t61rcWkgMzE")]),
            ("invalid, big tracestate", [("traceparent", "00-ZZ-bad-01"),
                                         ("tracestate", big_state)]),
            ("none", []),
        ]
        for i, (what, hdrs) in enumerate(cases):
            path = "/fast?off=%d" % i
            self.assertEqual(self.client(proxy).request("GET", path, headers=hdrs).status,
                             200, what)
            seen = self.upstream_headers(backend, path)
            for name in ("traceparent", "tracestate"):
                sent = [v for n, v in hdrs if n == name]
                self.assertEqual(seen.get(name, []), sent, "%s: %s upstream" % (what, name))
        for i, (what, _) in enumerate(cases):
            line = self.access_exact(proxy, "/fast?off=%d" % i)
            self.assertNotIn("trace_id", line, what)
            self.assertNotIn("span_id", line, what)


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------

class Export(TraceTest):
    """Every sampled request's span reaches the collector and says what the log says."""

    def check_span(self, span, line, rec, wall_start):
        """span against its access line and what the backend saw (rec)."""
        what = rec["path"]
        self.assertEqual(span["traceId"], line["trace_id"], what)
        self.assertEqual(span["spanId"], line["span_id"], what)
        if rec.get("upstream"):
            self.assertEqual((span["traceId"], span["spanId"]), rec["upstream"][:2],
                             "%s: ids against the backend's traceparent" % what)
        if rec.get("parent"):
            self.assertEqual(span.get("parentSpanId"), rec["parent"], what)
            self.assertEqual(span["traceId"], rec["trace"], what)
        else:
            self.assertNotIn("parentSpanId", span, what)
        self.assertEqual(span["name"], "GET " + line["route"], what)
        self.assertEqual(span["kind"], 2, what)
        for key in ("startTimeUnixNano", "endTimeUnixNano"):
            self.assertIsInstance(span[key], str, "%s: %s a decimal string" % (what, key))
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        self.assertLess(start, end, what)
        self.assertLess(abs((end - start) / 1e6 - float(line["duration_ms"])), 0.01,
                        "%s: span length against duration_ms" % what)
        self.assertWithin(start, int((wall_start - 2) * 1e9), int((time.time() + 2) * 1e9),
                          "%s: start (unix ns)" % what)
        attrs = attrs_of(span)
        self.assertEqual(attrs.get("http.request.method"), {"stringValue": "GET"}, what)
        self.assertEqual(attrs.get("url.path"), {"stringValue": line["path"]}, what)
        self.assertEqual(attrs.get("http.response.status_code"), {"intValue": line["status"]},
                         what)
        self.assertEqual(line["status"], str(rec["status"]), what)
        self.assertEqual(attrs.get("http.route"), {"stringValue": line["route"]}, what)
        self.assertEqual(attrs.get("ctxproxy.cause"), {"stringValue": line["cause"]}, what)
        self.assertEqual(attrs.get("ctxproxy.phase"), {"stringValue": line["phase"]}, what)
        if line["upstream_status"] != "0":
            self.assertEqual(attrs.get("ctxproxy.upstream_status"),
                             {"intValue": line["upstream_status"]}, what)
        else:
            self.assertNotIn("ctxproxy.upstream_status", attrs, what)
        if "propagation_us" in line:
            self.assertEqual(attrs.get("ctxproxy.propagation_us"),
                             {"intValue": line["propagation_us"]}, what)
        else:
            self.assertNotIn("ctxproxy.propagation_us", attrs, what)
        if line.get("attempts", "0") != "0":
            self.assertEqual(attrs.get("ctxproxy.attempts"), {"intValue": line["attempts"]},
                             what)
        error = rec["status"] >= 500 or line["cause"] != "completed"
        if error:
            self.assertEqual(span.get("status"), {"code": 2}, what)
        else:
            self.assertNotIn("status", span, what)

    def test_spans_exported(self):
        collector = self.start_collector()
        backend = self.start_backend()
        proxy = self.export_proxy(collector.url, backend, routes=[
            # the request must reach the backend before the 504 (valgrind: slow)
            route("tight", "/slow", backend, timeout_ms=1000 if VALGRIND else 300),
            route("dead", "/dead", "http://127.0.0.1:%d" % free_port())])
        wall_start = time.time()
        recs = []

        def get(path, status, parent_flags=None, hdrs=()):
            rec = {"path": path, "status": status}
            hdrs = list(hdrs)
            if parent_flags:
                rec["trace"], rec["parent"] = new_ids()
                hdrs.append(("traceparent", "00-%s-%s-%s" % (rec["trace"], rec["parent"],
                                                              parent_flags)))
            resp = self.client(proxy).request("GET", path, headers=hdrs)
            rec["t_end"] = time.monotonic()
            self.assertEqual(resp.status, status, path)
            recs.append(rec)
            return rec

        # First, so that the FIFO queue would have sent its span before the others.
        unsampled = get("/fast?unsampled", 200, "00")
        recs.remove(unsampled)
        for i in range(3):
            get("/fast?joined=%d" % i, 200, "01")
            get("/fast?new=%d" % i, 200)
        get("/fast?invalid", 200, hdrs=[("traceparent", "00-%s-%s-01" % (TRACE.upper(),
                                                                          PARENT))])
        get("/slow?ms=3000", 504, "01")
        get("/dead/x", 502)
        # A client hang-up while the backend holds the answer back.
        hang = {"path": "/hang?up", "status": 499}
        hang["trace"], hang["parent"] = new_ids()
        c = self.client(proxy)
        c.send_request("GET", hang["path"], headers=[
            ("traceparent", "00-%s-%s-01" % (hang["trace"], hang["parent"]))])
        self.upstream_headers(backend, hang["path"])
        c.close()
        hang["t_end"] = time.monotonic()
        recs.append(hang)

        for rec in recs:
            if rec["path"] != "/dead/x":
                rec["upstream"] = self.upstream_traceparent(backend, rec["path"])
                self.assertEqual(rec["upstream"][2], "01", rec["path"])
        tid, _, flags = self.upstream_traceparent(backend, unsampled["path"])
        self.assertEqual((tid, flags), (unsampled["trace"], "00"))

        lines = {r["path"]: self.access_exact(proxy, r["path"]) for r in recs}
        self.assertAccess(lines["/hang?up"], cause="client_disconnect")
        self.assertIn("propagation_us", lines["/hang?up"])
        want = {lines[r["path"]]["span_id"] for r in recs}
        got = collector.wait_spans(len(recs), lambda s: s.get("spanId") in want,
                                   timeout=10.0 * SCALE, what="spans of the requests")
        by_id = {}
        for arrival, span in got:
            self.assertNotIn(span["spanId"], by_id, "span exported twice")
            by_id[span["spanId"]] = (arrival, span)
        for rec in recs:
            arrival, span = by_id[lines[rec["path"]]["span_id"]]
            self.check_span(span, lines[rec["path"]], rec, wall_start)
            # A batch goes when its oldest span is 1 s old.
            self.assertLess(arrival - rec["t_end"], 1.0 + 2.0 * SCALE,
                            "%s: seconds from the request's end to its export" % rec["path"])
        everything = [s for _, s in collector.spans()]
        self.assertEqual(len(everything), len(recs),
                         "spans exported: %r" % [s.get("attributes") for s in everything])
        self.assertNotIn(unsampled["trace"], {s["traceId"] for s in everything},
                         "an unsampled (flags 00) request was exported")
        poll(lambda: self.metric(proxy, "ctxproxy_trace_spans_exported_total") == len(recs),
             5.0 * SCALE, "ctxproxy_trace_spans_exported_total == %d" % len(recs))
        self.assertEqual(self.metric(proxy, "ctxproxy_trace_spans_dropped_total"), 0)
        self.assertEqual(collector.errors, [], "the collector refused an export")


class FaultyCollector(TraceTest):
    """A collector that fails, hangs or is not there costs requests nothing."""

    GRACE_MS = 1000

    # seconds; a request takes ~1 ms, one that waited on the export ~5 s
    MAX_LATENCY = 1.0 if SLOW == 1 else 3.0

    def _requests(self, proxy, tag, at_least, until=lambda: True, timeout=10.0 * SCALE):
        """Requests on one connection, each timed (200 and quick): at_least of
        them back to back, then about 20 a second until until() is true, so
        that they also run while the exporter posts, waits or retries.
        Returns how many were made."""
        c = self.client(proxy)
        deadline = time.monotonic() + timeout
        n = 0
        while n < at_least or not until():
            if time.monotonic() > deadline:
                raise AssertionError("%s: condition not reached within %.0fs" % (tag, timeout))
            path = "/fast?%s=%d" % (tag, n)
            start = time.monotonic()
            resp = c.request("GET", path)
            took = time.monotonic() - start
            self.assertEqual(resp.status, 200, path)
            self.assertLess(took, self.MAX_LATENCY, "seconds for %s" % path)
            n += 1
            if n >= at_least:
                time.sleep(0.05)    # pacing the load, not waiting for an event
        return n

    def _dropped(self, proxy):
        return self.metric(proxy, "ctxproxy_trace_spans_dropped_total")

    def _stop(self, proxy):
        """SIGTERM stops the daemon within the grace and a little more, exit 0."""
        proxy.signal(signal.SIGTERM)
        rc, took = proxy.wait_exit()
        self.assertEqual(rc, 0)
        self.assertLess(took, self.GRACE_MS / 1000.0 + 2.5 * SCALE,
                        "seconds from SIGTERM to exit")

    def test_collector_answers_500(self):
        collector = self.start_collector("500")
        backend = self.start_backend()
        proxy = self.export_proxy(collector.url, backend, shutdown_grace_ms=self.GRACE_MS)
        self._requests(proxy, "e500a", 25, until=lambda: collector.export_count() > 0)
        first = collector.spans()[0][1]["spanId"]
        # The exporter retries now: requests go on regardless until it gives up.
        self._requests(proxy, "e500b", 25, until=lambda: self._dropped(proxy) >= 25)
        tries = [s for _, s in collector.spans() if s["spanId"] == first]
        self.assertWithin(len(tries), 2, 4, "tries of the first batch (retried, at most 4)")
        self.assertEqual(self.metric(proxy, "ctxproxy_trace_spans_exported_total"), 0)
        failing = proxy.log.find(lambda e: e.get("msg") == "trace export failing, spans dropped")
        self.assertEqual(len(failing), 1, "one log line when export starts failing")
        self.assertEqual(failing[0].get("status"), "500")
        self._stop(proxy)

    def test_collector_down(self):
        backend = self.start_backend()
        proxy = self.export_proxy("http://127.0.0.1:%d/v1/traces" % free_port(), backend,
                                  shutdown_grace_ms=self.GRACE_MS)
        # Through the first batch's tries (refused) until it is dropped.
        self._requests(proxy, "down", 50, until=lambda: self._dropped(proxy) >= 25)
        proxy.log.wait(lambda e: e.get("msg") == "trace export failing, spans dropped",
                       what="the export failing line")
        self._stop(proxy)

    def test_collector_slow(self):
        collector = self.start_collector("slow", "5")
        backend = self.start_backend()
        proxy = self.export_proxy(collector.url, backend, shutdown_grace_ms=self.GRACE_MS)
        self._requests(proxy, "slowa", 25, until=lambda: collector.export_count() > 0)
        # The first POST hangs on the collector's sleep now (5 s).
        self._requests(proxy, "slowb", 25)
        self.assertEqual(self.metric(proxy, "ctxproxy_trace_spans_exported_total"), 0,
                         "the slow POST was answered already: the test proves nothing")
        mark = proxy.log.mark()
        self._stop(proxy)
        # The POST cut at the end of the grace: its spans are dropped and told.
        line = proxy.log.wait(lambda e: e.get("msg") == "trace export stopped, spans dropped",
                              start=mark, what="the stop's drop line")
        self.assertGreaterEqual(int(line.get("dropped", "0")), 25)

class StopFlush(TraceTest):
    """SIGTERM sends the queued spans before the daemon exits."""

    def test_sigterm_flushes_queued_spans(self):
        collector = self.start_collector()
        backend = self.start_backend()
        proxy = self.export_proxy(collector.url, backend, shutdown_grace_ms=2000)
        proxy.log.wait(msg="started")
        c = self.client(proxy)
        t0 = time.monotonic()
        for i in range(5):
            self.assertEqual(c.request("GET", "/fast?flush=%d" % i).status, 200)
        before = collector.export_count()
        proxy.signal(signal.SIGTERM)
        rc, _ = proxy.wait_exit()
        self.assertEqual(rc, 0)
        self.assertEqual(before, 0, "spans exported %.2fs after the first request, before "
                         "SIGTERM: the test cannot tell a flush" % (time.monotonic() - t0))
        # The daemon is gone: whatever the collector gets was sent before the exit.
        spans = collector.wait_spans(5, timeout=2.0 * SCALE, what="flushed spans")
        paths = sorted(attrs_of(s)["url.path"]["stringValue"] for _, s in spans)
        self.assertEqual(paths, ["/fast?flush=%d" % i for i in range(5)])
        for i in range(5):
            line = self.access_exact(proxy, "/fast?flush=%d" % i)
            self.assertIn(line["span_id"], {s["spanId"] for _, s in spans})
        self.assertEqual(proxy.log.find(
            lambda e: e.get("msg") == "trace export stopped, spans dropped"), [])


class Reload(TraceTest):
    """SIGHUP with otlp_endpoint: kept works, changed needs a restart."""

    def _rewrite(self, proxy, routes, **top):
        with open(proxy.config_path + ".tmp", "w") as f:
            f.write(config_text(routes, **top))
        os.replace(proxy.config_path + ".tmp", proxy.config_path)

    def _reload(self, proxy):
        """SIGHUP; the lines logged up to its "reloaded"."""
        mark = proxy.log.mark()
        proxy.signal(signal.SIGHUP)
        proxy.log.wait(start=mark, msg="reloaded", timeout=WAIT_TIMEOUT)
        return proxy.log.find(start=mark)

    def _request(self, proxy, path):
        self.assertEqual(self.client(proxy).request("GET", path).status, 200)
        return path

    def test_reload_keeps_or_warns(self):
        collector = self.start_collector()
        other = self.start_collector()
        backend = self.start_backend()
        proxy = self.export_proxy(collector.url, backend)
        sent = [self._request(proxy, "/fast?r=0")]
        base = {"admin": ADMIN, "trace_sample_percent": 100}

        def restart_lines(lines):
            return [e for e in lines if "need a restart" in e.get("msg", "")]

        # Same endpoint, a new route: no warning, the new route's spans go out.
        routes = [route("extra", "/extra/", backend, strip_prefix=True),
                  route("main", "/", backend)]
        self._rewrite(proxy, routes, otlp_endpoint=collector.url, **base)
        self.assertEqual(restart_lines(self._reload(proxy)), [])
        sent.append(self._request(proxy, "/extra/fast?r=1"))

        # Another endpoint: the warning; spans still go where they went.
        self._rewrite(proxy, routes, otlp_endpoint=other.url, **base)
        warned = restart_lines(self._reload(proxy))
        self.assertEqual(len(warned), 1)
        self.assertIn("otlp_endpoint", warned[0]["msg"])
        sent.append(self._request(proxy, "/extra/fast?r=2"))

        # No endpoint at all: a change too.
        self._rewrite(proxy, routes, **base)
        self.assertEqual(len(restart_lines(self._reload(proxy))), 1)
        sent.append(self._request(proxy, "/fast?r=3"))

        lines = [self.access_exact(proxy, path) for path in sent]
        spans = collector.wait_spans(len(sent), lambda s: s["spanId"] in
                                     {ln["span_id"] for ln in lines},
                                     timeout=5.0 * SCALE, what="spans across the reloads")
        names = {s["spanId"]: s["name"] for _, s in spans}
        self.assertEqual([names[ln["span_id"]] for ln in lines],
                         ["GET main", "GET extra", "GET extra", "GET main"])
        self.assertEqual(other.export_count(), 0,
                         "the new endpoint got spans without a restart")
        self.assertTrue(proxy.alive())

if __name__ == "__main__":
    unittest.main()
