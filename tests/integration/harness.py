"""harness.py - processes, configs, logs and a raw HTTP client for ctxproxy's integration tests."""

import atexit
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Overridable, e.g. to run the suite against a sanitizer build.
PROXY_BIN = os.environ.get("CTXPROXY_BIN", os.path.join(ROOT, "build", "ctxproxy"))
BACKEND_BIN = os.environ.get("CTXPROXY_BACKEND", os.path.join(ROOT, "build", "tests", "backend"))

# Generous bounds: the suite must not be flaky on a loaded 2-core machine.
# CTXPROXY_VALGRIND=1 runs every daemon under valgrind's memcheck; a
# definite leak or a memory error fails the test that stops it.
VALGRIND = os.environ.get("CTXPROXY_VALGRIND") == "1"
VALGRIND_EXIT = 99
# make check SANITIZE=address,undefined: every daemon 2-3 times slower.
SANITIZED = bool(os.environ.get("SANITIZE"))
# What an upper bound on the daemon's own work (a propagation, an exit, an
# answer after its timer) is multiplied by: memcheck runs it 20-50 times
# slower, the sanitizers 2-3 times, and on a loaded 2-core machine.  Speed
# is for the benchmarks; a test bounds only what the contract promises.
SLOW = 10 if VALGRIND else 3 if SANITIZED else 1
START_TIMEOUT = 30.0 if VALGRIND else 10.0
WAIT_TIMEOUT = 30.0 if VALGRIND else 10.0
STOP_TIMEOUT = 10.0

_started = []
_started_lock = threading.Lock()


def _register(proc):
    """Remember a started process so that kill_all() can end it."""
    with _started_lock:
        _started.append(proc)
    return proc


def kill_all():
    """Kill (by pid) every process this harness started that is still running."""
    with _started_lock:
        procs = list(_started)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(kill_all)


def now_us():
    """CLOCK_MONOTONIC in microseconds, the clock of the backend's and proxy's stamps."""
    return int(time.monotonic() * 1e6)


def parse_logfmt(line):
    """Parse `k=v k2="v 2" bare` into a dict; bare words map to ''."""
    out = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and line[i] not in " =":
            i += 1
        key = line[start:i]
        if i >= n or line[i] == " ":
            out[key] = ""
            continue
        i += 1
        if i < n and line[i] == '"':
            i += 1
            chars = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                    chars.append({"n": "\n", "t": "\t", "r": "\r"}.get(line[i], line[i]))
                else:
                    chars.append(line[i])
                i += 1
            i += 1
            out[key] = "".join(chars)
        else:
            start = i
            while i < n and line[i] != " ":
                i += 1
            out[key] = line[start:i]
    return out


def _matches(item, pred, kv):
    """Whether a parsed line satisfies the callable pred and every key=value in kv."""
    if pred is not None and not pred(item):
        return False
    for key, want in kv.items():
        if item.get(key) != str(want):
            return False
    return True


class LineLog:
    """Lines of a child's pipe, parsed and collected by a background thread."""

    def __init__(self, stream, parse, name):
        self.items = []
        self.raw = []
        self.eof = False
        self.name = name
        self._parse = parse
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream):
        """Read lines until EOF; every line is kept raw and parsed."""
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                item = self._parse(line)
                with self._cond:
                    self.raw.append(line)
                    self.items.append(item)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def mark(self):
        """Index of the next line, for waiting only on what comes after now."""
        with self._cond:
            return len(self.items)

    def find(self, pred=None, start=0, **kv):
        """Every parsed line from index start on that matches."""
        with self._cond:
            return [it for it in self.items[start:] if _matches(it, pred, kv)]

    def wait(self, pred=None, timeout=WAIT_TIMEOUT, start=0, what=None, **kv):
        """First matching line from index start on; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for idx in range(seen, len(self.items)):
                    if _matches(self.items[idx], pred, kv):
                        return self.items[idx]
                seen = len(self.items)
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    break
                self._cond.wait(left)
        desc = what or " ".join("%s=%s" % kv_ for kv_ in kv.items()) or "a match"
        state = "its output ended" if self.eof else "%.1fs passed" % timeout
        raise AssertionError("%s: no line with %s (%s)" % (self.name, desc, state))

    def wait_count(self, count, pred=None, timeout=WAIT_TIMEOUT, start=0, what=None, **kv):
        """Wait until at least count lines match; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [it for it in self.items[start:] if _matches(it, pred, kv)]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0 or self.eof:
                    break
                self._cond.wait(left)
        if len(found) < count:
            desc = what or " ".join("%s=%s" % kv_ for kv_ in kv.items())
            raise AssertionError(
                "%s: %d lines with %s, wanted %d" % (self.name, len(found), desc, count))
        return found

    def text(self):
        """All raw lines so far, newline-joined."""
        with self._cond:
            return "\n".join(self.raw)

    def wait_raw(self, regex, timeout=WAIT_TIMEOUT, start=0):
        """First raw line from index start on that regex (re.search) matches;
        AssertionError after timeout."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for idx in range(seen, len(self.raw)):
                    if pattern.search(self.raw[idx]):
                        return self.raw[idx]
                seen = len(self.raw)
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    break
                self._cond.wait(left)
        raise AssertionError("%s: no line matching /%s/" % (self.name, pattern.pattern))


def _parse_event(line):
    """Parse a backend event line; t becomes an int, header values are decoded."""
    ev = parse_logfmt(line)
    if "t" in ev:
        try:
            ev["t"] = int(ev["t"])
        except ValueError:
            pass
    if ev.get("ev") == "header" and "value" in ev:
        ev["value"] = urllib.parse.unquote(ev["value"])
    return ev


def _stop_process(proc, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Signal proc and wait up to timeout; SIGKILL after that. Returns (rc, seconds, killed)."""
    if proc.poll() is not None:
        return proc.returncode, 0.0, False
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
        return proc.returncode, time.monotonic() - start, False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return proc.returncode, time.monotonic() - start, True


