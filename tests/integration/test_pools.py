"""test_pools.py - upstream pools (SPEC section 8): balancing, retries and
what each server saw of them, the exchange's budget across attempts, a
client hang-up during a retry, pool config errors, the attempt and retry
metrics, and the resources a held request body takes.

Every test runs the proxy with workers = 1: balancing and the retry budget
are per worker, so round_robin's first pick of a route is its first server
and every pick after follows from the ones before.
"""

import os
import re
import time
import unittest

from harness import (SLOW, VALGRIND, Blackhole, Client, ProxyTest, WAIT_TIMEOUT, expected_bytes,
                     free_port, now_us, route, run_proxy_cli, write_temp)

ADMIN = "127.0.0.1:0"
KIB = 1024
DEFAULT_RETRY_ON = ["connect_failure", "reset"]
# An attempt's timer runs from before its connect: the request must reach
# the server within it (under valgrind that alone took ~100 ms of 300).
PER_TRY_MS = 1000 if VALGRIND else 300
# The Budget tests' times: the third attempt of 400/1000 ms has 200 ms.
BUDGET_X = 3 if VALGRIND else 1


def down_url():
    """An http:// origin on loopback with nothing listening."""
    return "http://127.0.0.1:%d" % free_port()


def addr(backend):
    """A backend's address as the access log's upstream_addr and the metrics name it."""
    return "127.0.0.1:%d" % backend.port


