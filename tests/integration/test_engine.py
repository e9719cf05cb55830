"""test_engine.py - the upstream HTTP/1.1 engine: response framing, interim
responses, split reads, the response head bound, malformed responses, dead
pooled connections, backpressure, keep-alive reuse and the upstream pool.

Written against the behaviour the product must have, so that it checks the
engine that speaks HTTP/1.1 itself on libcurl's connected sockets.  Class
Pool uses the configuration keys of that engine (upstream_keepalive,
upstream_keepalive_timeout_ms); today's libcurl engine refuses them.
"""

import os
import socket
import time
import unittest

from harness import SLOW, ProxyTest, expected_bytes

MIB = 1 << 20


def raw_exchange(proxy, request, timeout=10.0):
    """Send request bytes on a fresh socket and read until the proxy closes."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    deadline = time.monotonic() + timeout
    out = bytearray()
    try:
        s.sendall(request)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("proxy did not close within %.0fs: %r"
                                     % (timeout, bytes(out[:300])))
            s.settimeout(left)
            data = s.recv(65536)
            if not data:
                return bytes(out)
            out += data
    finally:
        s.close()


class EngineTest(ProxyTest):
    """Shared checks on both hops."""

    def opens(self, backend, start=0):
        """The backend connections opened since start."""
        return backend.find(ev="open", start=start)

    def assertUsable(self, client, backend, tag):
        """The client connection still carries a request and its response."""
        path = "/fast?usable=%s" % tag.replace(" ", "_")
        try:
            resp = client.request("GET", path)
        except (IndexError, ValueError) as e:
            self.fail("after %s the next response does not parse (stray bytes of the "
                      "previous one?): %r" % (tag, e))
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"),
                         "request after %s on the same client connection" % tag)
        self.assertFalse(resp.closed, "client connection closed after %s" % tag)
        backend.wait_request(path)

    def assertBackendDone(self, backend, path_prefix, start=0):
        """The backend saw the request and finished its response; returns its request event."""
        req = backend.wait_request(path_prefix, start=start)
        backend.wait(ev="done", conn=req["conn"], req=req["req"], start=start)
        return req


class Framing(EngineTest):
    """Every way a response body is delimited reaches the client intact."""

    def test_content_length_body(self):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        n = 3 * MIB + 17
        resp = c.request("GET", "/bytes?n=%d" % n, timeout=30.0)
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.complete)
        self.assertTrue(resp.body == expected_bytes(n), "body differs (%d bytes)" % len(resp.body))
        self.assertBackendDone(backend, "/bytes")
        self.assertAccess(proxy.access("/bytes"), status=200, cause="completed")
        self.assertUsable(c, backend, "content-length")

    def _chunked(self, query):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        chunks, size = 40, 1000
        path = "/chunked?chunks=%d&size=%d&%s" % (chunks, size, query)
        resp = c.request("GET", path, timeout=20.0)
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.complete, "chunked body not complete: %r" % resp)
        n = chunks * size
        self.assertEqual(len(resp.body), n)
        self.assertTrue(resp.body == expected_bytes(n), "chunked payload differs")
        self.assertNotIn(b"X-Trailer", resp.body)
        self.assertNotIn(b"X-Sum", resp.body)
        self.assertNotIn(b"a=b", resp.body)
        req = backend.wait_request("/chunked")
        backend.wait(ev="done", conn=req["conn"], req=req["req"], bytes=n)
        self.assertAccess(proxy.access("/chunked"), status=200, cause="completed")
        # Trailers or extensions left in the stream would break the next response.
        self.assertUsable(c, backend, "chunked")

    def test_chunked_extensions_and_trailers(self):
        self._chunked("ext=1&trailers=1")

    def test_chunked_upper_hex_sizes(self):
        self._chunked("hex=upper&ext=1&trailers=1")

    def test_chunked_plain(self):
        self._chunked("ext=0")

    def _until_close(self, path, n):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        resp = c.request("GET", "%s?n=%d" % (path, n), timeout=20.0)
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.complete, "body not complete: %r" % resp)
        self.assertEqual(len(resp.body), n)
        self.assertTrue(resp.body == expected_bytes(n), "body differs")
        req = backend.wait_request(path)
        backend.wait(ev="done", conn=req["conn"], req=req["req"], bytes=n)
        backend.wait(ev="close", conn=req["conn"], by="self")
        self.assertAccess(proxy.access(path), status=200, cause="completed")
        return backend, c

    def test_until_close_body(self):
        backend, c = self._until_close("/untilclose", 300_000)
        # The proxy re-frames the body; the client's connection lives on.
        self.assertUsable(c, backend, "untilclose")

    def test_http10_body(self):
        backend, c = self._until_close("/http10", 300_000)
        self.assertUsable(c, backend, "http10")

    def test_head_gets_headers_and_no_body(self):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        resp = c.request("HEAD", "/bytes?n=12345")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-length"), "12345",
                         "HEAD lost the backend's Content-Length: %r" % resp.header_list)
        self.assertEqual(resp.body, b"")
        req = backend.wait_request("/bytes")
        self.assertEqual(req["method"], "HEAD")
        backend.wait(ev="done", conn=req["conn"], req=req["req"])
        self.assertUsable(c, backend, "head")
        self.assertEqual(len(self.opens(backend)), 1, "HEAD responses were not reused")

    def test_head_of_chunked_and_until_close(self):
        """HEAD of a response the backend frames by chunks or by its close:
        no body bytes at all (not even a last chunk) to the client."""
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        for path in ("/chunked?chunks=3&size=10", "/untilclose?n=10", "/http10?n=10"):
            resp = c.request("HEAD", path)
            self.assertEqual((resp.status, resp.body), (200, b""), path)
            req = backend.wait_request(path)
            self.assertEqual(req["method"], "HEAD")
            backend.wait(ev="done", conn=req["conn"], req=req["req"])
            self.assertUsable(c, backend, "HEAD " + path)

    def test_204_and_304_have_no_body(self):
        backend, proxy = self.setup_pair(workers=1)
        c = self.client(proxy)
        cases = ["/status?code=204", "/status?code=304",
                 "/nobody?code=304&cl=100", "/nobody?code=204&cl=0",
                 "/nobody?code=204&te=1", "/nobody?code=304&te=1"]
        for i, path in enumerate(cases):
            mark = backend.mark()
            code = int(path.split("code=")[1][:3])
            resp = c.request("GET", path + "&i=%d" % i)
            self.assertEqual(resp.status, code, path)
            self.assertEqual(resp.body, b"", path)
            self.assertIsNone(resp.header("transfer-encoding"), path)
            req = backend.wait_request(path.split("&")[0], start=mark)
            backend.wait(ev="done", conn=req["conn"], req=req["req"], start=mark)
            # Nothing of a body in between: the next response parses cleanly.
            self.assertUsable(c, backend, "%s-%d" % (path, i))
        self.assertEqual(len(self.opens(backend)), 1,
                         "bodiless responses cost upstream connections: %s" % self.opens(backend))


class Interim(EngineTest):
    """1xx responses from the backend are not the response."""

    def test_interim_responses_are_skipped(self):
        backend, proxy = self.setup_pair()
        for status, n in ((103, 1), (103, 3), (100, 1), (102, 2)):
            path = "/interim?n=%d&status=%d" % (n, status)
            mark = backend.mark()
            data = raw_exchange(proxy, b"GET " + path.encode() +
                                b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), "%s: got %r" % (path, data[:200]))
            self.assertEqual(data.count(b"HTTP/1."), 1, "%s: more than one status line: %r"
                             % (path, data[:500]))
            self.assertNotIn(b"rel=preload", head, "%s: the 103's field leaked" % path)
            if b"chunked" in head.lower():
                self.assertIn(b"ok\n", body)
            else:
                self.assertEqual(body, b"ok\n", path)
            req = backend.wait_request(path, start=mark)
            backend.wait(ev="done", conn=req["conn"], req=req["req"], start=mark)
            self.assertEqual(len(backend.find(ev="interim", conn=req["conn"], req=req["req"])), n)

    def test_interim_then_keepalive(self):
        backend, proxy = self.setup_pair(workers=1)
        c = self.client(proxy)
        for i in range(3):
            resp = c.request("GET", "/interim?n=2&i=%d" % i)
            self.assertEqual((resp.status, resp.body), (200, b"ok\n"))
            self.assertIsNone(resp.header("link"))
        self.assertUsable(c, backend, "interim")
        self.assertEqual(len(self.opens(backend)), 1)


class SplitReads(EngineTest):
    """A response written a few bytes at a time parses the same."""

    def _split(self, n, piece, delay_ms):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        path = "/split?n=%d&piece=%d&delay_ms=%d" % (n, piece, delay_ms)
        resp = c.request("GET", path, timeout=30.0)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("x-split"), "piece=%d" % piece)
        self.assertTrue(resp.complete)
        self.assertEqual(len(resp.body), n)
        self.assertTrue(resp.body == expected_bytes(n), "split body differs")
        req = backend.wait_request("/split")
        backend.wait(ev="done", conn=req["conn"], req=req["req"], bytes=n)
        self.assertAccess(proxy.access("/split"), status=200, cause="completed")
        self.assertUsable(c, backend, "split")

    def test_one_byte_pieces(self):
        self._split(300, 1, 1)

    def test_seven_byte_pieces(self):
        self._split(2000, 7, 1)

    def test_seven_byte_pieces_no_delay(self):
        self._split(20000, 7, 0)


class ResponseHead(EngineTest):
    """The response head is bounded: over 64 KiB the parser refuses it; and it
    must fit, with the request's head, in the client connection's 16 KiB
    (libmicrohttpd builds it there): over that a 502 too, never a silent close.
    Under both, every field passes."""

    def test_head_over_64k_is_502(self):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        resp = c.request("GET", "/big-head?n=80000")
        self.assertEqual(resp.status, 502)
        self.assertNotIn("x-pad-0000", resp.headers)
        req = backend.wait_request("/big-head")
        backend.wait(ev="response", conn=req["conn"], req=req["req"])
        backend.wait(ev="close", conn=req["conn"], by="peer")
        self.assertAccess(proxy.access("/big-head"), status=502, cause="upstream_error")

    def _head_passes(self, n):
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        resp = c.request("GET", "/big-head?n=%d" % n)
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"))
        value = "v" * (1000 - len("X-Pad-0000: ") - 2)
        fields = (n + 999) // 1000      # fields of 1000 bytes until n is reached
        for i in range(fields):
            self.assertEqual(resp.header("x-pad-%04d" % i), value, "field X-Pad-%04d" % i)
        self.assertIsNone(resp.header("x-pad-%04d" % fields))
        self.assertBackendDone(backend, "/big-head")
        self.assertAccess(proxy.access("/big-head"), status=200, cause="completed")
        self.assertUsable(c, backend, "big-head")

    def test_head_of_12k_passes(self):
        self._head_passes(12 * 1024)

    def test_head_too_large_for_the_client_side_is_502(self):
        """16 KiB of fields cannot be built in the client connection's memory
        next to the request: libmicrohttpd would close the connection without
        an answer; the proxy says 502 and keeps the client connection."""
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        resp = c.request("GET", "/big-head?n=%d" % (16 * 1024))
        self.assertEqual(resp.status, 502)
        self.assertIn(b"too large", resp.body)
        self.assertIsNone(resp.header("x-pad-0000"))
        self.assertBackendDone(backend, "/big-head")
        self.assertAccess(proxy.access("/big-head"), status=502, cause="upstream_error")
        self.assertUsable(c, backend, "big-head 16k")


# Malformed in the head: refused with a 502 before anything reaches the client.
HEAD_KINDS = ["two_cl", "cl_te", "bad_cl", "obs_fold", "space_colon", "bad_status",
              "http2", "nul_value"]
# Malformed in a chunked body: a 502 if nothing was forwarded yet, else a
# truncated response (closed without the final chunk).
BODY_KINDS = ["bad_chunk", "chunk_no_crlf"]


class Malformed(EngineTest):
    """A malformed response is refused and its connection closed, never reused.
    The backend keeps each connection open (keep=1), so the close is the proxy's."""

    def _malformed(self, kind):
        backend, proxy = self.setup_pair(workers=1)
        c = self.client(proxy)
        warm = c.request("GET", "/fast?warm")
        self.assertEqual(warm.status, 200)
        path = "/badresp?kind=%s&keep=1" % kind
        resp = c.request("GET", path)
        if kind in HEAD_KINDS or resp.status != 200:
            self.assertEqual(resp.status, 502, "%s: %r" % (kind, resp))
            self.assertNotIn(b"abcd", resp.body, kind)
            self.assertAccess(proxy.access("/badresp"), status=502, cause="upstream_error")
        else:
            self.assertFalse(resp.complete, "%s: a complete response: %r" % (kind, resp))
            self.assertTrue(resp.closed, "%s: truncated response but the client "
                            "connection stayed open" % kind)
            self.assertNotEqual(proxy.access("/badresp").get("cause"), "completed", kind)
        req = backend.wait_request("/badresp")
        backend.wait(ev="done", conn=req["conn"], req=req["req"])
        backend.wait(ev="close", conn=req["conn"], by="peer")
        after = self.client(proxy).request("GET", "/fast?after")
        self.assertEqual((after.status, after.body), (200, b"ok\n"))
        follow = backend.wait_request("/fast?after")
        self.assertNotEqual(follow["conn"], req["conn"], "%s: connection reused" % kind)
        self.assertEqual(len(backend.find(ev="request", conn=req["conn"])), 2,
                         "%s: requests on the refused connection" % kind)


