#!/usr/bin/env python3
"""ws_backend.py - a WebSocket test backend that reports every connection event on stdout.

usage: ws_backend.py [--raw101] [--tls CERT KEY]

Binds 127.0.0.1:0 and prints "listening port=N", then one line per event.
One thread per connection, blocking sockets with timeouts; every loop is
bounded (a connection lives at most CONN_LIFETIME s, the process
PROCESS_LIFETIME s, and it exits when its stdin ends).  The WebSocket
protocol is python3-websockets' sans-I/O layer (10.4), so the socket's
every FIN and reset is seen (and stamped) here.

Modes, by the request path (the query holds the parameters):
  /echo                  every message back, as it came (text or binary)
  /sink                  reads and reports, never sends (a silent peer)
  /send?n=N&then=T       N bytes (binary messages of at most 64 KiB, byte i
                         is i % 251), then T: close (FIN), rst (SO_LINGER 0),
                         shutwr (shutdown(SHUT_WR), then read on), hold
                         (read on); a send making no progress for 200 ms
                         reports ev=send_blocked (once)
  /stall                 reads nothing until a line "release" on stdin,
                         then as /sink (a slow reader)
  /status200             answers the Upgrade request with a plain 200
                         (Content-Length, body "plain answer\\n"), then
                         reads on, reporting raw bytes
  any other path         as /echo
A request without Upgrade gets websockets' own answer (426).  The
subprotocols "chat" and "superchat" are accepted.
--raw101: every connection gets, after its request head, the fixed answer
  "HTTP/1.1 101 Switching Protocols / Upgrade: websocket / Connection:
  Upgrade" (no Sec-WebSocket-Accept) whatever it asked, then raw bytes are
  read and reported.
--tls CERT KEY: TLS on the listener (an https:// upstream).

Event lines (t = CLOCK_MONOTONIC microseconds, the clock of time.monotonic()):
  t=US ev=open conn=C peer=IP:PORT
  t=US ev=request conn=C method=M path=TARGET version=V h_NAME=VALUE ...
        one h_ key per request field: NAME lower-case with '-' as '_',
        VALUE percent-encoded, repeated fields joined with ", "
  t=US ev=response conn=C status=S      (stamped just before it is sent)
  t=US ev=message conn=C type=text|binary len=N sha1=HEX12 [text=VALUE]
        (text= for a text message of at most 200 bytes, percent-encoded)
  t=US ev=bytes conn=C n=N total=T      raw bytes (--raw101, /status200)
  t=US ev=close_frame conn=C code=N
  t=US ev=send_blocked conn=C bytes=N   bytes sent so far when blocked
  t=US ev=sent conn=C bytes=N           all of /send's bytes are sent
  t=US ev=shutwr conn=C                 this side's FIN leaves (SHUT_WR; stamped just before)
  t=US ev=released conn=C               /stall starts reading
  t=US ev=close conn=C by=peer how=fin|rst code=N|none
        the peer's FIN or reset was read; code: the close frame's, if any
  t=US ev=close conn=C by=self how=fin|rst|error|timeout
        this side closed first (or gave up; stamped just before close());
        a connection's last event
"""

import hashlib
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

try:
    from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT
    from websockets.server import ServerConnection
except ImportError:  # a python3 (pyenv, venv) without Debian's dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT
    from websockets.server import ServerConnection

CONN_LIFETIME = 60.0
PROCESS_LIFETIME = 600
MAX_CONNS = 100_000
MAX_HEAD = 65536
PIECE = 65536
BLOCKED_AFTER = 0.2
PATTERN = bytes(range(251))

_out_lock = threading.Lock()
_release = threading.Event()


def now_us():
    return int(time.monotonic() * 1e6)


def emit(fmt, *args):
    line = "t=%d %s\n" % (now_us(), fmt % args)
    with _out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def enc(value):
    return urllib.parse.quote(value, safe="/:,;=?&@+*!~'()[]-._")