def cpu_seconds(pid):
    """User + system CPU time of pid so far, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(proxy):
    """GET /metrics on the admin listener: {(name, frozenset(labels)): value}."""
    c = Client(proxy.admin_port())
    try:
        resp = c.request("GET", "/metrics")
    finally:
        c.close()
    if resp.status != 200:
        raise AssertionError("GET /metrics: %r" % resp)
    out = {}
    for line in resp.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("metrics line %r does not parse" % line)
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def series(samples, name, **labels):
    """{sorted label pairs: value} of every sample of family name whose labels
    include labels."""
    want = set(labels.items())
    return {tuple(sorted(k[1])): v for k, v in samples.items()
            if k[0] == name and want <= k[1]}


class PoolTest(ProxyTest):
    """A proxy with one pooled route "pool" on "/", and checks on every hop."""

    def pool_proxy(self, servers, routes=(), top=None, **opts):
        """A proxy (workers = 1) whose route "pool" on "/" balances over servers;
        routes are more routes placed before it."""
        settings = {"workers": 1}
        settings.update(top or {})
        return self.start_proxy(list(routes) + [route("pool", "/", servers, **opts)],
                                **settings)

    def access(self, proxy, path, **kv):
        """The access log line whose path (query included) is exactly path."""
        return proxy.log.wait(lambda e: e.get("type") == "access" and e.get("path") == path,
                              what="type=access path=%s" % path, **kv)

    def get(self, proxy, path, timeout=WAIT_TIMEOUT, method="GET", body=None):
        """A request on a new connection: (response, seconds until its head)."""
        c = self.client(proxy)
        start = time.monotonic()
        c.send_request(method, path, body=body)
        resp = c.read_response(timeout, method)
        return resp, resp.head_time - start

    def assertNothingReached(self, backend, start, what):
        """No request reached backend since its event index start.

        A barrier first: a request of our own straight to the backend (to
        /healthz, which every mode answers), and its ev=request seen; a
        request the proxy sent before (the caller has the access line, so
        any attempt was made before it) was read and printed by then."""
        resp = backend.get("/healthz")
        self.assertEqual(resp.status, 200, "barrier request to the backend")
        backend.wait(ev="request", path="/healthz", start=start)
        others = [e for e in backend.requests(start) if e["path"] != "/healthz"]
        self.assertEqual(others, [], "%s: the backend received %s" % (what, others))

    def assertDropped(self, backend, start=0, method="GET", body=0):
        """backend (mode reset) got exactly one request, read its body and reset it."""
        dropped = backend.wait(ev="dropped", how="rst", start=start)
        reqs = backend.requests(start)
        self.assertEqual(len(reqs), 1, "requests at the resetting backend: %s" % reqs)
        req = reqs[0]
        self.assertEqual((req["method"], dropped["conn"]), (method, req["conn"]))
        backend.wait(ev="body_done", conn=req["conn"], req=req["req"], bytes=body, start=start)
        return req

    def assertServed(self, backend, path_prefix, start=0, method="GET", body=0, count=1):
        """backend got count requests since start, the first for path_prefix, which it
        answered after reading body bytes of body.  (request event, done event)."""
        req = backend.wait_request(path_prefix, start=start)
        done = backend.wait(ev="done", conn=req["conn"], req=req["req"], start=start)
        self.assertEqual(req["method"], method)
        backend.wait(ev="body_done", conn=req["conn"], req=req["req"], bytes=body, start=start)
        reqs = backend.requests(start)
        self.assertEqual(len(reqs), count, "requests at the good backend: %s" % reqs)
        return req, done

    def assertPoolMetrics(self, proxy, attempts, retries):
        """The route "pool"'s attempt counters are exactly attempts
        ({(server address, outcome): n}) and its retry counters retries
        ({reason: n})."""
        m = scrape(proxy)
        got = {(dict(k)["server"], dict(k)["outcome"]): v
               for k, v in series(m, "ctxproxy_upstream_attempts_total", route="pool").items()}
        self.assertEqual(got, {k: float(v) for k, v in attempts.items()},
                         "ctxproxy_upstream_attempts_total{route=\"pool\"}")
        got = {dict(k)["reason"]: v
               for k, v in series(m, "ctxproxy_retries_total", route="pool").items()}
        self.assertEqual(got, {k: float(v) for k, v in retries.items()},
                         "ctxproxy_retries_total{route=\"pool\"}")

    def wait_landing(self, backends, path, timeout=WAIT_TIMEOUT):
        """The backend (of backends) that printed ev=request for exactly path, polled
        within timeout; AssertionError if none did."""
        deadline = time.monotonic() + timeout
        while True:
            for b in backends:
                if b.find(ev="request", path=path):
                    return b
            if time.monotonic() > deadline:
                raise AssertionError("no backend received %s within %.0fs" % (path, timeout))
            time.sleep(0.005)


class Balancing(PoolTest):
    """round_robin alternates; least_request avoids the busier server."""

    def test_round_robin_alternates(self):
        a = self.start_backend(name="A")
        b = self.start_backend(name="B")
        proxy = self.pool_proxy([a, b], balance="round_robin")
        c = self.client(proxy)
        got = []
        for i in range(6):
            resp = c.request("GET", "/fast?i=%d" % i)
            self.assertEqual((resp.status, resp.body), (200, b"ok\n"), "request %d" % i)
            got.append(resp.header("x-backend"))
        self.assertEqual(got, ["A", "B"] * 3, "X-Backend of six requests in a row")
        for backend in (a, b):
            backend.wait_count(3, ev="request")
        self.assertEqual([e["path"] for e in a.requests()], ["/fast?i=0", "/fast?i=2", "/fast?i=4"])
        self.assertEqual([e["path"] for e in b.requests()], ["/fast?i=1", "/fast?i=3", "/fast?i=5"])
        lines = proxy.log.wait_count(6, lambda e: e.get("type") == "access", what="type=access")
        self.assertEqual([e.get("upstream_addr") for e in lines], [addr(a), addr(b)] * 3)
        self.assertEqual({e.get("attempts") for e in lines}, {"1"})

    def test_least_request_avoids_the_busy_server(self):
        """A (slowhead) holds one request; with two servers least_request
        compares both, so every new request goes to idle B."""
        a = self.start_backend(mode="slowhead=5000", name="A")
        b = self.start_backend(name="B")
        proxy = self.pool_proxy([a, b], balance="least_request")
        # Ties are broken at random: probe one request at a time (each
        # answered by B before the next) until one lands on A and is held.
        held = None
        for i in range(40):
            path = "/fast?probe=%d" % i
            c = self.client(proxy)
            c.send_request("GET", path)
            if self.wait_landing([a, b], path) is a:
                held = c
                break
            resp = c.read_response()
            self.assertEqual((resp.status, resp.header("x-backend")), (200, "B"), path)
        self.assertIsNotNone(held, "40 probes in a row went to B: least_request never "
                                   "picked A while both were idle")
        held_req = a.wait_request("/fast?probe=")
        mark_a, mark_b = a.mark(), b.mark()
        c = self.client(proxy)
        for i in range(10):
            resp = c.request("GET", "/fast?while_held=%d" % i)
            self.assertEqual((resp.status, resp.body), (200, b"ok\n"))
            self.assertEqual(resp.header("x-backend"), "B",
                             "request %d while A holds one went to A" % i)
        # The premise: A still held its request all along.
        self.assertEqual(a.find(ev="response", conn=held_req["conn"]), [],
                         "A answered its held request before the 10 others were done "
                         "(slowhead 5 s elapsed): the test proved nothing")
        self.assertEqual(a.requests(mark_a), [], "A got new requests while busy")
        b.wait_count(10, start=mark_b, ev="request")
        self.assertEqual(len(b.requests(mark_b)), 10)
        # The held request goes with its client.
        t_close = held.close()
        end = a.wait_conn_end(held_req["conn"])
        self.assertEqual(end.get("ev"), "cancelled")
        self.assertLess(end["t"] - t_close, 2_000_000 * SLOW, "us from client close to A's cancel")
        self.assertAccess(self.access(proxy, held_req["path"]), status=499,
                          cause="client_disconnect", upstream_addr=addr(a))

    # A request counts in flight on its server until its response is
    # over, not only until its head (a streaming download keeps the
    # server busy): least_request sends the rest to the other server.
    def test_least_request_counts_streaming_responses(self):
        a = self.start_backend(name="A")
        b = self.start_backend(name="B")
        proxy = self.pool_proxy([a, b], balance="least_request")
        held = self.client(proxy)
        held.send_request("GET", "/stream?chunks=100&size=10&interval_ms=100")
        head = held.read_head()
        self.assertEqual(head.status, 200)
        busy = a if head.header("x-backend") == "A" else b
        idle = b if busy is a else a
        sreq = busy.wait_request("/stream")
        c = self.client(proxy)
        got = []
        for i in range(20):
            resp = c.request("GET", "/fast?while_streaming=%d" % i)
            self.assertEqual(resp.status, 200)
            got.append(resp.header("x-backend"))
        self.assertEqual(busy.find(ev="done", conn=sreq["conn"]), [],
                         "the stream ended before the 20 others: the test proved nothing")
        t_close = held.close()
        end = busy.wait_conn_end(sreq["conn"])
        self.assertEqual((end["ev"], end.get("phase")), ("cancelled", "sending_body"))
        self.assertLess(end["t"] - t_close, 2_000_000 * SLOW, "us from client close to the cancel")
        self.assertEqual(got, [idle.name] * 20,
                         "X-Backend of 20 requests while %s streams a response" % busy.name)


class Retries(PoolTest):
    """Which failures are retried, on which server, and what each one saw."""

    def _reset_then_good(self, **top):
        """servers = [reset, good]; one GET, retried on good. (proxy, bad, good)."""
        bad = self.start_backend(mode="reset", name="R")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([bad, good], top=top)
        resp, _ = self.get(proxy, "/fast")
        self.assertEqual((resp.status, resp.body, resp.header("x-backend")), (200, b"ok\n", "G"))
        self.assertAccess(proxy.access("/fast"), status=200, upstream_status=200, attempts=2,
                          upstream_addr=addr(good), cause="completed")
        rreq = self.assertDropped(bad)
        greq, _ = self.assertServed(good, "/fast")
        # The retry's head is the first one's, rebuilt: the same request id,
        # no field added twice.
        rh, gh = bad.headers_of(rreq), good.headers_of(greq)
        self.assertEqual(rh["x-request-id"], [resp.header("x-request-id")])
        self.assertEqual(gh["x-request-id"], [resp.header("x-request-id")])
        self.assertEqual(sorted((k, len(v)) for k, v in gh.items()),
                         sorted((k, len(v)) for k, v in rh.items()),
                         "header fields of the retry vs the first attempt")
        for k in rh:
            if k != "x-request-timeout-ms":
                self.assertEqual(gh[k], rh[k], "field %s on the retry" % k)
        return proxy, bad, good

    def test_reset_is_retried_on_the_other_server(self):
        self._reset_then_good()

    def test_attempt_and_retry_metrics(self):
        proxy, bad, good = self._reset_then_good(admin=ADMIN)
        self.assertPoolMetrics(proxy, {(addr(bad), "reset"): 1, (addr(good), "ok"): 1},
                               {"reset": 1})

    def test_per_try_timeout_retried_when_listed(self):
        hang = self.start_backend(mode="hang", name="H")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([hang, good], per_try_timeout_ms=PER_TRY_MS,
                                retry_on=DEFAULT_RETRY_ON + ["timeout"], top={"admin": ADMIN})
        t0 = now_us()
        resp, took = self.get(proxy, "/fast")
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertWithin(took, PER_TRY_MS / 1000 - 0.05, 3.0 * SLOW, "seconds until the answer")
        req = hang.wait_request("/fast")
        end = hang.wait_conn_end(req["conn"])
        self.assertEqual((end["ev"], end.get("phase")), ("cancelled", "before_response"))
        # The attempt began before the request reached the backend (its
        # connect and send count): the cancel is timed from the client's send.
        self.assertWithin(end["t"] - t0, PER_TRY_MS * 1000 - 50_000, 3_000_000 * SLOW,
                          "us from send to the cancel")
        self.assertAccess(proxy.access("/fast"), status=200, attempts=2,
                          upstream_addr=addr(good), cause="completed")
        greq, _ = self.assertServed(good, "/fast")
        # The retry started when the per-try timer cancelled the first one.
        self.assertGreaterEqual(greq["t"], t0 + PER_TRY_MS * 1000 - 50_000,
                                "retry before the per-try timeout")
        self.assertPoolMetrics(proxy, {(addr(hang), "timeout"): 1, (addr(good), "ok"): 1},
                               {"timeout": 1})

    def test_per_try_timeout_not_retried_unless_listed(self):
        hang = self.start_backend(mode="hang", name="H")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([hang, good], per_try_timeout_ms=PER_TRY_MS)
        mark = good.mark()
        t0 = now_us()
        resp, took = self.get(proxy, "/fast")
        self.assertEqual(resp.status, 504)
        self.assertWithin(took, PER_TRY_MS / 1000 - 0.05, 3.0 * SLOW, "seconds until the 504")
        req = hang.wait_request("/fast")
        end = hang.wait_conn_end(req["conn"])
        self.assertEqual(end["ev"], "cancelled")
        self.assertWithin(end["t"] - t0, PER_TRY_MS * 1000 - 50_000, 3_000_000 * SLOW,
                          "us from send to the cancel")
        self.assertAccess(proxy.access("/fast"), status=504, attempts=1,
                          upstream_addr=addr(hang), cause="deadline_exceeded")
        self.assertNothingReached(good, mark, "after a timeout not in retry_on")

    def test_503_retried_when_listed(self):
        bad = self.start_backend(mode="status=503", name="S")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([bad, good], retry_on=["503"], top={"admin": ADMIN})
        resp, _ = self.get(proxy, "/fast")
        self.assertEqual((resp.status, resp.body, resp.header("x-backend")), (200, b"ok\n", "G"))
        self.assertAccess(proxy.access("/fast"), status=200, upstream_status=200, attempts=2,
                          upstream_addr=addr(good))
        bad.wait_request("/fast")
        reqs = bad.requests()
        self.assertEqual(len(reqs), 1)
        bad.wait(ev="response", conn=reqs[0]["conn"], req=reqs[0]["req"], status=503)
        self.assertServed(good, "/fast")
        self.assertPoolMetrics(proxy, {(addr(bad), "status_5xx"): 1, (addr(good), "ok"): 1},
                               {"503": 1})

    def test_503_passed_through_by_default(self):
        bad = self.start_backend(mode="status=503", name="S")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([bad, good])
        mark = good.mark()
        resp, _ = self.get(proxy, "/fast")
        self.assertEqual((resp.status, resp.body, resp.header("x-backend")),
                         (503, b"status 503\n", "S"))
        self.assertAccess(proxy.access("/fast"), status=503, upstream_status=503, attempts=1,
                          upstream_addr=addr(bad))
        bad.wait_request("/fast")
        self.assertEqual(len(bad.requests()), 1)
        self.assertNothingReached(good, mark, "after a 503 with the default retry_on")

    def test_down_server_retried_get_and_post(self):
        good = self.start_backend(name="G")
        down = down_url()
        proxy = self.pool_proxy([down, good], top={"admin": ADMIN})
        resp, _ = self.get(proxy, "/fast")
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertAccess(proxy.access("/fast"), status=200, attempts=2, upstream_addr=addr(good))
        self.assertServed(good, "/fast")
        # round_robin is back at the down server: a POST, whose connect
        # failure sent nothing, goes again with all of its body.
        mark = good.mark()
        body = expected_bytes(3000)
        resp, _ = self.get(proxy, "/echo", method="POST", body=body)
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertTrue(resp.body == body, "echoed body differs (%d bytes)" % len(resp.body))
        self.assertAccess(proxy.access("/echo"), method="POST", status=200, attempts=2,
                          upstream_addr=addr(good), bytes_in=len(body))
        self.assertServed(good, "/echo", start=mark, method="POST", body=len(body))
        self.assertPoolMetrics(proxy, {(down[len("http://"):], "connect_failure"): 2,
                                       (addr(good), "ok"): 2}, {"connect_failure": 2})

    def test_all_servers_down(self):
        good = self.start_backend(name="G")
        downs, more = [down_url(), down_url()], [down_url(), down_url()]
        proxy = self.pool_proxy(downs, retries=1, top={"admin": ADMIN},
                                routes=[route("more", "/more/", more, retries=3),
                                        route("ok", "/ok/", good, strip_prefix=True)])
        cpu0 = cpu_seconds(proxy.pid)
        resp, took = self.get(proxy, "/fast")
        self.assertEqual(resp.status, 502)
        self.assertLess(took, 3.0 * SLOW, "seconds until the 502")
        self.assertAccess(proxy.access("/fast"), status=502, attempts=2, cause="upstream_error",
                          upstream_addr=downs[1][len("http://"):])
        # More retries than servers: the servers are tried again, and
        # the count stops at 1 + retries.
        resp, took = self.get(proxy, "/more/fast")
        self.assertEqual(resp.status, 502)
        self.assertLess(took, 3.0 * SLOW, "seconds until the 502")
        self.assertAccess(proxy.access("/more/fast"), status=502, attempts=4,
                          cause="upstream_error", upstream_addr=more[1][len("http://"):])
        # Still answering, and it did not spin while failing.
        resp, _ = self.get(proxy, "/ok/fast")
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"))
        self.assertServed(good, "/fast")
        lines = proxy.log.wait_count(3, lambda e: e.get("type") == "access", what="type=access")
        self.assertEqual(len(lines), 3, "access lines: %s" % lines)
        # valgrind's own work (translating the code the requests run) is CPU too
        self.assertLess(cpu_seconds(proxy.pid) - cpu0, 1.0 * SLOW,
                        "proxy CPU seconds for 3 requests")
        self.assertPoolMetrics(proxy, {(u[len("http://"):], "connect_failure"): 1 for u in downs},
                               {"connect_failure": 1})

    def _unsafe_case(self, proxy, bad, good, path, method, size):
        """method path with a size-byte body, first to bad (reset): the response."""
        mark_bad, mark_good = bad.mark(), good.mark()
        body = expected_bytes(size)
        resp, _ = self.get(proxy, path, method=method, body=body)
        self.assertDropped(bad, start=mark_bad, method=method, body=size)
        return resp, body, mark_good

    def test_post_reset_is_never_replayed(self):
        bad = self.start_backend(mode="reset", name="R")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([bad, good])
        resp, _, mark = self._unsafe_case(proxy, bad, good, "/upload", "POST", 1000)
        self.assertEqual(resp.status, 502)
        self.assertAccess(proxy.access("/upload"), method="POST", status=502, attempts=1,
                          upstream_addr=addr(bad), bytes_in=1000)
        self.assertNothingReached(good, mark, "POST reset after its body")

    def test_put_held_body_is_replayed(self):
        """A PUT of exactly 64 KiB: held whole, so sent again in full."""
        bad = self.start_backend(mode="reset", name="R")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([bad, good])
        size = 64 * KIB
        resp, body, mark = self._unsafe_case(proxy, bad, good, "/echo", "PUT", size)
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertTrue(resp.body == body, "echoed body differs (%d bytes)" % len(resp.body))
        self.assertAccess(proxy.access("/echo"), method="PUT", status=200, attempts=2,
                          upstream_addr=addr(good), bytes_in=size)
        self.assertServed(good, "/echo", start=mark, method="PUT", body=size)

    def test_put_larger_than_held_is_not_replayed(self):
        bad = self.start_backend(mode="reset", name="R")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([bad, good])
        size = 100 * KIB
        resp, _, mark = self._unsafe_case(proxy, bad, good, "/upload", "PUT", size)
        self.assertEqual(resp.status, 502)
        self.assertAccess(proxy.access("/upload"), method="PUT", status=502, attempts=1,
                          upstream_addr=addr(bad), bytes_in=size)
        self.assertNothingReached(good, mark, "PUT of 100 KiB reset after its body")

    def test_connect_timeout_retried_as_connect_failure(self):
        hole = Blackhole()
        self.addCleanup(hole.close)
        if not hole.works():
            self.skipTest("a full-backlog loopback listener did not hang connects here")
        good = self.start_backend(name="G")
        hole_addr = "127.0.0.1:%d" % hole.port
        proxy = self.pool_proxy(["http://" + hole_addr, good], connect_timeout_ms=200,
                                top={"admin": ADMIN})
        resp, took = self.get(proxy, "/fast")
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertWithin(took, 0.15, 3.0 * SLOW, "seconds until the answer")
        self.assertAccess(proxy.access("/fast"), status=200, attempts=2,
                          upstream_addr=addr(good), cause="completed")
        self.assertServed(good, "/fast")
        self.assertPoolMetrics(proxy, {(hole_addr, "connect_failure"): 1, (addr(good), "ok"): 1},
                               {"connect_failure": 1})

    def test_header_timeout_retried_as_timeout(self):
        hang = self.start_backend(mode="hang", name="H")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([hang, good], header_timeout_ms=300, retry_on=["timeout"])
        resp, took = self.get(proxy, "/fast")
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertWithin(took, 0.25, 3.0 * SLOW, "seconds until the answer")
        req = hang.wait_request("/fast")
        self.assertEqual(hang.wait_conn_end(req["conn"])["ev"], "cancelled")
        self.assertAccess(proxy.access("/fast"), status=200, attempts=2,
                          upstream_addr=addr(good), cause="completed")
        self.assertServed(good, "/fast")

    def test_post_not_retried_on_timeout(self):
        """A POST whose attempt timed out was sent: never again."""
        hang = self.start_backend(mode="hang", name="H")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([hang, good], per_try_timeout_ms=PER_TRY_MS,
                                retry_on=DEFAULT_RETRY_ON + ["timeout"])
        mark = good.mark()
        resp, took = self.get(proxy, "/upload", method="POST", body=expected_bytes(3000))
        self.assertEqual(resp.status, 504)
        self.assertWithin(took, PER_TRY_MS / 1000 - 0.05, 3.0 * SLOW, "seconds until the 504")
        req = hang.wait_request("/upload")
        hang.wait(ev="body_done", conn=req["conn"], bytes=3000)
        self.assertEqual(hang.wait_conn_end(req["conn"])["ev"], "cancelled")
        self.assertAccess(proxy.access("/upload"), method="POST", status=504, attempts=1,
                          upstream_addr=addr(hang), cause="deadline_exceeded")
        self.assertNothingReached(good, mark, "POST after a per-try timeout")

    def test_post_not_retried_on_503(self):
        bad = self.start_backend(mode="status=503", name="S")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([bad, good], retry_on=["503"])
        mark = good.mark()
        resp, _ = self.get(proxy, "/upload", method="POST", body=expected_bytes(3000))
        self.assertEqual((resp.status, resp.header("x-backend")), (503, "S"))
        req = bad.wait_request("/upload")
        bad.wait(ev="body_done", conn=req["conn"], bytes=3000)
        self.assertAccess(proxy.access("/upload"), method="POST", status=503, attempts=1,
                          upstream_addr=addr(bad))
        self.assertNothingReached(good, mark, "POST answered 503")

    def test_chunked_post_to_down_server_retried(self):
        """A chunked body of 3000 bytes is held as it comes: a connect
        failure sends it again, whole."""
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([down_url(), good])
        body = expected_bytes(3000)
        c = self.client(proxy)
        c.send_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")])
        c.send_chunked(body, piece=1000)
        resp = c.read_response()
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertTrue(resp.body == body, "echoed body differs (%d bytes)" % len(resp.body))
        self.assertAccess(proxy.access("/echo"), method="POST", status=200, attempts=2,
                          upstream_addr=addr(good), bytes_in=len(body))
        self.assertServed(good, "/echo", method="POST", body=len(body))

    def test_post_larger_than_held_to_down_server_not_retried(self):
        """100 KiB cannot be held whole: even a connect failure is not retried."""
        good = self.start_backend(name="G")
        down = down_url()
        proxy = self.pool_proxy([down, good])
        mark = good.mark()
        resp, _ = self.get(proxy, "/upload", method="POST", body=expected_bytes(100 * KIB))
        self.assertEqual(resp.status, 502)
        self.assertAccess(proxy.access("/upload"), method="POST", status=502, attempts=1,
                          cause="upstream_error", upstream_addr=down[len("http://"):])
        self.assertNothingReached(good, mark, "POST of 100 KiB to a down server")

    def test_retry_during_upload_resends_what_is_held(self):
        """The per-try timer fires while the client is still uploading: the
        retry gets the part held so far, then the rest as it comes."""
        hang = self.start_backend(mode="hang", name="H")
        good = self.start_backend(name="G")
        proxy = self.pool_proxy([hang, good], per_try_timeout_ms=PER_TRY_MS,
                                retry_on=DEFAULT_RETRY_ON + ["timeout"])
        body = expected_bytes(40000)
        c = self.client(proxy)
        c.send_request("PUT", "/echo", headers=[("Content-Length", str(len(body)))])
        c.send(body[:15000])
        req = hang.wait_request("/echo")
        end = hang.wait_conn_end(req["conn"])
        self.assertEqual((end["ev"], end.get("phase")), ("cancelled", "reading_body"))
        greq = good.wait_request("/echo")
        c.send(body[15000:])
        resp = c.read_response()
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "G"))
        self.assertTrue(resp.body == body, "echoed body differs (%d bytes)" % len(resp.body))
        good.wait(ev="body_done", conn=greq["conn"], req=greq["req"], bytes=len(body))
        self.assertAccess(proxy.access("/echo"), method="PUT", status=200, attempts=2,
                          upstream_addr=addr(good), bytes_in=len(body))


class HangUp(PoolTest):
    """A client hang-up during a retry ends the exchange: no more attempts."""

    def test_client_gone_during_second_attempt(self):
        a = self.start_backend(mode="reset", name="A")
        b = self.start_backend(mode="hang", name="B")
        c3 = self.start_backend(name="C")
        proxy = self.pool_proxy([a, b, c3], balance="round_robin", retries=2,
                                top={"admin": ADMIN})
        client = self.client(proxy)
        client.send_request("GET", "/fast")
        req = b.wait_request("/fast")
        self.assertDropped(a)
        t_close = client.close()
        end = b.wait_conn_end(req["conn"])
        self.assertEqual(end["ev"], "cancelled", "B's connection end: %r" % end)
        self.assertLess(end["t"] - t_close, 1_000_000 * SLOW, "us from client close to B's cancel")
        self.assertAccess(proxy.access("/fast"), status=499, attempts=2,
                          upstream_addr=addr(b), cause="client_disconnect")
        self.assertEqual(len(b.requests()), 1)
        self.assertNothingReached(c3, 0, "a third attempt after the client left")
        # B's attempt was cancelled by the client: not B's fault, not counted
        self.assertPoolMetrics(proxy, {(addr(a), "reset"): 1}, {"reset": 1})


class Budget(PoolTest):
    """timeout_ms bounds every attempt together; each carries what is left."""

    def _deadlines(self, backends):
        """(t, backend name, X-Request-Timeout-Ms) of every request, in time order."""
        out = []
        for b in backends:
            for req in b.requests():
                hdrs = b.headers_of(req)
                self.assertIn("x-request-timeout-ms", hdrs, "no deadline header at %s" % b.name)
                out.append((req["t"], b.name, int(hdrs["x-request-timeout-ms"][0])))
        return sorted(out)

    def _two_hanging(self, per_try_ms, timeout_ms):
        """Two hanging servers, retry_on timeout, retries = 5: one GET;
        (client send time in us, attempts, deadlines)."""
        h1 = self.start_backend(mode="hang", name="H1")
        h2 = self.start_backend(mode="hang", name="H2")
        proxy = self.pool_proxy([h1, h2], retries=5, per_try_timeout_ms=per_try_ms,
                                timeout_ms=timeout_ms, retry_on=DEFAULT_RETRY_ON + ["timeout"])
        t_send = now_us()
        resp, took = self.get(proxy, "/fast")
        self.assertEqual(resp.status, 504)
        self.assertWithin(took, timeout_ms / 1000.0 - 0.05, timeout_ms / 1000.0 + 2.0 * SLOW,
                          "seconds until the 504")
        line = proxy.access("/fast")
        self.assertAccess(line, status=504, cause="deadline_exceeded")
        attempts = int(line["attempts"])
        # every attempt was made and then cancelled at its server
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            reqs = [(b, r) for b in (h1, h2) for r in b.requests()]
            if len(reqs) >= attempts or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self.assertEqual(len(reqs), attempts, "requests the servers saw vs attempts")
        for b, r in reqs:
            self.assertEqual(b.wait_conn_end(r["conn"])["ev"], "cancelled")
        return t_send, attempts, self._deadlines([h1, h2])

    def assertBudget(self, seen, k, t_send, per_try_ms, timeout_ms):
        """Attempt k (from 0) of seen carried what was left of its budget, the
        least of timeout_ms since the request came and per_try_ms since the
        attempt began: no more than per_try_ms nor timeout_ms less the k
        per-try timeouts before it; no less than those budgets less the time
        from the client's send (the k per-try timeouts before the attempt)
        to the request's arrival at the backend."""
        t, name, ms = seen[k]
        elapsed = (t - t_send) // 1000
        high = min(per_try_ms, timeout_ms - k * per_try_ms)
        low = min(timeout_ms - elapsed, (k + 1) * per_try_ms - elapsed) - 2
        self.assertWithin(ms, low, high, "deadline header of attempt %d (at %s)" % (k + 1, name))

    def test_timeout_bounds_all_attempts(self):
        """per_try 400 ms, timeout 1000 ms: attempts at 0, 400 and 800 ms;
        the third has only what is left of the 1000 (BUDGET_X times each)."""
        per_try, timeout = 400 * BUDGET_X, 1000 * BUDGET_X
        t_send, attempts, seen = self._two_hanging(per_try, timeout)
        self.assertWithin(attempts, 2, 3, "attempts")
        self.assertEqual([name for _, name, _ in seen], ["H1", "H2", "H1"][:attempts])
        for k in range(attempts):
            self.assertBudget(seen, k, t_send, per_try, timeout)
        if attempts == 3:
            self.assertLess(seen[2][2], seen[0][2], "third attempt's budget vs the first's: %s"
                            % seen)

    def test_retry_carries_less_budget(self):
        """per_try 600 ms, timeout 1000 ms: the first attempt gets 600, the
        second what is left of the 1000 (at most 400; BUDGET_X times each)."""
        per_try, timeout = 600 * BUDGET_X, 1000 * BUDGET_X
        t_send, attempts, seen = self._two_hanging(per_try, timeout)
        self.assertEqual(attempts, 2)
        self.assertEqual([name for _, name, _ in seen], ["H1", "H2"])
        self.assertBudget(seen, 0, t_send, per_try, timeout)
        self.assertBudget(seen, 1, t_send, per_try, timeout)
        self.assertLess(seen[1][2], seen[0][2], "the second backend's budget is not smaller: %s"
                        % seen)


