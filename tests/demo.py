#!/usr/bin/env python3
"""demo.py - `make demo`: watch ctxproxy carry a cancellation upstream.

Starts the test backend (build/tests/backend) on 127.0.0.1:19001, the
WebSocket echo backend (build/tests/ws_echo) on 127.0.0.1:19003 and
ctxproxy with conf/ctxproxy.conf (127.0.0.1:18080), then sends these
requests over raw sockets:

  a. GET /slow?ms=200          completes with 200
  b. GET /short/slow?ms=5000   the "short" route's 500 ms budget runs out: 504
  c. GET /slow?ms=10000        the client hangs up after 1 s
  d. GET /pool/fast            the "pool" route has two servers (a second
                               backend on 127.0.0.1:19002); the second is
                               killed, requests keep succeeding: a retry on
                               the first, then the second's ejection
  e. GET /ws/chat, Upgrade: websocket
                               a browser-like client opens a WebSocket
                               through the "ws" route, has one message
                               echoed, then closes its socket (as a closed
                               tab does: no close frame): the tunnel ends
                               and the backend sees EOF

and prints, for (c) and (e), a timeline built from the three
CLOCK_MONOTONIC clocks involved: this script's (time.monotonic_ns), the
backends' event lines (t=) and ctxproxy's access line (cancel_us,
upstream_close_us).  ctxproxy also gets an admin listener on
127.0.0.1:19901, whose live view (http://127.0.0.1:19901/) lists (c)'s
cancellation; with DEMO_HOLD=1 everything stays up afterwards (until
Ctrl-C, or DEMO_HOLD_S seconds, default 3600) so a person can open that
page and hang clients up by hand.
Everything it starts is stopped on the way out.  Exit status 0 when all
behaved as specified, 1 (with a message) otherwise.  Python 3 stdlib only.
"""

