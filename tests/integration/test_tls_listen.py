"""test_tls_listen.py - TLS listeners (SPEC section 9): certificates by SNI,
the handshake under client_header_timeout_ms, refused certificates, reload,
and client hang-ups over TLS."""

import os
import signal
import socket
import ssl
import time

from harness import (SLOW, Client, ProxyTest, VALGRIND, WAIT_TIMEOUT, config_text, route,
                     run_proxy_cli, write_temp)
from tls_certs import Certs

HEAD_TIMEOUT_MS = 600
# valgrind slows the daemon 20-50 times, the sanitizers 2-3 times; the head
# clock itself does not move
SLACK = 5.0 if VALGRIND else 1.0 * SLOW
PROPAGATION_US = 100_000 * (20 if VALGRIND else SLOW)

_certs = None


def certs():
    """One CA and set of certificates for the whole file (openssl is slow-ish)."""
    global _certs
    if _certs is None:
        c = Certs()
        c.site = c.leaf("site", "localhost", ("DNS:localhost", "IP:127.0.0.1"))
        c.wild = c.leaf("wild", "wildcard", ("DNS:*.example.test",))
        c.other = c.leaf("other", "other.test", ("DNS:other.test",))
        c.old = c.expired("old", "old.example.test")
        c.stray = c.lone_key("stray")
        _certs = c
    return _certs


def cert_entry(pair):
    return {"cert": pair[0], "key": pair[1]}


def tls_port(proxy):
    line = proxy.log.wait(lambda e: e.get("msg") == "listening" and e.get("tls") == "1",
                          WAIT_TIMEOUT, what="msg=listening ... tls=1")
    return int(line["addr"].rsplit(":", 1)[1])


def context(maximum=None):
    ctx = ssl.create_default_context(cafile=certs().ca)
    ctx.check_hostname = False
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


class TLSClient(Client):
    """harness.Client over TLS (server_hostname is the SNI sent)."""

    def __init__(self, port, sni="localhost", ctx=None, timeout=WAIT_TIMEOUT):
        super().__init__(port, timeout)
        self.sock = (ctx or context()).wrap_socket(self.sock, server_hostname=sni)

    def peer_cn(self):
        subject = dict(x[0] for x in self.sock.getpeercert()["subject"])
        return subject["commonName"]


