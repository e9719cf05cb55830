"""test_cli.py - config checking, refusing a broken config, and a clean SIGTERM stop."""

import unittest

from harness import SLOW, ProxyTest, run_proxy_cli, write_temp

VALID = """listen = "127.0.0.1:0";
workers = 1;
access_log = "-";
routes = ( { name = "main"; prefix = "/"; upstream = "http://127.0.0.1:9"; } );
"""

BROKEN = """listen = "127.0.0.1:0";
workers = 1;
no_such_key = 5;
routes = ( { name = "main"; prefix = "/"; upstream = "http://127.0.0.1:9"; } );
"""


class CommandLine(ProxyTest):
    """-t output and exit codes; start-up refusal; SIGTERM."""

    def test_check_broken_config(self):
        path = write_temp(BROKEN)
        rc, out = run_proxy_cli(["-t", "-c", path])
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:3:" % path, out)

    def test_more_listen_addresses_than_served_are_refused(self):
        """17 listen addresses: refused with FILE:LINE by -t and at start
        (the 17th used to be accepted and its connections never answered)."""
        addrs = ",\n".join('  "127.0.0.1:%d"' % (30000 + i) for i in range(17))
        path = write_temp("workers = 1;\nlisten = (\n%s );\n"
                          'routes = ( { name = "main"; prefix = "/"; '
                          'upstream = "http://127.0.0.1:9"; } );\n' % addrs)
        for args in (["-t", "-c", path], ["-c", path]):
            rc, out = run_proxy_cli(args)
            self.assertEqual(rc, 1, out)
            self.assertIn("%s:2: 'listen' names more than 16 addresses" % path, out)

    def test_check_valid_config(self):
        path = write_temp(VALID)
        rc, out = run_proxy_cli(["-t", "-c", path])
        self.assertEqual(rc, 0, out)
        self.assertIn("%s: ok" % path, out)

    def test_daemon_refuses_broken_config(self):
        path = write_temp(BROKEN)
        rc, out = run_proxy_cli(["-c", path])
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:3:" % path, out)

    def test_sigterm_idle_exits_zero(self):
        backend, proxy = self.setup_pair(shutdown_grace_ms=10000)
        resp = self.client(proxy).request("GET", "/fast")
        self.assertEqual(resp.status, 200)
        self.clients[0].sock.close()
        rc, took, killed = proxy.stop(timeout=10.0)
        self.assertFalse(killed, "ctxproxy ignored SIGTERM for 10 s")
        self.assertEqual(rc, 0)
        self.assertLess(took, 3.0 * SLOW, "SIGTERM with nothing in flight took %.2fs" % took)

    def test_sigterm_lets_in_flight_finish(self):
        backend, proxy = self.setup_pair(shutdown_grace_ms=5000)
        c = self.client(proxy)
        c.send_request("GET", "/slow?ms=700")
        backend.wait_request("/slow")
        rc, took, killed = proxy.stop(timeout=10.0)
        resp = c.read_response(5.0)
        self.assertEqual((resp.status, resp.body), (200, b"slow done\n"))
        self.assertFalse(killed)
        self.assertEqual(rc, 0)
        # SIGTERM went after the backend had the request, which it answers
        # 700 ms after it came: the lower bound is the backend's, not ours.
        self.assertWithin(took, 0.3, 4.0 * SLOW, "seconds from SIGTERM to exit")
        self.assertAccess(proxy.access("/slow"), status=200, cause="completed")

    def test_sigterm_cancels_after_grace(self):
        backend, proxy = self.setup_pair(shutdown_grace_ms=500)
        c = self.client(proxy)
        c.send_request("GET", "/hang")
        req = backend.wait_request("/hang")
        rc, took, killed = proxy.stop(timeout=10.0)
        self.assertFalse(killed, "ctxproxy did not exit 10 s after SIGTERM")
        self.assertEqual(rc, 0)
        self.assertWithin(took, 0.4, 4.0 * SLOW, "seconds from SIGTERM to exit")
        end = backend.wait_conn_end(req["conn"])
        self.assertWithin((end["t"] - req["t"]) / 1e6, 0.4, 4.0 * SLOW,
                          "seconds until upstream close")
        resp = c.read_response(5.0)
        if resp.status is not None:
            self.assertEqual(resp.status, 503)
        self.assertAccess(proxy.access("/hang"), cause="shutdown")

    def test_port_taken_exits_two(self):
        backend = self.start_backend()
        path = write_temp(VALID.replace("127.0.0.1:0", "127.0.0.1:%d" % backend.port))
        rc, out = run_proxy_cli(["-c", path])
        self.assertEqual(rc, 2, out)


if __name__ == "__main__":
    unittest.main()
