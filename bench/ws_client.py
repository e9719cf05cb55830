#!/usr/bin/env python3
"""ws_client.py - N WebSocket tunnels through a proxy: what an idle one costs it, and how fast a client's close reaches the backend.

usage: ws_client.py --port P --events FILE --n N --mode memory|close
                    [--pids PID,PID..] [--repeat R] [--grace S] [--settle S]

Talks to tests/ws_echo (FILE is its stdout) through the proxy on
127.0.0.1:P.  Each round opens N connections (a bounded number being set
up at a time, see benchlib.open_requests) and sends on each a WebSocket
handshake, `GET /ws?run=TAG&i=K` with Upgrade: websocket, Connection:
Upgrade, a random Sec-WebSocket-Key and Sec-WebSocket-Version: 13; waits
for the 101 (its Sec-WebSocket-Accept checked), then sends one masked
text frame and waits for its echo.  Every tunnel is then idle, with
nothing unread on either side (so the client's close is a FIN, not a
RST).  Raw sockets and the standard library only; the caller raises
RLIMIT_NOFILE above N (bench/run.sh does).

--mode memory: samples the proxy's RSS (sum of VmRSS over PIDS) before
  the round, and once all N tunnels are idle (after SETTLE seconds):
  KiB per idle tunnel = the difference / open tunnels.  Then closes them
  all and samples once more (what the proxy kept).
--mode close: closes every client socket at once, noting time.monotonic()
  just before each close(), and waits up to GRACE seconds after the last
  one for the backend's `ev=close by=peer` of each tunnel.  Latency =
  backend event time - client close time (both CLOCK_MONOTONIC).  With
  --repeat R, R rounds one after the other, latencies pooled.  The
  proxy's CPU time from just before the first close to 50 ms after the
  backend saw the last EOF (the sum over PIDS' threads of
  /proc/PID/task/TID/schedstat's run time, in ns) is its cost per close.

Prints one JSON object: n, rounds, opened (tunnels that got their 101 and
echo), failed (connect failures, other statuses, bad handshakes; by what
in `why`), setup_s (longest round's open+exchange), and for memory:
rss_before_kib, rss_idle_kib, kib_per_tunnel, rss_closed_kib; for close:
propagated, lost, p50_ms, p99_ms, max_ms, close_spread_ms, how (the
backend's how=fin/rst counts), cpu_us_per_close.
"""
import argparse
import base64
import hashlib
import json
import os
import selectors
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import EventTail, open_requests, percentile, query_param, rss_kib  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_of(key):
    """The Sec-WebSocket-Accept a server must answer to key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def masked_text(payload):
    """A client's text frame (FIN, opcode 1, masked) of payload (< 126 bytes)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def server_frame(buf):
    """(opcode, payload, rest) of the first whole unmasked frame in buf, or None."""
    if len(buf) < 2:
        return None
    n, off = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < off + n:
        return None
    return buf[0] & 0x0F, buf[off:off + n], buf[off + n:]


class Tracker:
    """The backend's events for one tag: which conn is which i, and its EOF."""

    def __init__(self, tail, tag):
        self.tail, self.tag = tail, tag
        self.conn_of = {}  # backend conn -> i
        self.gone = {}     # i -> (backend time s, how)

    def absorb(self):
        for ev in self.tail.poll():
            kind = ev.get("ev")
            if kind == "request" and query_param(ev.get("path", ""), "run") == self.tag:
                self.conn_of[ev["conn"]] = int(query_param(ev["path"], "i"))
            elif kind == "close" and ev.get("by") == "peer" and ev.get("conn") in self.conn_of:
                self.gone.setdefault(self.conn_of[ev["conn"]],
                                     (int(ev["t"]) / 1e6, ev.get("how", "?")))
        return len(self.conn_of)


