"""benchlib.py - helpers shared by the benchmark clients (Python stdlib only).

- EventTail follows tests/backend's event file (lines "t=US ev=NAME k=v ...").
- rss_kib()/hwm_kib() sum VmRSS/VmHWM over a list of pids (/proc/PID/status).
- open_requests() opens N non-blocking connections, a bounded number at a time
  (so the proxy's accept queue never overflows), and sends one request on each.
- Response parses one HTTP/1.1 response (Content-Length, chunked or EOF framed).
- percentile() is nearest-rank on a sorted list.

Times: tests/backend stamps events with CLOCK_MONOTONIC microseconds, and
time.monotonic() is CLOCK_MONOTONIC on Linux, so the two can be subtracted.
"""
import errno
import os
import selectors
import socket
import time


def parse_event(line):
    """'t=1 ev=request conn=3 path=/x' -> {'t': '1', 'ev': 'request', ...}."""
    ev = {}
    for field in line.split(" "):
        k, sep, v = field.partition("=")
        if sep:
            ev[k] = v
    return ev


class EventTail:
    """Read the lines appended to an event file since this object was made."""

    def __init__(self, path, from_start=False):
        self.f = open(path, "rb")
        if not from_start:
            self.f.seek(0, os.SEEK_END)
        self.partial = b""

    def poll(self):
        """The complete event lines appended since the last call, parsed."""
        data = self.f.read()
        if not data:
            return []
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        return [parse_event(l.decode("utf-8", "replace")) for l in lines if l]

    def close(self):
        self.f.close()


def query_param(path, name):
    """Value of name in the query string of path, or None."""
    _, _, q = path.partition("?")
    for part in q.split("&"):
        k, _, v = part.partition("=")
        if k == name:
            return v
    return None


def _status_field(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kib(pids):
    """Sum of VmRSS (KiB) of the pids that still exist."""
    return sum(_status_field(p, "VmRSS") for p in pids)


def hwm_kib(pids):
    """Sum of VmHWM (peak RSS, KiB) of the pids that still exist."""
    return sum(_status_field(p, "VmHWM") for p in pids)


def percentile(sorted_vals, p):
    """Nearest-rank percentile (p in 0..100) of an ascending list; None if empty."""
    if not sorted_vals:
        return None
    k = max(1, -(-len(sorted_vals) * p // 100))  # ceil(n*p/100), at least 1
    return sorted_vals[min(len(sorted_vals), int(k)) - 1]


def open_requests(port, n, make_request, window=256, timeout=60.0, arrived=None, ahead=256):
    """Connect n sockets to 127.0.0.1:port and send make_request(i) on each.

    At most `window` connections are being set up at any time.  With
    arrived (a function: how many requests the backend has seen so far), at
    most `ahead` requests are sent and not yet seen, so that neither the
    proxy's nor the backend's accept queue (tests/backend: 1024) overflows
    into SYN retransmits.  Returns (socks, failed): socks[i] is the socket
    (None when it failed)."""
    sel = selectors.DefaultSelector()
    socks = [None] * n
    pending = {}  # fd -> [i, sock, remaining bytes, connected]
    nxt = 0
    failed = 0
    deadline = time.monotonic() + timeout

    def start(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = s.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return False
        pending[s.fileno()] = [i, s, make_request(i), False]
        sel.register(s, selectors.EVENT_WRITE)
        return True

    while nxt < n or pending:
        held = False
        while nxt < n and len(pending) < window:
            if arrived is not None and nxt - failed - arrived() >= ahead:
                held = True
                break
            if not start(nxt):
                failed += 1
            nxt += 1
        if time.monotonic() > deadline:
            break
        for key, _ in sel.select(timeout=0.002 if held else 0.5):
            st = pending[key.fd]
            i, s = st[0], st[1]
            try:
                if not st[3]:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    st[3] = True
                k = s.send(st[2])
            except BlockingIOError:
                continue
            except OSError:
                k = None
            if k is not None:
                st[2] = st[2][k:]
                if st[2]:
                    continue
            sel.unregister(s)
            del pending[key.fd]
            if k is None:
                s.close()
                failed += 1
            else:
                socks[i] = s
    for st in pending.values():  # timed out
        sel.unregister(st[1])
        st[1].close()
        failed += 1
    sel.close()
    return socks, failed


class Response:
    """Incremental parser of one HTTP/1.1 response."""

    def __init__(self):
        self.buf = b""
        self.status = None
        self.clen = None
        self.chunked = False
        self.body_start = None
        self.done = False

    def feed(self, data):
        """Add received bytes (b'' = EOF); returns True once complete."""
        if self.done:
            return True
        if not data:
            # EOF: complete only if the body was EOF-framed.
            self.done = self.body_start is not None and self.clen is None and not self.chunked
            return True
        self.buf += data
        if self.body_start is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = self.buf[:end].decode("latin-1").split("\r\n")
            try:
                self.status = int(head[0].split(" ")[1])
            except (IndexError, ValueError):
                self.status = -1
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self.clen = int(value.strip())
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
            self.body_start = end + 4
        body = self.buf[self.body_start:]
        if self.chunked:
            self.done = body.endswith(b"0\r\n\r\n")
        elif self.clen is not None:
            self.done = len(body) >= self.clen
        return self.done

    def body(self):
        body = self.buf[self.body_start:] if self.body_start is not None else b""
        if not self.chunked:
            return body
        out, pos = b"", 0
        while True:  # decode chunks (small bodies only)
            eol = body.find(b"\r\n", pos)
            if eol < 0:
                return out
            size = int(body[pos:eol].split(b";")[0] or b"0", 16)
            if size == 0:
                return out
            out += body[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