def pattern_bytes(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


class PeerGone(Exception):
    """The peer's FIN (how="fin") or reset (how="rst") was read."""

    def __init__(self, how):
        super().__init__(how)
        self.how = how


class Conn:
    """One accepted connection and its thread's work."""

    def __init__(self, sock, cid, peer):
        self.sock = sock
        self.id = cid
        self.peer = peer
        self.deadline = time.monotonic() + CONN_LIFETIME
        self.ws = ServerConnection(subprotocols=["chat", "superchat"], max_size=None)
        self.close_code = None
        self.partial = None
        self.raw_total = 0
        self.eof_sent = False
        self.sent_before = 0     # bytes send() sent before this call
        self.raw_mode = False    # report raw bytes, no WebSocket parsing

    # -- the socket --

    def recv(self):
        """Some bytes; raises PeerGone at EOF or reset, TimeoutError at the deadline."""
        while time.monotonic() < self.deadline:
            self.sock.settimeout(1.0)
            try:
                data = self.sock.recv(262144)
            except (socket.timeout, TimeoutError):
                continue
            except ssl.SSLWantReadError:
                continue
            except (ConnectionResetError, ssl.SSLEOFError):
                raise PeerGone("rst") from None
            except ssl.SSLError:
                raise PeerGone("rst") from None
            if not data:
                raise PeerGone("fin")
            return data
        raise TimeoutError()

    def send(self, data):
        """Send all of data; reports ev=send_blocked once if a send waits longer
        than BLOCKED_AFTER; raises PeerGone if the peer is gone."""
        view = memoryview(data)
        sent = 0
        blocked = False
        while sent < len(view):
            if time.monotonic() > self.deadline:
                raise TimeoutError()
            self.sock.settimeout(BLOCKED_AFTER)
            try:
                n = self.sock.send(view[sent:sent + PIECE])
            except (socket.timeout, TimeoutError, ssl.SSLWantWriteError):
                if not blocked:
                    blocked = True
                    emit("ev=send_blocked conn=%d bytes=%d", self.id,
                         self.sent_before + sent)
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                raise PeerGone("rst") from None
            sent += n
        self.sent_before += sent

    def flush(self):
        """Send what the protocol has queued; SEND_EOF (b"") shuts down the write side."""
        for data in self.ws.data_to_send():
            if data:
                self.send(data)
            elif not self.eof_sent:
                self.shutwr()

    def shutwr(self):
        # stamped before the FIN leaves: the peer may see it before we print
        emit("ev=shutwr conn=%d", self.id)
        self.eof_sent = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # -- the opening handshake --

    def read_request(self):
        """Feed the protocol until it has the request; returns it."""
        for _ in range(1000):
            events = self.ws.events_received()
            if events:
                return events[0]
            self.ws.receive_data(self.recv())
        raise TimeoutError()

    def report_request(self, req):
        fields = {}
        for name, value in req.headers.raw_items():
            key = "h_" + name.lower().replace("-", "_")
            fields[key] = fields[key] + ", " + value if key in fields else value
        emit("ev=request conn=%d method=GET path=%s version=1.1 %s", self.id, enc(req.path),
             " ".join("%s=%s" % (k, enc(v)) for k, v in fields.items()))

    # -- messages --

    def on_frame(self, frame, echo):
        """Report a data message (assembled from its frames), echo it if asked."""
        if frame.opcode is OP_CLOSE:
            code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else 1005
            self.close_code = code
            emit("ev=close_frame conn=%d code=%d", self.id, code)
            return
        if frame.opcode in (OP_TEXT, OP_BINARY):
            self.partial = (frame.opcode, bytearray(frame.data))
        elif frame.opcode is OP_CONT and self.partial is not None:
            self.partial[1].extend(frame.data)
        else:
            return
        if not frame.fin:
            return
        opcode, data = self.partial
        self.partial = None
        kind = "text" if opcode is OP_TEXT else "binary"
        extra = ""
        if kind == "text" and len(data) <= 200:
            extra = " text=" + enc(bytes(data).decode("utf-8", "replace"))
        emit("ev=message conn=%d type=%s len=%d sha1=%s%s", self.id, kind, len(data),
             hashlib.sha1(data).hexdigest()[:12], extra)
        if echo:
            if kind == "text":
                self.ws.send_text(bytes(data))
            else:
                self.ws.send_binary(bytes(data))

    def read_messages(self, echo):
        """Read and report frames until the peer's FIN or reset (PeerGone)."""
        while True:
            data = self.recv()
            if self.raw_mode:
                self.raw_total += len(data)
                emit("ev=bytes conn=%d n=%d total=%d", self.id, len(data), self.raw_total)
                continue
            try:
                self.ws.receive_data(data)
            except EOFError:
                pass
            for frame in self.ws.events_received():
                self.on_frame(frame, echo and self.ws.state.name == "OPEN")
            self.flush()

    # -- modes --

    def send_pattern(self, n):
        done = 0
        data = pattern_bytes(n)
        while done < n:
            self.ws.send_binary(data[done:done + PIECE])
            done += min(PIECE, n - done)
            self.flush()
        emit("ev=sent conn=%d bytes=%d", self.id, n)

    def close_self(self, how):
        if how == "rst":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        emit("ev=close conn=%d by=self how=%s", self.id, how)
        self.sock.close()

    def serve_ws(self):
        req = self.read_request()
        self.report_request(req)
        url = urllib.parse.urlsplit(req.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/status200" and "upgrade" in req.headers:
            body = b"plain answer\n"
            emit("ev=response conn=%d status=200", self.id)
            self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.raw_mode = True
            return self.read_messages(False)
        response = self.ws.accept(req)
        self.ws.send_response(response)
        emit("ev=response conn=%d status=%d", self.id, response.status_code)
        self.flush()
        if response.status_code != 101:
            self.raw_mode = True
            return self.read_messages(False)
        if url.path == "/send":
            self.send_pattern(int(query.get("n", "0")))
            then = query.get("then", "close")
            if then in ("close", "rst"):
                return self.close_self("fin" if then == "close" else then)
            if then == "shutwr":
                self.shutwr()
            return self.read_messages(False)
        if url.path == "/stall":
            _release.wait(max(0.0, self.deadline - time.monotonic()))
            emit("ev=released conn=%d", self.id)
        return self.read_messages(url.path not in ("/sink", "/stall"))

    def serve_raw101(self):
        head = bytearray()
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_HEAD:
                raise PeerGone("error")
            head += self.recv()
        head, _, rest = bytes(head).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = (lines[0].split(" ") + ["", "", ""])[:3]
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = "h_" + name.strip().lower().replace("-", "_")
            value = value.strip()
            fields[key] = fields[key] + ", " + value if key in fields else value
        emit("ev=request conn=%d method=%s path=%s version=%s %s", self.id, enc(method),
             enc(target), enc(version.replace("HTTP/", "")),
             " ".join("%s=%s" % (k, enc(v)) for k, v in fields.items()))
        emit("ev=response conn=%d status=101", self.id)
        self.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n")
        self.raw_mode = True
        if rest:
            self.raw_total += len(rest)
            emit("ev=bytes conn=%d n=%d total=%d", self.id, len(rest), self.raw_total)
        return self.read_messages(False)

    def run(self, raw101, tls_ctx):
        emit("ev=open conn=%d peer=%s", self.id, self.peer)
        try:
            if tls_ctx is not None:
                self.sock.settimeout(10)
                self.sock = tls_ctx.wrap_socket(self.sock, server_side=True)
            if raw101:
                self.serve_raw101()
            else:
                self.serve_ws()
        except PeerGone as gone:
            code = self.close_code if self.close_code is not None else "none"
            emit("ev=close conn=%d by=peer how=%s code=%s", self.id, gone.how, code)
        except TimeoutError:
            emit("ev=close conn=%d by=self how=timeout", self.id)
        except (OSError, ValueError) as exc:
            emit("ev=close conn=%d by=self how=error error=%s", self.id,
                 enc(type(exc).__name__))
        finally:
            try:
                self.sock.close()
            except OSError:
                pass


def watch_stdin():
    """"release" lets /stall connections read; EOF (the test is gone) ends the process."""
    for _ in range(100_000):
        line = sys.stdin.readline()
        if not line:
            os._exit(0)
        if line.strip() == "release":
            _release.set()
    os._exit(0)


def main(argv):
    raw101 = "--raw101" in argv
    tls_ctx = None
    if "--tls" in argv:
        i = argv.index("--tls")
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(argv[i + 1], argv[i + 2])
    signal.alarm(PROCESS_LIFETIME)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    emit("ev=listening port=%d", listener.getsockname()[1])
    threading.Thread(target=watch_stdin, daemon=True).start()
    for cid in range(1, MAX_CONNS + 1):
        sock, addr = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(sock, cid, "%s:%d" % addr)
        threading.Thread(target=conn.run, args=(raw101, tls_ctx), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
