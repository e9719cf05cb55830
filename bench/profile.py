#!/usr/bin/env python3
"""profile.py - instructions and system calls per request of ctxproxy; run through bench/profile.sh.

usage: profile.py [--n N] [--warmup W] [--conns C] [--out FILE.md] [--ctxproxy BINARY]

ctxproxy with 1 worker (bench.py's configuration) in front of bench.py's
nginx `return 200` backend; a client in this script sends keep-alive GETs
over C connections (default 4), one request in flight per connection, with
two request heads: wrk's (`GET /` and Host) and bench.py's BROWSER_HEADERS.

- instructions/request: `valgrind --tool=callgrind` over the whole daemon
  run, twice: W requests, and W + N requests on the same connections.
  Start-up, warm-up and shut-down are the same in both, so
  (Ir(W + N) - Ir(W)) / N is the cost of a warmed-up request, and it is
  deterministic up to the timers that fire while it runs (< 0.1%).
- syscalls/request: `strace -c -f -p PID` attached after W requests and
  detached after N more: calls / N, with the most frequent calls and their
  errors (EAGAIN); the same for nginx as a proxy (its worker, same
  settings as bench.py's) for comparison.
RSS per held request is the long-poll case of bench/run.sh.
Prints a Markdown table; takes ~20 s on a quiet machine, under a minute on a busy one.
"""
import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
from benchlib import Response  # noqa: E402

HEADS = (("small GET", ()), ("browser", bench.BROWSER_HEADERS))


class Client:
    """C keep-alive connections; run(n) sends exactly n requests, one in
    flight per connection, and returns how many were answered 200."""

    def __init__(self, port, headers, conns):
        self.req = bench.request_head(headers, port)
        self.socks = []
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks.append(s)

    def run(self, n):
        sel = selectors.DefaultSelector()
        sent = ok = 0
        resp = {}
        for s in self.socks:
            if sent < n:
                s.sendall(self.req)
                sent += 1
                resp[s] = Response()
                sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 600
        while resp and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                data = s.recv(65536)
                r = resp[s]
                if not r.feed(data):
                    continue
                if not data:
                    raise RuntimeError("connection closed by the proxy")
                ok += r.status == 200
                if r.buf[r.body_start:] != b"ok\n":
                    raise RuntimeError(f"unexpected response {r.buf[:200]!r}")
                if sent < n:
                    s.sendall(self.req)
                    sent += 1
                    resp[s] = Response()
                else:
                    sel.unregister(s)
                    del resp[s]
        sel.close()
        if resp:
            raise RuntimeError(f"{len(resp)} requests unanswered after 600 s")
        return ok

    def close(self):
        for s in self.socks:
            s.close()


def callgrind_ir(b, fast, headers, conns, nreq, tmp):
    """Total Ir of a ctxproxy run under callgrind that serves nreq requests."""
    out = os.path.join(tmp, f"callgrind.{len(os.listdir(tmp))}.out")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
    p = b.start_proxy("ctxproxy", 1, fast.port, conns, wrap=wrap, wait_s=60.0)
    try:
        c = Client(p.port, headers, conns)
        got = c.run(nreq)
        c.close()
        if got != nreq:
            raise RuntimeError(f"{got} of {nreq} answered 200")
        time.sleep(0.2)
    finally:
        p.stop(timeout=60)
    with open(out) as f:
        for line in f:
            m = re.match(r"(?:totals|summary):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {out}")


def strace_counts(pid, port, headers, conns, warmup, n, tmp):
    """{syscall: (calls, errors)} of pid's threads over n requests after warmup."""
    out = os.path.join(tmp, f"strace.{pid}.txt")
    c = Client(port, headers, conns)
    if c.run(warmup) != warmup:
        raise RuntimeError("warm-up requests failed")
    err = open(os.path.join(tmp, f"strace.{pid}.err"), "w+")
    st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                          preexec_fn=bench._child_setup)
    try:
        # "Process N attached with T threads" comes once all are attached.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            err.seek(0)
            if "attached" in err.read():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("strace did not attach")
        got = c.run(n)
        if got != n:
            raise RuntimeError(f"{got} of {n} answered 200")
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(30)
        c.close()
        err.close()
    counts = {}
    with open(out) as f:
        for line in f:
            t = line.split()
            if len(t) >= 5 and re.match(r"[\d.]+$", t[0]) and t[-1] != "total":
                calls = int(t[3])
                errors = int(t[4]) if len(t) == 6 else 0
                counts[t[-1]] = (calls, errors)
    if not counts:
        raise RuntimeError(f"no strace summary in {out}")
    return counts


