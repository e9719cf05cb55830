"""test_backend.py - the test backend itself: events and endpoints, without the proxy."""

import os
import threading
import unittest

from harness import Backend, Client, LineLog, ProxyTest, _parse_event, expected_bytes


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


if __name__ == "__main__":
    unittest.main()
