"""test_upstream_health.py - upstream health (SPEC section 8): passive ejection, its
trial and doubling, active checks, never a 503 only for health, the
ctxproxy_upstream_server_up gauge and what a SIGHUP reload keeps.

Every test looks at both hops: what the client got (status, X-Backend, the
access line's attempts= and upstream_addr=) and what each backend saw (its
request events; the health checks are its /healthz requests).  Passive
health is per worker, so the tests that count on it run one worker."""

import collections
import os
import select
import signal
import socket
import statistics
import time

from harness import VALGRIND, Client, ProxyTest, WAIT_TIMEOUT, config_text, free_port, route
from test_ops import http_get, parse_prometheus

ADMIN = "127.0.0.1:0"
UP = "ctxproxy_upstream_server_up"
ATTEMPTS = "ctxproxy_upstream_attempts_total"
EJECTED = "upstream server ejected"
RESTORED = "upstream server restored"
DOWN = "upstream server down"
UP_MSG = "upstream server up"
# Fast checks: a 503 marks a server down after two of them (~200 ms).  The
# timeout is generous: on a loaded machine a healthy backend has been seen to
# take almost 2 s to read a check, and a timed-out check counts as failed.
HEALTH = {"path": "/healthz", "interval_ms": 100, "timeout_ms": 3000, "rise": 1, "fall": 2}

# One request as the client sent it: the path it asked for, the path its
# backend sees (the prefix stripped), the response, when it was sent and done
# (time.monotonic()).
Sent = collections.namedtuple("Sent", "path upath resp t_send t_done")


def addr(port):
    """A server as the log and the metrics name it."""
    return "127.0.0.1:%d" % port


def is_check(e):
    """A backend request event that is a health check (GET /healthz)."""
    return e.get("path") == "/healthz"


def is_sync(e):
    """A backend request event that is one of this file's direct barrier requests."""
    return e.get("path", "").startswith("/healthz?sync=")


