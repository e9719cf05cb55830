"""test_hops.py - one deadline across two ctxproxies, upstream framing, slow request heads."""

import re
import socket
import time
import unittest

from harness import SLOW, VALGRIND, ProxyTest, now_us, route


class TwoHops(ProxyTest):
    """client -> proxy A -> proxy B -> backend: one shrinking budget."""

    def test_budget_shrinks_across_hops(self):
        backend = self.start_backend()
        # B alone would allow 5 s; A's route allows 600 ms: A's budget binds.
        # Under valgrind the two hops took ~335 ms to reach the backend:
        # A allows 1.5 s there, so the request still gets through.
        a_ms, b_ms = (1500 if VALGRIND else 600), 5000
        b = self.start_proxy([route("b", "/", backend, timeout_ms=b_ms)])
        a = self.start_proxy([route("a", "/", "http://127.0.0.1:%d" % b.port,
                                    timeout_ms=a_ms)])
        c = self.client(a)
        start = time.monotonic()
        c.send_request("GET", "/slow?ms=5000")
        resp = c.read_response()
        took = resp.head_time - start
        self.assertEqual(resp.status, 504)
        self.assertWithin(took, a_ms / 1000 - 0.1, a_ms / 1000 + 1.4 * SLOW,
                          "seconds until the 504 (A's %d ms budget)" % a_ms)

        req = backend.wait_request("/slow")
        seen = backend.headers_of(req)["x-request-timeout-ms"]
        self.assertEqual(len(seen), 1, "one deadline header reaches the backend")
        # What the two hops took before the request reached the backend is
        # the proxies' speed (~170 ms each under valgrind), not the contract:
        # the budget is A's less that time (less a little slack).
        spent_ms = int(req["t"]) / 1000.0 - start * 1000.0
        self.assertWithin(int(seen[0]), a_ms - spent_ms - 50, a_ms - 1,
                          "budget the backend was given (A's %d ms less the %.0f ms "
                          "before it reached the backend)" % (a_ms, spent_ms))
        # The backend's connection is closed when the shared budget ends:
        # timed from the client's send, as the budget is (the backend's
        # after_ms lacks the time the hops took).
        cancelled = backend.wait(ev="cancelled", conn=req["conn"], req=req["req"])
        self.assertWithin((int(cancelled["t"]) - start * 1e6) / 1000, a_ms - 50,
                          a_ms + 1400 * SLOW, "ms from the client's send to the backend's cancel")
        # B ended with the budget A sent it, not its own 5 s route timeout:
        # by its own deadline, or (when A's fired a hair sooner, as on a
        # slow machine) by A hanging up; well short of B's own timeout
        # whatever SLOW allows, or the bound would not tell them apart.
        line = b.access("/slow")
        self.assertIn(line.get("cause"), ("deadline_exceeded", "client_disconnect"))
        self.assertLess(float(line["duration_ms"]), min(a_ms + 1400 * SLOW, b_ms - 500))
        self.assertAccess(a.access("/slow"), status=504, cause="deadline_exceeded")

    def test_invalid_client_deadline_is_ignored(self):
        backend, proxy = self.setup_pair(route_opts={"timeout_ms": 4000})
        for i, bad in enumerate(["abc", "0", "-5", "86400001", "12ms", "7.5"]):
            c = self.client(proxy)
            sent_us = now_us()
            resp = c.request("GET", "/fast?i=%d" % i,
                             headers=[("X-Request-Timeout-Ms", bad)])
            self.assertEqual(resp.status, 200, "deadline %r" % bad)
            req = backend.wait_request("/fast?i=%d" % i)
            seen = int(backend.headers_of(req)["x-request-timeout-ms"][0])
            # The route's budget, not the client's value: 4000 ms less what
            # the proxy took to get the request to the backend (its speed).
            spent_ms = (int(req["t"]) - sent_us) / 1000
            self.assertWithin(seen, 4000 - spent_ms - 50, 4000,
                              "budget sent for client value %r (%.0f ms to the backend)"
                              % (bad, spent_ms))


class UpstreamFraming(ProxyTest):
    """An upstream response with ambiguous framing is refused with 502."""

    def test_conflicting_framing_is_502(self):
        backend, proxy = self.setup_pair()
        for kind, what in ((1, "two Content-Lengths"), (2, "Content-Length and chunked"),
                           (3, "a malformed Content-Length")):
            c = self.client(proxy)
            resp = c.request("GET", "/badframe?kind=%d" % kind)
            self.assertEqual(resp.status, 502, what)
            self.assertNotIn(b"abcd", resp.body, what)
            req = backend.wait_request("/badframe?kind=%d" % kind)
            backend.wait(ev="response", conn=req["conn"], req=req["req"])
        proxy.log.wait_count(3, lambda e: e.get("type") == "access",
                             status="502", cause="upstream_error")


class ClientHeaderTimeout(ProxyTest):
    """client_header_timeout_ms bounds the whole head, even against a trickle."""

    def test_trickled_head_gets_408(self):
        backend, proxy = self.setup_pair(client_header_timeout_ms=500)
        limit = 3.0 * SLOW          # seconds: the 408 comes by then
        start = time.monotonic()    # before the connect: the proxy's clock starts at accept
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.1)
        self.addCleanup(s.close)
        head = b"GET /fast HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 200
        got = bytearray()
        closed = False
        for i in range(len(head)):      # one byte every 50 ms or more, 10 s or more in all
            if time.monotonic() - start > limit + 5.0:
                break
            try:
                s.send(head[i:i + 1])
            except OSError:
                closed = True
                break
            try:
                data = s.recv(4096)
                if not data:
                    closed = True
                    break
                got += data
            except socket.timeout:
                pass
            time.sleep(0.05)
        took = time.monotonic() - start
        s.settimeout(2.0 * SLOW)
        try:
            while not closed:
                data = s.recv(4096)
                if not data:
                    closed = True
                got += data
        except OSError:
            closed = True
        self.assertTrue(got.startswith(b"HTTP/1.1 408 "), "answer %r" % bytes(got[:60]))
        self.assertIn(b"Connection: close", got)
        self.assertTrue(closed, "connection closed after the 408")
        self.assertWithin(took, 0.4, limit, "seconds until the 408 (500 ms budget)")
        self.assertEqual(backend.requests(), [], "the backend saw nothing")
        line = proxy.log.wait(lambda e: e.get("type") == "access", status="408")
        self.assertEqual(line.get("cause"), "client_header_timeout")
        m = re.search(rb"\r\nX-Request-Id: ([0-9a-f]{32})\r\n", bytes(got))
        self.assertTrue(m, "408 without a generated request id: %r" % bytes(got[:200]))
        self.assertEqual(line.get("id"), m.group(1).decode())

    def test_idle_keepalive_is_not_a_slow_head(self):
        backend, proxy = self.setup_pair(client_header_timeout_ms=300)
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/fast").status, 200)
        time.sleep(0.6)   # idle between requests is client_idle_timeout's business
        self.assertEqual(c.request("GET", "/fast").status, 200)


if __name__ == "__main__":
    unittest.main()
