"""test_routing.py - routes, upstream paths, Host and request ids through the real daemon."""

import subprocess
import unittest

from harness import PROXY_BIN, ProxyTest, route


class Routing(ProxyTest):
    """What the backend receives is decided by the route the request matched."""

    def _seen(self, backend, marker):
        """The request event and headers the backend saw for a unique marker."""
        req = backend.wait(lambda e: marker in e.get("path", ""), ev="request")
        return req, backend.headers_of(req)

    def test_longest_prefix_host_and_strip(self):
        a, b, c = self.start_backend(), self.start_backend(), self.start_backend()
        proxy = self.start_proxy([
            route("root", "/", a),
            route("api", "/api/", "%s/base" % b.url, strip_prefix=True),
            route("api-host", "/api/", c, host="API.example.com"),
        ])
        cases = [
            # (host, target, backend, path it must receive, route)
            ("x.test", "/fast?m=1", a, "/fast?m=1", "root"),
            ("x.test", "/api/fast?m=2&q=a%20b", b, "/base/fast?m=2&q=a%20b", "api"),
            ("api.example.com:8080", "/api/fast?m=3", c, "/api/fast?m=3", "api-host"),
            ("x.test", "/apix?m=4", a, "/apix?m=4", "root"),
        ]
        for host, target, backend, want, name in cases:
            c_ = self.client(proxy)
            c_.send_request("GET", target, host=host)
            resp = c_.read_response()
            req, _ = self._seen(backend, "m=%s" % target.split("m=")[1][0])
            self.assertEqual(req["path"], want, "%s %s" % (host, target))
            line = proxy.log.wait(lambda e, t=target: e.get("type") == "access"
                                  and e.get("path") == t)
            self.assertAccess(line, route=name, status=resp.status)

    def test_raw_target_bytes_reach_the_backend_unchanged(self):
        """Bytes >= 0x80 in the target are forwarded byte for byte, as nginx
        does: a backend that signs or matches the exact target sees the
        client's, not a percent-encoding of it (libcurl's URL parser made
        /raw\\xc3 into /raw%c3)."""
        a, b = self.start_backend(), self.start_backend()
        proxy = self.start_proxy([
            route("root", "/", a),
            route("api", "/api/", "%s/base" % b.url, strip_prefix=True),
        ])
        cases = [
            # (target sent, backend, target it must receive)
            (b"/raw\xc3\xa9\xff/x", a, b"/raw\xc3\xa9\xff/x"),
            (b"/raw\x80?q=\xfe%41", a, b"/raw\x80?q=\xfe%41"),
            (b"/api/\xc3\xa9?m=\xff", b, b"/base/\xc3\xa9?m=\xff"),
        ]
        for sent, backend, want in cases:
            mark = backend.mark()
            c = self.client(proxy)
            c.send(b"GET " + sent + b" HTTP/1.1\r\nHost: x.test\r\n\r\n")
            resp = c.read_response()
            req = backend.wait(ev="request", start=mark)
            self.assertEqual(bytes.fromhex(req["raw"]), want, sent)
            answered = backend.wait(ev="response", conn=req["conn"], req=req["req"])
            self.assertEqual(resp.status, int(answered["status"]), sent)

    def test_no_route_is_404_with_request_id(self):
        backend = self.start_backend()
        proxy = self.start_proxy([route("api", "/api/", backend)])
        resp = self.client(proxy).request("GET", "/other")
        self.assertEqual(resp.status, 404)
        self.assertTrue(resp.header("x-request-id"))
        self.assertAccess(proxy.access("/other"), status=404, route="-")
        self.assertEqual(backend.requests(), [])

    def test_preserve_host(self):
        backend = self.start_backend()
        proxy = self.start_proxy([
            route("keep", "/keep/", backend),
            route("own", "/own/", backend, preserve_host=False),
        ])
        self.client(proxy).request("GET", "/keep/x?h=1", headers=None)
        _, kept = self._seen(backend, "h=1")
        self.assertEqual(kept["host"], ["localhost"])
        self.client(proxy).request("GET", "/own/x?h=2")
        _, own = self._seen(backend, "h=2")
        self.assertEqual(own["host"], ["127.0.0.1:%d" % backend.port])
        self.assertEqual(own["x-forwarded-host"], ["localhost"])


class RequestId(ProxyTest):
    """X-Request-Id is kept when sane, replaced when not, and always returned."""

    def test_sane_id_kept_insane_replaced(self):
        backend, proxy = self.setup_pair()
        for i, (sent, kept) in enumerate([("abc-123", True), ("a" * 128, True),
                                          ("a" * 129, False), ("has space", False),
                                          ("caf\xe9", False)]):
            c = self.client(proxy)
            c.send(("GET /fast?rid=%d HTTP/1.1\r\nHost: h\r\nX-Request-Id: %s\r\n\r\n"
                    % (i, sent)).encode("latin-1"))
            resp = c.read_response()
            self.assertEqual(resp.status, 200)
            got = resp.header("x-request-id")
            _, hdrs = Routing._seen(self, backend, "rid=%d" % i)
            self.assertEqual(hdrs["x-request-id"], [got], "upstream and client agree")
            if kept:
                self.assertEqual(got, sent)
            else:
                self.assertRegex(got, r"^[0-9a-f]{32}$")

    def test_error_answers_carry_the_id(self):
        backend = self.start_backend()
        proxy = self.start_proxy([route("main", "/", "http://127.0.0.1:1")])
        resp = self.client(proxy).request("GET", "/x", headers=[("X-Request-Id", "err-1")])
        self.assertEqual(resp.status, 502)
        self.assertEqual(resp.header("x-request-id"), "err-1")
        self.assertAccess(proxy.access("/x"), id="err-1", status=502)
        self.assertEqual(backend.requests(), [])


class CommandLine(unittest.TestCase):
    """-V and -h answer and exit 0; an unknown option exits 1."""

    def _run(self, *args):
        p = subprocess.run([PROXY_BIN] + list(args), capture_output=True, timeout=10,
                           text=True)
        return p.returncode, p.stdout + p.stderr

    def test_version_and_help(self):
        rc, out = self._run("-V")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^ctxproxy \d+\.\d+\.\d+")
        rc, out = self._run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("--check-config", out)
        rc, out = self._run("--bogus")
        self.assertEqual(rc, 1)
        self.assertIn("usage", out)


if __name__ == "__main__":
    unittest.main()