def _add_malformed_tests():
    for kind in HEAD_KINDS + BODY_KINDS:
        def test(self, kind=kind):
            self._malformed(kind)
        test.__name__ = "test_%s" % kind
        setattr(Malformed, test.__name__, test)


_add_malformed_tests()


class DeadPooled(EngineTest):
    """A pooled connection that dies before the first response byte: an
    idempotent request is retried once on a fresh connection, a POST never."""

    def _dead(self, setup_path, how):
        backend, proxy = self.setup_pair(workers=1)
        c = self.client(proxy)
        first = c.request("GET", setup_path)
        self.assertEqual((first.status, first.body), (200, b"ok\n"))
        old = self.assertBackendDone(backend, setup_path)
        return backend, proxy, c, old

    def _get_retried(self, setup_path, how):
        backend, proxy, c, old = self._dead(setup_path, how)
        mark = backend.mark()
        resp = c.request("GET", "/fast?after")
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"))
        dropped = backend.wait(ev="dropped", start=mark)
        self.assertEqual((dropped["conn"], dropped["method"], dropped["how"]),
                         (old["conn"], "GET", how))
        # The client has its answer; the backend's lines may still be on their way.
        reqs = backend.wait_count(2, lambda e: e.get("path") == "/fast?after", start=mark,
                                  what="ev=request /fast?after", ev="request")
        self.assertEqual(reqs[0]["conn"], old["conn"])
        retry = reqs[1]
        self.assertNotEqual(retry["conn"], old["conn"])
        backend.wait(ev="done", conn=retry["conn"], req=retry["req"], start=mark)
        reqs = [e for e in backend.requests(mark) if e["path"] == "/fast?after"]
        self.assertEqual(len(reqs), 2, "GET seen %d times, wanted dropped + one retry: %s"
                         % (len(reqs), reqs))
        opened = self.opens(backend, mark)
        self.assertEqual([e["conn"] for e in opened], [retry["conn"]],
                         "the retry must be on one fresh connection")
        self.assertAccess(proxy.access("/fast"), status=200, cause="completed")

    def _post_not_replayed(self, setup_path, how):
        backend, proxy, c, old = self._dead(setup_path, how)
        mark = backend.mark()
        resp = c.request("POST", "/upload?after", body=b"hello")
        self.assertEqual(resp.status, 502)
        dropped = backend.wait(ev="dropped", start=mark)
        self.assertEqual((dropped["conn"], dropped["method"]), (old["conn"], "POST"))
        backend.wait(ev="body_done", conn=old["conn"], req=dropped["req"], bytes=5)
        self.assertAccess(proxy.access("/upload"), status=502, cause="upstream_error")
        # One worker: a replay would have gone upstream before this probe.
        probe = self.client(proxy).request("GET", "/fast?probe")
        self.assertEqual(probe.status, 200)
        backend.wait_request("/fast?probe", start=mark)
        posts = [e for e in backend.requests(mark) if e["path"] == "/upload?after"]
        self.assertEqual(len(posts), 1, "POST replayed: %s" % posts)

    def test_get_retried_after_fin(self):
        self._get_retried("/drop-next", "fin")

    def test_get_retried_after_rst(self):
        self._get_retried("/reset-next", "rst")

    def test_post_not_replayed_after_fin(self):
        self._post_not_replayed("/drop-next", "fin")

    def test_post_not_replayed_after_rst(self):
        self._post_not_replayed("/reset-next", "rst")


