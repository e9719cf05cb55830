#!/usr/bin/env python3
"""profile.py - instructions and system calls per request of ctxproxy; run through bench/profile.sh.

usage: profile.py [--n N] [--warmup W] [--conns C] [--out FILE.md] [--ctxproxy BINARY]
                  [--config TEXT] [--header 'NAME: VALUE']... [--otlp-sink]
                  [--heads small|browser|all] [--no-strace]

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

For A/B runs of a setting: --config adds top-level keys to ctxproxy's
configuration (e.g. 'trace_context = false;'), --header adds a request
field to every request (e.g. a traceparent), --otlp-sink starts
tests/otlp_sink and points otlp_endpoint at it (with --config
'trace_sample_percent = 100;' every span is exported: the exporter
thread's instructions count too, and each callgrind run waits until the
sink has every span before it stops ctxproxy, so no batch is cut by the
stop); --heads picks the request heads, --no-strace skips the syscall
counts.
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


def sink_settle(sink, before, nreq, quiet_s=3.0, limit_s=60.0):
    """Wait until tests/otlp_sink has nreq spans more than `before`, or
    nothing has arrived for quiet_s (sampling below 100 %); the count."""
    deadline = time.monotonic() + limit_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        got = bench.sink_stats(sink.port)["spans"] - before
        if got >= nreq:
            return got
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return got
        time.sleep(0.1)
    return last


def callgrind_ir(b, fast, headers, conns, nreq, tmp, extra="", sink=None):
    """Total Ir of a ctxproxy run under callgrind that serves nreq requests
    (and, with sink, exports their spans there)."""
    out = os.path.join(tmp, f"callgrind.{len(os.listdir(tmp))}.out")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
    p = b.start_proxy("ctxproxy", 1, fast.port, conns, wrap=wrap, wait_s=60.0,
                      ctx_extra=extra)
    try:
        before = bench.sink_stats(sink.port)["spans"] if sink else 0
        c = Client(p.port, headers, conns)
        got = c.run(nreq)
        c.close()
        if got != nreq:
            raise RuntimeError(f"{got} of {nreq} answered 200")
        if sink:
            spans = sink_settle(sink, before, nreq)
            print(f"  {spans} spans at the sink for {nreq} requests", file=sys.stderr,
                  flush=True)
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
    ap.add_argument("--config", default="",
                    help="top-level keys added to ctxproxy's configuration, "
                         "e.g. 'trace_context = false;'")
    ap.add_argument("--header", action="append", default=[],
                    help="'NAME: VALUE', a field added to every request (repeatable)")
    ap.add_argument("--otlp-sink", action="store_true",
                    help="start tests/otlp_sink and set otlp_endpoint to it")
    ap.add_argument("--heads", choices=("small", "browser", "all"), default="all")
    ap.add_argument("--no-strace", action="store_true", help="instructions only")
    args = ap.parse_args()
    extra_fields = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            ap.error(f"--header {h!r}: want 'NAME: VALUE'")
        extra_fields.append((name.strip(), value.strip()))
    heads = [(label, tuple(h) + tuple(extra_fields)) for label, h in HEADS
             if args.heads == "all" or label.startswith(args.heads)]

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
    if args.otlp_sink and not os.access(bench.OTLP_SINK, os.X_OK):
        missing.append("build/tests/otlp_sink")
    if missing or not os.access(bench.CTXPROXY, os.X_OK):
        print(f"profile: missing: {', '.join(missing) or 'build/ctxproxy'}", file=sys.stderr)
        return 2
    shutil.copy2(bench.CTXPROXY, os.path.join(tmp, "ctxproxy"))
    version = bench.binary_version(bench.CTXPROXY)
    bench.CTXPROXY = os.path.join(tmp, "ctxproxy")
    t0 = time.monotonic()
    res = {}
    extra = args.config
    try:
        fast = b.start_fast_backend()
        fast.keep = True
        sink = None
        if args.otlp_sink:
            sink = b.start_sink()
            sink.keep = True
            extra += f'\notlp_endpoint = "http://127.0.0.1:{sink.port}/v1/traces";'
        for label, headers in heads:
            r = res[label] = {}
            print(f"{label}: callgrind, {args.warmup} and {args.warmup + args.n} requests",
                  file=sys.stderr, flush=True)
            ir0 = callgrind_ir(b, fast, headers, args.conns, args.warmup, cgtmp, extra, sink)
            ir1 = callgrind_ir(b, fast, headers, args.conns, args.warmup + args.n, cgtmp,
                               extra, sink)
            r["ir"] = (ir1 - ir0) / args.n
            r["ir_runs"] = (ir0, ir1)
            for kind in ("ctxproxy", "nginx"):
                if args.no_strace:
                    break
                print(f"{label}: strace -c, {kind}", file=sys.stderr, flush=True)
                p = b.start_proxy(kind, 1, fast.port, args.conns,
                                  ctx_extra=extra if kind == "ctxproxy" else "")
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
    labels = [label for label, _ in heads]
    setup = "".join([f"; ctxproxy config + `{' '.join(args.config.split())}`"
                     if args.config else "",
                     "; otlp_endpoint = tests/otlp_sink" if args.otlp_sink else "",
                     "; request fields + " + ", ".join(f"`{k}: {v}`" for k, v in extra_fields)
                     if extra_fields else ""])
    md = [f"ctxproxy profile: {version}; {n} requests after {args.warmup}, "
          f"{args.conns} keep-alive connections, 1 worker, nginx `return 200` backend"
          f"{setup} ({time.monotonic() - t0:.0f} s)",
          "",
          "| per request | " + " | ".join(labels) + " |",
          "|---|" + "---:|" * len(labels),
          "| request head bytes | " + " | ".join(
              str(len(bench.request_head(h, 40000))) for _, h in heads) + " |",
          "| instructions, ctxproxy (callgrind) | " + " | ".join(
              fmt_k(res[lb]["ir"]) for lb in labels) + " |"]
    if not args.no_strace:
        md += ["| syscalls, ctxproxy (strace -c) | " + " | ".join(
                   f"{total(res[lb]['ctxproxy']):.2f}" for lb in labels) + " |",
               "| syscalls, nginx as proxy (strace -c) | " + " | ".join(
                   f"{total(res[lb]['nginx']):.2f}" for lb in labels) + " |"]
    md.append("")
    for lb in labels:
        if not args.no_strace:
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
