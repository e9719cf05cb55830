"""test_leaks.py - abandoned requests leave no file descriptors behind in the proxy."""

import time
import unittest

from harness import ProxyTest

BATCHES = 30
BATCH = 10


class Leaks(ProxyTest):
    """300 requests abandoned by their clients; the proxy's fd count returns."""

    def _settled_fds(self, proxy, limit, timeout):
        """Poll the proxy's fd count until it is <= limit or timeout passes; the last count."""
        deadline = time.monotonic() + timeout
        count = proxy.fd_count()
        for _ in range(1000):
            if count <= limit or time.monotonic() > deadline:
                break
            time.sleep(0.05)
            count = proxy.fd_count()
        return count

    def test_abandoned_requests_leak_no_fds(self):
        backend, proxy = self.setup_pair()
        warm = self.client(proxy).request("GET", "/fast")
        self.assertEqual(warm.status, 200)
        with_client = proxy.fd_count()
        self.clients[0].sock.close()
        before = self._settled_fds(proxy, with_client - 1, 5.0)
        mark = backend.mark()
        for b in range(BATCHES):
            batch = [self.client(proxy) for _ in range(BATCH)]
            for i, c in enumerate(batch):
                c.send_request("GET", "/hang?b=%d&i=%d" % (b, i))
            backend.wait_count((b + 1) * BATCH, lambda e: e.get("path", "").startswith("/hang"),
                               timeout=10.0, start=mark, what="ev=request path=/hang",
                               ev="request")
            for c in batch:
                c.sock.close()
            self.clients = [c for c in self.clients if c not in batch]
        hang_conns = {e["conn"] for e in backend.find(
            lambda e: e.get("path", "").startswith("/hang"), start=mark, ev="request")}
        self.assertEqual(len(hang_conns), BATCHES * BATCH)
        backend.wait_count(BATCHES * BATCH, lambda e: e.get("conn") in hang_conns,
                           timeout=20.0, start=mark, what="ev=close of a /hang conn",
                           ev="close")
        lines = proxy.log.wait_count(
            BATCHES * BATCH,
            lambda e: e.get("type") == "access" and e.get("path", "").startswith("/hang"),
            timeout=10.0, what="type=access path=/hang")
        causes = {(e.get("status"), e.get("cause")) for e in lines}
        self.assertEqual(causes, {("499", "client_disconnect")})
        after = self._settled_fds(proxy, before, 5.0)
        self.assertLessEqual(after, before, "proxy fds: %d before, %d after" % (before, after))
        self.assertTrue(proxy.alive())


if __name__ == "__main__":
    unittest.main()