def handshake(port, n, track, timeout):
    """Open n tunnels and exchange one message on each.

    Returns (socks, why): socks[i] is the open, idle socket or None;
    why counts the failures by reason."""
    keys = [base64.b64encode(os.urandom(16)).decode() for _ in range(n)]

    def request(i):
        return (f"GET /ws?run={track.tag}&i={i} HTTP/1.1\r\nHost: bench\r\n"
                f"User-Agent: ws_client\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {keys[i]}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()

    socks, failed = open_requests(port, n, request, timeout=timeout, arrived=track.absorb)
    why = {"connect": failed} if failed else {}
    sel = selectors.DefaultSelector()
    state = {}  # fd -> [i, sock, buf, want echo payload or None]
    for i, s in enumerate(socks):
        if s is not None:
            state[s.fileno()] = [i, s, b"", None]
            sel.register(s, selectors.EVENT_READ)

    def fail(st, reason):
        why[reason] = why.get(reason, 0) + 1
        sel.unregister(st[1])
        del state[st[1].fileno()]
        st[1].close()
        socks[st[0]] = None

    deadline = time.monotonic() + timeout
    while state and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            st = state[key.fd]
            try:
                data = st[1].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                fail(st, "closed before the echo")
                continue
            st[2] += data
            if st[3] is None:
                head, sep, rest = st[2].partition(b"\r\n\r\n")
                if not sep:
                    continue
                lines = head.decode("latin-1").split("\r\n")
                status = lines[0].split(" ")[1] if " " in lines[0] else "?"
                fields = {k.strip().lower(): v.strip()
                          for k, _, v in (ln.partition(":") for ln in lines[1:])}
                if status != "101":
                    fail(st, f"status {status}")
                    continue
                if fields.get("sec-websocket-accept") != accept_of(keys[st[0]]):
                    fail(st, "bad Sec-WebSocket-Accept")
                    continue
                st[3] = f"hello {st[0]}".encode()
                st[2] = rest
                st[1].send(masked_text(st[3]))  # tiny: fits the empty send buffer
            frame = server_frame(st[2])
            if frame is None:
                continue
            if frame[0] != 1 or frame[1] != st[3] or frame[2]:
                fail(st, "wrong echo")
                continue
            sel.unregister(st[1])
            del state[key.fd]
    for st in list(state.values()):
        fail(st, "no 101 or echo in time")
    sel.close()
    return socks, why


def cpu_ns(pids):
    """Run time (ns) of every thread of pids so far, from schedstat."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def close_all(socks):
    """Close every socket; {i: time.monotonic() just before its close()}."""
    closed_at = {}
    for i, s in enumerate(socks):
        if s is not None:
            closed_at[i] = time.monotonic()
            s.close()
    return closed_at


def wait_gone(track, want, grace):
    """Wait up to grace seconds until the backend saw every i in want close."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not want.issubset(track.gone.keys()):
        track.absorb()
        time.sleep(0.001)
    track.absorb()


def round_memory(a, tail, out):
    track = Tracker(tail, f"m{os.getpid()}")
    pids = [int(p) for p in a.pids.split(",") if p]
    out["rss_before_kib"] = rss_kib(pids)
    t0 = time.monotonic()
    socks, why = handshake(a.port, a.n, track, a.setup_timeout)
    out["setup_s"] = time.monotonic() - t0
    time.sleep(a.settle)
    out["rss_idle_kib"] = rss_kib(pids)
    opened = sum(1 for s in socks if s is not None)
    out["opened"], out["why"] = opened, why
    out["kib_per_tunnel"] = ((out["rss_idle_kib"] - out["rss_before_kib"]) / opened
                             if opened else None)
    closed_at = close_all(socks)
    wait_gone(track, set(closed_at), a.grace)
    time.sleep(a.settle)
    out["rss_closed_kib"] = rss_kib(pids)
    out["lost"] = len(set(closed_at) - set(track.gone))


def round_close(a, tail, rnd, acc):
    track = Tracker(tail, f"c{os.getpid()}r{rnd}")
    t0 = time.monotonic()
    socks, why = handshake(a.port, a.n, track, a.setup_timeout)
    acc["setup_s"] = max(acc["setup_s"], time.monotonic() - t0)
    for k, v in why.items():
        acc["why"][k] = acc["why"].get(k, 0) + v
    time.sleep(0.1)  # let the proxy settle into the idle tunnel
    track.absorb()
    pids = [int(p) for p in a.pids.split(",") if p]
    cpu0 = cpu_ns(pids)
    closed_at = close_all(socks)
    if closed_at:
        acc["spread"] = max(acc["spread"], (max(closed_at.values()) -
                                            min(closed_at.values())) * 1000.0)
    acc["opened"] += len(closed_at)
    wait_gone(track, set(closed_at), a.grace)
    time.sleep(0.05)  # what the proxy does after the FIN (its log, the client's close)
    acc["cpu_ns"] += cpu_ns(pids) - cpu0
    for i, t in closed_at.items():
        if i in track.gone and track.gone[i][0] - t <= a.grace:
            acc["lat"].append((track.gone[i][0] - t) * 1000.0)
            how = track.gone[i][1]
            acc["how"][how] = acc["how"].get(how, 0) + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--mode", choices=("memory", "close"), required=True)
    ap.add_argument("--pids", default="")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    a = ap.parse_args()

    tail = EventTail(a.events)
    out = {"n": a.n, "mode": a.mode}
    if a.mode == "memory":
        out["rounds"] = 1
        round_memory(a, tail, out)
        ok = out["opened"] == a.n
    else:
        acc = {"lat": [], "how": {}, "why": {}, "opened": 0, "spread": 0.0, "setup_s": 0.0,
               "cpu_ns": 0}
        rounds = max(1, a.repeat)
        for rnd in range(rounds):
            round_close(a, tail, rnd, acc)
        lat = sorted(acc["lat"])
        out.update(rounds=rounds, opened=acc["opened"], why=acc["why"],
                   setup_s=acc["setup_s"], propagated=len(lat),
                   lost=acc["opened"] - len(lat), how=acc["how"],
                   p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99),
                   max_ms=lat[-1] if lat else None, close_spread_ms=acc["spread"],
                   cpu_us_per_close=(acc["cpu_ns"] / 1000 / acc["opened"]
                                     if acc["opened"] and a.pids else None))
        ok = acc["opened"] == a.n * rounds and not out["lost"]
    tail.close()
    out["failed"] = sum(out["why"].values())
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