class Silent:
    """A loopback listener that never answers: a connect completes in the
    kernel's queue, the request goes out, and no byte ever comes back.  The
    test may take queued connections (accept, received) to see them."""

    def __init__(self, backlog=64):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.url = "http://%s" % addr(self.port)
        self.conns = []

    def received(self):
        """The request heads sent on every connection queued so far (accepted
        now and read up to the blank line, or what came within 1 s)."""
        self.sock.setblocking(False)
        out = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                break
            conn.settimeout(1.0)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            conn.close()
            out.append(data)
        return out

    def accept(self, timeout):
        """The next queued connection (kept open until close()), or None after
        timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            conn, _ = self.sock.accept()
        except (socket.timeout, TimeoutError, BlockingIOError):
            return None
        self.conns.append(conn)
        return conn

    def close(self):
        """Close the listener (and with it every queued connection)."""
        for c in self.conns:
            c.close()
        self.sock.close()


class HealthTest(ProxyTest):
    """ProxyTest plus numbered requests, barriers, scrapes and reloads."""

    def setUp(self):
        super().setUp()
        self.seq = 0

    def proxy_for(self, routes, **top):
        """A proxy with an admin listener (for /metrics)."""
        top.setdefault("admin", ADMIN)
        p = self.start_proxy(routes, **top)
        p.top = top
        return p

    def get(self, proxy, tag, prefix=""):
        """GET PREFIX/fast?req=TAG-N on a fresh connection; 200 expected.  A Sent."""
        self.seq += 1
        upath = "/fast?req=%s-%d" % (tag, self.seq)
        path = prefix + upath
        c = Client(proxy.port)
        try:
            t_send = time.monotonic()
            resp = c.request("GET", path)
            t_done = time.monotonic()
        finally:
            c.close()
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"), "GET %s" % path)
        return Sent(path, upath, resp, t_send, t_done)

    def access(self, proxy, sent, **kv):
        """The access line of sent (its exact path); kv checked on it."""
        line = proxy.log.wait(lambda e: e.get("type") == "access" and e.get("path") == sent.path,
                              what="type=access path=%s" % sent.path)
        self.assertAccess(line, **kv)
        return line

    def sync(self, backend):
        """A barrier: every event backend printed before now has been read (a
        direct request's event is printed after them).  /healthz answers in
        every -m mode (with the code set by set_health)."""
        self.seq += 1
        path = "/healthz?sync=%d" % self.seq
        start = backend.mark()
        self.assertIsNotNone(backend.get(path).status, "direct GET %s" % path)
        backend.wait(ev="request", path=path, start=start)

    def served(self, backend, start=0):
        """The paths of the proxied requests backend saw since start: neither
        health checks nor barrier requests."""
        return [e["path"] for e in backend.requests(start) if not is_check(e) and not is_sync(e)]

    def scrape(self, proxy):
        """A strict parse of GET /metrics: (the parsed scrape, {(route, server): up})."""
        resp = http_get(proxy.admin_port(), "/metrics")
        self.assertEqual(resp.status, 200, "GET /metrics")
        s = parse_prometheus(resp.body.decode("utf-8"))
        self.assertIn(UP, s.families, "no %s family" % UP)
        self.assertEqual(s.families[UP].type, "gauge", "TYPE of %s" % UP)
        ups = {}
        for labels, value in s.samples(UP):
            self.assertEqual(set(labels), {"route", "server"}, "%s labels" % UP)
            key = (labels["route"], labels["server"])
            self.assertNotIn(key, ups, "%s lists %s twice" % (UP, key))
            self.assertIn(value, (0.0, 1.0), "%s%s" % (UP, key))
            ups[key] = value
        return s, ups

    def failures_of(self, s, route_name, port):
        """ctxproxy_upstream_attempts_total{outcome=connect_failure} of a server (0 if absent)."""
        v = s.get(ATTEMPTS, route=route_name, server=addr(port), outcome="connect_failure")
        return 0 if v is None else v

    def reload(self, proxy, routes):
        """Rewrite proxy's config (same top-level settings) and SIGHUP it; returns the
        log mark taken before the signal, once msg=reloaded is logged."""
        path = proxy.config_path
        with open(path + ".tmp", "w") as f:
            f.write(config_text(routes, **proxy.top))
        os.replace(path + ".tmp", path)
        mark = proxy.log.mark()
        proxy.signal(signal.SIGHUP)
        proxy.log.wait(start=mark, msg="reloaded")
        self.assertEqual(proxy.log.find(start=mark, msg="reload failed: the running "
                                        "configuration stays"), [])
        return mark

    def pool_with_down(self, **opts):
        """Backend A and a port nothing listens on, route "pool" over both, one
        worker: (A, the down port, proxy)."""
        good = self.start_backend(name="A")
        down = free_port()
        proxy = self.proxy_for([route("pool", "/", [good, "http://" + addr(down)], **opts)],
                               workers=1)
        return good, down, proxy

    def eject(self, proxy, down, limit=8, start=0):
        """Requests until the log shows the down server ejected (from log index
        start on): (the ejection line, every Sent).  The ejection is logged
        before the response, so after a request's access line the log holds it
        if that request ejected."""
        sent = []
        for _ in range(limit):
            sent.append(self.get(proxy, "eject"))
            self.access(proxy, sent[-1])
            found = proxy.log.find(start=start, msg=EJECTED, server=addr(down))
            if found:
                return found[0], sent
        self.fail("no %r line after %d requests" % (EJECTED, limit))


class PassiveHealth(HealthTest):
    """eject_after consecutive failures eject a server; a trial when its time is over."""

    def test_ejected_after_consecutive_failures(self):
        """eject_after=2: two connect failures (each retried onto A) eject the down
        server; then every request is one attempt on A and the gauge shows it 0."""
        good, down, proxy = self.pool_with_down(eject_after=2, eject_ms=60000, retries=1)
        line, sent = self.eject(proxy, down)
        self.assertEqual((line.get("level"), line.get("route"), line.get("failures"),
                          line.get("for_ms")), ("warn", "pool", "2", "60000"), line)
        attempts = [self.access(proxy, s, status=200, upstream_addr=addr(good.port))["attempts"]
                    for s in sent]
        self.assertEqual(attempts.count("2"), 2, "requests retried before the ejection: %s"
                         % attempts)
        self.assertEqual(attempts[-1], "2", "the ejecting request was a retried one")
        self.assertEqual(set(attempts), {"1", "2"}, attempts)
        for s in sent:
            self.assertEqual(s.resp.header("x-backend"), "A")
        s, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(good.port)): 1, ("pool", addr(down)): 0})
        self.assertEqual(self.failures_of(s, "pool", down), 2)

        b_mark, log_mark = good.mark(), proxy.log.mark()
        after = [self.get(proxy, "after") for _ in range(10)]
        for a in after:
            self.assertEqual(a.resp.header("x-backend"), "A", a.path)
            self.access(proxy, a, attempts=1, upstream_addr=addr(good.port), status=200)
        self.sync(good)
        self.assertEqual(self.served(good, b_mark), [a.upath for a in after],
                         "backend A saw exactly the requests after the ejection")
        self.assertEqual(proxy.log.find(start=log_mark, msg=EJECTED), [], "a second ejection")
        s, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(good.port)): 1, ("pool", addr(down)): 0})
        self.assertEqual(self.failures_of(s, "pool", down), 2,
                         "an ejected server got attempts")

    def test_trial_doubles_then_restores(self):
        """eject_ms=300: once 300 ms passed one request tries the server again
        (attempts=2), fails, and ejects it for 600 ms; with a backend on its port
        the next trial (after 600 ms) is answered: restored, gauge 1, requests again."""
        good, down, proxy = self.pool_with_down(eject_after=2, eject_ms=300, retries=1)
        first, sent = self.eject(proxy, down)
        self.assertEqual((first.get("failures"), first.get("for_ms")), ("2", "300"), first)
        ejected_at = sent[-1].t_send           # the ejection came no sooner
        log_mark = proxy.log.mark()

        # Until the trial: one attempt each, on A.
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            s = self.get(proxy, "wait")
            if self.access(proxy, s)["attempts"] != "1":
                break
            self.assertEqual(s.resp.header("x-backend"), "A")
            self.assertLess(time.monotonic(), deadline, "no trial within %.0fs" % WAIT_TIMEOUT)
            time.sleep(0.02)
        trial = s
        self.access(proxy, trial, attempts=2, status=200, upstream_addr=addr(good.port))
        self.assertEqual(trial.resp.header("x-backend"), "A")
        self.assertGreaterEqual(trial.t_done - ejected_at, 0.3,
                                "the trial came before the 300 ms ejection was over")
        again = proxy.log.find(start=log_mark, msg=EJECTED)
        self.assertEqual(len(again), 1, "one ejection per failed trial: %s" % again)
        self.assertEqual((again[0].get("route"), again[0].get("server"), again[0].get("failures"),
                          again[0].get("for_ms")), ("pool", addr(down), "3", "600"), again[0])
        s, ups = self.scrape(proxy)
        self.assertEqual(self.failures_of(s, "pool", down), 3, "attempts on the down server")
        self.assertEqual(ups[("pool", addr(down))], 0)

        # The server comes up; no request runs until it listens.
        back = self.start_backend(name="B", port=down)
        reejected_at = trial.t_send
        log_mark = proxy.log.mark()
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            s = self.get(proxy, "restore")
            line = self.access(proxy, s, attempts=1, status=200)
            if s.resp.header("x-backend") == "B":
                break
            self.assertEqual(line["upstream_addr"], addr(good.port))
            self.assertLess(time.monotonic(), deadline, "no trial on B within %.0fs"
                            % WAIT_TIMEOUT)
            time.sleep(0.02)
        self.access(proxy, s, upstream_addr=addr(down))
        back.wait(ev="request", path=s.upath)
        self.assertGreaterEqual(s.t_done - reejected_at, 0.6,
                                "the second trial came before the 600 ms ejection was over")
        restored = proxy.log.wait(start=log_mark, msg=RESTORED)
        self.assertEqual((restored.get("route"), restored.get("server")), ("pool", addr(down)))
        self.assertEqual(proxy.log.find(start=log_mark, msg=EJECTED), [])
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(good.port)): 1, ("pool", addr(down)): 1})

        # Both get requests again, each in one attempt.
        a_mark, b_mark = good.mark(), back.mark()
        more = [self.get(proxy, "both") for _ in range(4)]
        for m in more:
            self.access(proxy, m, attempts=1, status=200)
        self.sync(good)
        self.sync(back)
        on_a, on_b = self.served(good, a_mark), self.served(back, b_mark)
        self.assertEqual(sorted(on_a + on_b), sorted(m.upath for m in more))
        self.assertTrue(on_a and on_b, "round robin over both: A %s, B %s" % (on_a, on_b))
        for m in more:
            want = "A" if m.upath in on_a else "B"
            self.assertEqual(m.resp.header("x-backend"), want, m.path)

        # Restored, the server's ejection time is eject_ms again.
        back.stop()
        log_mark = proxy.log.mark()
        line, sent = self.eject(proxy, down, start=log_mark)
        self.assertEqual((line.get("failures"), line.get("for_ms")), ("2", "300"), line)
        for x in sent:
            self.access(proxy, x, status=200, upstream_addr=addr(good.port))

    def test_one_trial_at_a_time(self):
        """One worker, a server that takes connections and never answers,
        eject_after=1, per_try_timeout_ms=1000: while its trial hangs, other
        requests keep going to A in one attempt; the trial times out, is retried
        on A, and the server is ejected again for twice as long."""
        good = self.start_backend(name="A")
        silent = Silent()
        self.addCleanup(silent.close)
        proxy = self.proxy_for([route("pool", "/", [good, silent.url], eject_after=1,
                                      eject_ms=300, retries=1, per_try_timeout_ms=1000,
                                      retry_on=["connect_failure", "reset", "timeout"])],
                               workers=1)
        first, sent = self.eject(proxy, silent.port)
        self.assertEqual((first.get("failures"), first.get("for_ms")), ("1", "300"), first)
        self.access(proxy, sent[-1], attempts=2, status=200, upstream_addr=addr(good.port))
        self.assertIsNotNone(silent.accept(0), "the first attempt's connection")
        log_mark = proxy.log.mark()

        # Requests one by one until one is held by a new connection to the server
        # (it connects before any response can come: the server comes first).
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            self.seq += 1
            path = "/fast?req=trial-%d" % self.seq
            c = self.client(proxy)
            t_send = time.monotonic()
            c.send_request("GET", path)
            ready, _, _ = select.select([silent.sock, c.sock], [], [],
                                        max(0.0, deadline - time.monotonic()))
            self.assertTrue(ready, "neither a trial nor a response within %.0fs"
                            % WAIT_TIMEOUT)
            if silent.accept(0) is not None:
                break
            resp = c.read_response()
            self.assertEqual((resp.status, resp.header("x-backend")), (200, "A"), path)
            self.access(proxy, Sent(path, path, resp, t_send, 0), attempts=1)
            time.sleep(0.02)
        # The trial runs (up to 1 s): the others are not sent to the server.
        during = [self.get(proxy, "during") for _ in range(3)]
        for d in during:
            self.assertEqual(d.resp.header("x-backend"), "A", d.path)
            self.access(proxy, d, attempts=1, status=200, upstream_addr=addr(good.port))
        resp = c.read_response()
        t_done = time.monotonic()
        self.assertEqual((resp.status, resp.header("x-backend")), (200, "A"), path)
        self.access(proxy, Sent(path, path, resp, t_send, t_done), attempts=2,
                    upstream_addr=addr(good.port))
        self.assertGreaterEqual(t_done - t_send, 0.9, "the trial ended before its 1 s")
        again = proxy.log.wait(start=log_mark, msg=EJECTED)
        self.assertEqual((again.get("server"), again.get("failures"), again.get("for_ms")),
                         (addr(silent.port), "2", "600"), again)
        self.assertEqual(len(proxy.log.find(start=log_mark, msg=EJECTED)), 1)
        self.assertIsNone(silent.accept(0), "a second attempt on the server during its trial")
        s, _ = self.scrape(proxy)
        self.assertEqual(s.get(ATTEMPTS, route="pool", server=addr(silent.port),
                               outcome="timeout"), 2)

    def test_client_deadline_blames_no_server(self):
        """A slow server (slowhead=1500) under eject_after=1: a client's own short
        deadline (X-Request-Timeout-Ms: 200) gives 504 but no timeout outcome and
        no ejection; the route's own timeout_ms running out does both."""
        slow = self.start_backend(mode="slowhead=1500", name="S")
        proxy = self.proxy_for([
            route("client", "/client/", [slow], strip_prefix=True, eject_after=1,
                  eject_ms=60000, retries=0),
            route("route", "/route/", [slow], strip_prefix=True, eject_after=1,
                  eject_ms=60000, retries=0, timeout_ms=200)], workers=1)
        for prefix, headers in (("/client", [("X-Request-Timeout-Ms", "200")]), ("/route", [])):
            c = Client(proxy.port)
            try:
                resp = c.request("GET", prefix + "/fast", headers=headers)
            finally:
                c.close()
            self.assertEqual(resp.status, 504, prefix)
            proxy.log.wait(lambda e, p=prefix: e.get("type") == "access" and
                           e.get("path") == p + "/fast", what="access %s/fast" % prefix)
        proxy.log.wait(msg=EJECTED, route="route", server=addr(slow.port))
        self.assertEqual(proxy.log.find(msg=EJECTED, route="client"), [],
                         "the client's own deadline ejected the server")
        s, ups = self.scrape(proxy)
        self.assertIsNone(s.get(ATTEMPTS, route="client", server=addr(slow.port),
                                outcome="timeout"), "a timeout outcome for the client's deadline")
        self.assertEqual(s.get(ATTEMPTS, route="route", server=addr(slow.port),
                               outcome="timeout"), 1.0)
        self.assertEqual(ups[("client", addr(slow.port))], 1.0)

    def test_reset_counts_a_5xx_does_not(self):
        """A server that resets every request is ejected after eject_after=2 (each
        reset retried on A); one that answers 503 never is: a response head ends
        a run of failures, and its 503s reach the client."""
        good = self.start_backend(name="A")
        rst = self.start_backend(mode="reset", name="R")
        err = self.start_backend(mode="status=503", name="E")
        proxy = self.proxy_for([
            route("rst", "/rst/", [good, rst], strip_prefix=True, eject_after=2,
                  eject_ms=60000, retries=1),
            route("err", "/err/", [good, err], strip_prefix=True, eject_after=2,
                  eject_ms=60000, retries=1)], workers=1)
        sent = []
        while not proxy.log.find(msg=EJECTED, server=addr(rst.port)):
            self.assertLess(len(sent), 8, "R not ejected after %d requests" % len(sent))
            sent.append(self.get(proxy, "rst", prefix="/rst"))
            self.access(proxy, sent[-1], status=200, upstream_addr=addr(good.port))
        line = proxy.log.find(msg=EJECTED, server=addr(rst.port))[0]
        self.assertEqual((line.get("route"), line.get("failures")), ("rst", "2"), line)
        self.assertEqual(len(rst.wait_count(2, ev="dropped", how="rst")), 2)
        r_mark = rst.mark()
        for _ in range(4):
            x = self.get(proxy, "rst", prefix="/rst")
            self.access(proxy, x, attempts=1, upstream_addr=addr(good.port))
        self.sync(rst)
        self.assertEqual(self.served(rst, r_mark), [], "an ejected server got requests")

        e_mark = err.mark()
        statuses, paths = [], []
        for _ in range(8):
            self.seq += 1
            paths.append("/err/fast?req=err-%d" % self.seq)
            c = Client(proxy.port)
            try:
                resp = c.request("GET", paths[-1])
            finally:
                c.close()
            statuses.append((resp.status, resp.header("x-backend")))
        for path, (status, _) in zip(paths, statuses):
            line = proxy.log.wait(lambda e, p=path: e.get("type") == "access" and
                                  e.get("path") == p, what="type=access path=%s" % path)
            self.assertAccess(line, attempts=1, status=status)
        self.assertEqual(sorted(set(statuses)), [(200, "A"), (503, "E")], statuses)
        self.sync(err)
        self.assertEqual(len(self.served(err, e_mark)), statuses.count((503, "E")))
        self.assertEqual(proxy.log.find(msg=EJECTED, server=addr(err.port)), [],
                         "a server that answers 503 was ejected")
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("rst", addr(good.port)): 1, ("rst", addr(rst.port)): 0,
                               ("err", addr(good.port)): 1, ("err", addr(err.port)): 1})

    def test_eject_after_zero_never_ejects(self):
        """eject_after=0: the down server is never ejected however often it fails;
        round robin keeps trying it (never two requests in a row without it)."""
        good, down, proxy = self.pool_with_down(eject_after=0, retries=1)
        b_mark = good.mark()
        sent = [self.get(proxy, "noeject") for _ in range(12)]
        attempts = [self.access(proxy, s, status=200, upstream_addr=addr(good.port))["attempts"]
                    for s in sent]
        for s in sent:
            self.assertEqual(s.resp.header("x-backend"), "A")
        self.assertEqual(set(attempts) - {"1", "2"}, set(), attempts)
        self.assertNotIn("1,1", ",".join(attempts),
                         "two requests in a row skipped the down server: %s" % attempts)
        self.assertEqual(proxy.log.find(msg=EJECTED), [], "ejected with eject_after=0")
        self.sync(good)
        self.assertEqual(self.served(good, b_mark), [s.upath for s in sent])
        s, ups = self.scrape(proxy)
        self.assertEqual(self.failures_of(s, "pool", down), attempts.count("2"))
        self.assertEqual(s.get("ctxproxy_retries_total", route="pool", reason="connect_failure"),
                         attempts.count("2"))
        self.assertEqual(ups, {("pool", addr(good.port)): 1, ("pool", addr(down)): 1},
                         "a server never ejected nor checked is up")