class Backpressure(EngineTest):
    """Partial sends both ways: slow readers on either side get every byte."""

    def test_upload_8mib_to_slow_reader(self):
        backend, proxy = self.setup_pair(route_opts={"timeout_ms": 60000})
        data = os.urandom(8 * MIB)
        c = self.client(proxy)
        # 4 MiB/s: about 2 s of reading, the proxy's sends block for most of it.
        c.send_request("POST", "/slowread?rate=%d" % (4 * MIB), body=data)
        resp = c.read_response(60.0)
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.complete)
        self.assertEqual(len(resp.body), len(data))
        self.assertTrue(resp.body == data, "slowly read upload differs")
        req = backend.wait_request("/slowread")
        backend.wait(ev="body_done", conn=req["conn"], req=req["req"], bytes=len(data))
        self.assertAccess(proxy.access("/slowread"), status=200, cause="completed")
        self.assertUsable(c, backend, "slowread")

    def test_download_8mib_to_slow_client(self):
        backend, proxy = self.setup_pair()
        n = 8 * MIB
        c = self.client(proxy)
        c.send_request("GET", "/bytes?n=%d" % n)
        resp = c.read_head(10.0)
        self.assertEqual(resp.status, 200)
        body = bytearray()
        deadline = time.monotonic() + 60.0
        while len(body) < n:
            # about 64 KiB every 5 ms: the proxy's client sends stay short
            c._read_exact(min(65536, n - len(body)), deadline, body)
            time.sleep(0.005)
        self.assertTrue(body == expected_bytes(n), "slowly read download differs")
        req = backend.wait_request("/bytes")
        backend.wait(ev="done", conn=req["conn"], req=req["req"], bytes=n)
        self.assertAccess(proxy.access("/bytes"), status=200, cause="completed")
        self.assertUsable(c, backend, "slow-download")


