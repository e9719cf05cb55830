#!/usr/bin/env python3
"""connhold.py - as many client connections as ctxproxy's descriptor limit allows, held, then released.

One worker-pair daemon with max_connections = N (N from --conns, capped by
what the descriptor limits of this process and of the daemon allow).  N
keep-alive connections are opened, one request answered on each (200, never
503: none refused below max_connections), held idle for --hold seconds,
checked alive with a second request each, then closed.  It fails when a
connection is refused, closed early or answered other than 200, or when the
daemon's descriptors and ctxproxy_client_connections do not come back to
their baseline.  It prints the memory per held connection.

usage: tests/connhold.py [--conns N] [--hold SECONDS] [--write FILE.md]
"""

import argparse
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import harness  # noqa: E402
from harness import Backend, Proxy, config_text, route  # noqa: E402

REQ = b"GET /fast HTTP/1.1\r\nHost: hold\r\n\r\n"
WAIT_S = 30.0


def raise_nofile(need):
    """Raise this process's soft descriptor limit towards need; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def read_response(s):
    """Read one small response on blocking socket s: its status, or None
    when the connection closed first."""
    buf = b""
    deadline = time.monotonic() + WAIT_S
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            return None
        chunk = s.recv(4096)
        if not chunk:
            return None
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            return None
        body += chunk
    return status


def metric(admin, name):
    """One unlabelled sample from /metrics."""
    for line in harness_get(admin).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def harness_get(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out.decode("utf-8", "replace")


def wait_for(pred, what):
    deadline = time.monotonic() + WAIT_S
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("not within %.0f s: %s" % (WAIT_S, what))
        time.sleep(0.1)


def run(args):
    limit = raise_nofile(args.conns + 256)
    n = min(args.conns, limit - 256)
    backend = Backend()
    hold_ms = int((args.hold + 60) * 1000)
    proxy = Proxy(config_text([route("main", "/", backend)], max_connections=n,
                              client_idle_timeout_ms=hold_ms, admin="127.0.0.1:0",
                              access_log="off", upstream_keepalive_timeout_ms=1000))
    failures = []
    socks = []
    try:
        admin = proxy.admin_port()
        # Warm up: each worker makes its lazily made parts (libcurl's multi,
        # the upstream pool) on its first request; the baseline is after
        # them, once the pooled upstream connections have expired.
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
            s.sendall(REQ)
            if read_response(s) != 200:
                failures.append("warm-up request failed")
            s.close()
        wait_for(lambda: metric(admin, "ctxproxy_client_connections") == 0,
                 "warm-up connections closed")
        time.sleep(2.5)            # upstream_keepalive_timeout_ms (1 s) passes
        base_fds, base_rss = proxy.fd_count(), proxy.rss_kib()
        t0 = time.monotonic()
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
            s.sendall(REQ)
            status = read_response(s)
            if status != 200:
                failures.append("connection %d: %s" % (i, status or "closed"))
                break
            socks.append(s)
        opened_s = time.monotonic() - t0
        held_rss, held_fds = proxy.rss_kib(), proxy.fd_count()
        conns = metric(admin, "ctxproxy_client_connections")
        print("connhold: %d connections open in %.1f s; daemon fds %d -> %d, RSS %d -> %d KiB "
              "(%.1f KiB each); ctxproxy_client_connections %s"
              % (len(socks), opened_s, base_fds, held_fds, base_rss, held_rss,
                 (held_rss - base_rss) / max(1, len(socks)), conns), flush=True)
        time.sleep(args.hold)      # the point of the run: they are held
        for i, s in enumerate(socks):
            s.sendall(REQ)
            status = read_response(s)
            if status != 200:
                failures.append("connection %d after the hold: %s" % (i, status or "closed"))
                if len(failures) > 10:
                    break
        for s in socks:
            s.close()
        socks = []
        try:
            wait_for(lambda: metric(admin, "ctxproxy_client_connections") == 0,
                     "client connections back to 0")
            wait_for(lambda: proxy.fd_count() <= base_fds, "descriptors back to %d" % base_fds)
        except AssertionError as e:
            failures.append(str(e))
        end_fds, end_rss = proxy.fd_count(), proxy.rss_kib()
        print("connhold: after release fds %d (baseline %d), RSS %d KiB"
              % (end_fds, base_fds, end_rss), flush=True)
        rc, _, killed = proxy.stop()
        if rc != 0 or killed:
            failures.append("the daemon stopped with %s%s" % (rc, " (killed)" if killed else ""))
        row = ("| %d | %.0f s | %.1f | %d → %d | %d → %d → %d MiB | %s |"
               % (n, args.hold, (held_rss - base_rss) / max(1, n), base_fds, end_fds,
                  base_rss // 1024, held_rss // 1024, end_rss // 1024,
                  "PASS" if not failures else "FAIL"))
        if args.write:
            with open(args.write, "a") as f:
                f.write("\n### Connections held (%s, `tests/connhold.py`)\n\n"
                        "| connections | held | KiB per connection | daemon fds before → after"
                        " | RSS before → held → after | result |\n|---|---|---|---|---|---|\n%s\n"
                        % (time.strftime("%Y-%m-%d"), row))
    finally:
        for s in socks:
            s.close()
        proxy.stop() if proxy.alive() else None
        backend.stop()
    for f in failures[:20]:
        print("connhold: FAIL: " + f)
    print("connhold: " + ("PASS" if not failures else "FAIL"))
    return 0 if not failures else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=60.0)
    ap.add_argument("--write", help="append the result row to this markdown file")
    sys.exit(run(ap.parse_args()))


if __name__ == "__main__":
    main()
