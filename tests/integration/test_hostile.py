"""test_hostile.py - hostile request heads on raw sockets: 400, close, nothing upstream (SPEC §6)."""

import socket
import threading
import unittest
import urllib.parse

from harness import ProxyTest, route

READ_TIMEOUT = 5.0    # for the answer to a hostile head
CLOSE_TIMEOUT = 5.0   # for the proxy to close the connection after it
HOST = b"Host: a"

# Who answers the 400: ctxproxy (its error page carries X-Request-Id and
# Connection: close) or libmicrohttpd 0.9.75 itself, before ctxproxy sees
# the request (its own 400 page, also with Connection: close).
PROXY = "ctxproxy"
MHD = "libmicrohttpd"


def head(target, lines, method=b"GET", version=b"HTTP/1.1", eol=b"\r\n", body=b""):
    """A raw request: request line, field lines and the empty line, then body."""
    out = method + b" " + target + b" " + version + eol
    out += b"".join(line + eol for line in lines)
    return out + eol + body


def tagged(target, name):
    """target with ?hostile=NAME (or &hostile=NAME) so the backend's events name the case."""
    sep = b"&" if b"?" in target else b"?"
    return target + sep + b"hostile=" + name.encode()


def post(name, lines, body, target=b"/echo"):
    """A POST of body to target, tagged, Host first."""
    return head(tagged(target, name), [HOST] + lines, method=b"POST", body=body)


def get(name, lines, target=b"/fast"):
    """A GET of target, tagged, with the given field lines."""
    return head(tagged(target, name), lines)


CHUNKED_EMPTY = b"0\r\n\r\n"

