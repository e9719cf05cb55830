"""admin_page_load.py - the admin-page case's background clients (threads; stdlib only).

- HangUps: every `every` s, a new connection to the proxy sends `GET /hang`
  (tests/backend never answers it) and is closed `hold` s later, so the proxy
  cancels a request that waits for its answer (cause client_disconnect).
- EventReader: an open live page without a browser: GET /events on the admin
  listener read until stop(), each event counted by name; cancellations are
  also counted by route, with how long each took from its time stamp
  (unix_ms) to here.  Like the page when its stream opens, it asks for
  /cancellations?limit=ROWS once, before it says it is open.

Both are bounded: stop() returns within ~0.2 s (a HangUps hold, a reader's
socket timeout) plus the join's 5 s at worst; errors are kept in .error,
never raised.
"""
import codecs
import json
import socket
import threading
import time
import urllib.request


class HangUps(threading.Thread):
    """Hang-ups on the proxy at 127.0.0.1:port until stop() or `limit` tries.

    made: requests sent and then hung up on; failed: connects or sends that
    failed (error: the first one); cpu_s: this thread's CPU time."""

    def __init__(self, port, path="/hang", every=0.05, hold=0.015, limit=100000):
        super().__init__(name="hang-ups", daemon=True)
        self.port, self.every, self.hold, self.limit = port, every, hold, limit
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        self.made = 0
        self.failed = 0
        self.error = None
        self.cpu_s = 0.0
        self.halt = threading.Event()

    def run(self):
        c0 = time.thread_time()
        due = time.monotonic()
        while not self.halt.is_set() and self.made + self.failed < self.limit:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    s.sendall(self.request)
                    # The whole hold even when stopped meanwhile, so the proxy
                    # has the request before the FIN, as for the others.
                    time.sleep(self.hold)
                self.made += 1
            except OSError as e:
                self.failed += 1
                if self.error is None:
                    self.error = f"{type(e).__name__}: {e}"
            due = max(due + self.every, time.monotonic())
            self.halt.wait(due - time.monotonic())
        self.cpu_s = time.thread_time() - c0

    def stop(self):
        self.halt.set()
        self.join(5.0)


class Dechunk:
    """An incremental decoder of a chunked HTTP/1.1 body."""

    def __init__(self):
        self.buf = b""
        self.left = 0
        self.state = "size"
        self.done = False

    def feed(self, data):
        """The body bytes in data (and what came before it); ValueError on
        a malformed frame; .done once the last chunk came."""
        self.buf += data
        out = bytearray()
        while not self.done:
            if self.state == "size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(self.buf[:i].split(b";")[0].strip(), 16)
                self.buf = self.buf[i + 2:]
                self.left, self.state = size, "data"
                self.done = size == 0
            elif self.state == "data":
                take = self.buf[:self.left]
                out += take
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                if self.left:
                    break
                self.state = "crlf"
            else:
                if len(self.buf) < 2:
                    break
                if self.buf[:2] != b"\r\n":
                    raise ValueError("a chunk not followed by CRLF")
                self.buf = self.buf[2:]
                self.state = "size"
        return bytes(out)


class EventReader(threading.Thread):
    """One GET /events on the admin listener at 127.0.0.1:port, read until stop().

    opened: set once the stream's head came and the page's JSON request was
    answered (or it failed: see error); status: the stream's HTTP status;
    fetch_status: the JSON request's; counts: {event name: events};
    cancels: {route: cancellation events} ("-" for none); delays_ms: per
    cancellation of route `delay_route`, arrival (wall clock) - its unix_ms;
    ended: the daemon ended the stream; cpu_s: this thread's CPU time."""

    def __init__(self, port, rows=100, delay_route="hang"):
        super().__init__(name="event-reader", daemon=True)
        self.port, self.rows, self.delay_route = port, rows, delay_route
        self.opened = threading.Event()
        self.status = None
        self.fetch_status = None
        self.counts = {}
        self.cancels = {}
        self.delays_ms = []
        self.bad = 0       # cancellation events whose data was not JSON
        self.ended = False
        self.error = None
        self.cpu_s = 0.0
        self.halt = threading.Event()

    def run(self):
        c0 = time.thread_time()
        try:
            self._read()
        except (OSError, ValueError) as e:
            if not self.halt.is_set():
                self.error = f"{type(e).__name__}: {e}"
        finally:
            self.opened.set()
            self.cpu_s = time.thread_time() - c0

    def stop(self):
        self.halt.set()
        self.join(5.0)

    def _head(self, s):
        """Send the request, read the head: (whether chunked, what came after)."""
        s.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                  f"Accept: text/event-stream\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                raise ValueError("the connection closed before the response head")
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        if self.status != 200:
            raise ValueError(f"GET /events: {lines[0]}")
        te = [v for k, _, v in (ln.partition(":") for ln in lines[1:])
              if k.strip().lower() == "transfer-encoding"]
        return any("chunked" in v.lower() for v in te), rest

    def _fetch(self):
        """The page's /cancellations request when its stream opens."""
        url = f"http://127.0.0.1:{self.port}/cancellations?limit={self.rows}"
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
            self.fetch_status = r.status

    def _read(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as s:
            chunked, rest = self._head(s)
            self._fetch()
            self.opened.set()
            dechunk = Dechunk() if chunked else None
            utf8 = codecs.getincrementaldecoder("utf-8")()
            text = ""
            s.settimeout(0.1)
            data = rest
            while True:
                if data:
                    text += utf8.decode(dechunk.feed(data) if dechunk else data)
                    while "\n\n" in text:
                        block, text = text.split("\n\n", 1)
                        self._event(block)
                    if dechunk and dechunk.done:
                        self.ended = True
                        return
                if self.halt.is_set():
                    return
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    data = b""
                    continue
                if not data:
                    self.ended = True
                    return

    def _event(self, block):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:][1:] if line[5:6] == " " else line[5:])
        if not data:  # `retry: 2000` and comments: nothing dispatched
            return
        self.counts[name] = self.counts.get(name, 0) + 1
        if name != "cancellation":
            return
        now_ms = time.time() * 1000
        try:
            c = json.loads("\n".join(data))
        except ValueError:
            self.bad += 1
            return
        route = c.get("route") or "-"
        self.cancels[route] = self.cancels.get(route, 0) + 1
        if route == self.delay_route and isinstance(c.get("unix_ms"), int):
            self.delays_ms.append(now_ms - c["unix_ms"])
