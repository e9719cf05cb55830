#!/usr/bin/env python3
"""cancel_client.py - how fast a client's hang-up reaches the backend through a proxy.

usage: cancel_client.py --port P --events FILE --n N [--ms 30000] [--grace 5] [--repeat R]

Opens N connections to the proxy on 127.0.0.1:P and sends
`GET /slow?ms=MS&run=TAG&i=K` on each (tests/backend holds each one MS ms).
Waits until the backend has logged all N requests in FILE (its stdout),
then closes every client socket, noting time.monotonic() just before each
close(), and waits up to GRACE seconds after the last close for the
backend to log `ev=cancelled` (or `ev=close by=peer`) for each request.
Latency of request K = backend event time - client close time (both
CLOCK_MONOTONIC).  With --repeat R the whole round is done R times, one
after the other, and the latencies pooled (for N=1, one sample says
little).  Prints one JSON object:
  n, seen (requests the backend got), propagated, lost (seen but no
  cancellation within GRACE), p50_ms, p99_ms, max_ms, setup_s.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import EventTail, open_requests, percentile, query_param  # noqa: E402


def one_round(a, tail, rnd):
    """Open, wait, close, wait: (latencies ms, seen, connect failures, answered, spread, setup)."""
    tag = f"c{os.getpid()}r{rnd}"
    req_of = {}   # backend req id -> i
    conn_of = {}  # backend conn id -> i
    gone = {}     # i -> backend time (s) of its cancellation / peer close
    answered = 0  # requests the backend answered before the close (should be none)

    def absorb(events):
        nonlocal answered
        for ev in events:
            kind = ev.get("ev")
            if kind == "request":
                if query_param(ev.get("path", ""), "run") == tag:
                    i = int(query_param(ev["path"], "i"))
                    req_of[ev["req"]] = i
                    conn_of[ev["conn"]] = i
            elif kind == "cancelled" and ev.get("req") in req_of:
                gone.setdefault(req_of[ev["req"]], int(ev["t"]) / 1e6)
            elif kind == "close" and ev.get("by") == "peer" and ev.get("conn") in conn_of:
                gone.setdefault(conn_of[ev["conn"]], int(ev["t"]) / 1e6)
            elif kind == "response" and ev.get("req") in req_of:
                answered += 1

    def arrived():
        absorb(tail.poll())
        return len(req_of)

    t0 = time.monotonic()
    socks, failed = open_requests(
        a.port, a.n,
        lambda i: (f"GET /slow?ms={a.ms}&run={tag}&i={i} HTTP/1.1\r\n"
                   f"Host: bench\r\nUser-Agent: cancel_client\r\n\r\n").encode(),
        timeout=a.setup_timeout, arrived=arrived)

    want = a.n - failed
    deadline = t0 + a.setup_timeout
    while len(req_of) < want and time.monotonic() < deadline:
        absorb(tail.poll())
        time.sleep(0.005)
    setup_s = time.monotonic() - t0
    time.sleep(0.1)  # let the proxies settle into waiting for the response
    absorb(tail.poll())
    seen = set(req_of.values())

    closed_at = {}
    for i, s in enumerate(socks):
        if s is not None:
            closed_at[i] = time.monotonic()
            s.close()
    last = time.monotonic()

    deadline = last + a.grace
    while time.monotonic() < deadline and not seen.issubset(gone.keys()):
        absorb(tail.poll())
        time.sleep(0.001)
    absorb(tail.poll())

    lat = [(gone[i] - closed_at[i]) * 1000.0
           for i in seen if i in gone and i in closed_at and gone[i] - closed_at[i] <= a.grace]
    spread = (last - min(closed_at.values())) * 1000.0 if closed_at else 0.0
    return lat, len(seen), failed, answered, spread, setup_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--ms", type=int, default=30000)
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--setup-timeout", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()

    tail = EventTail(a.events)
    lat, seen, failed, answered, spread, setup = [], 0, 0, 0, 0.0, 0.0
    for rnd in range(max(1, a.repeat)):
        l, s, f, an, sp, su = one_round(a, tail, rnd)
        lat += l
        seen += s
        failed += f
        answered += an
        spread = max(spread, sp)
        setup = max(setup, su)
    tail.close()
    lat.sort()
    total = a.n * max(1, a.repeat)
    out = {
        "n": a.n,
        "rounds": max(1, a.repeat),
        "connect_failed": failed,
        "seen": seen,
        "propagated": len(lat),
        "lost": seen - len(lat),
        "answered_before_close": answered,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else None,
        "close_spread_ms": spread,
        "setup_s": setup,
    }
    print(json.dumps(out))
    return 0 if seen == total else 1


if __name__ == "__main__":
    sys.exit(main())