class ActiveHealth(HealthTest):
    """`health`: GET path every interval_ms; fall failures down, rise passes up."""

    def pair(self, health=HEALTH, **top):
        """Backends A and B, route "pool" over both with health checks."""
        a = self.start_backend(name="A")
        b = self.start_backend(name="B")
        t0 = time.monotonic()
        proxy = self.proxy_for([route("pool", "/", [a, b], health=health)], **top)
        proxy.t0 = t0
        return a, b, proxy

    def assertCheck(self, backend):
        """backend gets health checks: GET /healthz with Host: its own host:port."""
        e = backend.wait(ev="request", path="/healthz")
        self.assertEqual(e.get("method"), "GET", e)
        self.assertEqual(backend.headers_of(e).get("host"), [addr(backend.port)], e)

    def test_down_then_up(self):
        """B's /healthz answers 503: B is logged down, its gauge is 0, every
        request goes to A and B sees only checks; 200 again: up, B serves again."""
        a, b, proxy = self.pair()
        self.assertCheck(a)
        self.assertCheck(b)
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 1, ("pool", addr(b.port)): 1})

        log_mark = proxy.log.mark()
        b.set_health(503)
        line = proxy.log.wait(start=log_mark, msg=DOWN, server=addr(b.port))
        self.assertEqual((line.get("level"), line.get("route"), line.get("checks_failed")),
                         ("warn", "pool", "2"), line)
        b.wait_count(2, ev="response", status="503", what="B's failing checks")
        self.assertEqual(proxy.log.find(start=log_mark, msg=DOWN, server=addr(a.port)), [])
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 1, ("pool", addr(b.port)): 0})

        a_mark, b_mark = a.mark(), b.mark()
        sent = [self.get(proxy, "down") for _ in range(10)]
        for s in sent:
            self.assertEqual(s.resp.header("x-backend"), "A", s.path)
            self.access(proxy, s, attempts=1, upstream_addr=addr(a.port))
        self.sync(a)
        self.sync(b)
        self.assertEqual(sorted(self.served(a, a_mark)), sorted(s.upath for s in sent))
        self.assertEqual(self.served(b, b_mark), [], "a down server got requests")

        log_mark = proxy.log.mark()
        b.set_health(200)
        line = proxy.log.wait(start=log_mark, msg=UP_MSG, server=addr(b.port))
        self.assertEqual((line.get("route"), line.get("checks_passed")), ("pool", "1"), line)
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 1, ("pool", addr(b.port)): 1})
        b_mark = b.mark()
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            s = self.get(proxy, "up")
            if s.resp.header("x-backend") == "B":
                break
            self.assertLess(time.monotonic(), deadline, "B got no request within %.0fs"
                            % WAIT_TIMEOUT)
        self.access(proxy, s, attempts=1, upstream_addr=addr(b.port))
        b.wait(ev="request", path=s.upath, start=b_mark)
        # Every interval_ms, not more often: n checks need (n - 1) intervals
        # from their start, and the first started after t0.
        checks = [e for e in a.requests() if is_check(e)]
        span = checks[-1]["t"] / 1e6 - proxy.t0
        self.assertLessEqual(len(checks), span / 0.1 + 1,
                             "%d checks of A in %.2fs at interval_ms=100" % (len(checks), span))

    def test_ejected_and_down_still_served(self):
        """One worker; R resets every request (its /healthz answers) and is
        ejected, B is down by its checks: every server is unusable, so both are
        used: each request is answered 200 by B, after a reset by R or not."""
        r = self.start_backend(mode="reset", name="R")
        b = self.start_backend(name="B")
        proxy = self.proxy_for([route("pool", "/", [r, b], health=HEALTH, eject_after=2,
                                      eject_ms=60000, retries=1)], workers=1)
        self.eject(proxy, r.port)
        log_mark = proxy.log.mark()
        b.set_health(503)
        proxy.log.wait(start=log_mark, msg=DOWN, server=addr(b.port))
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(r.port)): 0, ("pool", addr(b.port)): 0})
        r_mark, b_mark = r.mark(), b.mark()
        sent = [self.get(proxy, "mixed") for _ in range(6)]
        attempts = []
        for x in sent:
            self.assertEqual(x.resp.header("x-backend"), "B", x.path)
            line = self.access(proxy, x, status=200, upstream_addr=addr(b.port))
            attempts.append(line["attempts"])
        self.sync(r)
        self.sync(b)
        self.assertEqual(self.served(b, b_mark), [x.upath for x in sent])
        dropped = r.find(start=r_mark, ev="dropped")
        self.assertEqual(len(dropped), attempts.count("2"), "R's resets vs retried requests")
        self.assertGreaterEqual(len(dropped), 1, "the ejected server was never used: %s"
                                % attempts)

    def test_3xx_passes_4xx_fails(self):
        """A check answered 302 passes (B stays up through several), one answered
        404 fails (B down after two)."""
        a, b, proxy = self.pair()
        b.set_health(302)
        mark = b.mark()
        # Check k+1 is sent only after check k's result was counted.
        b.wait_count(3, start=mark, ev="response", status="302")
        b.wait_count(4, start=mark, ev="request", path="/healthz")
        _, ups = self.scrape(proxy)
        self.assertEqual(ups[("pool", addr(b.port))], 1, "a 302 check failed")
        self.assertEqual(proxy.log.find(msg=DOWN), [])
        log_mark = proxy.log.mark()
        b.set_health(404)
        line = proxy.log.wait(start=log_mark, msg=DOWN, server=addr(b.port))
        self.assertEqual(line.get("checks_failed"), "2", line)
        b.wait_count(2, start=mark, ev="response", status="404")
        sent = [self.get(proxy, "after404") for _ in range(4)]
        for x in sent:
            self.assertEqual(x.resp.header("x-backend"), "A", x.path)

    def test_all_down_still_served(self):
        """Both servers down by their checks: requests are still served by them
        (200, never a 503 for health alone), the gauge shows both 0."""
        a, b, proxy = self.pair()
        log_mark = proxy.log.mark()
        a.set_health(503)
        b.set_health(503)
        for backend in (a, b):
            proxy.log.wait(start=log_mark, msg=DOWN, server=addr(backend.port))
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 0, ("pool", addr(b.port)): 0})
        a_mark, b_mark = a.mark(), b.mark()
        sent = [self.get(proxy, "alldown") for _ in range(8)]
        by = {"A": a, "B": b}
        for s in sent:
            name = s.resp.header("x-backend")
            self.assertIn(name, by, s.path)
            self.access(proxy, s, attempts=1, status=200, upstream_addr=addr(by[name].port))
        self.sync(a)
        self.sync(b)
        on_a, on_b = self.served(a, a_mark), self.served(b, b_mark)
        self.assertEqual(sorted(on_a + on_b), sorted(s.upath for s in sent))
        self.assertTrue(on_a and on_b, "both down servers share the load: A %s, B %s"
                        % (on_a, on_b))
        self.assertEqual(proxy.log.find(start=log_mark, msg=UP_MSG), [])

    def test_hung_checks_do_not_block_requests(self):
        """A server that takes the connection and never answers, checked with
        timeout_ms=1500 and fall=2: it is down after two timed-out checks (about
        3 s), A's checks go on meanwhile, and requests on another route stay fast:
        a worker waiting on a check would hold a request for the rest of the check's
        1.5 s, half of it on the median.  Under valgrind, whose requests are
        slow themselves, every time is four times as long."""
        k = 4 if VALGRIND else 1
        a = self.start_backend(name="A")
        silent = Silent()
        self.addCleanup(silent.close)
        dark_health = dict(HEALTH, timeout_ms=1500 * k)
        t_proxy = time.monotonic()      # the checks start after this
        proxy = self.proxy_for([route("main", "/", a, health=HEALTH),
                                route("dark", "/dark/", silent.url, health=dark_health)])
        t_start, a_mark = time.monotonic(), a.mark()
        times, sent = [], []
        deadline = t_start + 15.0 * k
        while not proxy.log.find(msg=DOWN, server=addr(silent.port)):
            self.assertLess(time.monotonic(), deadline, "the silent server was not marked down")
            s = self.get(proxy, "busy")
            sent.append(s)
            times.append(s.t_done - s.t_send)
            time.sleep(0.05)
        t_down = time.monotonic()
        line = proxy.log.find(msg=DOWN, server=addr(silent.port))[0]
        self.assertEqual((line.get("route"), line.get("checks_failed")), ("dark", "2"), line)
        # from before the proxy's start: its first check may precede t_start
        self.assertGreaterEqual(t_down - t_proxy, 2.0 * k,
                                "down sooner than two %d ms check timeouts" % (1500 * k))
        self.assertGreaterEqual(len(times), 10, "requests while the checks hung")
        self.assertLess(max(times), 1.5 * k, "a request waited on a hung check: %s" % times)
        self.assertLess(statistics.median(times), 0.3 * k, "requests slowed: %s" % times)
        for s in sent:
            self.access(proxy, s, route="main", attempts=1, upstream_addr=addr(a.port))
        self.sync(a)
        self.assertEqual(self.served(a, a_mark), [s.upath for s in sent])
        checks = [e for e in a.requests(a_mark)
                  if is_check(e) and t_start * 1e6 <= e["t"] <= t_down * 1e6]
        self.assertGreaterEqual(len(checks), 3, "A's checks stalled behind the hung ones")
        self.assertEqual(proxy.log.find(msg=DOWN, server=addr(a.port)), [])
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("main", addr(a.port)): 1, ("dark", addr(silent.port)): 0})
        heads = silent.received()
        self.assertGreaterEqual(len(heads), 2, "checks that reached the silent server")
        for h in heads:
            self.assertTrue(h.startswith(b"GET /healthz HTTP/1.1\r\n"), h)
            self.assertIn(b"\r\nhost: %s\r\n" % addr(silent.port).encode(), h.lower(), h)


