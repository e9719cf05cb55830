"""test_limits.py - answers the proxy gives without the backend: 404, 413, 503."""

import socket
import time
import unittest

from harness import SLOW, Client, ProxyTest, route


class Limits(ProxyTest):
    """Requests the proxy must refuse itself; the backend must see nothing."""

    def test_no_route_404(self):
        backend = self.start_backend()
        proxy = self.start_proxy([route("api", "/api/", backend)])
        c = self.client(proxy)
        resp = c.request("GET", "/other/thing")
        self.assertEqual(resp.status, 404)
        self.assertTrue(resp.header("x-request-id"), "no X-Request-Id")
        self.assertEqual(backend.requests(), [], "backend saw a request that matched no route")
        self.assertEqual(backend.find(ev="open"), [], "backend got a connection")
        self.assertAccess(proxy.access("/other/thing"), status=404)

    def test_body_too_large_413(self):
        backend, proxy = self.setup_pair(max_body_bytes=1000)
        c = self.client(proxy)
        c.send_request("POST", "/echo", [("Content-Length", "5000")], body=b"b" * 5000)
        resp = c.read_response()
        self.assertEqual(resp.status, 413)
        self.assertTrue(resp.header("x-request-id"), "no X-Request-Id")
        self.assertEqual(backend.requests(), [], "backend saw the oversized request")
        self.assertEqual(backend.find(ev="open"), [], "backend got a connection")
        self.assertAccess(proxy.access("/echo"), status=413)
        small = self.client(proxy).request("POST", "/echo", body=b"s" * 1000)
        self.assertEqual((small.status, small.body), (200, b"s" * 1000))

    def test_connection_limit_503(self):
        backend, proxy = self.setup_pair(max_connections=2, workers=1)
        idle = [self.client(proxy), self.client(proxy)]
        for i, c in enumerate(idle):
            resp = c.request("GET", "/fast?idle=%d" % i)
            self.assertEqual(resp.status, 200)
            self.assertFalse(resp.closed)
        third = self.client(proxy)
        try:
            third.send_request("GET", "/fast?third=1")
        except OSError:
            pass  # already closed by the proxy: a refusal too
        resp = third.read_response(10.0)
        if resp.status is not None:
            self.assertEqual(resp.status, 503, "third connection got %s" % resp.status)
        else:
            self.assertTrue(resp.closed)
        self.assertEqual(backend.find(lambda e: "third" in e.get("path", ""), ev="request"),
                         [], "the refused request reached the backend")
        for c in idle:
            self.assertTrue(c.is_open(0.1), "an idle connection within the limit was closed")
        idle[0].sock.close()
        self.assertTrue(self._eventually_served(proxy, 10.0 * SLOW),
                        "a slot freed by a closed connection was never reused")

    def _eventually_served(self, proxy, timeout):
        """Whether a new connection gets a 200 within timeout (bounded retries)."""
        deadline = time.monotonic() + timeout
        for attempt in range(100):
            try:
                c = Client(proxy.port, timeout=2.0 * SLOW)
                resp = c.request("GET", "/fast?retry=%d" % attempt, timeout=2.0 * SLOW)
                c.sock.close()
                if resp.status == 200:
                    return True
            except (OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return False


if __name__ == "__main__":
    unittest.main()


class MoreLimits(ProxyTest):
    """A chunked body that outgrows max_body_bytes; listening on several addresses."""

    def test_chunked_body_over_limit_closes(self):
        backend, proxy = self.setup_pair(max_body_bytes=1000)
        c = self.client(proxy)
        c.send_request("POST", "/upload?big=1", [("Transfer-Encoding", "chunked")])
        try:
            c.send_chunked(b"c" * 5000, piece=500)
        except OSError:
            pass                          # the proxy may close while we send
        c.wait_closed()
        line = proxy.access("/upload")
        self.assertEqual(line["status"], "413")
        self.assertLessEqual(int(line["bytes_in"]), 1000, line)
        # The body streams upstream as it comes, so the backend may have seen
        # the request start (or, if the abort came first, nothing); it must
        # never see the whole body, and its connection must end.
        self.assertEqual(self.client(proxy).request("GET", "/fast?after=1").status, 200)
        backend.wait_request("/fast?after=1")
        for req in backend.find(lambda e: e.get("path") == "/upload?big=1", ev="request"):
            backend.wait_conn_end(req["conn"])
            self.assertEqual(backend.find(ev="body_done", conn=req["conn"], req=req["req"]), [])

    def test_listen_list_with_ipv6(self):
        backend = self.start_backend()
        proxy = self.start_proxy([route("main", "/", backend)],
                                 listen=["127.0.0.1:0", "[::1]:0"])
        v6 = proxy.log.wait(lambda e: e.get("msg") == "listening"
                            and e.get("addr", "").startswith("[::1]:"))
        port6 = int(v6["addr"].rsplit(":", 1)[1])
        self.assertEqual(self.client(proxy).request("GET", "/fast").status, 200)
        s = socket.create_connection(("::1", port6), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b"GET /fast?v6=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertTrue(s.recv(64).startswith(b"HTTP/1.1 200"))
        line = proxy.log.wait(lambda e: e.get("type") == "access"
                              and e.get("path") == "/fast?v6=1")
        self.assertTrue(line["client"].startswith("[::1]:"), line)