class Reuse(EngineTest):
    """Keep-alive upstream: one connection for many responses of every framing."""

    def test_twenty_requests_one_connection(self):
        backend, proxy = self.setup_pair(workers=1)
        c = self.client(proxy)
        steps = [("GET", "/fast"), ("HEAD", "/bytes?n=100"), ("GET", "/status?code=204"),
                 ("GET", "/nobody?code=304&cl=100"), ("GET", "/chunked?chunks=3&size=100"),
                 ("GET", "/chunked?chunks=2&size=10&ext=1&trailers=1"),
                 ("HEAD", "/status?code=200"), ("GET", "/status?code=304"),
                 ("GET", "/bytes?n=1000"), ("GET", "/interim?n=1")]
        steps = steps + steps
        for i, (method, path) in enumerate(steps):
            sep = "&" if "?" in path else "?"
            resp = c.request(method, path + sep + "i=%d" % i)
            self.assertIn(resp.status, (200, 204, 304), "step %d %s %s" % (i, method, path))
            self.assertFalse(resp.closed, "step %d: client connection closed" % i)
        backend.wait_count(len(steps), ev="done")
        conns = {e["conn"] for e in backend.requests()}
        opens = self.opens(backend)
        self.assertEqual(len(opens), 1, "upstream connections: %s" % opens)
        self.assertEqual(len(conns), 1)
        self.assertEqual(backend.find(ev="close"), [])

    def test_connection_close_is_not_reused(self):
        backend, proxy = self.setup_pair(workers=1)
        c = self.client(proxy)
        self.assertEqual(c.request("GET", "/fast?warm").status, 200)
        resp = c.request("GET", "/close")
        self.assertEqual((resp.status, resp.body), (200, b"bye\n"))
        closed = backend.wait_request("/close")
        backend.wait(ev="close", conn=closed["conn"], by="self")
        after = self.client(proxy).request("GET", "/fast?after")
        self.assertEqual(after.status, 200)
        req = backend.wait_request("/fast?after")
        self.assertNotEqual(req["conn"], closed["conn"])
        self.assertEqual(len(self.opens(backend)), 2)
        self.assertEqual(len(backend.find(ev="request", conn=closed["conn"])), 2)

    def test_until_close_is_not_reused(self):
        backend, proxy = self.setup_pair(workers=1)
        c = self.client(proxy)
        resp = c.request("GET", "/untilclose?n=1000")
        self.assertEqual(resp.body, expected_bytes(1000))
        first = backend.wait_request("/untilclose")
        backend.wait(ev="close", conn=first["conn"], by="self")
        self.assertUsable(c, backend, "untilclose")
        after = backend.wait_request("/fast?usable")
        self.assertNotEqual(after["conn"], first["conn"])


