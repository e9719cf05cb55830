"""test_tls_upstream.py - https:// upstreams (SPEC section 9): requests over
TLS reach the backend, connections are pooled and their sessions resumed,
verification failures are 502s whose log line says why, tls_verify,
tls_ca, tls_server_name and client certificates, cancellation over TLS,
no descriptor leak, and the config errors.

The HTTPS backend is TlsRelay: a TLS-terminating relay (Python's ssl module)
in front of a plain tests/backend, one backend connection per TLS
connection, closed when the TLS side closes (so the backend's ev=cancelled
and ev=close by=peer still show the proxy's cancellations).  It counts
connections and records whether each resumed a session.  Certificates are
made at run time with the openssl command."""

import atexit
import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (SLOW, Client, ProxyTest, WAIT_TIMEOUT, route, run_proxy_cli,
                     write_temp)

CERTS = None   # directory of the generated files, made by setUpModule


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, cwd=CERTS,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key(name):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", name + ".key")


def _ca(name):
    _key(name)
    _openssl("req", "-x509", "-new", "-key", name + ".key", "-subj", "/CN=" + name,
             "-days", "2", "-out", name + ".pem")


def _leaf(name, ca, san, client=False):
    """A certificate for san ("IP:127.0.0.1" or "DNS:x"), signed by ca."""
    _key(name)
    _openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + name,
             "-out", name + ".csr")
    ext = os.path.join(CERTS, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % san)
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey",
             ca + ".key", "-CAcreateserial", "-days", "2", "-extfile", ext,
             "-out", name + ".pem")


def _make_certs():
    """The files every test uses, made once (run.py runs tests without
    module fixtures); removed when the interpreter exits."""
    global CERTS
    if CERTS:
        return
    if not shutil.which("openssl"):
        raise AssertionError("the openssl command is not installed (scripts/deps.sh test)")
    CERTS = tempfile.mkdtemp(prefix="ctxproxy-tls-")
    atexit.register(shutil.rmtree, CERTS, True)
    _ca("ca")
    _ca("otherca")
    _leaf("ip", "ca", "IP:127.0.0.1")            # what most tests use
    _leaf("named", "ca", "DNS:other.test")        # for another name
    _leaf("stranger", "otherca", "IP:127.0.0.1")  # by a CA nobody trusts
    _leaf("client", "ca", "DNS:client.test", client=True)


def cert(name):
    _make_certs()
    return os.path.join(CERTS, name + ".pem")


def key(name):
    _make_certs()
    return os.path.join(CERTS, name + ".key")


class TlsRelay:
    """TLS on 127.0.0.1:port, relayed to the plain backend at backend_port.
    conns: TLS connections accepted (handshake done); resumed: how many of
    them resumed a session; failed: handshakes that failed; closed: TLS
    connections over (the proxy's side closed or failed)."""

    def __init__(self, backend_port, cert_name="ip", client_ca=None):
        self.backend_port = backend_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert(cert_name), key(cert_name))
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(cert(client_ca))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = self.resumed = self.failed = self.closed = 0
        self.stopping = False
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def url(self, host="127.0.0.1"):
        return "https://%s:%d" % (host, self.port)

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()

    def _count(self, **kv):
        with self.lock:
            for k, v in kv.items():
                setattr(self, k, getattr(self, k) + v)

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self._count(failed=1)
            raw.close()
            return
        self._count(conns=1, resumed=1 if tls.session_reused else 0)
        back = socket.create_connection(("127.0.0.1", self.backend_port))
        try:
            self._pump(tls, back)
        finally:
            back.close()            # the backend learns at once
            try:
                tls.close()
            except OSError:
                pass
            self._count(closed=1)

    def _pump(self, tls, back):
        tls.setblocking(False)
        back.setblocking(False)
        while not self.stopping:
            # bytes the ssl object already decrypted are not in the socket
            ready = [tls] if tls.pending() else \
                select.select([tls, back], [], [], 0.5)[0]
            for s in ready:
                other = back if s is tls else tls
                try:
                    data = s.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                other.setblocking(True)
                try:
                    other.sendall(data)
                except (OSError, ssl.SSLError):
                    return
                other.setblocking(False)

    def stop(self):
        self.stopping = True
        self.sock.close()

    def wait(self, what, timeout=WAIT_TIMEOUT):
        """Until what(self) is true."""
        deadline = time.monotonic() + timeout
        while not what(self):
            if time.monotonic() > deadline:
                raise AssertionError("relay: conns=%d resumed=%d failed=%d closed=%d"
                                     % (self.conns, self.resumed, self.failed, self.closed))
            time.sleep(0.01)


