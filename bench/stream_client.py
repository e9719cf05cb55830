#!/usr/bin/env python3
"""stream_client.py - one large download or upload through a proxy: rate and proxy RSS.

usage: stream_client.py --port P --mode download|upload --size BYTES --pids PID,PID..

download: `GET /bytes?n=SIZE` (tests/backend sends SIZE bytes), read and
count the body.  upload: `POST /upload` with Content-Length: SIZE, the body
streamed from a 1 MiB buffer; tests/backend answers `got SIZE`.
The proxy's RSS (sum of VmRSS over PIDS) is polled every 10 ms during the
transfer and VmHWM (summed) at the end; the peak is the larger of the
two.  Prints one JSON object:
bytes, seconds, mib_per_s, rss_before_kib, rss_peak_kib, hwm_kib, ok.
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Response, hwm_kib, rss_kib  # noqa: E402

BUF = 1 << 20


class Sampler(threading.Thread):
    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = rss_kib(pids)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, rss_kib(self.pids))


def read_head(s):
    """Read through the end of the response head; (Response, body bytes read)."""
    r = Response()
    while r.body_start is None:
        data = s.recv(65536)
        if not data:
            raise RuntimeError("connection closed before the response head")
        r.feed(data)
    return r, r.buf[r.body_start:]


def download(s, size):
    s.sendall(f"GET /bytes?n={size} HTTP/1.1\r\nHost: bench\r\n"
              f"User-Agent: stream_client\r\n\r\n".encode())
    r, first = read_head(s)
    if r.status != 200:
        raise RuntimeError(f"status {r.status}")
    buf = bytearray(BUF)
    view = memoryview(buf)
    if r.chunked:
        # Decode chunk framing on the fly (proxies that re-frame the body).
        got, pending, need = 0, bytearray(first), 0
        while True:
            while True:
                if need > 0:
                    take = min(need, len(pending))
                    got += take
                    need -= take
                    del pending[:take]
                    if need > 0:
                        break
                    continue
                eol = pending.find(b"\r\n")
                if eol < 0:
                    break
                line = bytes(pending[:eol])
                del pending[:eol + 2]
                if not line:
                    continue  # CRLF after a chunk's data
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    return got
                need = n
            k = s.recv_into(view)
            if k == 0:
                return got
            pending += view[:k]
    got = len(first)
    while got < size:
        k = s.recv_into(view)
        if k == 0:
            break
        got += k
    return got


def upload(s, size):
    s.sendall(f"POST /upload HTTP/1.1\r\nHost: bench\r\nUser-Agent: stream_client\r\n"
              f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
              .encode())
    piece = bytes(i % 251 for i in range(BUF))
    view = memoryview(piece)
    left = size
    while left > 0:
        k = min(left, BUF)
        s.sendall(view[:k])
        left -= k
    r = Response()
    while not r.done:
        data = s.recv(65536)
        if r.feed(data) and not data:
            break
    body = r.body().decode("latin-1").strip()
    if r.status != 200 or body != f"got {size}":
        raise RuntimeError(f"status {r.status} body {body!r}")
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("download", "upload"), required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--pids", required=True)
    a = ap.parse_args()
    pids = [int(p) for p in a.pids.split(",") if p]

    rss_before = rss_kib(pids)
    sampler = Sampler(pids)
    sampler.start()
    s = socket.create_connection(("127.0.0.1", a.port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    err = None
    t0 = time.monotonic()
    try:
        got = download(s, a.size) if a.mode == "download" else upload(s, a.size)
    except (OSError, RuntimeError, ValueError) as e:
        got, err = 0, str(e)
    secs = time.monotonic() - t0
    hwm = hwm_kib(pids)
    sampler.stop.set()
    sampler.join()
    s.close()
    ok = err is None and got == a.size
    out = {
        "mode": a.mode,
        "bytes": got,
        "seconds": secs,
        "mib_per_s": got / secs / 1048576 if ok else None,
        "rss_before_kib": rss_before,
        "rss_peak_kib": max(sampler.peak, rss_before, hwm),
        "hwm_kib": hwm,
        "ok": ok,
        "error": err,
    }
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