# name -> (raw request, who answers)
HOSTILE = {
    "cl_and_te": (post("cl_and_te", [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
                       CHUNKED_EMPTY), PROXY),
    "te_and_cl": (post("te_and_cl", [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
                       CHUNKED_EMPTY), PROXY),
    "two_different_cls": (post("two_different_cls", [b"Content-Length: 5", b"Content-Length: 6"],
                               b"hello!"), PROXY),
    "cl_plus": (post("cl_plus", [b"Content-Length: +5"], b"hello"), MHD),
    "cl_minus": (post("cl_minus", [b"Content-Length: -1"], b"hello"), MHD),
    "cl_list": (post("cl_list", [b"Content-Length: 1, 2"], b"ab"), MHD),
    "cl_hex": (post("cl_hex", [b"Content-Length: 0x5"], b"hello"), MHD),
    "te_gzip_chunked": (post("te_gzip_chunked", [b"Transfer-Encoding: gzip, chunked"],
                             CHUNKED_EMPTY), PROXY),
    "te_chunked_identity": (post("te_chunked_identity",
                                 [b"Transfer-Encoding: chunked, identity"], CHUNKED_EMPTY),
                            PROXY),
    "te_identity": (post("te_identity", [b"Transfer-Encoding: identity"], b""), PROXY),
    "two_te_fields": (post("two_te_fields", [b"Transfer-Encoding: chunked",
                                             b"Transfer-Encoding: chunked"], CHUNKED_EMPTY),
                      PROXY),
    "name_with_space": (get("name_with_space", [HOST, b"Bad Name: x"]), PROXY),
    "space_before_colon": (post("space_before_colon", [b"Transfer-Encoding : chunked"],
                                CHUNKED_EMPTY), PROXY),
    "empty_name_first": (get("empty_name_first", [b": x", HOST]), PROXY),
    "empty_name_later": (get("empty_name_later", [HOST, b": x"]), PROXY),
    "nul_in_value": (get("nul_in_value", [HOST, b"X-A: a\x00b"]), PROXY),
    "nul_ending_value": (get("nul_ending_value", [HOST, b"X-A: a\x00", b"X-B: c"]), PROXY),
    "nul_ending_last_value": (get("nul_ending_last_value", [HOST, b"X-A: a\x00"]), PROXY),
    "nul_only_value": (get("nul_only_value", [HOST, b"X-A: \x00"]), PROXY),
    "bare_cr_in_value": (get("bare_cr_in_value", [HOST, b"X-A: a\rX-Injected: 1"]), PROXY),
    "obs_fold": (get("obs_fold", [HOST, b"X-A: a", b" X-Injected: 1"]), PROXY),
    "obs_fold_first": (get("obs_fold_first", [b" X-Injected: 1", HOST]), PROXY),
    "missing_host": (get("missing_host", [b"Accept: */*"]), PROXY),
    "two_hosts": (get("two_hosts", [HOST, b"Host: b"]), PROXY),
    "dot_dot": (get("dot_dot", [HOST], b"/../x"), PROXY),
    "encoded_dot_dot": (get("encoded_dot_dot", [HOST], b"/a/%2e%2E/x"), PROXY),
    "dot": (get("dot", [HOST], b"/./x"), PROXY),
    "encoded_dot_last": (get("encoded_dot_last", [HOST], b"/a/%2E"), PROXY),
    "absolute_form": (get("absolute_form", [HOST], b"http://h/x"), PROXY),
    "cr_in_target": (get("cr_in_target", [HOST], b"/x\rX-Injected: 1"), PROXY),
    "ctl_in_target": (get("ctl_in_target", [HOST], b"/x\x01y"), PROXY),
    "nul_in_target": (head(b"/fast?hostile=nul_in_target\x00/../x", [HOST]), PROXY),
    # libmicrohttpd refuses these itself (as it does the malformed
    # Content-Lengths above: cl_plus, cl_minus, cl_list, cl_hex).
    "no_colon": (get("no_colon", [HOST, b"X-A x"]), MHD),
    "nul_in_name": (get("nul_in_name", [HOST, b"X\x00A: b"]), MHD),
    "nul_after_version": (head(b"/fast?hostile=nul_after_version", [HOST],
                               version=b"HTTP/1.1\x00"), MHD),
}


def headers_seen(backend, path):
    """The request headers the backend saw for the request to path."""
    return backend.headers_of(backend.wait_request(path))


def case_of(path):
    """The hostile=NAME of a request target, or None."""
    query = urllib.parse.urlsplit(path).query
    return urllib.parse.parse_qs(query).get("hostile", [None])[0]


class HostileBase(ProxyTest):
    """Shared steps: a follow-up request that proves the backend is caught up."""

    def follow_up(self, backend, proxy, name):
        """A normal request on a fresh connection; once the backend saw it,
        anything the hostile one sent upstream would have been seen too."""
        path = "/fast?hostile=after-" + name
        resp = self.client(proxy).request("GET", path, timeout=READ_TIMEOUT)
        self.assertEqual(resp.status, 200, "follow-up request")
        backend.wait_request(path)

    def assertNothingUpstream(self, backend, name):
        """No backend request event carries the case's tag."""
        reached = [e["path"] for e in backend.requests() if case_of(e["path"]) == name]
        self.assertEqual(reached, [], "%s reached the backend" % name)


class Hostile(HostileBase):
    """Every hostile head is refused before anything goes upstream."""

    def check_rejected(self, name):
        """Send HOSTILE[name]: 400, who answers, Connection: close, closed, nothing upstream."""
        raw, who = HOSTILE[name]
        backend, proxy = self.setup_pair()
        c = self.client(proxy)
        c.send(raw, timeout=READ_TIMEOUT)
        resp = c.read_head(READ_TIMEOUT)
        self.assertEqual(resp.status, 400, "%s: answer" % name)
        answered_by = PROXY if resp.header("x-request-id") else MHD
        self.assertEqual(answered_by, who, "%s: who answered" % name)
        self.assertEqual(resp.header("connection", "").lower(), "close",
                         "%s: Connection header" % name)
        self.assertTrue(c.wait_closed(CLOSE_TIMEOUT),
                        "%s: connection still open %.0fs after the 400" % (name, CLOSE_TIMEOUT))
        self.follow_up(backend, proxy, name)
        self.assertNothingUpstream(backend, name)
        if who == PROXY:
            def mine(e):
                return e.get("type") == "access" and case_of(e.get("path", "")) == name
            proxy.log.wait(mine, READ_TIMEOUT, status=400, what="access line of %s" % name)


def _rejection_test(name):
    def test(self):
        self.check_rejected(name)
    test.__doc__ = "Hostile head %s is refused." % name
    return test


for _name in HOSTILE:
    setattr(Hostile, "test_reject_" + _name, _rejection_test(_name))


class Accepted(ProxyTest):
    """Odd but valid heads go through; hop-by-hop and injected fields do not."""

    def send_ok(self, proxy, raw, version_closes=False):
        """Send raw on a fresh connection; expect 200 within bounds."""
        c = self.client(proxy)
        c.send(raw, timeout=READ_TIMEOUT)
        resp = c.read_response(READ_TIMEOUT)
        self.assertEqual(resp.status, 200)
        if version_closes:
            self.assertTrue(resp.closed or c.wait_closed(CLOSE_TIMEOUT))
        return resp

    def test_http10_without_host(self):
        backend, proxy = self.setup_pair()
        self.send_ok(proxy, head(b"/headers?case=h10", [], version=b"HTTP/1.0"),
                     version_closes=True)
        seen = headers_seen(backend, "/headers?case=h10")
        self.assertEqual(seen.get("x-forwarded-proto"), ["http"])
        # The proxy writes the upstream head itself: with no client Host it
        # names the upstream, and no X-Forwarded-Host is invented.
        self.assertEqual(seen.get("host"), ["127.0.0.1:%d" % backend.port])
        self.assertNotIn("x-forwarded-host", seen)

    def test_lf_only_line_ends(self):
        backend, proxy = self.setup_pair()
        self.send_ok(proxy, head(b"/headers?case=lf", [HOST, b"X-A: b", b"X-C:\tc d"],
                                 eol=b"\n"))
        seen = headers_seen(backend, "/headers?case=lf")
        self.assertEqual(seen.get("x-a"), ["b"])
        self.assertEqual(seen.get("x-c"), ["c d"])

    def test_unusual_but_valid_layouts(self):
        """Empty and blank values, trailing blanks, mixed line ends: no false 400."""
        backend, proxy = self.setup_pair()
        raws = {
            "empty_values": head(b"/headers?case=empty_values", [
                HOST, b"X-E:", b"X-F: ", b"X-G:\t\t", b"X-H: h"]),
            "empty_last": head(b"/headers?case=empty_last", [HOST, b"X-E:"]),
            "trailing_blanks": head(b"/headers?case=trailing_blanks", [HOST, b"X-B: c \t "]),
            "mixed_eol": b"GET /headers?case=mixed_eol HTTP/1.1\nHost: a\r\nX-A: b\n"
                         b"X-C: d\r\n\n",
            "no_ows": head(b"/headers?case=no_ows", [b"Host:a", b"X-A:b"]),
        }
        seen = {}
        for name, raw in raws.items():
            resp = self.send_ok(proxy, raw)
            self.assertEqual(resp.status, 200, name)
            seen[name] = headers_seen(backend, "/headers?case=" + name)
        self.assertEqual(seen["empty_values"].get("x-h"), ["h"])
        self.assertEqual(seen["mixed_eol"].get("x-a"), ["b"])
        self.assertEqual(seen["mixed_eol"].get("x-c"), ["d"])
        self.assertEqual(seen["no_ows"].get("x-a"), ["b"])

    def test_empty_value_forwarded(self):
        """Regression: an empty client field once went to libcurl as "X-E:",
        which libcurl reads as "remove X-E"; it must reach the backend empty."""
        backend, proxy = self.setup_pair()
        self.send_ok(proxy, head(b"/headers?case=empty", [HOST, b"X-E:", b"X-F: "]))
        seen = headers_seen(backend, "/headers?case=empty")
        self.assertEqual(seen.get("x-e"), [""])
        self.assertEqual(seen.get("x-f"), [""])

    def test_connection_named_field_not_forwarded(self):
        backend, proxy = self.setup_pair()
        self.send_ok(proxy, head(b"/headers?case=conn", [
            HOST, b"Connection: keep-alive, X-Secret", b"X-Secret: s3cr3t",
            b"X-Public: p"]))
        seen = headers_seen(backend, "/headers?case=conn")
        self.assertNotIn("x-secret", seen)
        self.assertEqual(seen.get("x-public"), ["p"])

    def test_every_connection_field_counts(self):
        """A second Connection field's options are hop-by-hop too."""
        backend, proxy = self.setup_pair()
        self.send_ok(proxy, head(b"/headers?case=conn2", [
            HOST, b"Connection: keep-alive", b"Connection: X-Secret", b"X-Secret: s"]))
        seen = headers_seen(backend, "/headers?case=conn2")
        self.assertNotIn("x-secret", seen)

    def test_long_connection_value(self):
        """A Connection value over 1 KiB still removes what it names."""
        backend, proxy = self.setup_pair()
        self.send_ok(proxy, head(b"/headers?case=connlong", [
            HOST, b"Connection: keep-alive," + b" " * 1100 + b"X-Secret", b"X-Secret: s"]))
        seen = headers_seen(backend, "/headers?case=connlong")
        self.assertNotIn("x-secret", seen)

    def test_no_header_injection(self):
        """CR/LF in a value or the target never becomes a line upstream."""
        backend, proxy = self.setup_pair()
        refused = {
            "inj_bare_cr": get("inj_bare_cr", [HOST, b"X-A: a\rX-Injected: 1"]),
            "inj_fold": get("inj_fold", [HOST, b"X-A: a", b"\tX-Injected: 1"]),
            "inj_request_id": get("inj_request_id", [HOST, b"X-Request-Id: r\rX-Injected: 1"]),
            "inj_host": head(b"/fast?hostile=inj_host", [b"Host: a\rX-Injected: 1"]),
        }
        for name, raw in refused.items():
            c = self.client(proxy)
            c.send(raw, timeout=READ_TIMEOUT)
            resp = c.read_head(READ_TIMEOUT)
            self.assertEqual(resp.status, 400, name)
            self.assertTrue(c.wait_closed(CLOSE_TIMEOUT), name)
        # Percent-encoded CR LF in the target stays percent-encoded.
        self.send_ok(proxy, head(b"/headers?case=enc&x=%0d%0aX-Injected:%201", [HOST]))
        self.assertNotIn("x-injected", headers_seen(backend, "/headers?case=enc"))
        req = backend.wait_request("/headers?case=enc")
        self.assertIn("%0d%0a", req["path"].lower())
        for e in backend.requests():
            self.assertIsNone(case_of(e["path"]), "a refused request went upstream")
            self.assertNotIn("x-injected", backend.headers_of(e))


class RawUpstream:
    """A one-shot upstream on 127.0.0.1 that answers every request with a fixed raw response."""

    def __init__(self, response):
        self.response = response
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(READ_TIMEOUT)
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        """Answer one connection: read the head, send the response, close."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(READ_TIMEOUT)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(self.response)
            except OSError:
                pass

    def close(self):
        """Stop listening and wait for the serving thread."""
        self.listener.close()
        self.thread.join(READ_TIMEOUT)


class ResponseHops(ProxyTest):
    """Hop-by-hop fields of the upstream response do not reach the client (SPEC §5)."""

    def fetch_through(self, response):
        """The client's view of `response` sent by a raw upstream through the proxy."""
        up = RawUpstream(response)
        self.addCleanup(up.close)
        proxy = self.start_proxy([route("raw", "/", up.url)])
        resp = self.client(proxy).request("GET", "/raw", timeout=READ_TIMEOUT)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"ok")
        return resp

    def test_connection_named_response_field_dropped(self):
        resp = self.fetch_through(b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\n"
                                  b"X-Hop: v\r\nKeep-Alive: timeout=5\r\nX-End: e\r\n"
                                  b"Content-Length: 2\r\n\r\nok")
        self.assertIsNone(resp.header("x-hop"))
        self.assertIsNone(resp.header("keep-alive"))
        self.assertEqual(resp.header("x-end"), "e")

    def test_upstream_second_connection_field(self):
        """Regression: what a second Connection field of the response names
        must not reach the client either."""
        resp = self.fetch_through(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"
                                  b"Connection: X-Hop\r\nX-Hop: v\r\n"
                                  b"Content-Length: 2\r\n\r\nok")
        self.assertIsNone(resp.header("x-hop"))


if __name__ == "__main__":
    unittest.main()