class RetryBudget(PoolTest):
    """At most max(3, 20 % of the route's requests in flight) retries in flight per
    worker; a retry over the budget waits for a slot (within its deadline)."""

    def test_fourth_concurrent_retry_waits_for_a_slot(self):
        bad = self.start_backend(mode="reset", name="R")
        hang = self.start_backend(mode="hang", name="H")
        proxy = self.pool_proxy([bad, hang], eject_after=0)
        held = []
        for i in range(3):
            c = self.client(proxy)
            c.send_request("GET", "/fast?held=%d" % i)
            hang.wait_request("/fast?held=%d" % i)
            held.append(c)
        bad.wait_count(3, ev="request")
        self.assertEqual(len(bad.requests()), 3, "each held request tried R first")
        mark_h = hang.mark()
        # Three retries in flight out of four requests: the fourth's retry waits.
        fourth = self.client(proxy)
        fourth.send_request("GET", "/fast?fourth")
        bad.wait_request("/fast?fourth")
        self.assertEqual(len(bad.requests()), 4)
        self.assertNothingReached(hang, mark_h, "the fourth request's retry, over the budget")
        self.assertEqual(proxy.accesses(path="/fast?fourth"), [], "the fourth is still waiting")
        # One held request ends: its slot goes to the fourth, whose retry now runs.
        held[0].close()
        hang.wait_request("/fast?fourth")
        fourth.close()
        for c in held[1:]:
            c.close()
        self.clients = []
        self.assertAccess(self.access(proxy, "/fast?fourth"), status=499, attempts=2,
                          upstream_addr=addr(hang))
        lines = proxy.log.wait_count(3, lambda e: e.get("type") == "access" and
                                     e.get("path", "").startswith("/fast?held="),
                                     what="access lines of the held requests")
        self.assertEqual({(e["status"], e["attempts"]) for e in lines}, {("499", "2")})


