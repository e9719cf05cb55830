"""test_backend.py - the test backend itself: events and endpoints, without the proxy."""

import os
import subprocess
import threading
import time
import unittest

from harness import (BACKEND_BIN, Backend, Client, LineLog, ProxyTest, WAIT_TIMEOUT, _parse_event,
                     config_text, expected_bytes, route)


class HeadersOf(unittest.TestCase):
    """Backend.headers_of on an event stream whose lines arrive one by one."""

    def test_waits_for_headers_end(self):
        rfd, wfd = os.pipe()
        backend = Backend.__new__(Backend)        # no process: a fed stream
        backend.events = LineLog(os.fdopen(rfd, "rb"), _parse_event, "fake")
        out = os.fdopen(wfd, "wb", buffering=0)
        self.addCleanup(out.close)
        out.write(b"t=1 ev=request conn=1 req=1 method=GET path=/x raw=2f78\n"
                  b"t=2 ev=header conn=1 req=1 name=host value=a\n")
        req = backend.wait(ev="request")
        backend.wait(ev="header", name="host")
        late = threading.Timer(0.2, out.write, [
            b"t=3 ev=header conn=1 req=1 name=x-late value=b\n"
            b"t=4 ev=headers_end conn=1 req=1\n"])
        late.start()
        self.addCleanup(late.cancel)
        self.assertEqual(backend.headers_of(req),
                         {"host": ["a"], "x-late": ["b"]})


class ConfigText(unittest.TestCase):
    """route() and config_text() render pools, lists and groups as libconfig."""

    def test_pool_lists_and_group(self):
        fake = Backend.__new__(Backend)            # no process: only its URL
        fake.url = "http://127.0.0.1:9002"
        r = route("api", "/api/", ["http://127.0.0.1:9001", fake], retries=2,
                  retry_on=["connect_failure", "502"],
                  health={"path": "/healthz", "interval_ms": 200, "rise": 1})
        text = config_text([r])
        self.assertIn('{ name = "api"; prefix = "/api/"; '
                      'upstream = ( "http://127.0.0.1:9001", "http://127.0.0.1:9002" ); '
                      'retries = 2; retry_on = ( "connect_failure", "502" ); '
                      'health = { path = "/healthz"; interval_ms = 200; rise = 1; }; }', text)

    def test_single_upstream_unchanged(self):
        fake = Backend.__new__(Backend)
        fake.url = "http://127.0.0.1:9003"
        self.assertIn('{ name = "m"; prefix = "/"; upstream = "http://127.0.0.1:9003"; }',
                      config_text([route("m", "/", fake)]))


def connection_end(c, timeout=WAIT_TIMEOUT):
    """How the peer ended raw client c's connection: "rst" or "fin"."""
    c.sock.settimeout(timeout)
    try:
        data = c.sock.recv(1)
    except ConnectionResetError:
        return "rst"
    if data:
        raise AssertionError("the backend answered: %r" % data)
    return "fin"