def scrape_tls(proxy):
    """{result: count} of ctxproxy_tls_handshakes_total."""
    c = Client(proxy.admin_port())
    try:
        resp = c.request("GET", "/metrics")
    finally:
        c.close()
    out = {}
    for line in resp.body.decode().splitlines():
        if line.startswith("ctxproxy_tls_handshakes_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[result] = int(float(line.rsplit(" ", 1)[1]))
    return out


class TLSListen(ProxyTest):

    def start_tls(self, backend, entries=None, **top):
        top.setdefault("tls_listen", "127.0.0.1:0")
        top.setdefault("tls_certificates", entries or [cert_entry(certs().site),
                                                       cert_entry(certs().wild)])
        top.setdefault("client_header_timeout_ms", HEAD_TIMEOUT_MS)
        top.setdefault("admin", "127.0.0.1:0")
        p = self.start_proxy([route("main", "/", backend)], **top)
        p.tls_port = tls_port(p)
        return p

    def wait_metric(self, proxy, result, want):
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            got = scrape_tls(proxy).get(result, 0)
            if got >= want or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    # -- requests --

    def test_request_over_tls(self):
        """X-Forwarded-Proto: https and tls= on TLS; http and no tls= on the plain listener."""
        b = self.start_backend()
        p = self.start_tls(b)
        c = TLSClient(p.tls_port)
        resp = c.request("GET", "/fast")
        self.assertEqual(resp.status, 200)
        self.assertEqual(c.sock.version(), "TLSv1.3")
        req = b.wait_request("/fast")
        self.assertEqual(b.headers_of(req).get("x-forwarded-proto"), ["https"])
        self.assertAccess(p.access("/fast"), tls="1.3", status=200)
        # a second request on the same keep-alive TLS connection
        self.assertEqual(c.request("GET", "/slow?ms=1").status, 200)
        c.close()
        plain = self.client(p)
        mark = b.mark()
        self.assertEqual(plain.request("GET", "/upload").status, 200)
        req = b.wait_request("/upload", start=mark)
        self.assertEqual(b.headers_of(req).get("x-forwarded-proto"), ["http"])
        self.assertNotIn("tls", p.access("/upload"))
        self.assertGreaterEqual(self.wait_metric(p, "ok", 1), 1)

    def test_sni_picks_the_certificate(self):
        """Exact names, a wildcard for one label, and the first for anything else."""
        b = self.start_backend()
        p = self.start_tls(b, [cert_entry(certs().site), cert_entry(certs().wild),
                               cert_entry(certs().other)])
        want = {"localhost": "localhost", "LocalHost": "localhost",
                "a.example.test": "wildcard", "B.Example.Test": "wildcard",
                "other.test": "other.test", "x.y.example.test": "localhost",
                "example.test": "localhost", "unknown.invalid": "localhost", None: "localhost"}
        for sni, cn in want.items():
            c = TLSClient(p.tls_port, sni)
            self.assertEqual(c.peer_cn(), cn, "SNI %r" % sni)
            self.assertEqual(c.request("GET", "/fast").status, 200)
            c.close()

    def test_min_version_13_refuses_tls12(self):
        b = self.start_backend()
        p = self.start_tls(b, tls_min_version="1.3")
        with self.assertRaises(ssl.SSLError):
            TLSClient(p.tls_port, ctx=context(ssl.TLSVersion.TLSv1_2))
        self.assertGreaterEqual(self.wait_metric(p, "failed", 1), 1)
        c = TLSClient(p.tls_port)
        self.assertEqual(c.request("GET", "/fast").status, 200)
        # and 1.2 works by default
        p2 = self.start_tls(b)
        c = TLSClient(p2.tls_port, ctx=context(ssl.TLSVersion.TLSv1_2))
        self.assertEqual(c.sock.version(), "TLSv1.2")
        self.assertEqual(c.request("GET", "/upload").status, 200)
        self.assertAccess(p2.access("/upload"), tls="1.2")

    # -- slow and wrong clients --

    def test_slow_handshakes_are_closed(self):
        """Silent, half a ClientHello, a trickle: closed by the head clock, no fd kept."""
        b = self.start_backend()
        p = self.start_tls(b)
        scrape_tls(p)                     # the admin side's own fds, first
        base_fds = p.fd_count()
        # a real ClientHello, captured from Python's own handshake
        out = ssl.MemoryBIO()
        obj = context().wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        self.assertGreater(len(hello), 100)
        t0 = time.monotonic()       # before the connects: each clock starts at its accept
        socks = [socket.create_connection(("127.0.0.1", p.tls_port)) for _ in range(3)]
        socks[1].sendall(hello[:len(hello) // 2])
        trickle_at = 0
        closed = {}
        while len(closed) < 3 and time.monotonic() - t0 < HEAD_TIMEOUT_MS / 1000 + SLACK:
            if 2 not in closed and time.monotonic() - t0 >= trickle_at * 0.05 and \
                    trickle_at < len(hello) - 1:
                try:
                    socks[2].sendall(hello[trickle_at:trickle_at + 1])
                except OSError:
                    pass
                trickle_at += 1
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                s.setblocking(False)
                try:
                    if s.recv(4096) == b"":
                        closed[i] = time.monotonic() - t0
                except BlockingIOError:
                    pass
                except OSError:
                    closed[i] = time.monotonic() - t0
            time.sleep(0.01)
        for s in socks:
            s.close()
        self.assertEqual(sorted(closed), [0, 1, 2], "not closed: %r" % closed)
        for i, at in closed.items():
            self.assertWithin(at, HEAD_TIMEOUT_MS / 1000 - 0.05,
                              HEAD_TIMEOUT_MS / 1000 + SLACK, "client %d closed after (s)" % i)
        self.assertEqual(b.requests(), [])
        self.assertGreaterEqual(self.wait_metric(p, "timeout", 3), 3)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while p.fd_count() > base_fds and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(p.fd_count(), base_fds, os.listdir("/proc/%d/fd" % p.pid))
        self.assertEqual(p.accesses(), [], "a handshake timeout is no request")

    def test_slow_head_after_handshake_gets_408(self):
        """The head clock goes on after the handshake: 408 inside the TLS session."""
        b = self.start_backend()
        p = self.start_tls(b)
        t0 = time.monotonic()             # the clock starts at accept
        c = TLSClient(p.tls_port)
        c.send(b"GET /never-finished HTTP/1.1\r\nHost: localhost\r\n")
        resp = c.read_head(timeout=HEAD_TIMEOUT_MS / 1000 + SLACK)
        self.assertEqual(resp.status, 408)
        self.assertWithin(time.monotonic() - t0, HEAD_TIMEOUT_MS / 1000 - 0.05,
                          HEAD_TIMEOUT_MS / 1000 + SLACK, "408 after accept (s)")
        self.assertAccess(p.access("-"), status=408, tls="1.3", cause="client_header_timeout")
        self.assertEqual(b.requests(), [])

    def test_plaintext_on_tls_port(self):
        b = self.start_backend()
        p = self.start_tls(b)
        c = Client(p.tls_port)
        c.send_request("GET", "/plaintext")
        self.assertTrue(c.wait_closed(WAIT_TIMEOUT))
        self.assertEqual(b.requests(), [])
        self.assertGreaterEqual(self.wait_metric(p, "failed", 1), 1)

    # -- refused certificates --

    def config_with(self, entry, directory=None):
        b_url = "http://127.0.0.1:9"
        text = config_text([route("main", "/", b_url)], tls_listen="127.0.0.1:0",
                           tls_certificates=[entry])
        if directory is None:
            return write_temp(text)
        path = os.path.join(directory, "ctxproxy-%d.conf" % time.monotonic_ns())
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_bad_certificates_refused(self):
        """Missing, unreadable, expired, mismatched: -t and start say which file, exit 1."""
        c = certs()
        cases = [
            ({"cert": c.path("missing.pem"), "key": c.site[1]}, "missing.pem",
             "No such file"),
            ({"cert": c.dir, "key": c.site[1]}, c.dir, "not a regular file"),
            ({"cert": c.site[0], "key": c.path("missing.key")}, "missing.key",
             "No such file"),
            (cert_entry(c.old), "old.pem", "expired"),
            ({"cert": c.site[0], "key": c.stray}, "stray.key", "does not match"),
            ({"cert": c.site[1], "key": c.site[1]}, "site.key", "not a PEM certificate"),
        ]
        for entry, name, why in cases:
            path = self.config_with(entry)
            for args in (["-t", "-c", path], ["-c", path]):
                rc, out = run_proxy_cli(args)
                self.assertEqual(rc, 1, "%s %r: %s" % (args, entry, out))
                self.assertIn(name, out)
                self.assertIn(why, out)
                self.assertIn(path + ":", out, "the message names the config entry")
        # relative names are found next to the configuration file
        path = self.config_with({"cert": "site.pem", "key": "site.key"}, c.dir)
        rc, out = run_proxy_cli(["-t", "-c", path])
        self.assertEqual((rc, out.strip()), (0, path + ": ok"))

    # -- reload --

    def rewrite(self, proxy, entries):
        text = config_text([route("main", "/", proxy.backend)], tls_listen="127.0.0.1:0",
                           tls_certificates=entries, admin="127.0.0.1:0",
                           client_header_timeout_ms=HEAD_TIMEOUT_MS)
        with open(proxy.config_path + ".tmp", "w") as f:
            f.write(text)
        os.replace(proxy.config_path + ".tmp", proxy.config_path)

    def reload(self, proxy, want):
        mark = proxy.log.mark()
        proxy.signal(signal.SIGHUP)
        return proxy.log.wait(start=mark, msg=want)

    def test_reload(self):
        """A broken certificate keeps the old set; a good one serves new connections
        while an open keep-alive connection goes on."""
        c = certs()
        b = self.start_backend()
        p = self.start_tls(b, [cert_entry(c.site)])
        p.backend = b
        kept = TLSClient(p.tls_port, "other.test")
        self.assertEqual(kept.peer_cn(), "localhost")
        self.assertEqual(kept.request("GET", "/fast").status, 200)
        self.rewrite(p, [{"cert": c.other[0], "key": c.stray}])
        self.reload(p, "reload failed: the running configuration stays")
        self.assertIn("stray.key", p.log.text())
        n = TLSClient(p.tls_port, "other.test")
        self.assertEqual(n.peer_cn(), "localhost")
        self.assertEqual(n.request("GET", "/fast").status, 200)
        n.close()
        self.rewrite(p, [cert_entry(c.other)])
        self.reload(p, "reloaded")
        n = TLSClient(p.tls_port, "other.test")
        self.assertEqual(n.peer_cn(), "other.test")
        self.assertEqual(n.request("GET", "/fast").status, 200)
        n.close()
        self.assertEqual(kept.request("GET", "/fast").status, 200)
        kept.close()

    # -- hang-ups --

    def test_client_hangup_over_tls(self):
        """FIN or RST over TLS while awaiting headers, streaming or uploading: the
        backend sees the cancel promptly."""
        b = self.start_backend()
        p = self.start_tls(b)
        cases = [("awaiting", "/slow?ms=10000", "before_response", False),
                 ("awaiting-rst", "/slow?ms=10000&r", "before_response", True),
                 ("streaming", "/stream?chunks=1000&size=100&interval_ms=20",
                  "sending_body", False),
                 ("uploading", "/upload", "reading_body", False)]
        for what, path, backend_phase, rst in cases:
            c = TLSClient(p.tls_port)
            mark = b.mark()
            if what == "uploading":
                c.send_request("POST", path, [("Content-Length", str(1 << 20))])
                c.send(b"u" * 65536)
            else:
                c.send_request("GET", path)
            if what == "streaming":
                self.assertEqual(c.read_head().status, 200)
            req = b.wait_request(path.split("?")[0], start=mark)
            if what == "streaming":
                b.wait(ev="response", conn=req["conn"], req=req["req"])
            closed_at = c.reset() if rst else c.close()
            end = b.wait_conn_end(req["conn"])
            self.assertLess(end["t"] - closed_at, PROPAGATION_US,
                            "%s: backend saw the close %.1f ms after the client's"
                            % (what, (end["t"] - closed_at) / 1000))
            cancelled = b.wait(ev="cancelled", conn=req["conn"], req=req["req"])
            self.assertEqual(cancelled["phase"], backend_phase, what)
            line = p.access(path)
            self.assertAccess(line, status=499, cause="client_disconnect", tls="1.3")