def fmt_k(x):
    return f"{x / 1000:.1f}k"


def top(counts, n, k=7):
    items = sorted(counts.items(), key=lambda kv: -kv[1][0])[:k]
    return ", ".join(f"{name} {c / n:.2f}" + (f" ({e / n:.2f} err)" if e else "")
                     for name, (c, e) in items)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="measured requests")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--out", help="also write the table here (Markdown)")
    ap.add_argument("--ctxproxy", default=bench.CTXPROXY,
                    help="the binary to profile (default: build/ctxproxy), e.g. an older build")
    args = ap.parse_args()

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    tmp = tempfile.mkdtemp(prefix="ctxproxy-profile.")
    cgtmp = os.path.join(tmp, "cg")
    os.mkdir(cgtmp)
    b = bench.Bench(argparse.Namespace(smoke=False, proxies="ctxproxy,nginx"), bench.FULL, tmp)
    missing = [n for n in ("valgrind", "strace", "nginx") if not bench.which(n)]
    bench.CTXPROXY = os.path.abspath(args.ctxproxy)
    if missing or not os.access(bench.CTXPROXY, os.X_OK):
        print(f"profile: missing: {', '.join(missing) or 'build/ctxproxy'}", file=sys.stderr)
        return 2
    shutil.copy2(bench.CTXPROXY, os.path.join(tmp, "ctxproxy"))
    version = bench.binary_version(bench.CTXPROXY)
    bench.CTXPROXY = os.path.join(tmp, "ctxproxy")
    t0 = time.monotonic()
    res = {}
    try:
        fast = b.start_fast_backend()
        fast.keep = True
        for label, headers in HEADS:
            r = res[label] = {}
            print(f"{label}: callgrind, {args.warmup} and {args.warmup + args.n} requests",
                  file=sys.stderr, flush=True)
            ir0 = callgrind_ir(b, fast, headers, args.conns, args.warmup, cgtmp)
            ir1 = callgrind_ir(b, fast, headers, args.conns, args.warmup + args.n, cgtmp)
            r["ir"] = (ir1 - ir0) / args.n
            r["ir_runs"] = (ir0, ir1)
            for kind in ("ctxproxy", "nginx"):
                print(f"{label}: strace -c, {kind}", file=sys.stderr, flush=True)
                p = b.start_proxy(kind, 1, fast.port, args.conns)
                try:
                    # nginx: its worker, not the master
                    pid = p.pid if kind == "ctxproxy" else bench.children_of(p.pid)[0]
                    r[kind] = strace_counts(pid, p.port, headers, args.conns, args.warmup,
                                            args.n, tmp)
                finally:
                    p.stop()
    finally:
        bench.stop_all()
        if os.environ.get("BENCH_KEEP_TMP") == "1":
            print(f"profile: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    n = args.n
    total = (lambda c: sum(v[0] for v in c.values()) / n)
    labels = [label for label, _ in HEADS]
    md = [f"ctxproxy profile: {version}; {n} requests after {args.warmup}, "
          f"{args.conns} keep-alive connections, 1 worker, nginx `return 200` backend "
          f"({time.monotonic() - t0:.0f} s)",
          "",
          "| per request | " + " | ".join(labels) + " |",
          "|---|" + "---:|" * len(labels),
          "| request head bytes | " + " | ".join(
              str(len(bench.request_head(h, 40000))) for _, h in HEADS) + " |",
          "| instructions, ctxproxy (callgrind) | " + " | ".join(
              fmt_k(res[lb]["ir"]) for lb in labels) + " |",
          "| syscalls, ctxproxy (strace -c) | " + " | ".join(
              f"{total(res[lb]['ctxproxy']):.2f}" for lb in labels) + " |",
          "| syscalls, nginx as proxy (strace -c) | " + " | ".join(
              f"{total(res[lb]['nginx']):.2f}" for lb in labels) + " |",
          ""]
    for lb in labels:
        md.append(f"- {lb}: ctxproxy's syscalls: {top(res[lb]['ctxproxy'], n)}")
        md.append(f"- {lb}: nginx's syscalls: {top(res[lb]['nginx'], n)}")
        ir0, ir1 = res[lb]["ir_runs"]
        md.append(f"- {lb}: callgrind totals {ir0} ({args.warmup} requests) and "
                  f"{ir1} ({args.warmup + n} requests)")
    text = "\n".join(md) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