class BackendSelfTest(ProxyTest):
    """The suite's other assertions rely on these backend behaviours."""

    def direct(self, backend):
        """A raw client connected straight to the backend."""
        c = Client(backend.port)
        self.clients.append(c)
        return c

    def test_endpoints_and_keepalive(self):
        b = self.start_backend()
        c = self.direct(b)
        self.assertEqual(c.request("GET", "/fast").body, b"ok\n")
        self.assertEqual(c.request("GET", "/status?code=418").status, 418)
        self.assertEqual(c.request("GET", "/nope").status, 404)
        self.assertEqual(c.request("GET", "/bytes?n=100000").body, expected_bytes(100000))
        stream = c.request("GET", "/stream?chunks=3&size=7&interval_ms=10")
        self.assertEqual((stream.body, len(stream.chunks), stream.complete), (b"x" * 21, 3, True))
        data = os.urandom(300_000)
        self.assertEqual(c.request("POST", "/echo", body=data).body, data)
        c.send_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
        c.send_chunked(data, piece=70_000)
        self.assertEqual(c.read_response().body, data)
        self.assertEqual(c.request("PUT", "/upload", body=data).body, b"got 300000\n")
        hdrs = c.request("GET", "/headers", [("X-Two", "a  b%")]).body.decode()
        self.assertIn("x-two: a  b%\n", hdrs)
        closing = c.request("GET", "/close")
        self.assertTrue(closing.closed)
        self.assertEqual(len(b.find(ev="open")), 1)
        b.wait(ev="close", by="self")
        req = [e for e in b.requests() if e["path"] == "/headers"][0]
        self.assertEqual(b.headers_of(req)["x-two"], ["a  b%"])

    def test_cancel_phases(self):
        b = self.start_backend()
        cases = [("GET", "/hang", None, False, "body_done", "before_response"),
                 ("GET", "/slow?ms=10000", None, True, "body_done", "before_response"),
                 ("GET", "/stream?chunks=100&size=5&interval_ms=50", None, False, "response",
                  "sending_body"),
                 ("GET", "/idle?after_ms=10000", None, True, "response", "sending_body"),
                 ("POST", "/upload", [("Content-Length", "100000")], False, "headers_end",
                  "reading_body")]
        for method, path, headers, rst, ready, phase in cases:
            c = self.direct(b)
            mark = b.mark()
            c.send_request(method, path, headers)
            req = b.wait_request(path.split("?")[0], start=mark)
            b.wait(ev=ready, conn=req["conn"], req=req["req"])
            closed_at = c.reset() if rst else c.close()
            ev = b.wait(ev="cancelled", conn=req["conn"])
            self.assertEqual(ev["phase"], phase, path)
            self.assertLess(ev["t"] - closed_at, 100_000, path)
            b.wait(ev="close", conn=req["conn"], by="peer")


    def assertHealthy(self, b):
        """/healthz answers 200 "ok\\n" whatever -m says."""
        resp = b.get("/healthz")
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"), b.mode)

    def test_mode_reset_and_fin(self):
        data = os.urandom(100_000)
        for how in ("rst", "fin"):
            b = self.start_backend(mode="reset" if how == "rst" else "fin")
            c = self.direct(b)
            c.send_request("POST", "/echo", body=data)
            self.assertEqual(connection_end(c), how)
            req = b.wait_request("/echo")
            done = b.wait(ev="body_done", conn=req["conn"], req=req["req"])
            self.assertEqual(done["bytes"], str(len(data)))
            dropped = b.wait(ev="dropped", conn=req["conn"], req=req["req"])
            self.assertEqual((dropped["method"], dropped["how"]), ("POST", how))
            b.wait(ev="close", conn=req["conn"], by="self")
            self.assertEqual(b.find(ev="response", conn=req["conn"]), [])
            self.assertHealthy(b)

    def test_mode_hang(self):
        b = self.start_backend(mode="hang")
        c = self.direct(b)
        c.send_request("POST", "/fast", body=b"abc")
        req = b.wait_request("/fast")
        b.wait(ev="body_done", conn=req["conn"], req=req["req"], bytes=3)
        self.assertHealthy(b)
        self.assertTrue(c.is_open(0.2), "the hanging backend answered or closed")
        closed_at = c.close()
        ev = b.wait(ev="cancelled", conn=req["conn"], req=req["req"])
        self.assertEqual(ev["phase"], "before_response")
        self.assertLess(ev["t"] - closed_at, 100_000)
        b.wait(ev="close", conn=req["conn"], by="peer")
        self.assertEqual(b.find(ev="response", conn=req["conn"]), [])

    def test_mode_status(self):
        b = self.start_backend(mode="status=503")
        c = self.direct(b)
        for method, path, body in (("GET", "/fast", None), ("POST", "/echo", b"x" * 5000),
                                   ("GET", "/nope", None)):
            resp = c.request(method, path, body=body)
            self.assertEqual((resp.status, resp.body), (503, b"status 503\n"), path)
        resp = c.request("GET", "/healthz")
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"))
        echo = b.wait_request("/echo")
        b.wait(ev="body_done", conn=echo["conn"], req=echo["req"], bytes=5000)
        b.wait(ev="response", conn=echo["conn"], req=echo["req"], status=503)
        self.assertEqual(len(b.find(ev="open")), 1)

    def test_mode_slowhead(self):
        b = self.start_backend(mode="slowhead=500")
        c = self.direct(b)
        sent = time.monotonic()
        resp = c.request("GET", "/bytes?n=1000")
        self.assertEqual((resp.status, resp.body), (200, expected_bytes(1000)))
        self.assertGreaterEqual(resp.head_time - sent, 0.5)
        req = b.wait_request("/bytes")
        waited = (b.wait(ev="response", conn=req["conn"], req=req["req"])["t"]
                  - b.wait(ev="body_done", conn=req["conn"], req=req["req"])["t"])
        self.assertGreaterEqual(waited, 500_000)
        mark = b.mark()
        self.assertHealthy(b)
        health = b.wait_request("/healthz", start=mark)
        quick = (b.wait(ev="response", conn=health["conn"], req=health["req"])["t"]
                 - b.wait(ev="body_done", conn=health["conn"], req=health["req"])["t"])
        self.assertLess(quick, 250_000, "/healthz waited for slowhead")

    def test_mode_slowhead_cancelled(self):
        b = self.start_backend(mode="slowhead=60000")
        c = self.direct(b)
        c.send_request("GET", "/fast")
        req = b.wait_request("/fast")
        b.wait(ev="body_done", conn=req["conn"], req=req["req"])
        closed_at = c.reset()
        ev = b.wait(ev="cancelled", conn=req["conn"], req=req["req"])
        self.assertEqual(ev["phase"], "before_response")
        self.assertLess(ev["t"] - closed_at, 100_000)
        b.wait(ev="close", conn=req["conn"], by="peer")

    def test_healthz_and_set_health(self):
        b = self.start_backend()
        c = self.direct(b)
        resp = c.request("GET", "/healthz")
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"))
        b.set_health(503)
        resp = c.request("GET", "/healthz")       # another connection's setting
        self.assertEqual((resp.status, resp.body), (503, b"status 503\n"))
        self.assertEqual(c.request("GET", "/fast").status, 200)
        b.set_health(200)
        self.assertEqual(c.request("HEAD", "/healthz").status, 200)
        checks = b.wait_count(3, ev="request", path="/healthz")
        self.assertEqual([e["method"] for e in checks], ["GET", "GET", "HEAD"])
        self.assertEqual(len(b.find(ev="request", path="/set-health?code=503")), 1)

    def test_name_header(self):
        b = self.start_backend(name="b1")
        c = self.direct(b)
        for path in ("/fast", "/status?code=503", "/nope", "/healthz", "/nobody?code=304",
                     "/split?n=10&delay_ms=0", "/interim?n=1", "/close"):
            resp = c.request("GET", path)
            self.assertEqual(resp.header("x-backend"), "b1", path)
        c = self.direct(b)
        resp = c.request("GET", "/http10?n=10")
        self.assertEqual((resp.header("x-backend"), resp.body), ("b1", expected_bytes(10)))
        failing = self.start_backend(mode="status=502", name="b2")
        resp = failing.get("/fast")
        self.assertEqual((resp.status, resp.header("x-backend")), (502, "b2"))
        plain = self.start_backend()
        self.assertIsNone(plain.get("/fast").header("x-backend"))

    def test_bad_options(self):
        for args in (["-m", "bogus"], ["-m", "status=99"], ["-m", "slowhead=x"],
                     ["-i", "a b"], ["-i", ""], ["-i", "x" * 65]):
            proc = subprocess.run([BACKEND_BIN, "-p", "0"] + args, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=WAIT_TIMEOUT)
            self.assertEqual(proc.returncode, 2, args)
            self.assertIn(b"usage: backend", proc.stderr, args)
            self.assertEqual(proc.stdout, b"", args)

if __name__ == "__main__":
    unittest.main()
