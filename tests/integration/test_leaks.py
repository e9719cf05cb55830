"""test_leaks.py - abandoned requests and pooled upstream connections leave no file descriptors behind in the proxy."""

import os
import time
import unittest

from harness import SLOW, ProxyTest

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
        before = self._settled_fds(proxy, with_client - 1, 5.0 * SLOW)
        mark = backend.mark()
        for b in range(BATCHES):
            batch = [self.client(proxy) for _ in range(BATCH)]
            for i, c in enumerate(batch):
                c.send_request("GET", "/hang?b=%d&i=%d" % (b, i))
            backend.wait_count((b + 1) * BATCH, lambda e: e.get("path", "").startswith("/hang"),
                               timeout=10.0 * SLOW, start=mark, what="ev=request path=/hang",
                               ev="request")
            for c in batch:
                c.sock.close()
            self.clients = [c for c in self.clients if c not in batch]
        hang_conns = {e["conn"] for e in backend.find(
            lambda e: e.get("path", "").startswith("/hang"), start=mark, ev="request")}
        self.assertEqual(len(hang_conns), BATCHES * BATCH)
        backend.wait_count(BATCHES * BATCH, lambda e: e.get("conn") in hang_conns,
                           timeout=20.0 * SLOW, start=mark, what="ev=close of a /hang conn",
                           ev="close")
        lines = proxy.log.wait_count(
            BATCHES * BATCH,
            lambda e: e.get("type") == "access" and e.get("path", "").startswith("/hang"),
            timeout=10.0 * SLOW, what="type=access path=/hang")
        causes = {(e.get("status"), e.get("cause")) for e in lines}
        self.assertEqual(causes, {("499", "client_disconnect")})
        after = self._settled_fds(proxy, before, 5.0 * SLOW)
        self.assertLessEqual(after, before, "proxy fds: %d before, %d after" % (before, after))
        self.assertTrue(proxy.alive())

    def test_pooled_connections_come_back(self):
        """100 requests at once open 100 upstream connections: past the
        pool's cap they close as their responses end, the rest when they
        idle past upstream_keepalive_timeout_ms; the proxy's descriptors
        return to where they were."""
        n, cap = 100, 8
        # The closes past the cap are awaited for 1 s less than the idle
        # timeout, which would close them too: longer on a slow run.
        keep_s = 5 if SLOW == 1 else 10
        backend, proxy = self.setup_pair(workers=1, upstream_keepalive=cap,
                                         upstream_keepalive_timeout_ms=keep_s * 1000)
        # A first request brings up what stays (libcurl's own descriptors);
        # its upstream connection then waits in the pool.
        warm = self.client(proxy)
        self.assertEqual(warm.request("GET", "/fast").status, 200)
        warm_conn = backend.wait(ev="request")["conn"]
        with_client = proxy.fd_count()
        warm.close()
        self.clients = []
        before = self._settled_fds(proxy, with_client - 1, 5.0 * SLOW) - 1
        mark = backend.mark()
        clients = [self.client(proxy) for _ in range(n)]
        for i, c in enumerate(clients):
            c.send_request("GET", "/slow?ms=300&i=%d" % i)
        for c in clients:
            self.assertEqual(c.read_response().status, 200)
            c.close()
        self.clients = []
        conns = {e["conn"] for e in backend.find(ev="open", start=mark)}
        conns.add(warm_conn)
        self.assertGreaterEqual(len(conns), n)
        # Those past the cap close with their responses, well before the
        # idle timeout could close them.
        closed = backend.wait_count(len(conns) - cap,
                                    lambda e: e.get("conn") in conns, timeout=keep_s - 1.0,
                                    start=mark, ev="close", by="peer")
        pooled = self._settled_fds(proxy, before + cap, 10.0 * SLOW)
        self.assertLessEqual(pooled, before + cap, "fds with the pool full")
        # The cap's connections go once they idle past the timeout.
        backend.wait_count(len(conns), lambda e: e.get("conn") in conns,
                           timeout=keep_s + 15.0 * SLOW, start=mark, ev="close", by="peer")
        self.assertGreaterEqual(len(closed), len(conns) - cap)
        after = self._settled_fds(proxy, before, 10.0 * SLOW)
        self.assertLessEqual(after, before, "proxy fds: %d before, %d after: %s"
                             % (before, after, self._fds(proxy)))
        self.assertTrue(proxy.alive())

    @staticmethod
    def _fds(proxy):
        """What the proxy's descriptors are, for a failure message."""
        d = "/proc/%d/fd" % proxy.proc.pid
        out = []
        for name in sorted(os.listdir(d)):
            try:
                out.append(os.readlink(os.path.join(d, name)))
            except OSError:
                pass
        return out


if __name__ == "__main__":
    unittest.main()