class TlsUpstreamTest(ProxyTest):

    def relay(self, backend, **kw):
        r = TlsRelay(backend.port, **kw)
        self.addCleanup(r.stop)
        return r

    def tls_route(self, name, prefix, relay, **opts):
        opts.setdefault("tls_ca", cert("ca"))
        return route(name, prefix, relay.url(), strip_prefix=True, **opts)

    def get(self, proxy, path):
        c = self.client(proxy)
        r = c.request("GET", path)
        c.close()
        return r

    def tls_failure(self, proxy, path, needle):
        """path is a 502 (cause upstream_error) whose log line says needle."""
        mark = proxy.log.mark()
        r = self.get(proxy, path)
        self.assertEqual(r.status, 502)
        self.assertAccess(proxy.access(path), status=502, cause="upstream_error")
        e = proxy.log.wait(lambda e: e.get("msg") == "upstream TLS connect failed",
                           start=mark)
        self.assertIn(needle, e.get("error", ""))

    def test_get_and_post_reach_the_backend(self):
        b = self.start_backend()
        rl = self.relay(b)
        p = self.start_proxy([self.tls_route("tls", "/", rl, preserve_host=False)])
        r = self.get(p, "/fast")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        req = b.wait_request("/fast")
        self.assertEqual(b.headers_of(req).get("host"), ["127.0.0.1:%d" % rl.port])
        self.assertAccess(p.access("/fast"), status=200, upstream_addr="127.0.0.1:%d" % rl.port)
        body = bytes(range(256)) * 400
        c = self.client(p)
        r = c.request("POST", "/echo", body=body)
        self.assertEqual((r.status, r.body), (200, body))
        b.wait(lambda e: e.get("ev") == "body_done" and e.get("bytes") == str(len(body)))

    def test_blocked_upload_goes_through_whole(self):
        """A body larger than every buffer on the way to a slow reader: the
        proxy's TLS sends block, and what it offers again must be what
        OpenSSL took (the same bytes at the same address)."""
        b = self.start_backend()
        rl = self.relay(b)
        p = self.start_proxy([self.tls_route("tls", "/", rl)])
        body = bytes(i % 251 for i in range(3 << 20))
        c = self.client(p)
        c.send_request("POST", "/slowread?rate=12000000", body=body)
        r = c.read_response(timeout=30)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, body)

    def test_one_connection_for_many_requests_and_sessions_resume(self):
        b = self.start_backend()
        rl = self.relay(b)
        p = self.start_proxy([self.tls_route("tls", "/", rl)], workers=1)
        c = self.client(p)
        for i in range(20):
            r = c.request("GET", "/fast?i=%d" % i)
            self.assertEqual(r.status, 200)
        self.assertEqual(rl.conns, 1)
        # the backend's event lines come through a pipe: wait for them
        b.wait_count(20, timeout=WAIT_TIMEOUT, ev="request", what="the 20 requests")
        self.assertEqual(len(b.requests()), 20)
        # /close ends the upstream connection: the next request makes one
        # more, which resumes the first one's session
        self.assertEqual(c.request("GET", "/close").status, 200)
        rl.wait(lambda r: r.closed == 1)
        self.assertEqual(c.request("GET", "/fast?after").status, 200)
        self.assertEqual(rl.conns, 2)
        self.assertEqual(rl.resumed, 1)

    def test_wrong_name_unknown_ca_and_tls_verify_false(self):
        b = self.start_backend()
        named = self.relay(b, cert_name="named")
        stranger = self.relay(b, cert_name="stranger")
        p = self.start_proxy([
            self.tls_route("name", "/name/", named),
            self.tls_route("ca", "/ca/", stranger),
            self.tls_route("noverify", "/noverify/", stranger, tls_verify=False),
            self.tls_route("sni", "/sni/", named, tls_server_name="other.test"),
        ])
        self.tls_failure(p, "/name/fast", "127.0.0.1")
        self.tls_failure(p, "/ca/fast", "certificate")
        self.assertEqual(self.get(p, "/noverify/fast").status, 200)
        r = self.get(p, "/sni/fast")
        self.assertEqual(r.status, 200)
        self.assertEqual(len(b.requests()), 2)     # the failures sent nothing

    def test_client_certificate(self):
        b = self.start_backend()
        rl = self.relay(b, client_ca="ca")
        p = self.start_proxy([
            self.tls_route("without", "/without/", rl),
            self.tls_route("with", "/with/", rl, tls_client_cert=cert("client"),
                           tls_client_key=key("client")),
        ])
        # TLS 1.3: the handshake ends on the proxy's side before the
        # server refuses it, so the refusal comes on the first read (or,
        # when the server was quicker, the send fails)
        mark = p.log.mark()
        r = self.get(p, "/without/fast")
        self.assertEqual(r.status, 502)
        self.assertAccess(p.access("/without/fast"), status=502, cause="upstream_error")
        e = p.log.wait(lambda e: e.get("msg") in ("upstream TLS read failed",
                                                  "upstream TLS send failed"), start=mark)
        if e["msg"] == "upstream TLS read failed":
            self.assertIn("certificate required", e.get("error", ""))
        self.assertEqual(self.get(p, "/with/fast").status, 200)
        self.assertEqual(len(b.requests()), 1)

    def test_hang_up_cancels_over_tls_at_once(self):
        b = self.start_backend()
        rl = self.relay(b)
        p = self.start_proxy([self.tls_route("tls", "/", rl)])
        c = self.client(p)
        c.send_request("GET", "/hang")
        req = b.wait_request("/hang")
        t0 = time.monotonic()
        c.close()
        b.wait(lambda e: e.get("ev") == "cancelled" and e.get("conn") == req["conn"])
        self.assertLess(time.monotonic() - t0, 1.0 * SLOW)
        rl.wait(lambda r: r.closed == 1)
        self.assertAccess(p.access("/hang"), cause="client_disconnect")

    def test_health_checks_use_the_route_tls_settings(self):
        b = self.start_backend()
        named = self.relay(b, cert_name="named")
        health = {"path": "/healthz", "interval_ms": 100, "timeout_ms": 3000,
                  "rise": 1, "fall": 1}
        p = self.start_proxy([
            self.tls_route("sni", "/sni/", named, tls_server_name="other.test",
                           health=health),
            self.tls_route("bad", "/bad/", named, health=health),
        ])
        p.log.wait(msg="upstream server down", route="bad")
        checks = b.wait_count(2, lambda e: e.get("ev") == "request" and
                              e.get("path") == "/healthz", what="checks through TLS")
        self.assertTrue(checks)
        self.assertEqual(p.log.find(msg="upstream server down", route="sni"), [])

    def test_descriptors_come_back(self):
        b = self.start_backend()
        rl = self.relay(b)
        p = self.start_proxy([self.tls_route("tls", "/", rl)], workers=1)
        self.assertEqual(self.get(p, "/fast").status, 200)
        for i in range(3):      # libcurl's own descriptors exist by now
            self.assertEqual(self.get(p, "/close?warm=%d" % i).status, 200)
        rl.wait(lambda r: r.closed == 3)
        before = p.fd_count()
        for i in range(30):
            self.assertEqual(self.get(p, "/close?i=%d" % i).status, 200)
        c = self.client(p)
        c.send_request("GET", "/hang")
        b.wait_request("/hang")
        c.close()
        rl.wait(lambda r: r.closed == 34)
        deadline = time.monotonic() + WAIT_TIMEOUT
        # before may still count the last client's connection
        while p.fd_count() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertLessEqual(p.fd_count(), before)
        self.assertEqual(rl.conns, 34)
        self.assertGreaterEqual(rl.resumed, 31)