class EventSource:
    """A test process whose event lines are collected in self.events (a
    LineLog): what the tests ask of any backend's events."""

    def wait(self, pred=None, timeout=WAIT_TIMEOUT, start=0, **kv):
        """First event matching pred and kv (values compared as strings)."""
        return self.events.wait(pred, timeout, start, **kv)

    def find(self, pred=None, start=0, **kv):
        """Every event so far matching pred and kv."""
        return self.events.find(pred, start, **kv)

    def mark(self):
        """Index of the next event."""
        return self.events.mark()

    def wait_count(self, count, pred=None, timeout=WAIT_TIMEOUT, start=0, what=None, **kv):
        """Wait until at least count events match; returns them."""
        return self.events.wait_count(count, pred, timeout, start, what, **kv)

    def wait_request(self, path_prefix, timeout=WAIT_TIMEOUT, start=0):
        """The ev=request event whose path starts with path_prefix."""
        return self.wait(lambda e: e.get("path", "").startswith(path_prefix),
                         timeout, start, ev="request")


class Backend(EventSource):
    """build/tests/backend on 127.0.0.1, its event lines collected.

    mode: the backend's -m MODE, how it answers every request but /healthz
    and /set-health ("reset", "fin", "hang", "status=503", "slowhead=500");
    name: its -i NAME, sent back as the X-Backend response field;
    port: its -p PORT (0: the kernel picks), e.g. a port a proxy's config
    already names (free_port()) to bring a down server up."""

    def __init__(self, mode=None, name=None, port=0):
        if not os.access(BACKEND_BIN, os.X_OK):
            raise AssertionError("%s is not built (make build/tests/backend)" % BACKEND_BIN)
        cmd = [BACKEND_BIN, "-p", str(port)]
        if mode is not None:
            cmd += ["-m", mode]
        if name is not None:
            cmd += ["-i", name]
        self.mode = mode
        self.name = name
        self.proc = _register(subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        self.events = LineLog(self.proc.stdout, _parse_event, "backend")
        first = self.events.wait(lambda e: "listening" in e, START_TIMEOUT, what="listening")
        self.port = int(first["port"])
        self.url = "http://127.0.0.1:%d" % self.port

    def wait_conn_end(self, conn, timeout=WAIT_TIMEOUT):
        """First ev=cancelled or ev=close by=peer on backend connection conn."""
        def ended(e):
            return e.get("conn") == str(conn) and (
                e.get("ev") == "cancelled" or (e.get("ev") == "close" and e.get("by") == "peer"))
        return self.wait(ended, timeout)

    def requests(self, start=0):
        """Every ev=request event so far."""
        return self.find(start=start, ev="request")

    def headers_of(self, req, timeout=WAIT_TIMEOUT):
        """The request headers the backend saw for request event req: name -> [values].

        The backend prints a request's header events and then its headers_end
        event; the lines reach us one by one, so wait (bounded) for headers_end
        before reading, or a caller may see only some of them."""
        self.wait(ev="headers_end", conn=req["conn"], req=req["req"], timeout=timeout)
        out = {}
        for e in self.find(ev="header", conn=req["conn"], req=req["req"]):
            out.setdefault(e["name"], []).append(e["value"])
        return out

    def get(self, path, timeout=WAIT_TIMEOUT):
        """GET path straight from the backend (no proxy) on a connection of its
        own, e.g. /set-health?code=503; returns the Response."""
        c = Client(self.port, timeout)
        try:
            return c.request("GET", path, timeout=timeout)
        finally:
            c.close()

    def set_health(self, code, timeout=WAIT_TIMEOUT):
        """Make /healthz answer code from now on; AssertionError if not acknowledged."""
        resp = self.get("/set-health?code=%d" % code, timeout)
        if resp.status != 200 or resp.body != b"set\n":
            raise AssertionError("backend: /set-health?code=%d got %r" % (code, resp))

    def stop(self):
        """Stop the backend (SIGTERM, then SIGKILL)."""
        _stop_process(self.proc, timeout=5)


def config_value(v):
    """Format a Python value as a libconfig value: a scalar, a list
    ( a, b ) from a list or tuple, a group { k = v; ... } from a dict."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if -2**31 <= v < 2**31 else "%dL" % v
    if isinstance(v, (list, tuple)):
        return "( " + ", ".join(config_value(x) for x in v) + " )"
    if isinstance(v, dict):
        return "{ " + "".join("%s = %s; " % (k, config_value(x)) for k, x in v.items()) + "}"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return '"%s"' % s


def _upstream_url(u):
    """A Backend's URL, or u itself (a URL string)."""
    return u.url if isinstance(u, Backend) else u


def route(name, prefix, upstream, **opts):
    """A route dict; upstream may be a Backend, a URL string, or a list of
    them (a pool).  List values of opts become libconfig lists
    (retry_on=["connect_failure", "502"]), dicts groups (health={...})."""
    if isinstance(upstream, (list, tuple)):
        upstream = [_upstream_url(u) for u in upstream]
    else:
        upstream = _upstream_url(upstream)
    r = {"name": name, "prefix": prefix, "upstream": upstream}
    r.update(opts)
    return r


def config_text(routes, defaults=None, **top):
    """A libconfig document: top-level settings, optional defaults, routes."""
    settings = {"listen": "127.0.0.1:0", "workers": 2, "access_log": "-",
                "shutdown_grace_ms": 2000}
    settings.update(top)
    lines = ["%s = %s;" % (k, config_value(v)) for k, v in settings.items()]
    if defaults:
        lines.append("defaults = {")
        lines += ["  %s = %s;" % (k, config_value(v)) for k, v in defaults.items()]
        lines.append("};")
    lines.append("routes = (")
    items = []
    for r in routes:
        body = " ".join("%s = %s;" % (k, config_value(v)) for k, v in r.items())
        items.append("  { %s }" % body)
    lines.append(",\n".join(items))
    lines.append(");")
    return "\n".join(lines) + "\n"


def write_temp(text, name="ctxproxy.conf"):
    """Write text to a new file in a fresh temporary directory; returns its path."""
    d = tempfile.mkdtemp(prefix="ctxproxy-it-")
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run_proxy_cli(args, timeout=START_TIMEOUT):
    """Run build/ctxproxy with args to completion: (rc, combined output)."""
    proc = _register(subprocess.Popen(
        [PROXY_BIN] + list(args), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=5)
        raise AssertionError("ctxproxy %s did not exit within %.0fs: %s"
                             % (" ".join(args), timeout, out.decode("utf-8", "replace")))
    return proc.returncode, out.decode("utf-8", "replace")


class Proxy:
    """build/ctxproxy -c FILE with FILE written from config text; stderr collected."""

    def __init__(self, text, wait_started=True):
        if not os.access(PROXY_BIN, os.X_OK):
            raise AssertionError("%s is not built (make build/ctxproxy)" % PROXY_BIN)
        self.config_path = write_temp(text)
        self.config = text
        cmd = [PROXY_BIN, "-c", self.config_path]
        if VALGRIND:
            cmd = ["valgrind", "-q", "--leak-check=full",
                   "--errors-for-leak-kinds=definite",
                   "--error-exitcode=%d" % VALGRIND_EXIT] + cmd
        self.proc = _register(subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        self.pid = self.proc.pid
        self.stopped = False
        self.log = LineLog(self.proc.stdout, parse_logfmt, "ctxproxy")
        try:
            first = self.log.wait(lambda e: e.get("msg") == "listening" and "addr" in e,
                                  START_TIMEOUT, what="msg=listening addr=...")
            # "listening" comes before the workers exist; "started" (sent
            # with READY=1) after every worker's loop and descriptors do,
            # so a test's baseline (fds, RSS) is never taken half-way.
            if wait_started:
                self.log.wait(lambda e: e.get("msg") == "started", START_TIMEOUT,
                              what="msg=started")
        except AssertionError:
            _stop_process(self.proc, timeout=2)
            raise
        self.port = int(first["addr"].rsplit(":", 1)[1])

    def access(self, path, timeout=WAIT_TIMEOUT, start=0, **kv):
        """The access log line for path (compared without the query string)."""
        want = path.split("?", 1)[0]

        def hit(e):
            return e.get("type") == "access" and e.get("path", "").split("?", 1)[0] == want
        return self.log.wait(hit, timeout, start, what="type=access path=%s" % want, **kv)

    def accesses(self, start=0, **kv):
        """Every access log line so far that matches kv."""
        return self.log.find(lambda e: e.get("type") == "access", start, **kv)

    def rss_kib(self):
        """The proxy's resident set size in KiB."""
        return rss_kib(self.pid)

    def fd_count(self):
        """How many file descriptors the proxy holds."""
        return fd_count(self.pid)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, bounded wait, then SIGKILL: (returncode, seconds, killed)."""
        self.stopped = True
        res = _stop_process(self.proc, signal.SIGTERM, timeout * (6 if VALGRIND else 1))
        if VALGRIND and res[0] == VALGRIND_EXIT:
            raise AssertionError("valgrind found errors or definite leaks:\n%s" % self.log.text())
        return res

    def alive(self):
        """Whether the daemon is still running."""
        return self.proc.poll() is None

    def admin_port(self, timeout=WAIT_TIMEOUT):
        """The admin listener's port, from the `msg="admin listening" addr=IP:PORT` line."""
        line = self.log.wait(lambda e: e.get("msg") == "admin listening" and "addr" in e,
                             timeout, what='msg="admin listening" addr=...')
        return int(line["addr"].rsplit(":", 1)[1])

    def signal(self, sig):
        """Send sig to this daemon (by its pid; only while it runs), once it has
        logged msg=started: its signal handling is set up only then."""
        self.log.wait(msg="started", timeout=START_TIMEOUT)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the daemon to exit on its own (after a signal the test sent):
        (returncode, seconds waited). SIGKILL and AssertionError after timeout."""
        self.stopped = True
        start = time.monotonic()
        try:
            rc = self.proc.wait(timeout * (6 if VALGRIND else 1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("ctxproxy (pid %d) did not exit within %.0fs"
                                 % (self.pid, timeout)) from None
        if VALGRIND and rc == VALGRIND_EXIT:
            raise AssertionError("valgrind found errors or definite leaks:\n%s" % self.log.text())
        return rc, time.monotonic() - start


def rss_kib(pid):
    """VmRSS of pid in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def fd_count(pid):
    """Number of open file descriptors of pid, from /proc/PID/fd."""
    return len(os.listdir("/proc/%d/fd" % pid))


def free_port():
    """A loopback TCP port with nothing listening on it (just released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Blackhole:
    """A loopback listener whose backlog is full, so new connects hang in SYN_SENT."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)

    def works(self, probe_timeout=0.5):
        """Whether a fresh connect really hangs (probe with a short timeout)."""
        probe = socket.socket()
        probe.settimeout(probe_timeout)
        try:
            probe.connect(("127.0.0.1", self.port))
            return False
        except (socket.timeout, TimeoutError):
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def close(self):
        """Close the fillers and the listener."""
        for s in self.fillers:
            s.close()
        self.listener.close()


class Response:
    """An HTTP response as the raw client read it."""

    def __init__(self):
        self.status = None
        self.reason = ""
        self.headers = {}       # lower-case name -> last value
        self.header_list = []   # (name, value) in order
        self.body = b""
        self.complete = False   # framing finished (final chunk / all Content-Length bytes)
        self.closed = False     # the proxy closed the connection while/after reading
        self.chunks = []        # (monotonic time, bytes) per chunk of a chunked body
        self.head_time = None   # monotonic time the head was complete

    def header(self, name, default=None):
        """A response header by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return "<Response %s complete=%s closed=%s body=%d bytes>" % (
            self.status, self.complete, self.closed, len(self.body))


class Closed(Exception):
    """The peer closed (or reset) the connection."""


class Client:
    """A raw HTTP/1.1 client connection with its own read buffer and deadlines."""

    def __init__(self, port, timeout=WAIT_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.port = port

    # -- sending --

    def send(self, data, timeout=WAIT_TIMEOUT):
        """Send all of data within timeout."""
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def send_request(self, method, path, headers=None, body=None, host="localhost"):
        """Send a request head (and body, when given as bytes); Content-Length is
        added for a bytes body unless headers set framing themselves."""
        hdrs = [("Host", host)] if host is not None else []
        hdrs += list(headers or [])
        names = {h[0].lower() for h in hdrs}
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            hdrs.append(("Content-Length", str(len(body))))
        head = "%s %s HTTP/1.1\r\n" % (method, path)
        head += "".join("%s: %s\r\n" % h for h in hdrs) + "\r\n"
        self.send(head.encode("latin-1") + (body or b""))

    def send_chunked(self, data, piece=65536):
        """Send data as a chunked body, piece bytes per chunk, then the final chunk."""
        for i in range(0, len(data), piece):
            part = data[i:i + piece]
            self.send(b"%x\r\n" % len(part) + part + b"\r\n")
        self.send(b"0\r\n\r\n")

    # -- receiving --

    def _fill(self, deadline):
        """Receive more bytes into the buffer; raises Closed at EOF/reset, TimeoutError."""
        if self.eof:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the proxy in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except (socket.timeout, TimeoutError):
            raise TimeoutError("no data from the proxy in time") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            raise Closed()
        self.buf += data

    def _read_line(self, deadline):
        """One CRLF-terminated line without its terminator."""
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                line = bytes(self.buf[:idx]).rstrip(b"\r")
                del self.buf[:idx + 1]
                return line
            if len(self.buf) > 65536:
                raise AssertionError("response line too long")
            self._fill(deadline)

    def _read_exact(self, n, deadline, sink=None):
        """n bytes (or appended to sink, a bytearray, to save copies)."""
        out = sink if sink is not None else bytearray()
        while n > 0:
            if not self.buf:
                self._fill(deadline)
            take = min(n, len(self.buf))
            out += self.buf[:take]
            del self.buf[:take]
            n -= take
        return out

    def read_head(self, timeout=WAIT_TIMEOUT, resp=None):
        """Read a response head (skipping 1xx); returns a Response.
        If the connection closes first, returns it with status None and closed=True."""
        deadline = time.monotonic() + timeout
        resp = resp or Response()
        try:
            while True:
                line = self._read_line(deadline)
                while not line:
                    line = self._read_line(deadline)
                parts = line.decode("latin-1").split(" ", 2)
                resp.status = int(parts[1])
                resp.reason = parts[2] if len(parts) > 2 else ""
                resp.headers, resp.header_list = {}, []
                while True:
                    line = self._read_line(deadline)
                    if not line:
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    resp.header_list.append((name.strip(), value.strip()))
                    resp.headers[name.strip().lower()] = value.strip()
                if resp.status >= 200:
                    break
        except Closed:
            resp.status = None
            resp.closed = True
        resp.head_time = time.monotonic()
        return resp

    def read_chunk(self, timeout=WAIT_TIMEOUT):
        """The next chunk's data, b'' for the final chunk; raises Closed if cut off."""
        deadline = time.monotonic() + timeout
        line = self._read_line(deadline)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while self._read_line(deadline):
                pass
            return b""
        data = bytes(self._read_exact(size, deadline))
        if self._read_line(deadline):
            raise AssertionError("chunk not followed by CRLF")
        return data

    def read_body(self, resp, timeout=WAIT_TIMEOUT, method="GET"):
        """Read resp's body according to its framing; sets complete/closed."""
        deadline = time.monotonic() + timeout
        body = bytearray()
        try:
            if method == "HEAD" or resp.status in (204, 304):
                resp.complete = True
            elif resp.header("transfer-encoding", "").lower() == "chunked":
                while True:
                    data = self.read_chunk(max(0.0, deadline - time.monotonic()))
                    if not data:
                        resp.complete = True
                        break
                    resp.chunks.append((time.monotonic(), data))
                    body += data
            elif resp.header("content-length") is not None:
                self._read_exact(int(resp.header("content-length")), deadline, body)
                resp.complete = True
            else:
                while True:
                    self._read_exact(len(self.buf) or 1, deadline, body)
        except Closed:
            resp.closed = True
            if resp.header("transfer-encoding") is None and resp.header("content-length") is None:
                resp.complete = True
        resp.body = bytes(body)
        if (resp.header("connection", "").lower() == "close") and not resp.closed:
            resp.closed = self.wait_closed(2.0 * SLOW)
        return resp

    def read_response(self, timeout=WAIT_TIMEOUT, method="GET"):
        """Head and body of the next response (see read_head / read_body)."""
        deadline = time.monotonic() + timeout
        resp = self.read_head(timeout)
        if resp.status is None:
            return resp
        return self.read_body(resp, max(0.0, deadline - time.monotonic()), method)

    def request(self, method, path, headers=None, body=None, timeout=WAIT_TIMEOUT):
        """Send a request and read its response."""
        self.send_request(method, path, headers, body)
        return self.read_response(timeout, method)

    def wait_closed(self, timeout=WAIT_TIMEOUT):
        """Whether the peer closes the connection within timeout (data is discarded)."""
        deadline = time.monotonic() + timeout
        self.buf.clear()
        while True:
            try:
                self._fill(deadline)
                self.buf.clear()
            except Closed:
                return True
            except TimeoutError:
                return False

    def is_open(self, wait=0.2):
        """True if, within wait seconds, the peer neither closed nor sent anything."""
        if self.eof:
            return False
        readable, _, _ = select.select([self.sock], [], [], wait)
        if not readable:
            return True
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return False
        return bool(data)

    # -- closing --

    def close(self):
        """Close normally (FIN; the kernel sends RST if unread data remains).
        Returns the monotonic time just before the close, in microseconds."""
        t = now_us()
        self.sock.close()
        return t

    def reset(self):
        """Abort with RST (SO_LINGER 0). Returns the time just before, in microseconds."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t = now_us()
        self.sock.close()
        return t


def expected_bytes(n):
    """The /bytes?n=N body: byte i is i % 251."""
    pattern = bytes(range(251))
    return (pattern * (n // 251 + 1))[:n]


class ProxyTest(unittest.TestCase):
    """A test with its own backend(s) and proxy, all stopped in tearDown."""

    def setUp(self):
        self.backends = []
        self.proxies = []
        self.clients = []

    def tearDown(self):
        crashed = [p for p in self.proxies if not p.stopped and p.proc.poll() is not None]
        for c in self.clients:
            try:
                c.sock.close()
            except OSError:
                pass
        for p in self.proxies:
            p.stop(timeout=5)
        for b in self.backends:
            b.stop()
        for p in crashed:
            self.fail("ctxproxy (pid %d) exited by itself during the test, status %s"
                      % (p.pid, p.proc.returncode))

    def start_backend(self, mode=None, name=None, port=0):
        """A fresh backend process (mode, name, port: see Backend)."""
        b = Backend(mode, name, port)
        self.backends.append(b)
        return b

    def start_proxy(self, routes, defaults=None, **top):
        """A fresh proxy with the config built from routes/defaults/top-level keys."""
        p = Proxy(config_text(routes, defaults, **top))
        self.proxies.append(p)
        return p

    def setup_pair(self, defaults=None, route_opts=None, **top):
        """One backend and a proxy routing "/" to it; returns (backend, proxy)."""
        b = self.start_backend()
        p = self.start_proxy([route("main", "/", b, **(route_opts or {}))], defaults, **top)
        return b, p

    def client(self, proxy):
        """A new raw client connection to proxy, closed in tearDown."""
        c = Client(proxy.port)
        self.clients.append(c)
        return c

    def diagnostics(self):
        """Output of the processes of this test, for a failure report."""
        parts = []
        for p in self.proxies:
            parts.append("--- ctxproxy (pid %d) config:\n%s--- ctxproxy output:\n%s"
                         % (p.pid, p.config, p.log.text()))
        for b in self.backends:
            lines = b.events.raw
            tail = lines[-60:]
            parts.append("--- backend events (last %d of %d):\n%s"
                         % (len(tail), len(lines), "\n".join(tail)))
        return "\n".join(parts)

    # -- shared assertions --

    def assertWithin(self, value, low, high, what):
        """low <= value <= high, with a readable message."""
        self.assertTrue(low <= value <= high,
                        "%s = %s, expected within [%s, %s]" % (what, value, low, high))

    def assertAccess(self, line, **kv):
        """Every key=value of kv is in the access log line."""
        for k, v in kv.items():
            self.assertEqual(line.get(k), str(v), "access log %s in %r" % (k, line))
