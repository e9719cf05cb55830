#!/usr/bin/env python3
"""longpoll_client.py - N long-poll requests in flight at once through a proxy: its memory.

usage: longpoll_client.py --port P --events FILE --n N --pids PID,PID.. [--hold 20]

Samples the proxy's RSS (sum of VmRSS over PIDS), then opens N connections
to 127.0.0.1:P, each sending `GET /slow?ms=M&run=TAG&i=K`, where M is
chosen so that every request is answered by tests/backend about HOLD
seconds after the first connection was opened (so all N are in flight
together).  Once the backend's event FILE shows all N requests, samples
the RSS again, then reads every response and checks it is the backend's
`200 slow done`.  The caller must raise RLIMIT_NOFILE above N.
Prints one JSON object: n, seen, in_flight (at the sample), rss_before_kib,
rss_inflight_kib, kib_per_req, completed, setup_s.
"""
import argparse
import json
import os
import selectors
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import EventTail, Response, open_requests, query_param, rss_kib  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--hold", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    pids = [int(p) for p in a.pids.split(",") if p]

    tag = f"l{os.getpid()}"
    tail = EventTail(a.events)
    rss_before = rss_kib(pids)
    t0 = time.monotonic()
    target = t0 + a.hold

    def request(i):
        ms = max(500, int((target - time.monotonic()) * 1000))
        return (f"GET /slow?ms={ms}&run={tag}&i={i} HTTP/1.1\r\n"
                f"Host: bench\r\nUser-Agent: longpoll_client\r\n\r\n").encode()

    seen, answered = set(), set()

    def absorb():
        for ev in tail.poll():
            kind = ev.get("ev")
            if kind == "request" and query_param(ev.get("path", ""), "run") == tag:
                seen.add(ev["req"])
            elif kind == "response" and ev.get("req") in seen:
                answered.add(ev["req"])
        return len(seen)

    socks, failed = open_requests(a.port, a.n, request, timeout=a.hold, arrived=absorb)

    want = a.n - failed
    while len(seen) < want and time.monotonic() < target:
        absorb()
        time.sleep(0.01)
    setup_s = time.monotonic() - t0
    time.sleep(0.3)  # let the proxy finish its per-request allocations
    absorb()
    rss_inflight = rss_kib(pids)
    in_flight = len(seen) - len(answered)

    sel = selectors.DefaultSelector()
    resp = {}
    for i, s in enumerate(socks):
        if s is not None:
            resp[s.fileno()] = (s, Response())
            sel.register(s, selectors.EVENT_READ)
    completed = 0
    deadline = target + a.timeout
    while resp and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s, r = resp[key.fd]
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if r.feed(data):
                if r.done and r.status == 200 and b"slow done" in r.body():
                    completed += 1
                sel.unregister(s)
                del resp[key.fd]
    sel.close()
    for s in socks:
        if s is not None:
            s.close()
    tail.close()

    out = {
        "n": a.n,
        "connect_failed": failed,
        "seen": len(seen),
        "in_flight": in_flight,
        "rss_before_kib": rss_before,
        "rss_inflight_kib": rss_inflight,
        "kib_per_req": (rss_inflight - rss_before) / in_flight if in_flight else None,
        "completed": completed,
        "setup_s": setup_s,
        "total_s": time.monotonic() - t0,
    }
    print(json.dumps(out))
    return 0 if completed == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