CONFIG_HEAD = 'listen = "127.0.0.1:0";\nworkers = 1;\nroutes = (\n'


class ConfigErrors(unittest.TestCase):
    """Pool keys refused by -t with FILE:LINE."""

    def check_refused(self, route_lines, bad_line, needle):
        """route_lines go in a route after CONFIG_HEAD; bad_line is the 1-based line
        of the file the error must name, needle a part of its message."""
        text = CONFIG_HEAD + "  { " + "\n    ".join(route_lines) + " }\n);\n"
        path = write_temp(text)
        rc, out = run_proxy_cli(["-t", "-c", path])
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d:" % (path, bad_line), out, "config:\n%s" % text)
        self.assertIn(needle, out)

    def test_unknown_retry_on_value(self):
        self.check_refused(['name = "pool"; prefix = "/";',
                            'upstream = ( "http://127.0.0.1:9001", "http://127.0.0.1:9002" );',
                            'retry_on = ( "reset", "sometimes" );'], 6,
                           "unknown 'retry_on' value 'sometimes'")

    def test_empty_upstream_list(self):
        self.check_refused(['name = "pool"; prefix = "/";',
                            'upstream = ( );'], 5, "'upstream' must name at least one server")

    def test_mixed_base_paths(self):
        self.check_refused(['name = "pool"; prefix = "/";',
                            'upstream = ( "http://127.0.0.1:9001/a",',
                            '             "http://127.0.0.1:9002/b" );'], 6,
                           "same base path: '/a' and '/b'")


