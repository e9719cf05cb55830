"""test_disconnect.py - a client hang-up in each phase reaches the backend promptly."""

from harness import SLOW, ProxyTest

# The contract's target is ~2 ms on an idle machine; this bound leaves room
# for load, and for valgrind and the sanitizers.
PROPAGATION_US = 100_000 * SLOW


class ClientDisconnect(ProxyTest):
    """Client closes (FIN) or aborts (RST) while uploading, waiting or streaming."""

    def _check_propagation(self, backend, proxy, req, closed_at, path, phase, backend_phase):
        """Backend saw the upstream close soon after closed_at; access line says why."""
        end = backend.wait_conn_end(req["conn"])
        self.assertLess(end["t"] - closed_at, PROPAGATION_US,
                        "backend saw the close %.1f ms after the client's"
                        % ((end["t"] - closed_at) / 1000))
        cancelled = backend.wait(ev="cancelled", conn=req["conn"], req=req["req"])
        self.assertEqual(cancelled["phase"], backend_phase)
        line = proxy.access(path)
        self.assertAccess(line, status=499, cause="client_disconnect", phase=phase)
        for key in ("cancel_us", "upstream_close_us"):
            self.assertIn(key, line, "access line lacks %s" % key)
        cancel_us = int(line["cancel_us"])
        self.assertWithin(cancel_us - closed_at, -1000, PROPAGATION_US,
                          "cancel_us - client close (us)")
        self.assertWithin(int(line["upstream_close_us"]) - cancel_us, 0, PROPAGATION_US,
                          "upstream_close_us - cancel_us (us)")

    def _hangup_uploading(self, rst):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        c.send_request("POST", "/upload", [("Content-Length", str(1 << 20))],
                       body=None)
        c.send(b"u" * 65536)
        req = backend.wait_request("/upload")
        closed_at = c.reset() if rst else c.close()
        self._check_propagation(backend, proxy, req, closed_at, "/upload",
                                "uploading", "reading_body")
        self.assertEqual(backend.find(ev="body_done", conn=req["conn"]), [],
                         "backend got the whole body of a 1 MiB upload that was cut off")

    def _hangup_awaiting(self, rst, path):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        c.send_request("GET", path)
        req = backend.wait_request(path.split("?")[0])
        backend.wait(ev="body_done", conn=req["conn"], req=req["req"])
        closed_at = c.reset() if rst else c.close()
        self._check_propagation(backend, proxy, req, closed_at, path,
                                "awaiting_headers", "before_response")

    def _hangup_streaming(self, rst):
        backend, proxy = self.setup_pair()
        path = "/stream?chunks=1000&size=100&interval_ms=20"
        c = self.client(proxy)
        c.send_request("GET", path)
        resp = c.read_head()
        self.assertEqual(resp.status, 200)
        # The proxy re-frames the body, so chunks may be merged.
        first = c.read_chunk()
        self.assertTrue(first and set(first) == {ord("x")}, "first chunk %r" % first[:20])
        req = backend.wait_request("/stream")
        closed_at = c.reset() if rst else c.close()
        self._check_propagation(backend, proxy, req, closed_at, path,
                                "streaming", "sending_body")
        self.assertEqual(backend.find(ev="done", conn=req["conn"]), [])

    def test_hangup_uploading_fin(self):
        self._hangup_uploading(rst=False)

    def test_hangup_uploading_rst(self):
        self._hangup_uploading(rst=True)

    def test_hangup_awaiting_headers_fin(self):
        self._hangup_awaiting(False, "/hang")

    def test_hangup_awaiting_headers_rst(self):
        self._hangup_awaiting(True, "/hang")

    def test_hangup_awaiting_headers_slow_fin(self):
        self._hangup_awaiting(False, "/slow?ms=10000")

    def test_hangup_streaming_fin(self):
        self._hangup_streaming(rst=False)

    def test_hangup_streaming_rst(self):
        self._hangup_streaming(rst=True)

    def test_burst_of_hangups_all_propagate(self):
        """600 clients of one worker hang up at once: every backend
        connection sees its cancellation (hang-up events arrive in batches
        larger than the loop takes at once, and teardown is deferred)."""
        n = 600
        backend, proxy = self.setup_pair(workers=1)
        mark = backend.mark()
        clients = [self.client(proxy) for _ in range(n)]
        for i, c in enumerate(clients):
            c.send_request("GET", "/hang?burst=%d" % i)
        reqs = backend.wait_count(n, lambda e: e.get("path", "").startswith("/hang?burst="),
                                  timeout=30.0 * SLOW, start=mark, what="ev=request /hang?burst",
                                  ev="request")
        conns = {e["conn"] for e in reqs}
        self.assertEqual(len(conns), n)
        for c in clients:
            c.sock.close()
        gone = backend.wait_count(n, lambda e: e.get("conn") in conns, timeout=30.0 * SLOW,
                                  start=mark, what="ev=cancelled of a burst conn",
                                  ev="cancelled")
        self.assertEqual({e["conn"] for e in gone}, conns)
        lines = proxy.log.wait_count(
            n, lambda e: e.get("type") == "access" and e.get("path", "").startswith("/hang?burst="),
            timeout=10.0 * SLOW, what="type=access path=/hang?burst")
        self.assertEqual({(e.get("status"), e.get("cause")) for e in lines},
                         {("499", "client_disconnect")})
        self.assertTrue(proxy.alive())

    def test_hangup_on_reused_connection_sends_nothing_again(self):
        """A cancelled fetch on a kept-alive upstream connection is not
        retried: the FIN ctxproxy sends first must not look to libcurl like
        a dead connection worth a fresh connect and a second request."""
        backend, proxy = self.setup_pair(workers=1)
        mark = backend.mark()
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/fast?warm").status, 200)
        c.send_request("GET", "/hang?reused")
        req = backend.wait_request("/hang?reused", start=mark)
        first = backend.find(ev="request", start=mark)
        self.assertEqual(req["conn"], first[0]["conn"], "the /hang did not reuse the connection")
        c.close()
        backend.wait(ev="cancelled", conn=req["conn"], req=req["req"], start=mark)
        after = self.client(proxy).request("GET", "/fast?after")
        self.assertEqual(after.status, 200)
        backend.wait_request("/fast?after", start=mark)
        opens = backend.find(ev="open", start=mark)
        self.assertEqual(len(opens), 2, "upstream connections opened: %s" % opens)
        self.assertEqual(len(backend.find(lambda e: e.get("path") == "/hang?reused",
                                          start=mark, ev="request")), 1)