class Pool(EngineTest):
    """The upstream pool of the new engine: upstream_keepalive (idle
    connections kept per worker and upstream server, default 256) and
    upstream_keepalive_timeout_ms (how long one is kept, default 60000)."""

    def test_defaults_accepted(self):
        backend, proxy = self.setup_pair(upstream_keepalive=256,
                                         upstream_keepalive_timeout_ms=60000)
        self.assertEqual(self.client(proxy).request("GET", "/fast").status, 200)

    def test_idle_cap(self):
        backend, proxy = self.setup_pair(workers=1, upstream_keepalive=2)
        clients = [self.client(proxy) for _ in range(5)]
        for i, c in enumerate(clients):
            c.send_request("GET", "/slow?ms=300&i=%d" % i)
        reqs = backend.wait_count(5, lambda e: e.get("path", "").startswith("/slow"),
                                  what="ev=request /slow", ev="request")
        conns = {e["conn"] for e in reqs}
        self.assertEqual(len(conns), 5, "5 concurrent requests, 5 upstream connections")
        for c in clients:
            resp = c.read_response(10.0)
            self.assertEqual((resp.status, resp.body), (200, b"slow done\n"))
        done = backend.wait_count(5, lambda e: e.get("conn") in conns, ev="done")
        last = max(e["t"] for e in done)
        closes = backend.wait_count(3, lambda e: e.get("conn") in conns, ev="close",
                                    what="ev=close of a /slow connection")
        for e in closes:
            self.assertEqual(e["by"], "peer")
            # with its response: long before the 60 s idle timeout
            self.assertLess(e["t"] - last, 2_000_000 * SLOW, "idle connection closed late")
        mark = backend.mark()
        c = self.client(proxy)
        for i in range(2):
            self.assertEqual(c.request("GET", "/fast?seq=%d" % i).status, 200)
        seq = backend.wait_count(2, lambda e: e.get("path", "").startswith("/fast?seq"),
                                 start=mark, what="ev=request /fast?seq", ev="request")
        kept = conns - {e["conn"] for e in backend.find(ev="close")}
        self.assertEqual(len(kept), 2, "idle connections kept: %s" % kept)
        for e in seq:
            self.assertIn(e["conn"], kept, "request not on a kept connection")
        self.assertEqual(self.opens(backend, mark), [], "new connection despite the pool")
        self.assertEqual(len(backend.find(lambda e: e.get("conn") in conns, ev="close")), 3)

    def test_idle_timeout(self):
        backend, proxy = self.setup_pair(workers=1, upstream_keepalive_timeout_ms=300)
        resp = self.client(proxy).request("GET", "/fast")
        self.assertEqual(resp.status, 200)
        req = backend.wait_request("/fast")
        done = backend.wait(ev="done", conn=req["conn"], req=req["req"])
        closed = backend.wait(ev="close", conn=req["conn"], timeout=10.0 * SLOW)
        self.assertEqual(closed["by"], "peer")
        # From the backend's end of the response, before the proxy has it
        # and starts the 300 ms: the lower bound holds however slow it is.
        self.assertWithin((closed["t"] - done["t"]) / 1e6, 0.2, 5.0 * SLOW,
                          "seconds until the idle connection was closed")

    def test_no_keepalive(self):
        backend, proxy = self.setup_pair(workers=1, upstream_keepalive=0)
        c = self.client(proxy)
        for i in range(3):
            mark = backend.mark()
            self.assertEqual(c.request("GET", "/fast?i=%d" % i).status, 200)
            req = backend.wait_request("/fast?i=%d" % i, start=mark)
            self.assertEqual([e["conn"] for e in self.opens(backend, mark)], [req["conn"]])
            # As nginx without keepalive: the proxy says so, and whichever
            # side closes first, the connection ends with the response.
            self.assertEqual(backend.headers_of(req).get("connection"), ["close"])
            backend.wait(ev="close", conn=req["conn"])
        self.assertEqual(len(self.opens(backend)), 3)


if __name__ == "__main__":
    unittest.main()