class Resources(PoolTest):
    """Held bodies and their connections all go when their clients do."""

    def _settle(self, probe, limit, timeout):
        """Poll probe() until it is <= limit or timeout passes; the last value."""
        deadline = time.monotonic() + timeout
        value = probe()
        while value > limit and time.monotonic() < deadline:
            time.sleep(0.05)
            value = probe()
        return value

    def _held_posts(self, proxy, hang, n, tag):
        """n POSTs of 1 KiB each, all held at hang (mode hang), then their clients
        gone: every upstream connection closes and every request is logged as 499.
        Returns (fds, RSS KiB) while they were held."""
        mark = hang.mark()
        body = b"p" * KIB
        clients = [self.client(proxy) for _ in range(n)]
        for i, c in enumerate(clients):
            c.send_request("POST", "/upload?%s=%d" % (tag, i), body=body)
        hang.wait_count(n, timeout=20.0 * SLOW, start=mark, ev="body_done", bytes=KIB,
                        what="ev=body_done bytes=1024")
        held = proxy.fd_count(), proxy.rss_kib()
        conns = {e["conn"] for e in hang.requests(mark)}
        self.assertEqual(len(conns), n, "one upstream connection per held POST")
        for c in clients:
            c.close()
        self.clients = []
        hang.wait_count(n, lambda e: e.get("conn") in conns, timeout=20.0 * SLOW, start=mark,
                        ev="close", by="peer", what="ev=close of a held POST's connection")
        lines = proxy.log.wait_count(n, lambda e: e.get("type") == "access" and
                                     e.get("path", "").startswith("/upload?%s=" % tag),
                                     timeout=20.0 * SLOW, what="access lines of the held POSTs")
        self.assertEqual({(e["status"], e["cause"], e["attempts"]) for e in lines},
                         {("499", "client_disconnect", "1")})
        return held

    def test_many_held_posts_released(self):
        """200 POSTs of 1 KiB held (for a replay) at a hanging server, then
        their clients gone, twice.  The descriptors come back to the
        baseline each time.  Memory: a held request costs at most 64 KiB
        of RSS; RSS does not come back down after a round (glibc keeps the
        worker arena's freed blocks: the heap in use does come back, see
        valgrind's massif), so after two rounds it is only bounded
        generously."""
        n = 200
        hang = self.start_backend(mode="hang", name="H")
        proxy = self.pool_proxy([hang])
        warm = self.client(proxy)
        self.assertEqual(warm.request("GET", "/healthz").status, 200)
        with_client = proxy.fd_count()
        warm.close()
        self.clients = []
        fds0 = self._settle(proxy.fd_count, with_client - 1, 5.0 * SLOW)
        rss0 = proxy.rss_kib()
        fds_held, rss_held = self._held_posts(proxy, hang, n, "one")
        # a client and an upstream connection each (one of them may be the
        # warm request's pooled one)
        self.assertGreaterEqual(fds_held, fds0 + 2 * n - 1, "fds while %d POSTs were held" % n)
        # AddressSanitizer (make check SANITIZE=...) pads and quarantines
        # every allocation: its own overhead, not the daemon's.
        per_held = 64 * (4 if os.environ.get("SANITIZE") or VALGRIND else 1)
        self.assertLessEqual(rss_held - rss0, per_held * n, "RSS KiB while %d POSTs were held: "
                             "%d, before: %d" % (n, rss_held, rss0))
        fds = self._settle(proxy.fd_count, fds0, 10.0 * SLOW)
        self.assertLessEqual(fds, fds0, "proxy fds: %d before, %d held, %d after"
                             % (fds0, fds_held, fds))
        rss1 = proxy.rss_kib()
        self._held_posts(proxy, hang, n, "two")
        fds = self._settle(proxy.fd_count, fds0, 10.0 * SLOW)
        self.assertLessEqual(fds, fds0, "proxy fds after the second round")
        rss2 = proxy.rss_kib()
        self.assertLessEqual(rss2 - rss0, 32 * KIB * (4 if os.environ.get("SANITIZE") or VALGRIND else 1),
                             "proxy RSS KiB: %d before, %d held, %d "
                             "after one round of %d, %d after two"
                             % (rss0, rss_held, rss1, n, rss2))
        self.assertTrue(proxy.alive())


if __name__ == "__main__":
    unittest.main()