CONFIG_HEAD = 'listen = "127.0.0.1:0";\nworkers = 1;\nroutes = (\n'


class TlsConfigErrors(unittest.TestCase):
    """TLS route keys refused by -t with FILE:LINE."""

    def refused(self, lines, bad_line, needle):
        text = CONFIG_HEAD + "  { " + "\n    ".join(lines) + " }\n);\n"
        path = write_temp(text)
        rc, out = run_proxy_cli(["-t", "-c", path])
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:%d:" % (path, bad_line), out, "config:\n%s" % text)
        self.assertIn(needle, out)

    def test_missing_ca_file(self):
        self.refused(['name = "a"; prefix = "/";',
                      'upstream = "https://127.0.0.1:1";',
                      'tls_ca = "no-such-ca.pem";'], 6, "cannot read")

    def test_client_cert_without_key(self):
        self.refused(['name = "a"; prefix = "/"; upstream = "https://h";',
                      'tls_client_cert = "%s";' % cert("client")], 5,
                     "'tls_client_cert' and 'tls_client_key' go together")

    def test_relative_files_are_the_config_directory(self):
        d = os.path.dirname(write_temp("", name="x"))
        shutil.copy(cert("ca"), os.path.join(d, "ca.pem"))
        path = os.path.join(d, "ctxproxy.conf")
        with open(path, "w") as f:
            f.write(CONFIG_HEAD + '  { name = "a"; prefix = "/"; '
                    'upstream = "https://h:8443"; tls_ca = "ca.pem"; }\n);\n')
        rc, out = run_proxy_cli(["-t", "-c", path])
        self.assertEqual(rc, 0, out)
