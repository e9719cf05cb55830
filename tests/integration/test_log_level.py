"""test_log_level.py - the error log's threshold (log_level): libmicrohttpd's
per-connection messages are debug, so clients that hang up do not flood the
log at the default level (issue 15)."""

import signal
import socket
import unittest

from harness import ProxyTest, WAIT_TIMEOUT, route

HANGUPS = 4


class LogLevel(ProxyTest):
    def hang_up_everywhere(self, proxy, backend, tag=""):
        """Clients that leave in the upload and while awaiting headers, each
        once the backend has its request; returns once the proxy has logged
        each as a 499."""
        for i in range(HANGUPS):
            rid = "%s%d" % (tag, i)
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_TIMEOUT)
            s.sendall(b"POST /echo?up-%s HTTP/1.1\r\nHost: x\r\nX-Request-Id: up-%s\r\n"
                      b"Content-Length: 100000\r\n\r\n" % (rid.encode(), rid.encode())
                      + b"a" * 1000)
            backend.wait_request("/echo?up-%s" % rid)
            s.close()
            proxy.log.wait(id="up-%s" % rid, status="499")
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_TIMEOUT)
            s.sendall(b"GET /slow?ms=5000&aw-%s HTTP/1.1\r\nHost: x\r\n"
                      b"X-Request-Id: aw-%s\r\n\r\n" % (rid.encode(), rid.encode()))
            backend.wait_request("/slow?ms=5000&aw-%s" % rid)
            s.close()
            proxy.log.wait(id="aw-%s" % rid, status="499", cause="client_disconnect")

    def run_with(self, **top):
        b = self.start_backend()
        p = self.start_proxy([route("main", "/", b)], **top)
        self.backend = b
        self.hang_up_everywhere(p, b)
        return p

    def test_default_level_prints_no_debug(self):
        p = self.run_with()
        # Every line is in once the daemon has exited.
        rc, _, killed = p.stop()
        self.assertEqual((rc, killed), (0, False))
        text = p.log.text()
        self.assertNotIn("level=debug", text)
        # The info lines are still there.
        self.assertIn('level=info msg=started', text)

    def test_debug_brings_them_back(self):
        p = self.run_with(log_level="debug")
        p.log.wait_raw(r"level=debug .*src=mhd")
        rc, _, killed = p.stop()
        self.assertEqual((rc, killed), (0, False))

    def set_level(self, p, level):
        p.config = p.config.replace("routes", 'log_level = "%s";\nroutes' % level, 1)
        with open(p.config_path, "w") as f:
            f.write(p.config)
        p.signal(signal.SIGHUP)
        p.log.wait(msg="reloaded")

    def test_warn_hides_info(self):
        """Reloaded to warn (started at info: the harness reads the port from
        the listening line), info lines stop: SIGUSR1's "access log reopened"
        does not show, hang-ups still log their access lines."""
        p = self.run_with()
        self.set_level(p, "warn")
        n = len(p.log.raw)
        p.signal(signal.SIGUSR1)
        self.hang_up_everywhere(p, self.backend, tag="w")
        rc, _, killed = p.stop()
        self.assertEqual((rc, killed), (0, False))
        later = "\n".join(p.log.raw[n:])
        self.assertNotIn("level=info", later)
        self.assertNotIn("level=debug", later)
        self.assertEqual(len(p.accesses(status="499")), 4 * HANGUPS)

    def test_reload_changes_the_level(self):
        p = self.run_with()
        self.set_level(p, "debug")
        self.assertNotIn("level=debug", p.log.text())
        self.hang_up_everywhere(p, self.backend, tag="r")
        p.log.wait_raw(r"level=debug .*src=mhd")


if __name__ == "__main__":
    unittest.main()