import atexit
import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY_BIN = os.path.join("build", "ctxproxy")
BACKEND_BIN = os.path.join("build", "tests", "backend")
WS_BACKEND_BIN = os.path.join("build", "tests", "ws_echo")
CONF = os.path.join("conf", "ctxproxy.conf")
HOST = "127.0.0.1"
PROXY_PORT = 18080
BACKEND_PORT = 19001
BACKEND2_PORT = 19002
WS_BACKEND_PORT = 19003
ADMIN_PORT = 19901    # the live view: http://127.0.0.1:19901/
POOL_TRIES = 20       # (d): requests sent at most, waiting for the ejection
READY_S = 5.0        # wait for each process to report it is listening
REQUEST_S = 5.0      # longest wait for any response
HANGUP_AFTER_S = 1.0  # request (c): the client closes after this long
SEEN_CLOSE_S = 2.0   # the backend must see the close within this
STOP_S = 3.0         # SIGTERM grace before SIGKILL
WS_IDLE_S = 0.3      # (e): the tunnel sits idle this long before the close
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# (e): what a desktop Chrome sends to open a WebSocket (Host and the key
# are added; Chrome offers permessage-deflate, which the backend declines).
WS_BROWSER_FIELDS = (
    ("Connection", "Upgrade"),
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                   "(KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
    ("Upgrade", "websocket"),
    ("Origin", f"http://{HOST}:{PROXY_PORT}"),
    ("Sec-WebSocket-Version", "13"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ("Sec-WebSocket-Protocol", "chat"),
)

LOGFMT = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


class DemoError(Exception):
    """Something did not behave; the message says what."""


def now_us():
    """CLOCK_MONOTONIC in microseconds, the clock of the daemon and backend."""
    return time.monotonic_ns() // 1000


def parse_kv(line):
    """Parse a logfmt / backend event line into a dict (quotes removed)."""
    out = {}
    for key, val in LOGFMT.findall(line):
        if val.startswith('"') and len(val) >= 2:
            val = re.sub(r'\\(.)', r'\1', val[1:-1])
        out[key] = val
    return out


class LineLog:
    """Collects the lines a child writes to one pipe, from a reader thread."""

    def __init__(self, pipe):
        """Start reading pipe (binary) until EOF."""
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self.thread.start()

    def _pump(self, pipe):
        """Thread body: append each line, wake up waiters."""
        for raw in iter(pipe.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def mark(self):
        """Index of the next line; pass it to wait_for as since."""
        with self.cond:
            return len(self.lines)

    def wait_for(self, pred, timeout, since=0):
        """First line from index since on whose parsed fields satisfy pred.

        Returns (line, fields), or None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.lines):
                    fields = parse_kv(self.lines[i])
                    if pred(fields, self.lines[i]):
                        return self.lines[i], fields
                    i += 1
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    return None
                self.cond.wait(left)

    def tail(self, n=8):
        """The last n lines, for error messages."""
        with self.cond:
            return self.lines[-n:]


class Child:
    """A process this demo started, with the pipe it reports on."""

    def __init__(self, name, argv, report_stream):
        """Start argv in its own session (so Ctrl-C reaches only us)."""
        self.name = name
        out = subprocess.PIPE if report_stream == "stdout" else subprocess.DEVNULL
        err = subprocess.PIPE if report_stream == "stderr" else None
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=err,
                                     start_new_session=True)
        self.log = LineLog(getattr(self.proc, report_stream))

    def wait_ready(self, pred, what):
        """Wait up to READY_S for a line matching pred, or raise."""
        if self.log.wait_for(pred, READY_S):
            return
        code = self.proc.poll()
        state = f"exited with status {code}" if code is not None else \
            f"did not report {what} within {READY_S:.0f} s"
        tail = "\n".join("    " + line for line in self.log.tail())
        raise DemoError(f"{self.name} {state}" + (f"; its last output:\n{tail}" if tail else ""))

    def stop(self):
        """SIGTERM, wait up to STOP_S, then SIGKILL; only this pid."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.thread.join(1.0)  # let the reader see EOF before closing
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


def check_port_free(port, who):
    """Raise unless 127.0.0.1:port can be bound (nobody listens there)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen(1)
    except OSError as e:
        raise DemoError(f"port {HOST}:{port} (for {who}) is not free: {e.strerror}; "
                        f"is another ctxproxy/backend running? (`ss -ltnp 'sport = :{port}'`)")
    finally:
        s.close()


def build_request(path, req_id):
    """Bytes of a GET for path through the proxy, tagged with req_id."""
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{PROXY_PORT}\r\n"
            f"X-Request-Id: {req_id}\r\nConnection: close\r\n\r\n").encode()


def dechunk(body):
    """Decode a chunked transfer-encoded body (trailers ignored)."""
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2:]
    return out


def parse_response(data):
    """(status, headers dict with lower-case names, body) of a raw response."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        raise DemoError(f"malformed response: {data[:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = dechunk(body)
    return int(parts[1]), headers, body


def fetch(path, req_id, want_headers=False):
    """Send one request, read to EOF; returns (status, body, sent_us, done_us),
    and the headers after them when want_headers."""
    with socket.create_connection((HOST, PROXY_PORT), timeout=REQUEST_S) as s:
        sent = now_us()
        s.sendall(build_request(path, req_id))
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            raise DemoError(f"GET {path}: no complete response within {REQUEST_S:.0f} s")
        done = now_us()
    status, headers, body = parse_response(data)
    if want_headers:
        return status, body, sent, done, headers
    return status, body, sent, done


def send_then_hang_up(path, req_id, after_s):
    """Send a request, close the socket after_s later; returns (sent_us, closed_us)."""
    s = socket.create_connection((HOST, PROXY_PORT), timeout=REQUEST_S)
    try:
        sent = now_us()
        s.sendall(build_request(path, req_id))
        time.sleep(max(0.0, after_s - (now_us() - sent) / 1e6))
        closed = now_us()
    finally:
        s.close()
    return sent, closed


def access_line(proxy, req_id, since, timeout=SEEN_CLOSE_S):
    """The access line (line, fields) of request req_id, or raise."""
    hit = proxy.log.wait_for(lambda f, _: f.get("type") == "access" and f.get("id") == req_id,
                             timeout, since)
    if not hit:
        raise DemoError(f"no access log line with id={req_id} within {timeout:.0f} s")
    return hit


def backend_event(backend, since, timeout, **match):
    """The first backend event (line, fields) from since whose fields match, or None."""
    return backend.log.wait_for(
        lambda f, _: all(f.get(k) == str(v) for k, v in match.items()), timeout, since)


def backend_request(backend, upstream_path, since):
    """The backend's ev=request fields for upstream_path, or raise."""
    hit = backend_event(backend, since, REQUEST_S, ev="request", path=upstream_path)
    if not hit:
        raise DemoError(f"the backend never received GET {upstream_path}")
    return hit[1]


def start_all():
    """Check the ports, start backend and proxy, wait until both listen."""
    for path in (PROXY_BIN, BACKEND_BIN, WS_BACKEND_BIN):
        if not os.access(os.path.join(ROOT, path), os.X_OK):
            raise DemoError(f"{path} is missing; run `make {PROXY_BIN} {BACKEND_BIN} "
                            f"{WS_BACKEND_BIN}` first")
    if not os.path.exists(os.path.join(ROOT, CONF)):
        raise DemoError(f"{CONF} is missing")
    check_port_free(BACKEND_PORT, "the backend")
    check_port_free(BACKEND2_PORT, "the second backend")
    check_port_free(WS_BACKEND_PORT, "the WebSocket backend")
    check_port_free(PROXY_PORT, "ctxproxy")
    check_port_free(ADMIN_PORT, "ctxproxy's admin listener")
    children = []
    backend = Child("backend", [BACKEND_BIN, "-p", str(BACKEND_PORT), "-i", "one"], "stdout")
    children.append(backend)
    proxy = None
    try:
        backend.wait_ready(lambda _, line: line.startswith("listening port="), "listening")
        backend2 = Child("backend2", [BACKEND_BIN, "-p", str(BACKEND2_PORT), "-i", "two"],
                         "stdout")
        children.append(backend2)
        backend2.wait_ready(lambda _, line: line.startswith("listening port="), "listening")
        ws_backend = Child("ws_echo", [WS_BACKEND_BIN, "-p", str(WS_BACKEND_PORT)], "stdout")
        children.append(ws_backend)
        ws_backend.wait_ready(lambda _, line: line.startswith("listening port="), "listening")
        proxy = Child("ctxproxy", [PROXY_BIN, "-c", demo_conf()], "stderr")
        children.append(proxy)
        proxy.wait_ready(lambda f, _: f.get("msg") == "started", "msg=started")
    except BaseException:
        stop_all(children)
        raise
    return backend, backend2, ws_backend, proxy


def demo_conf():
    """conf/ctxproxy.conf plus an admin listener on ADMIN_PORT, in a file of
    its own that is removed at exit (the shipped config has none)."""
    with open(os.path.join(ROOT, CONF)) as f:
        text = f.read()
    fd, path = tempfile.mkstemp(prefix="ctxproxy-demo-", suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(text + f'\n# added by tests/demo.py: the live view\n'
                f'admin = "{HOST}:{ADMIN_PORT}";\n')
    atexit.register(os.unlink, path)
    return path


def admin_get(path):
    """GET path on the admin listener: the parsed JSON body."""
    with urllib.request.urlopen(f"http://{HOST}:{ADMIN_PORT}{path}", timeout=REQUEST_S) as r:
        return json.loads(r.read().decode())


def demo_live_view(req_id):
    """(c) as the admin listener's live view lists it: /cancellations."""
    deadline = time.monotonic() + REQUEST_S
    while True:
        rows = [c for c in admin_get("/cancellations?limit=20")["cancellations"]
                if c["id"] == req_id]
        if rows:
            break
        if time.monotonic() > deadline:
            raise DemoError(f"(c) is not in the live view's /cancellations after "
                            f"{REQUEST_S:.0f} s")
        time.sleep(0.05)
    c = rows[0]
    print(f"    live view http://{HOST}:{ADMIN_PORT}/ lists it: {c['time']} {c['method']} "
          f"{c['path']} cause={c['cause']} phase={c['phase']} status={c['status']} "
          f"propagation_us={c['propagation_us']}")


def hold():
    """DEMO_HOLD=1: keep everything up for a person (Ctrl-C, or DEMO_HOLD_S)."""
    secs = float(os.environ.get("DEMO_HOLD_S", "3600"))
    print(f"\nDEMO_HOLD=1: ctxproxy stays up for {secs:.0f} s (Ctrl-C stops it). Open\n"
          f"    http://{HOST}:{ADMIN_PORT}/\n"
          f"and, in another terminal, start a request and hang it up with Ctrl-C:\n"
          f"    curl 'http://{HOST}:{PROXY_PORT}/slow?ms=30000'\n"
          f"(or /short/slow?ms=5000 for a deadline, /hang for one that never answers).",
          flush=True)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


def stop_all(children):
    """Stop the children, the last started first."""
    for child in reversed(children):
        if child:
            child.stop()


def demo_completes(backend, proxy):
    """Request (a): a slow but successful request; returns its access line."""
    print("[a] GET /slow?ms=200 - completes")
    since = proxy.log.mark()
    status, body, sent, done = fetch("/slow?ms=200", "demo-a")
    print(f"    HTTP {status} after {(done - sent) / 1000:.1f} ms, body {body.decode(errors='replace').strip()!r}")
    if status != 200:
        raise DemoError(f"(a) expected 200, got {status}")
    return access_line(proxy, "demo-a", since)[0]


def demo_deadline(backend, proxy):
    """Request (b): the route's 500 ms budget runs out; returns its access line."""
    print("\n[b] GET /short/slow?ms=5000 - route \"short\" has a 500 ms budget")
    bsince, psince = backend.log.mark(), proxy.log.mark()
    status, _, sent, done = fetch("/short/slow?ms=5000", "demo-b")
    print(f"    HTTP {status} after {(done - sent) / 1000:.1f} ms")
    if status != 504:
        raise DemoError(f"(b) expected 504 once the 500 ms budget ran out, got {status}")
    req = backend_request(backend, "/slow?ms=5000", bsince)
    hit = backend_event(backend, bsince, SEEN_CLOSE_S, ev="cancelled", req=req["req"])
    if not hit:
        raise DemoError(f"(b) the backend did not see its connection close within {SEEN_CLOSE_S:.0f} s")
    print(f"    backend: {hit[0]}")
    line, fields = access_line(proxy, "demo-b", psince)
    if fields.get("cause") != "deadline_exceeded":
        raise DemoError(f"(b) expected cause=deadline_exceeded, got {fields.get('cause')}")
    return line


def demo_hangup(backend, proxy):
    """Request (c): the client hangs up after 1 s; prints the timeline."""
    print(f"\n[c] GET /slow?ms=10000 - the client hangs up after {HANGUP_AFTER_S:g} s")
    bsince, psince = backend.log.mark(), proxy.log.mark()
    sent, closed = send_then_hang_up("/slow?ms=10000", "demo-c", HANGUP_AFTER_S)
    req = backend_request(backend, "/slow?ms=10000", bsince)
    left = SEEN_CLOSE_S - (now_us() - closed) / 1e6
    seen = backend_event(backend, bsince, max(0.0, left), ev="cancelled", req=req["req"])
    if not seen or int(seen[1]["t"]) - closed > SEEN_CLOSE_S * 1e6:
        raise DemoError(f"(c) the backend did not see its connection close within "
                        f"{SEEN_CLOSE_S:.0f} s of the client's")
    gone = backend_event(backend, bsince, 1.0, ev="close", conn=req["conn"])
    line, acc = access_line(proxy, "demo-c", psince)
    if acc.get("cause") != "client_disconnect" or acc.get("status") != "499":
        raise DemoError(f"(c) expected status=499 cause=client_disconnect, got "
                        f"status={acc.get('status')} cause={acc.get('cause')}")
    for key in ("cancel_us", "upstream_close_us"):
        if not acc.get(key, "").isdigit():
            raise DemoError(f"(c) the access line has no {key}")
    cancel, upclose, saw = int(acc["cancel_us"]), int(acc["upstream_close_us"]), int(seen[1]["t"])
    rows = [
        (sent, "client sent the request"),
        (int(req["t"]), f"backend received it (conn={req['conn']} req={req['req']})"),
        (closed, "client closed its socket"),
        (cancel, f"ctxproxy cancelled the context (cause={acc['cause']} phase={acc['phase']})"),
        (upclose, "ctxproxy shut the upstream connection down (FIN sent)"),
        (saw, f"backend saw the close (ev=cancelled phase={seen[1].get('phase')})"),
    ]
    if gone:
        rows.append((int(gone[1]["t"]), f"backend closed its socket (ev=close by={gone[1].get('by')})"))
    print(f"    {'ms':>10}  event")
    for t, what in rows:
        print(f"    {(t - sent) / 1000:10.3f}  {what}")
    print(f"    client close -> proxy cancel {(cancel - closed) / 1000:.3f} ms, "
          f"proxy cancel -> backend close {(saw - cancel) / 1000:.3f} ms, "
          f"total {(saw - closed) / 1000:.3f} ms")
    return line


def pool_request(proxy, n, tag):
    """One GET /pool/fast; returns (who answered, its access-line fields)."""
    req_id = f"demo-d{tag}{n}"
    since = proxy.log.mark()
    status, _, _, _, headers = fetch("/pool/fast", req_id, want_headers=True)
    if status != 200:
        raise DemoError(f"(d) GET /pool/fast answered {status}, not 200")
    return headers.get("x-backend", "?"), access_line(proxy, req_id, since)


def demo_pool(backend2, proxy):
    """Request (d): two servers, one stops; returns the telling access lines."""
    print("\n[d] GET /pool/fast - route \"pool\": 127.0.0.1:19001 (\"one\") and "
          "127.0.0.1:19002 (\"two\")")
    who = [pool_request(proxy, i, "a")[0] for i in range(4)]
    print(f"    4 requests answered by: {', '.join(who)}")
    psince = proxy.log.mark()
    backend2.proc.kill()
    backend2.proc.wait()
    print(f"    killed the second backend (pid {backend2.proc.pid})")
    lines, retried, ejected = [], None, None
    for i in range(POOL_TRIES):
        name, (line, acc) = pool_request(proxy, i, "b")
        lines.append(line)
        if acc.get("attempts") == "2" and not retried:
            retried = line
        ejected = proxy.log.wait_for(lambda f, _: f.get("msg") == "upstream server ejected",
                                     0.0, psince)
        if ejected and retried:
            break
    print(f"    {len(lines)} requests after the kill, every one 200")
    if not ejected:
        ejected = proxy.log.wait_for(lambda f, _: f.get("msg") == "upstream server ejected",
                                     SEEN_CLOSE_S, psince)
    if not retried or not ejected:
        raise DemoError("(d) expected a retry (attempts=2) and an ejection of "
                        "127.0.0.1:19002 in the log")
    print(f"    a retry:   {retried}")
    print(f"    ejection:  {ejected[0]}")
    return retried


def ws_open(path, req_id, key):
    """Connect and send a browser's WebSocket handshake for path.

    Returns (socket, connected_us, sent_us)."""
    s = socket.create_connection((HOST, PROXY_PORT), timeout=REQUEST_S)
    connected = now_us()
    fields = [("Host", f"{HOST}:{PROXY_PORT}")] + list(WS_BROWSER_FIELDS) + \
        [("Sec-WebSocket-Key", key), ("X-Request-Id", req_id)]
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    sent = now_us()
    s.sendall(head.encode())
    return s, connected, sent


def ws_read_101(s, key):
    """Read the handshake's answer: (headers, bytes after it, when it came); raise unless
    it is a 101 a browser would accept."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            chunk = None
        if not chunk:
            raise DemoError(f"(e) no complete answer to the Upgrade request: {data[:80]!r}")
        data += chunk
    got = now_us()
    head, _, rest = data.partition(b"\r\n\r\n")
    status, headers, _ = parse_response(head + b"\r\n\r\n")
    want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    if status != 101:
        raise DemoError(f"(e) expected 101 Switching Protocols, got {status}")
    if headers.get("sec-websocket-accept") != want or \
            headers.get("upgrade", "").lower() != "websocket" or \
            "upgrade" not in headers.get("connection", "").lower():
        raise DemoError(f"(e) a browser would refuse this 101: {head.decode('latin-1')!r}")
    return headers, rest, got


def ws_echo(s, rest, text):
    """Send text as a masked frame, read the echo; returns (sent_us, echoed_us)."""
    payload = text.encode()
    mask = os.urandom(4)
    sent = now_us()
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask +
              bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    want = bytes([0x81, len(payload)]) + payload
    data = rest
    while len(data) < len(want):
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            chunk = None
        if not chunk:
            raise DemoError(f"(e) no echo of the message, got {data!r}")
        data += chunk
    if data != want:
        raise DemoError(f"(e) the echo is {data!r}, not {want!r}")
    return sent, now_us()


def demo_websocket(ws_backend, proxy):
    """Request (e): a WebSocket through the "ws" route, closed by its client."""
    print('\n[e] GET /ws/chat, Upgrade: websocket - route "ws" to the WebSocket echo '
          f"backend on {HOST}:{WS_BACKEND_PORT}")
    bsince, psince = ws_backend.log.mark(), proxy.log.mark()
    key = base64.b64encode(os.urandom(16)).decode()
    s, connected, sent = ws_open("/ws/chat", "demo-e", key)
    try:
        headers, rest, got101 = ws_read_101(s, key)
        said, echoed = ws_echo(s, rest, "hello through ctxproxy")
        time.sleep(WS_IDLE_S)
        closed = now_us()
    finally:
        s.close()  # no close frame, as when a tab goes away
    print(f"    101 Switching Protocols: Sec-WebSocket-Accept checked, protocol "
          f"{headers.get('sec-websocket-protocol', 'none')}, X-Request-Id "
          f"{headers.get('x-request-id', 'none')}\n"
          f"    'hello through ctxproxy' echoed; {WS_IDLE_S * 1000:.0f} ms idle, then the "
          f"client closes its socket")
    req = backend_event(ws_backend, bsince, REQUEST_S, ev="request", path="/ws/chat")
    up = req and backend_event(ws_backend, bsince, 0.0, ev="upgrade", conn=req[1]["conn"])
    msg = req and backend_event(ws_backend, bsince, 0.0, ev="message", conn=req[1]["conn"])
    if not (req and up and msg):
        raise DemoError("(e) the WebSocket backend never saw the upgrade and the message")
    conn = req[1]["conn"]
    left = SEEN_CLOSE_S - (now_us() - closed) / 1e6
    eof = backend_event(ws_backend, bsince, max(0.0, left), ev="close", conn=conn, by="peer")
    if not eof or int(eof[1]["t"]) - closed > SEEN_CLOSE_S * 1e6:
        raise DemoError(f"(e) the backend did not see EOF within {SEEN_CLOSE_S:.0f} s "
                        f"of the client's close")
    line, acc = access_line(proxy, "demo-e", psince)
    if acc.get("status") != "101" or acc.get("cause") != "client_disconnect" or \
            not acc.get("propagation_us", "").isdigit():
        raise DemoError(f"(e) expected status=101 cause=client_disconnect and a "
                        f"propagation_us, got: {line}")
    saw = int(eof[1]["t"])
    rows = [(connected, "client connected"),
            (sent, "client sent the Upgrade request"),
            (int(req[1]["t"]), f"backend received it (conn={conn})"),
            (int(up[1]["t"]), "backend answered 101"),
            (got101, "client got 101 Switching Protocols: the tunnel is open"),
            (said, "client sent a message (masked text frame)"),
            (int(msg[1]["t"]), f"backend echoed it (ev=message bytes={msg[1].get('bytes')})"),
            (echoed, "client got the echo"),
            (closed, "client closed its socket (FIN, no close frame)")]
    for key_us, what in (("cancel_us", "ctxproxy ended the tunnel (cause=client_disconnect)"),
                         ("upstream_close_us", "ctxproxy shut the upstream connection down "
                                               "(FIN sent)")):
        if acc.get(key_us, "").isdigit():
            rows.append((int(acc[key_us]), what))
    rows.append((saw, f"backend saw EOF (ev=close by=peer how={eof[1].get('how')})"))
    rows.sort(key=lambda r: r[0])
    print(f"    {'ms':>10}  event")
    for t, what in rows:
        print(f"    {(t - connected) / 1000:10.3f}  {what}")
    print(f"    client close -> backend EOF {(saw - closed) / 1000:.3f} ms "
          f"(ctxproxy's propagation_us={acc['propagation_us']}: learning of the close -> "
          f"the upstream connection closed)")
    return line


def run():
    """Start everything, run the five requests, print the access lines."""
    backend, backend2, ws_backend, proxy = start_all()
    try:
        print(f"ctxproxy demo: cancellation from client to upstream\n"
              f"    backend {HOST}:{BACKEND_PORT} (pid {backend.proc.pid}), "
              f"WebSocket backend {HOST}:{WS_BACKEND_PORT} (pid {ws_backend.proc.pid}), "
              f"ctxproxy {HOST}:{PROXY_PORT} (pid {proxy.proc.pid}, {CONF} with an admin "
              f"listener)\n    live view: http://{HOST}:{ADMIN_PORT}/ (requests in flight, "
              f"cancellations as they happen)\n")
        lines = [demo_completes(backend, proxy), demo_deadline(backend, proxy),
                 demo_hangup(backend, proxy)]
        demo_live_view("demo-c")
        lines += [demo_pool(backend2, proxy), demo_websocket(ws_backend, proxy)]
        print("\naccess log")
        for line in lines:
            print(f"    {line}")
        if os.environ.get("DEMO_HOLD") == "1":
            hold()
    finally:
        stop_all([backend, backend2, ws_backend, proxy])
    print("\ndemo OK")


def on_sigterm(signum, frame):
    """Turn SIGTERM into SystemExit so the finally blocks stop the children."""
    sys.exit(128 + signum)


def main():
    """Entry point: 0 on success, 1 on a failed check, 130 on Ctrl-C."""
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run()
    except DemoError as e:
        sys.stdout.flush()
        print(f"\ndemo FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