class ReloadHealth(HealthTest):
    """A reload keeps the health state of the servers that stay, drops the others."""

    def test_reload_keeps_down_by_checks(self):
        """B down by its checks (its /healthz stays 503); a reload with one more
        route: the gauge shows B 0 right after it, requests still avoid B, and B
        is neither logged up nor logged down again (no flap)."""
        a = self.start_backend(name="A")
        b = self.start_backend(name="B")
        b.set_health(503)
        pool = route("pool", "/", [a, b], health=HEALTH)
        proxy = self.proxy_for([pool])
        proxy.log.wait(msg=DOWN, server=addr(b.port))
        b_checks = b.mark()
        log_mark = self.reload(proxy, [pool, route("extra", "/extra/", a, strip_prefix=True)])
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 1, ("pool", addr(b.port)): 0,
                               ("extra", addr(a.port)): 1}, "right after the reload")

        extra = self.get(proxy, "extra", prefix="/extra")
        self.access(proxy, extra, route="extra", attempts=1)
        a_mark, b_mark = a.mark(), b.mark()
        sent = [self.get(proxy, "kept") for _ in range(8)]
        for s in sent:
            self.assertEqual(s.resp.header("x-backend"), "A", s.path)
            self.access(proxy, s, route="pool", attempts=1, upstream_addr=addr(a.port))
        self.sync(a)
        self.sync(b)
        self.assertEqual(sorted(self.served(a, a_mark)), sorted(s.upath for s in sent))
        self.assertEqual(self.served(b, b_mark), [], "B got requests after the reload")

        # Three failing checks after the reload: a state started afresh would have
        # logged B down again after the second.  The next reload is a barrier: its
        # line comes after any line of those checks.
        b.wait_count(3, start=b_checks, ev="request", path="/healthz")
        self.reload(proxy, [pool, route("extra", "/extra/", a, strip_prefix=True)])
        for msg in (DOWN, UP_MSG):
            self.assertEqual(proxy.log.find(start=log_mark, msg=msg, server=addr(b.port)), [],
                             "B flapped")
        _, ups = self.scrape(proxy)
        self.assertEqual(ups[("pool", addr(b.port))], 0)

    def test_reload_keeps_ejection(self):
        """One worker, the down server ejected for 60 s; a reload with one more
        route (and the pool's servers listed the other way round: a server is
        known by its origin) keeps the ejection (every request one attempt on A,
        the gauge 0); a reload without the server drops it from the gauge."""
        good, down, proxy = self.pool_with_down(eject_after=2, eject_ms=60000, retries=1)
        self.eject(proxy, down)
        pool = route("pool", "/", ["http://" + addr(down), good], eject_after=2,
                     eject_ms=60000, retries=1)
        extra = route("extra", "/extra/", good, strip_prefix=True)
        log_mark = self.reload(proxy, [pool, extra])
        s, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(good.port)): 1, ("pool", addr(down)): 0,
                               ("extra", addr(good.port)): 1}, "right after the reload")
        # The worker routes by the new config once /extra/ is known.
        e = self.get(proxy, "extra", prefix="/extra")
        self.access(proxy, e, route="extra", attempts=1, upstream_addr=addr(good.port))
        b_mark = good.mark()
        sent = [self.get(proxy, "kept") for _ in range(8)]
        for x in sent:
            self.assertEqual(x.resp.header("x-backend"), "A", x.path)
            self.access(proxy, x, route="pool", attempts=1, upstream_addr=addr(good.port))
        self.sync(good)
        self.assertEqual(self.served(good, b_mark), [x.upath for x in sent])
        self.assertEqual(proxy.log.find(start=log_mark, msg=EJECTED), [])
        s, ups = self.scrape(proxy)
        self.assertEqual(self.failures_of(s, "pool", down), 2, "attempts on an ejected server")
        self.assertEqual(ups[("pool", addr(down))], 0)

        self.reload(proxy, [route("pool", "/", [good], eject_after=2, eject_ms=60000,
                                  retries=1), extra])
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(good.port)): 1, ("extra", addr(good.port)): 1},
                         "the removed server is still in the gauge")
        x = self.get(proxy, "after")
        self.access(proxy, x, route="pool", attempts=1, upstream_addr=addr(good.port))

    def test_reload_drops_removed_checked_server(self):
        """B (checked, up) removed by a reload: gone from the gauge, no more checks
        to it (at most the one in flight) while A's go on."""
        a = self.start_backend(name="A")
        b = self.start_backend(name="B")
        proxy = self.proxy_for([route("pool", "/", [a, b], health=HEALTH)])
        a.wait(ev="request", path="/healthz")
        b.wait(ev="request", path="/healthz")
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 1, ("pool", addr(b.port)): 1})
        self.reload(proxy, [route("pool", "/", [a], health=HEALTH)])
        a_mark, b_mark = a.mark(), b.mark()
        _, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 1}, "right after the reload")
        a.wait_count(3, start=a_mark, ev="request", path="/healthz")
        sent = [self.get(proxy, "one") for _ in range(4)]
        for s in sent:
            self.assertEqual(s.resp.header("x-backend"), "A", s.path)
            self.access(proxy, s, attempts=1, upstream_addr=addr(a.port))
        self.sync(b)
        late = [e for e in b.requests(b_mark) if not is_sync(e)]
        self.assertLessEqual(len(late), 1, "B still checked or served after removal: %s" % late)
        self.assertTrue(all(is_check(e) for e in late), late)


class UpGauge(HealthTest):
    """ctxproxy_upstream_server_up lists every server of every route."""

    def test_every_server_listed(self):
        """Routes with and without checks, one server or several, a server in two
        routes, one nothing listens on: each (route, server) once, all 1."""
        a = self.start_backend(name="A")
        b = self.start_backend(name="B")
        c = self.start_backend(name="C")
        down = free_port()
        proxy = self.proxy_for([
            route("pool", "/", [a, b]),
            route("single", "/single/", c, strip_prefix=True),
            route("checked", "/checked/", a, strip_prefix=True, health=HEALTH),
            route("dead", "/dead/", "http://" + addr(down), strip_prefix=True),
        ])
        a.wait(ev="request", path="/healthz")
        s, ups = self.scrape(proxy)
        self.assertEqual(ups, {("pool", addr(a.port)): 1, ("pool", addr(b.port)): 1,
                               ("single", addr(c.port)): 1, ("checked", addr(a.port)): 1,
                               ("dead", addr(down)): 1})
        self.assertIsNotNone(s.families[UP].help, "HELP of %s" % UP)
        # Both hops on the routes the gauge calls up.
        marks = {x: x.mark() for x in (a, b, c)}
        for prefix, want, backend in (("/single", "C", c), ("/checked", "A", a)):
            x = self.get(proxy, "gauge", prefix=prefix)
            self.assertEqual(x.resp.header("x-backend"), want)
            self.access(proxy, x, route=prefix[1:], attempts=1, upstream_addr=addr(backend.port))
            backend.wait(ev="request", path=x.upath, start=marks[backend])
        pooled = [self.get(proxy, "gauge") for _ in range(4)]
        for x in (a, b):
            self.sync(x)
        on = self.served(a, marks[a]) + self.served(b, marks[b])
        for x in pooled:
            self.assertIn(x.upath, on)
            self.access(proxy, x, route="pool", attempts=1)
