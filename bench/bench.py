#!/usr/bin/env python3
"""bench.py - ctxproxy against nginx and HAProxy on loopback; run through bench/run.sh.

usage: bench.py [--smoke] [--out FILE.md] [--json FILE] [--only CASES] [--proxies LIST]
                [--failover-log]
  CASES: comma list of throughput,browser,trace-cost,admin-page,cancel,longpoll,
         stream,failover,tls-keepalive,tls-handshake,ws-idle-memory,
         ws-close-latency
         (default: all; with --smoke all but trace-cost, which the smoke
         budget has no room for: `--smoke --only trace-cost` runs it alone)
  LIST:  comma list of ctxproxy,nginx,haproxy (default: all; for debugging)

Every process it starts (backends, proxies, clients) is a child with
PR_SET_PDEATHSIG and is stopped by pid when its run ends or when this
script exits.  Configuration and logs go to a fresh temp dir (removed at
the end unless BENCH_KEEP_TMP=1).  Each (case, proxy) run gets a freshly
started proxy, so its RSS figures are its own.

Cases (see bench/RESULTS.md for what they mean and the targets):
 1. throughput: wrk -t1 -cC -dD --latency, GET / answered by an nginx
    `return 200` backend; C = 50 and 256; proxies with 1 and 2 workers.
    browser: the same with the request head of a current desktop Chrome
    (BROWSER_HEADERS, sent with wrk -H; ~1 KB with the request line
    and Host), same backend, workers and C.
    trace-cost: what W3C trace context and span export cost (issue 14):
    the throughput case's small GET, 1 worker, c=50, through ctxproxy with
    trace_context off, on (sample 0, no export), on with a traceparent
    from the client, and at trace_sample_percent 100 exporting every span
    to tests/otlp_sink, and through nginx; all five started once and run
    in rounds, each round in a rotated order (TRACE_*).  Requests/s, p99
    and CPU per request, each against trace off and against nginx per
    round; for the export, the spans ctxproxy exported and dropped
    (/metrics) and those the sink counted, against the requests.
    admin-page: requests/s with the admin listener's live view open against
    closed (issue 17): the throughput case's small GET, 1 worker, c=50,
    through one ctxproxy with an admin listener and a route /hang to
    tests/backend, which a thread hangs up on every 50 ms in both variants
    (cancellations for the page to show); page open: 3 threads read GET
    /events throughout (bench/admin_page_load.py); and nginx, wrk alone, as
    a reference; started once, rounds rotated as in trace-cost (ADMIN_*).
    Requests/s and CPU per request, open against closed per round (target
    >= 0.95); the events the readers got against the hang-ups.
 2. cancel: N = 1, 100, 1000 `/slow?ms=30000` requests held by
    tests/backend, all clients close together (bench/cancel_client.py).
 3. longpoll: 10,000 requests in flight at once (bench/longpoll_client.py),
    fewer if RLIMIT_NOFILE cannot cover 2 descriptors per request.
 4. stream: 1 GiB download and 1 GiB upload (bench/stream_client.py), and
    for context nginx once more with 64 KiB proxy buffers.
 5. failover: two tests/backend servers behind each proxy (2 workers, a
    pool with one retry and passive ejection: POOL_*), wrk -t1 -c50 -d10s
    GET /fast, and one backend SIGKILLed 1/3 into the run; requests/s and
    client errors (non-2xx/3xx, socket errors).  --failover-log turns on
    ctxproxy's access log for it and summarises it in the notes.
 6. tls-keepalive / tls-handshake: the proxies terminate TLS 1.3 with one
    ECDSA P-256 certificate made at start (openssl CLI), no session
    tickets or cache; wrk -t1 -c50 over https to the throughput case's
    backend.  tls-keepalive: keep-alive GETs, 1 and 2 workers;
    tls-handshake: `Connection: close` on every request, so each one is a
    new connection with a full handshake, 1 worker.
 7. ws-idle-memory / ws-close-latency: WebSocket tunnels to
    tests/ws_echo (an epoll echo server stamping each peer EOF) through
    each proxy set up for WebSockets (WS_*), with bench/ws_client.py: 1,000
    tunnels opened, one message echoed on each, the proxy's RSS before and
    with all of them idle (KiB per idle tunnel); and N = 1, 100, 1000
    tunnels closed by their clients together, client close -> backend EOF.
--smoke: 1 s wrk runs (browser: C = 50 only; failover 2 s; TLS 1 worker;
trace-cost one round, only with --only; admin-page one round, ~4 s), 1,000
long-polls, 64 MiB transfers, 1 s grace, 100 idle WebSocket tunnels, and
the close of 100 (one round).
Each run also records how much CPU other processes took meanwhile
(CpuWatch): a note flags any run above 10%.
Exit status: 0 if every run produced its figures, 1 if some did not, 2 if
the setup failed.
"""
import argparse
import ctypes
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from admin_page_load import EventReader, HangUps

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CTXPROXY = os.path.join(ROOT, "build", "ctxproxy")
BACKEND = os.path.join(ROOT, "build", "tests", "backend")
WS_BACKEND = os.path.join(ROOT, "build", "tests", "ws_echo")
OTLP_SINK = os.path.join(ROOT, "build", "tests", "otlp_sink")
PROXIES = ("ctxproxy", "nginx", "haproxy")
ALL_CASES = ("throughput,browser,trace-cost,admin-page,cancel,longpoll,stream,failover,"
             "tls-keepalive,tls-handshake,ws-idle-memory,ws-close-latency")
# The smoke run's budget has no room for trace-cost's ~8 s (see smoke.sh).
SMOKE_CASES = ",".join(c for c in ALL_CASES.split(",") if c != "trace-cost")
PY = sys.executable or "python3"

FULL = dict(wrk_secs=10, warmup_secs=1, conns=(50, 256), tp_workers=(1, 2),
            browser_conns=(50, 256), tls_workers=(1, 2), tls_hs_workers=(1,),
            cancel_ns=(1, 100, 1000), cancel_reps={1: 100, 100: 10, 1000: 3}, cancel_grace=5.0,
            lp_n=10000, lp_hold=20.0,
            stream_bytes=1 << 30, fo_secs=10, fo_conns=50,
            ws_mem_n=1000, ws_close_ns=(1, 100, 1000), ws_close_reps={1: 100, 100: 10, 1000: 3},
            ws_grace=5.0, trace_rounds=3, trace_secs=5,
            admin_rounds=5, admin_secs=4, admin_ref_secs=2, budget=900)
SMOKE = dict(wrk_secs=1, warmup_secs=0, conns=(50, 256), tp_workers=(1, 2),
             browser_conns=(50,), tls_workers=(1,), tls_hs_workers=(1,),
             cancel_ns=(1, 100, 1000), cancel_reps={1: 3}, cancel_grace=1.0,
             lp_n=1000, lp_hold=3.0,
             stream_bytes=64 << 20, fo_secs=2, fo_conns=50,
             ws_mem_n=100, ws_close_ns=(100,), ws_close_reps={},
             ws_grace=1.0, trace_rounds=1, trace_secs=1,
             admin_rounds=1, admin_secs=1, admin_ref_secs=1, budget=85)
WORKERS = 1  # proxy workers for the cancel, longpoll and stream cases
# The failover case: two servers per proxy, each proxy's idiomatic retry and
# passive-health settings, written out (ctxproxy's are its defaults).
FAILOVER_WORKERS = 2
POOL_CTXPROXY = ('retries = 1; retry_on = ( "connect_failure", "reset" ); '
                 'eject_after = 5; eject_ms = 10000;')
# nginx: the default next-upstream conditions, and (default) max_fails=1
# fail_timeout=10s per server; with two servers a request has two tries.
POOL_NGINX = "proxy_next_upstream error timeout;"
# HAProxy: one retry, on another server (redispatch on every retry), on a
# refused/failed connect or a connection closed without a response; a server
# is marked down after 5 consecutive connection errors seen by traffic
# (observe layer4, which needs `check`: a TCP connect every 2 s).  A retry
# after a failed connect first waits its turn-around time, min(timeout
# connect, 1 s): the ~1 s maximum latency HAProxy shows in this case.
POOL_HAPROXY = ("balance roundrobin", "retries 1", "option redispatch 1",
                "retry-on conn-failure empty-response",
                "default-server check observe layer4 error-limit 5 on-error mark-down")

# The request fields a desktop Chrome sends for a same-site navigation over
# HTTP/1.1 (wrk adds Host), in Chrome's order.  The cookie (~240 bytes) is a
# session id, a CSRF token, two analytics cookies and three preferences;
# with it, "GET / HTTP/1.1" and Host the head is ~1 KB (User-Agent, Accept
# and the client hints alone are ~400 bytes).
BROWSER_HEADERS = (
    ("Connection", "keep-alive"),
    ("sec-ch-ua", '"Chromium";v="142", "Google Chrome";v="142", "Not_A Brand";v="99"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("Upgrade-Insecure-Requests", "1"),
    ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                   "(KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
               "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
    ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-User", "?1"),
    ("Sec-Fetch-Dest", "document"),
    ("Referer", "https://app.example.com/projects/4711/overview?tab=activity"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-US,en;q=0.9,de;q=0.8"),
    ("Cookie", "sessionid=8f3c2a9d7b1e4f60a5c3d2e1b0f9a8c7; "
               "csrftoken=Zx8Kq2LmN4pR7sT1vW3yB5dF6gH9jK0a; "
               "_ga=GA1.1.1234567890.1761234567; "
               "_ga_8XKQ2LM4PR=GS2.1.s1763900000$o12$g1$t1763900421$j60$l0$h0; "
               "theme=dark; lang=en-US; consent=necessary%2Cstatistics"),
)
# Throughput variants: (case name, extra request fields, cfg key of the C values)
TP_VARIANTS = (("throughput", (), "conns"), ("browser", BROWSER_HEADERS, "browser_conns"))
# Targets for the upstream-engine work, beside the issue's 1.0x for throughput:
# requests/s >= ENGINE_RPS[workers] x nginx's and p99 <= ENGINE_P99 x nginx's.
ENGINE_RPS = {1: 0.75, 2: 0.9}
ENGINE_P99 = 1.3
# The TLS cases: clients per wrk run, and ctxproxy's targets against nginx
# (keep-alive requests/s; full handshakes/s).
TLS_CONNS = 50
TLS_KEEPALIVE_RPS = 0.75
TLS_HANDSHAKE_RPS = 0.7
# The WebSocket cases: each proxy set up the way its documentation says
# for WebSockets, tunnels allowed to stay idle for an hour.  ctxproxy:
# websocket is on by default, said anyway; tunnel_idle_timeout_ms and
# tunnel_max_ms stay 0 (off).  nginx: HTTP/1.1 upstream, the client's
# Upgrade passed on and Connection set from it (the map in its docs), long
# read/send timeouts.  HAProxy: mode http handles the Upgrade itself;
# `timeout tunnel` is the idle limit once it is a tunnel.
WS_CTXPROXY = "websocket = true;"
WS_NGINX_HTTP = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"
WS_NGINX = ("proxy_set_header Upgrade $http_upgrade;\n"
            "            proxy_set_header Connection $connection_upgrade;")
WS_NGINX_TIMEOUT = "3600s"  # proxy_read_timeout and proxy_send_timeout
WS_HAPROXY = "timeout tunnel 3600s"
# Target for a tunnel's close, beside "p99 <= nginx": SPEC section 3's 2 ms
# (client close -> backend sees it) for a single tunnel.
WS_CLOSE_1_MS = 2.0
# The trace-cost case: (name, proxy, ctxproxy's top-level keys, request
# fields, export) per variant, the first the reference of the ratios.  The
# client's traceparent is the W3C recommendation's example, sampled (flags
# 01): ctxproxy joins its trace and sends a new span id upstream; with no
# otlp_endpoint nothing is exported.  The export variant samples every
# request and sends its spans to tests/otlp_sink (endpoint added at start).
# nginx forwards the same small GET, without a traceparent.
TRACE_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_VARIANTS = (
    ("trace off", "ctxproxy", "trace_context = false;", (), False),
    ("trace on", "ctxproxy", "trace_context = true; trace_sample_percent = 0;", (), False),
    ("trace on, client traceparent", "ctxproxy",
     "trace_context = true; trace_sample_percent = 0;", (("traceparent", TRACE_PARENT),),
     False),
    ("export 100%", "ctxproxy", "trace_context = true; trace_sample_percent = 100;", (), True),
    ("nginx", "nginx", "", (), False),
)
TRACE_CONNS = 50
TRACE_DRAIN_S = 3.0  # the exporter's last spans wait up to 1 s (OTLP_BATCH_NS)
# The admin-page case (issue 17): requests/s with the live view open against
# closed.  Variants (name, proxy, page open), the first the reference of the
# ratios; nginx (wrk alone, admin_ref_secs) is only a reference column.  In
# both ctxproxy variants a hang-up every ADMIN_HANGUP_EVERY_S (GET /hang to
# tests/backend, which never answers, closed ADMIN_HANGUP_HOLD_S later) makes
# cancellations; with the page open ADMIN_READERS readers hold GET /events
# for the whole run (bench/admin_page_load.py).
ADMIN_VARIANTS = (("page closed", "ctxproxy", False), ("page open", "ctxproxy", True),
                  ("nginx", "nginx", False))
ADMIN_CONNS = 50
ADMIN_READERS = 3
ADMIN_HANGUP_EVERY_S = 0.05
ADMIN_HANGUP_HOLD_S = 0.015
ADMIN_PAGE_ROWS = 100  # the page's /cancellations?limit= when its stream opens (admin_page.c)
# A JSON request keeps the hub snapshotting this long (LINGER_NS in
# admin_watch.c): a "page closed" run starts only that long after the last.
ADMIN_LINGER_S = 5.0
ADMIN_EVENT_WAIT_S = 1.5  # the last cancellations reach the streams within 1 s (the contract)
ADMIN_TARGET = 0.95  # page open / page closed, req/s (the issue's acceptance)


def request_head(headers, port=80, path="/"):
    """The request head wrk sends with these extra fields (for its size)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"] + \
        [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with us


def which(name):
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    for d in path.split(":"):
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and os.path.isfile(p):
            return p
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def children_of(pid):
    """Direct and indirect children of pid (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


LIVE = []  # every Proc not yet stopped


class Proc:
    """A child process with its output in files; stop() ends it and its children."""

    def __init__(self, name, argv, tmp, stop_sig=signal.SIGTERM):
        self.name = name
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err")
        self.stop_sig = stop_sig
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                      cwd=tmp, preexec_fn=_child_setup)
        self.pid = self.p.pid
        self.port = None
        LIVE.append(self)

    def poll(self):
        return self.p.poll()

    def pids(self):
        return [self.pid] + children_of(self.pid)

    def err_tail(self, n=3):
        try:
            with open(self.err_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout=5.0):
        if self in LIVE:
            LIVE.remove(self)
        if self.p.poll() is not None:
            return
        kids = [(k, comm(k)) for k in children_of(self.pid)]
        try:
            self.p.send_signal(self.stop_sig)
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
        # Children that outlived their parent (nginx workers): by pid, and
        # only if that pid still runs the same program.
        deadline = time.monotonic() + 2
        for k, name in kids:
            while comm(k) == name and name is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if comm(k) == name and name is not None:
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass


def stop_all():
    for p in list(reversed(LIVE)):
        try:
            p.stop(timeout=3)
        except Exception:  # noqa: BLE001 - keep stopping the others
            pass


class Bench:
    def __init__(self, args, cfg, tmp):
        self.args = args
        self.cfg = cfg
        self.tmp = tmp
        self.seq = 0
        self.rows = []       # [(case, metric, {proxy: value}, fmt)]
        self.runs = []       # raw per-run records
        self.notes = []
        self.sections = []   # [[Markdown lines]]: a case's own table
        self.failures = 0
        self.t_start = time.monotonic()
        self.nginx = which("nginx")
        self.haproxy = which("haproxy")
        self.wrk = which("wrk")
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    # ---- helpers ----

    def name(self, what):
        self.seq += 1
        return f"{self.seq:03d}-{what}"

    def out_of_time(self):
        return time.monotonic() - self.t_start > self.cfg["budget"]

    def row(self, case, metric, values, fmt="{:.2f}"):
        for r in self.rows:
            if r[0] == case and r[1] == metric:
                r[2].update(values)
                return
        self.rows.append((case, metric, dict(values), fmt))

    def start_backend(self, quiet=False, ident=None, ws=False):
        """tests/backend, or with ws tests/ws_echo (its events are all the
        WebSocket cases need; quiet and ident do not apply)."""
        name = self.name("ws-echo" if ws else "backend")
        argv = [WS_BACKEND, "-p", "0"] if ws else \
            [BACKEND, "-p", "0"] + (["-q"] if quiet else []) + (["-i", ident] if ident else [])
        p = Proc(name, argv, self.tmp)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p.poll() is None:
            with open(p.out_path) as f:
                m = re.match(r"listening port=(\d+)", f.readline())
            if m:
                p.port = int(m.group(1))
                return p
            time.sleep(0.01)
        p.stop()
        raise RuntimeError(f"tests/{'ws_echo' if ws else 'backend'} did not start: "
                           f"{p.err_tail()}")

    def start_sink(self):
        """tests/otlp_sink: an OTLP/HTTP collector that answers at once and
        counts spans (p.port; sink_stats() reads its totals)."""
        p = Proc(self.name("otlp-sink"), [OTLP_SINK, "-p", "0"], self.tmp)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p.poll() is None:
            with open(p.out_path) as f:
                m = re.match(r"listening port=(\d+)", f.readline())
            if m:
                p.port = int(m.group(1))
                return p
            time.sleep(0.01)
        p.stop()
        raise RuntimeError(f"tests/otlp_sink did not start: {p.err_tail()}")

    def start_fast_backend(self):
        name = self.name("fast-nginx")
        port = free_port()
        conf = os.path.join(self.tmp, name + ".conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
error_log {self.tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    client_body_temp_path {self.tmp}/{name}.body;
    proxy_temp_path {self.tmp}/{name}.proxy;
    fastcgi_temp_path {self.tmp}/{name}.fastcgi;
    uwsgi_temp_path {self.tmp}/{name}.uwsgi;
    scgi_temp_path {self.tmp}/{name}.scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
""")
        p = self._nginx_proc(name, conf)
        if not wait_port(port, p):
            p.stop()
            raise RuntimeError(f"backend nginx did not start: {p.err_tail()}")
        p.port = port
        return p

    def _nginx_proc(self, name, conf):
        return Proc(name, [self.nginx, "-p", self.tmp, "-e", f"{self.tmp}/{name}.error.log",
                           "-c", conf, "-g", f"daemon off; pid {self.tmp}/{name}.pid;"],
                    self.tmp, stop_sig=signal.SIGTERM)

    def tls_cert(self):
        """(cert, key, combined) PEM paths of one self-signed ECDSA P-256
        certificate for 127.0.0.1, made with the openssl CLI on first use;
        every proxy of the TLS cases serves it (HAProxy wants the
        combined file)."""
        if getattr(self, "_tls_cert", None):
            return self._tls_cert
        cert, key = (os.path.join(self.tmp, "bench-tls." + e) for e in ("pem", "key"))
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                            "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-keyout", key, "-out", cert, "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"openssl req failed: {r.stderr.strip()[-300:]}")
        both = os.path.join(self.tmp, "bench-tls.both.pem")
        with open(both, "w") as out, open(cert) as c, open(key) as k:
            out.write(c.read() + k.read())
        self._tls_cert = (cert, key, both)
        return self._tls_cert

    def start_proxy(self, kind, workers, bport, conns, nginx_extra="", wrap=(), wait_s=5.0,
                    access_log=False, tls=False, ws=False, ctx_extra="", admin=False,
                    extra_routes=""):
        """Start proxy `kind` in front of 127.0.0.1:bport for up to `conns` clients.
        bport may be a list of ports: a pool of servers with retries and
        passive ejection (the failover case; see POOL_* for the settings).
        ctxproxy only: `wrap` is put before its argv (valgrind, for
        bench/profile.py), and it gets `wait_s` seconds to start listening;
        a pool also gets an admin listener (p.admin_port, for /metrics) and,
        with access_log, its access log in TMP/NAME.access.log (p.access_log).
        tls: the proxy listens for TLS 1.3 only, with tls_cert(), and no
        session tickets or session cache (ctxproxy has neither); ctxproxy
        then also gets an admin listener, for its handshake counter.
        ws: the proxy carries WebSockets (WS_* settings).
        ctxproxy only: ctx_extra is added to its top-level settings (the
        trace-cost case's trace keys); admin gives it an admin listener;
        extra_routes is more of its route groups (`{ name = ...; }, ...`),
        after the bench route (the admin-page case's /hang)."""
        name = self.name(kind)
        conf = os.path.join(self.tmp, name + ".conf")
        bports = list(bport) if isinstance(bport, (list, tuple)) else [bport]
        pool = len(bports) > 1
        admin = admin or pool or tls
        if tls:
            cert, key, both = self.tls_cert()
        if kind == "ctxproxy":
            log_path = os.path.join(self.tmp, name + ".access.log")
            if pool:
                servers = ", ".join(f'"http://127.0.0.1:{b}"' for b in bports)
                route = (f'name = "bench"; prefix = "/"; upstream = ( {servers} );\n'
                         f'    {POOL_CTXPROXY}')
            else:
                route = f'name = "bench"; prefix = "/"; upstream = "http://127.0.0.1:{bports[0]}";'
            if ws:
                route += f" {WS_CTXPROXY}"
            routes = f"{{ {route} }}" + (f", {extra_routes}" if extra_routes else "")
            with open(conf, "w") as f:
                listen = (f'tls_listen = "127.0.0.1:0"; tls_min_version = "1.3";\n'
                          f'tls_certificates = ( {{ cert = "{cert}"; key = "{key}"; }} );'
                          if tls else 'listen = "127.0.0.1:0";')
                f.write(f"""{listen}
workers = {workers};
max_connections = {max(conns + 1000, 20000)};
client_idle_timeout_ms = 300000;
max_body_bytes = 4294967296L;
shutdown_grace_ms = 200;
access_log = "{log_path if access_log else "off"}";
upstream_keepalive = 1024;
{'admin = "127.0.0.1:0";' if admin else ''}
{ctx_extra}
defaults = {{ connect_timeout_ms = 5000; timeout_ms = 600000; }};
routes = ( {routes} );
""")
            p = Proc(name, list(wrap) + [CTXPROXY, "-c", conf], self.tmp)
            p.admin_port = None
            p.access_log = log_path if access_log else None
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and p.poll() is None and \
                    (p.port is None or (admin and p.admin_port is None)):
                with open(p.err_path, errors="replace") as f:
                    text = f.read()
                m = re.search(r"msg=listening addr=127\.0\.0\.1:(\d+)", text)
                a = re.search(r"msg=\"?admin listening\"? addr=127\.0\.0\.1:(\d+)", text)
                if m:
                    p.port = int(m.group(1))
                if a:
                    p.admin_port = int(a.group(1))
                if p.port is None or (admin and p.admin_port is None):
                    time.sleep(0.01)
            if p.port is None or not wait_port(p.port, p, wait_s):
                p.stop()
                raise RuntimeError(f"ctxproxy did not start: {p.err_tail()}")
            return p
        port = free_port()
        if kind == "nginx":
            # Two connections per proxied request, and nginx starts closing
            # idle client connections once fewer than 1/16 of the slots are
            # free: leave room.  (It only warns when this exceeds the fd limit.)
            wc = 2 * conns * 17 // 15 + 1024
            servers = "\n".join(f"        server 127.0.0.1:{b};" for b in bports)
            if pool:
                nginx_extra += f"\n            {POOL_NGINX}"
            conn_field = 'proxy_set_header Connection "";'
            ws_map = ""
            io_timeout = "600s"
            if ws:
                conn_field = WS_NGINX
                ws_map = f"\n    {WS_NGINX_HTTP}"
                io_timeout = WS_NGINX_TIMEOUT
            listen_tls = ""
            if tls:
                listen_tls = (f" ssl;\n        ssl_certificate {cert};\n"
                              f"        ssl_certificate_key {key};\n"
                              f"        ssl_protocols TLSv1.3;\n"
                              f"        ssl_session_tickets off;\n"
                              f"        ssl_session_cache off")
            with open(conf, "w") as f:
                f.write(f"""worker_processes {workers};
worker_rlimit_nofile {max(self.nofile, 1024)};
error_log {self.tmp}/{name}.error.log warn;
events {{ worker_connections {wc}; }}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    client_max_body_size 0;
    client_body_temp_path {self.tmp}/{name}.body;
    proxy_temp_path {self.tmp}/{name}.proxy;
    fastcgi_temp_path {self.tmp}/{name}.fastcgi;
    uwsgi_temp_path {self.tmp}/{name}.uwsgi;
    scgi_temp_path {self.tmp}/{name}.scgi;{ws_map}
    upstream backend {{
{servers}
        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096{listen_tls};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            {conn_field}
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_ignore_client_abort off;
            proxy_connect_timeout 5s;
            proxy_read_timeout {io_timeout};
            proxy_send_timeout {io_timeout};{nginx_extra}
        }}
    }}
}}
""")
            p = self._nginx_proc(name, conf)
        else:
            # A tight maxconn slows HAProxy down badly (c=256 with maxconn 306:
            # 14k req/s instead of 48k), so be generous within the fd limit
            # (it needs about 2 * maxconn descriptors and refuses to start
            # if it cannot raise RLIMIT_NOFILE that far).
            maxconn = max(conns + 50, min(4 * conns + 1000, (self.nofile - 100) // 2))
            servers = "\n".join(f"    server s{i + 1} 127.0.0.1:{b}"
                                for i, b in enumerate(bports))
            pool_lines = "".join(f"\n    {line}" for line in POOL_HAPROXY) if pool else ""
            # TLS: 1.3 only, no tickets, no session cache (cachesize 0).
            tls_global = "\n    tune.ssl.cachesize 0" if tls else ""
            bind_tls = f" ssl crt {both} ssl-min-ver TLSv1.3 no-tls-tickets" if tls else ""
            ws_timeout = f"\n    {WS_HAPROXY}" if ws else ""
            with open(conf, "w") as f:
                f.write(f"""global
    maxconn {maxconn}
    nbthread {workers}{tls_global}

defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 300s{ws_timeout}
    option abortonclose
    http-reuse always

frontend fe
    bind 127.0.0.1:{port} backlog 4096{bind_tls}
    default_backend be

backend be{pool_lines}
{servers}
""")
            p = Proc(name, [self.haproxy, "-db", "-f", conf], self.tmp)
        if not wait_port(port, p):
            p.stop()
            raise RuntimeError(f"{kind} did not start: {p.err_tail()}")
        if kind == "nginx":
            # The listening socket answers before the workers are forked:
            # wait for them, so that p.pids() covers them.
            deadline = time.monotonic() + 5
            while len(children_of(p.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.01)
        p.port = port
        return p

    def client(self, script, argv, timeout):
        """Run a bench client; its JSON result (or raise)."""
        r = subprocess.run([PY, os.path.join(HERE, script)] + [str(a) for a in argv],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, cwd=self.tmp, preexec_fn=_child_setup)
        lines = r.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"{script} printed nothing (rc {r.returncode}): "
                               f"{r.stderr.strip()[-300:]}")
        return json.loads(lines[-1])

    def record(self, case, proxy, result=None, error=None):
        self.runs.append({"case": case, "proxy": proxy, "result": result, "error": error})
        if error:
            self.failures += 1
            self.notes.append(f"{case} / {proxy}: FAILED: {error}")
            print(f"  {proxy:9s} FAILED: {error}", file=sys.stderr, flush=True)

    def run_one(self, case, proxy, fn):
        """fn() -> result dict; failures are recorded, never raised."""
        if proxy not in self.args.proxies.split(","):
            return None
        if self.out_of_time():
            self.record(case, proxy, error="skipped: time budget used up")
            return None
        t0 = time.monotonic()
        watch = CpuWatch([p for p in LIVE if getattr(p, "keep", False)])
        try:
            res = fn()
        except Exception as e:  # noqa: BLE001 - a failed run must not stop the others
            self.record(case, proxy, error=f"{type(e).__name__}: {e}")
            return None
        finally:
            for p in list(LIVE):
                if not getattr(p, "keep", False):
                    p.stop()
        foreign = watch.foreign()
        if foreign is not None:
            res["foreign_cpu"] = foreign
            if foreign > FOREIGN_MAX:
                self.notes.append(f"{case} / {proxy}: other processes used about "
                                  f"{foreign * 100:.0f}% of the machine's CPU during this run; "
                                  f"its figures are suspect")
        self.record(case, proxy, result=res)
        print(f"  {proxy:9s} {short(res)}  ({time.monotonic() - t0:.1f} s)",
              file=sys.stderr, flush=True)
        return res

    # ---- case 1: throughput ----

    def wrk_run(self, port, conns, secs, pids=(), headers=(), path="/", at=None,
                scheme="http"):
        """wrk's figures, plus the CPU time pids used per request.  With
        at = (S, fn), fn() is called S seconds after wrk was started and
        what it returns is out["at"]."""
        argv = [self.wrk, "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "5s"]
        for k, v in headers:
            argv += ["-H", f"{k}: {v}"]
        argv.append(f"{scheme}://127.0.0.1:{port}{path}")
        cpu0 = cpu_ticks(pids)
        fired = None
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, preexec_fn=_child_setup) as w:
            t0 = time.monotonic()
            try:
                if at is not None:
                    time.sleep(max(0.0, at[0] - (time.monotonic() - t0)))
                    fired = at[1]()
                stdout, _ = w.communicate(timeout=secs + 20)
            except BaseException:
                w.kill()
                w.communicate()
                raise
        cpu1 = cpu_ticks(pids)
        out = parse_wrk(stdout)
        if at is not None:
            out["at"] = fired
        if pids and out["requests"]:
            out["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / os.sysconf("SC_CLK_TCK") / \
                out["requests"]
        return out

    def case_throughput(self, variants=TP_VARIANTS):
        """Each variant (name, request fields, cfg key of the C values) against
        one nginx `return 200` backend: the backend alone, then each proxy
        freshly started with 1 and 2 workers."""
        cfg = self.cfg
        fast = self.start_fast_backend()
        fast.keep = True
        try:
            for name, headers, conns_key in variants:
                if headers:
                    self.notes.append(f"{name}: request head {len(request_head(headers))} "
                                      f"bytes with Host (throughput: "
                                      f"{len(request_head(()))})")
                # The backend alone, for context (in a smoke run only for the
                # plain GET, to keep it short).
                if self.args.smoke and headers:
                    continue
                for conns in cfg[conns_key]:
                    d = self.wrk_run(fast.port, conns, cfg["wrk_secs"], headers=headers)
                    if d["rps"] is None or d["p99_ms"] is None:
                        raise RuntimeError(f"wrk against the backend alone gave no figures "
                                           f"({name}, -c{conns})")
                    self.notes.append(f"fast backend alone (nginx return 200, 1 worker), "
                                      f"{name}, wrk -t1 -c{conns}: {d['rps']:.0f} req/s, "
                                      f"p99 {d['p99_ms']:.2f} ms")
            for name, headers, conns_key in variants:
                self.throughput_runs(fast, name, headers, cfg[conns_key])
        finally:
            fast.keep = False
            fast.stop()

    def throughput_runs(self, fast, name, headers, conns_list):
        cfg = self.cfg
        for w in cfg["tp_workers"]:
            print(f"{name} workers={w}:", file=sys.stderr, flush=True)
            for proxy in PROXIES:

                def go(proxy=proxy, w=w):
                    p = self.start_proxy(proxy, w, fast.port, max(conns_list))
                    out = {}
                    if cfg["warmup_secs"]:
                        self.wrk_run(p.port, conns_list[0], cfg["warmup_secs"],
                                     headers=headers)
                    for conns in conns_list:
                        out[conns] = self.wrk_run(p.port, conns, cfg["wrk_secs"],
                                                  p.pids(), headers=headers)
                        if out[conns]["rps"] is None:
                            raise RuntimeError(f"wrk -c{conns} gave no figures")
                    if p.poll() is not None:
                        raise RuntimeError(f"{proxy} exited: {p.err_tail()}")
                    return out

                res = self.run_one(f"{name} w={w}", proxy, go)
                for conns in conns_list:
                    d = (res or {}).get(conns, {})
                    case = f"{name} w={w} c={conns}"
                    self.row(case, "req/s", {proxy: d.get("rps")}, "{:.0f}")
                    self.row(case, "p50 ms", {proxy: d.get("p50_ms")}, "{:.3f}")
                    self.row(case, "p99 ms", {proxy: d.get("p99_ms")}, "{:.3f}")
                    self.row(case, "proxy CPU us/request",
                             {proxy: d.get("cpu_us_per_req")}, "{:.1f}")
                    self.row(case, "errors", {proxy: d.get("errors")}, "{:.0f}")
                    if d.get("errors"):
                        self.notes.append(f"{case} / {proxy}: {d['errors']} non-2xx "
                                          f"responses or socket errors")

    # ---- case 1b: the cost of trace context and span export ----

    def case_trace_cost(self):
        """TRACE_VARIANTS against the throughput case's nginx `return 200`
        backend, each proxy started once (1 worker) and kept; then
        trace_rounds rounds of one wrk run per variant, round r starting at
        variant r (rotated), so that no variant always runs first or last
        while the machine's load drifts.  Ratios are taken within a round."""
        cfg = self.cfg
        conns, secs, rounds = TRACE_CONNS, cfg["trace_secs"], cfg["trace_rounds"]
        case = f"trace-cost w=1 c={conns}"
        wanted = self.args.proxies.split(",")
        variants = [v for v in TRACE_VARIANTS if v[1] in wanted]
        print(f"{case}: {len(variants)} variants, {rounds} round(s) of {secs} s",
              file=sys.stderr, flush=True)
        kept = []
        try:
            fast = self.start_fast_backend()
            sink = self.start_sink()
            kept += [fast, sink]
            procs = {}
            for name, kind, extra, _, export in variants:
                if export:
                    extra += f' otlp_endpoint = "http://127.0.0.1:{sink.port}/v1/traces";'
                p = self.start_proxy(kind, 1, fast.port, conns, ctx_extra=extra,
                                     admin=kind == "ctxproxy")
                kept.append(p)
                procs[name] = p
            for p in kept:
                p.keep = True
            if cfg["warmup_secs"]:
                for name, kind, _, headers, export in variants:
                    self.wrk_run(procs[name].port, conns, cfg["warmup_secs"], headers=headers)
                    if export:
                        trace_drain(procs[name].admin_port)
            runs = {v[0]: [] for v in variants}
            for r in range(rounds):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for v in order:
                    res = self.run_one(f"{case} round {r + 1}: {v[0]}", v[1],
                                       lambda v=v: self.trace_run(procs[v[0]], v, sink, secs))
                    runs[v[0]].append(res)
        finally:
            for p in kept:
                p.keep = False
                p.stop()
        self.trace_report(case, variants, runs, rounds, secs)

    def rows_vs_nginx(self, c, name, vals, ng):
        """Rows of case c: variant name's median req/s, p99 and CPU per
        request over its rounds, nginx's medians (ng) beside them."""
        for metric, key, fmt in (("req/s", "rps", "{:.0f}"), ("p99 ms", "p99_ms", "{:.3f}"),
                                 ("proxy CPU us/request", "cpu_us_per_req", "{:.1f}")):
            self.row(c, metric, {"ctxproxy": median(vals(name, key)), "nginx": ng[key]}, fmt)

    def trace_run(self, p, variant, sink, secs):
        """One wrk run of a trace-cost variant on its kept proxy p; with
        export, the spans exported and dropped over it (after the exporter
        has drained) and those the sink received, and the sink's CPU."""
        name, kind, _, headers, export = variant
        if export:
            m0 = trace_spans(p.admin_port)
            s0 = sink_stats(sink.port)
            t0 = cpu_ticks([sink.pid])
        out = self.wrk_run(p.port, TRACE_CONNS, secs, p.pids(), headers=headers)
        if out["rps"] is None or out["p99_ms"] is None:
            raise RuntimeError("wrk gave no figures")
        if export:
            t1 = cpu_ticks([sink.pid])
            m1 = trace_drain(p.admin_port)
            s1 = sink_stats(sink.port)
            out["spans_exported"] = m1[0] - m0[0]
            out["spans_dropped"] = m1[1] - m0[1]
            out["sink_spans"] = s1["spans"] - s0["spans"]
            out["sink_posts"] = s1["posts"] - s0["posts"]
            out["sink_cpu_us_per_req"] = (t1 - t0) * 1e6 / os.sysconf("SC_CLK_TCK") / \
                out["requests"]
        if p.poll() is not None:
            raise RuntimeError(f"{kind} exited: {p.err_tail()}")
        return out

    def trace_report(self, case, variants, runs, rounds, secs):
        """Rows for the main table (medians; nginx's beside each ctxproxy
        variant, so its ratio column compares with nginx) and a table of
        its own: per-round ratios to trace off and to nginx, as medians
        and ranges, and the export's span counts."""
        ref, nginx = variants[0][0], "nginx"
        rs = Rounds(runs, variants, rounds)
        rounds_done, vals, ratios, mid_range = rs.done, rs.vals, rs.ratios, Rounds.mid_range

        ng = {k: median(vals(nginx, k)) for k in ("rps", "p99_ms", "cpu_us_per_req")}
        for name, kind, _, _, _ in variants:
            if kind != "ctxproxy":
                continue
            c = f"{case}: {name}"
            self.rows_vs_nginx(c, name, vals, ng)
            if name != ref:
                self.row(c, "req/s / trace off", {"ctxproxy": median(ratios(name, ref, "rps"))},
                         "{:.3f}")
            self.row(c, "errors", {"ctxproxy": sum(vals(name, "errors"))}, "{:.0f}")
            if vals(name, "spans_exported"):
                for metric, key in (("spans exported (all rounds)", "spans_exported"),
                                    ("spans dropped (all rounds)", "spans_dropped"),
                                    ("spans at the collector (all rounds)", "sink_spans"),
                                    ("requests (all rounds)", "requests")):
                    self.row(c, metric, {"ctxproxy": sum(vals(name, key))}, "{:.0f}")
                self.row(c, "collector CPU us/request",
                         {"ctxproxy": median(vals(name, "sink_cpu_us_per_req"))}, "{:.1f}")
        md = [f"## trace-cost: small GET, 1 worker, wrk -t1 -c{TRACE_CONNS} -d{secs}s, "
              f"{len(rounds_done)} of {rounds} round(s) complete, variants rotated per round",
              "",
              "Medians over the rounds, (min–max) in brackets; ratios are taken within "
              "each round.",
              "",
              "| variant | req/s | ÷ trace off | ÷ nginx | p99 ms | p99 ÷ trace off | "
              "CPU µs/request | CPU ÷ trace off |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, _, _, _, _ in variants:
            md.append(f"| {name} | {mid_range(vals(name, 'rps'), '{:.0f}')} | "
                      f"{mid_range(ratios(name, ref, 'rps'), '{:.3f}')} | "
                      f"{mid_range(ratios(name, nginx, 'rps'), '{:.2f}')} | "
                      f"{mid_range(vals(name, 'p99_ms'), '{:.3f}')} | "
                      f"{mid_range(ratios(name, ref, 'p99_ms'), '{:.2f}')} | "
                      f"{mid_range(vals(name, 'cpu_us_per_req'), '{:.1f}')} | "
                      f"{mid_range(ratios(name, ref, 'cpu_us_per_req'), '{:.3f}')} |")
        for name, _, _, _, export in variants:
            if not export or not vals(name, "spans_exported"):
                continue
            req, exp = sum(vals(name, "requests")), sum(vals(name, "spans_exported"))
            drop, got = sum(vals(name, "spans_dropped")), sum(vals(name, "sink_spans"))
            posts = sum(vals(name, "sink_posts"))
            md += ["", f"{name}: {req} requests answered to wrk, {exp} spans exported and "
                   f"{drop} dropped (ctxproxy's /metrics, after the exporter drained), "
                   f"{got} spans in {posts} POSTs at tests/otlp_sink "
                   f"(spans beyond the requests: requests still in flight when wrk stopped, "
                   f"logged as 499); the sink's CPU "
                   f"{mid_range(vals(name, 'sink_cpu_us_per_req'), '{:.1f}')} µs/request"]
            if drop:
                self.notes.append(f"{case}: {name}: {drop} spans dropped")
            if got != exp:
                self.notes.append(f"{case}: {name}: the sink counted {got} spans, ctxproxy "
                                  f"exported {exp}")
        self.sections.append(md)

    # ---- case 1c: requests/s with the admin live view open ----

    def case_admin_page(self):
        """ADMIN_VARIANTS against the throughput case's nginx `return 200`
        backend; one ctxproxy (1 worker, admin listener, a route /hang to
        tests/backend) and one nginx, started once and kept; then
        admin_rounds rounds of one run per variant, rotated as in
        trace-cost.  Ratios are taken within a round."""
        cfg = self.cfg
        conns, secs, rounds = ADMIN_CONNS, cfg["admin_secs"], cfg["admin_rounds"]
        case = f"admin-page w=1 c={conns}"
        wanted = self.args.proxies.split(",")
        variants = [v for v in ADMIN_VARIANTS if v[1] in wanted]
        print(f"{case}: {len(variants)} variants, {rounds} round(s) of {secs} s "
              f"(nginx {cfg['admin_ref_secs']} s)", file=sys.stderr, flush=True)
        kept = []
        self.admin_json_at = None
        try:
            fast = self.start_fast_backend()
            hang = self.start_backend(quiet=True)
            kept += [fast, hang]
            procs = {}
            if "ctxproxy" in wanted:
                procs["ctxproxy"] = self.start_proxy(
                    "ctxproxy", 1, fast.port, conns, admin=True,
                    extra_routes=f'{{ name = "hang"; prefix = "/hang"; '
                                 f'upstream = "http://127.0.0.1:{hang.port}"; }}')
            if "nginx" in wanted:
                procs["nginx"] = self.start_proxy("nginx", 1, fast.port, conns)
            kept += procs.values()
            for p in kept:
                p.keep = True
            if cfg["warmup_secs"]:
                for p in procs.values():
                    self.wrk_run(p.port, conns, cfg["warmup_secs"])
            runs = {v[0]: [] for v in variants}
            for r in range(rounds):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for v in order:
                    res = self.run_one(f"{case} round {r + 1}: {v[0]}", v[1],
                                       lambda v=v: self.admin_run(procs[v[1]], v, secs))
                    runs[v[0]].append(res)
        finally:
            for p in kept:
                p.keep = False
                p.stop()
        self.admin_report(case, variants, runs, rounds, secs)

    def admin_run(self, p, variant, secs):
        """One wrk run of an admin-page variant on its kept proxy p.  ctxproxy:
        with the hang-ups, and with the page open its readers (opened, and
        their JSON request answered, before wrk starts; stopped once every
        hang-up's cancellation reached them, or ADMIN_EVENT_WAIT_S); with the
        page closed, first a wait until no stream is left and the last JSON
        request is ADMIN_LINGER_S old, so the hub is idle."""
        name, kind, page = variant
        if kind != "ctxproxy":
            out = self.wrk_run(p.port, ADMIN_CONNS, self.cfg["admin_ref_secs"], p.pids())
            if out["rps"] is None or out["p99_ms"] is None:
                raise RuntimeError("wrk gave no figures")
            return out
        pre = {}
        readers = []
        try:
            if page:
                readers = [EventReader(p.admin_port, rows=ADMIN_PAGE_ROWS)
                           for _ in range(ADMIN_READERS)]
                for rd in readers:
                    rd.start()
                for rd in readers:
                    rd.opened.wait(10)
                self.admin_json_at = time.monotonic()
                bad = [rd.error or f"not open (status {rd.status})" for rd in readers
                       if rd.error or not rd.opened.is_set() or rd.fetch_status != 200]
                if bad:
                    raise RuntimeError(f"event stream: {bad[0]}")
            else:
                pre["quiet_wait_s"] = self.admin_quiet(p.admin_port)
            pre["streams_at_start"] = admin_streams(p.admin_port)
            c0 = route_cancels(p.admin_port, "hang")
            hu = HangUps(p.port, path="/hang", every=ADMIN_HANGUP_EVERY_S,
                         hold=ADMIN_HANGUP_HOLD_S)
            hu.start()
            try:
                out = self.wrk_run(p.port, ADMIN_CONNS, secs, p.pids())
            finally:
                hu.stop()
            if out["rps"] is None or out["p99_ms"] is None:
                raise RuntimeError("wrk gave no figures")
            deadline = time.monotonic() + 1.0  # the proxy sees a close at once
            while True:
                cancels = route_cancels(p.admin_port, "hang") - c0
                if cancels >= hu.made or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            deadline = time.monotonic() + ADMIN_EVENT_WAIT_S
            while any(rd.is_alive() and rd.cancels.get("hang", 0) < cancels for rd in readers) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            for rd in readers:
                rd.stop()
        out.update(pre)
        out.update(hangups=hu.made, hangup_errors=hu.failed, hangup_error=hu.error,
                   cancels_hang=cancels, hangups_cpu_s=hu.cpu_s)
        if page:
            out["readers"] = [{"summaries": rd.counts.get("summary", 0),
                               "cancellations": rd.counts.get("cancellation", 0),
                               "cancels_hang": rd.cancels.get("hang", 0),
                               "bad": rd.bad, "ended": rd.ended, "error": rd.error,
                               "cpu_s": rd.cpu_s} for rd in readers]
            delays = sorted(d for rd in readers for d in rd.delays_ms)
            out["event_delay_ms"] = {"p50": median(delays),
                                     "max": delays[-1] if delays else None}
        if p.poll() is not None:
            raise RuntimeError(f"{kind} exited: {p.err_tail()}")
        return out

    def admin_quiet(self, admin_port):
        """Wait (bounded) until the admin hub of ctxproxy is idle: no event
        stream open and the last JSON request ADMIN_LINGER_S old; the seconds
        waited."""
        t0 = time.monotonic()
        if self.admin_json_at is not None:
            time.sleep(max(0.0, self.admin_json_at + ADMIN_LINGER_S + 0.1 - t0))
        deadline = time.monotonic() + 2.0  # a stream's end is seen within 250 ms
        while admin_streams(admin_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return time.monotonic() - t0

    def admin_report(self, case, variants, runs, rounds, secs):
        """Rows for the main table (medians, nginx's beside each ctxproxy
        variant) and a section of its own: per-round ratios as medians and
        ranges, the hang-ups, the cancellations and the events read."""
        ref, nginx = variants[0][0], "nginx"
        rs = Rounds(runs, variants, rounds)
        rounds_done, vals, ratios, mid_range = rs.done, rs.vals, rs.ratios, Rounds.mid_range

        ng = {k: median(vals(nginx, k)) for k in ("rps", "p99_ms", "cpu_us_per_req")}
        for name, kind, page in variants:
            if kind != "ctxproxy":
                continue
            c = f"{case}: {name}"
            self.rows_vs_nginx(c, name, vals, ng)
            if name != ref:
                self.row(c, "req/s / page closed", {"ctxproxy": median(ratios(name, ref, "rps"))},
                         "{:.3f}")
            self.row(c, "errors", {"ctxproxy": sum(vals(name, "errors"))}, "{:.0f}")
            self.row(c, "hang-ups (all rounds)", {"ctxproxy": sum(vals(name, "hangups"))},
                     "{:.0f}")
        md = [f"## admin-page: the live view open or closed (issue 17), small GET, 1 worker, "
              f"wrk -t1 -c{ADMIN_CONNS} -d{secs}s, {len(rounds_done)} of {rounds} round(s) "
              f"complete, variants rotated per round",
              "",
              f"Both ctxproxy variants: a hang-up every {ADMIN_HANGUP_EVERY_S * 1000:.0f} ms "
              f"for the whole wrk run (`GET /hang` through ctxproxy's route to tests/backend, "
              f"which never answers; closed {ADMIN_HANGUP_HOLD_S * 1000:.0f} ms later). "
              f"Page open: {ADMIN_READERS} readers of `GET /events` on the admin listener "
              f"from before wrk starts until after it ends (each asked "
              f"`/cancellations?limit={ADMIN_PAGE_ROWS}` once on opening, as the page does). "
              f"Page closed: no stream, and the last JSON request over {ADMIN_LINGER_S:g} s old "
              f"(the hub idle). nginx: wrk alone for {self.cfg['admin_ref_secs']} s, a reference. "
              f"Medians over the rounds, (min–max) in brackets; ratios are taken within each "
              f"round; CPU is ctxproxy's (its admin and hub threads included); others' CPU "
              f"is the share of the machine that processes not ours used meanwhile "
              f"(CpuWatch): on 2 shared cores it moves req/s far more than the page does.",
              "",
              "| variant | req/s | ÷ page closed | ÷ nginx | p99 ms | CPU µs/request | "
              "CPU ÷ page closed | others' CPU % | hang-ups | their cancellations (/metrics) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, kind, _ in variants:
            hang = (f"{sum(vals(name, 'hangups'))} | {sum(vals(name, 'cancels_hang'))}"
                    if kind == "ctxproxy" else "- | -")
            md.append(f"| {name} | {mid_range(vals(name, 'rps'), '{:.0f}')} | "
                      f"{mid_range(ratios(name, ref, 'rps'), '{:.3f}')} | "
                      f"{mid_range(ratios(name, nginx, 'rps'), '{:.2f}')} | "
                      f"{mid_range(vals(name, 'p99_ms'), '{:.3f}')} | "
                      f"{mid_range(vals(name, 'cpu_us_per_req'), '{:.1f}')} | "
                      f"{mid_range(ratios(name, ref, 'cpu_us_per_req'), '{:.3f}')} | "
                      f"{mid_range([x * 100 for x in vals(name, 'foreign_cpu')], '{:.0f}')} | "
                      f"{hang} |")
        md += self.admin_events(case, variants, runs)
        self.sections.append(md)
        opened = [v[0] for v in variants if v[2]]
        rs = ratios(opened[0], ref, "rps") if opened and ref != opened[0] else []
        if rs and median(rs) < ADMIN_TARGET:
            self.notes.append(f"{case}: req/s with the page open is {median(rs):.3f}x "
                              f"({min(rs):.3f}–{max(rs):.3f}) of the page closed, below the "
                              f"target {ADMIN_TARGET}x")
        if rs:
            fo = [median(vals(n, "foreign_cpu")) for n in (ref, opened[0])]
            if None not in fo and abs(fo[0] - fo[1]) > FOREIGN_MAX:
                self.notes.append(f"{case}: other processes took {fo[0] * 100:.0f}% of the "
                                  f"machine during the page-closed runs and {fo[1] * 100:.0f}% "
                                  f"during the page-open runs (medians): the req/s ratio "
                                  f"measures that more than the page; CPU per request is "
                                  f"steadier")
        if rs and median(rs) >= ADMIN_TARGET and min(rs) < ADMIN_TARGET:
            self.notes.append(f"{case}: the median open ÷ closed ratio {median(rs):.3f} meets "
                              f"{ADMIN_TARGET}, but {sum(x < ADMIN_TARGET for x in rs)} of "
                              f"{len(rs)} rounds were below it (min {min(rs):.3f})")

    def admin_events(self, case, variants, runs):
        """The admin-page section's lines on the events the readers got
        against the hang-ups, and notes on anything amiss."""
        md = []
        for name, kind, page in variants:
            done = [res for res in runs.get(name, []) if res]
            errs = sum(res.get("hangup_errors", 0) for res in done)
            if errs:
                first = next(res["hangup_error"] for res in done if res.get("hangup_error"))
                self.notes.append(f"{case}: {name}: {errs} hang-ups failed ({first})")
            short_ = sum(res["hangups"] - res["cancels_hang"] for res in done
                         if kind == "ctxproxy" and res["cancels_hang"] < res["hangups"])
            if short_:
                self.notes.append(f"{case}: {name}: {short_} hang-ups with no cancellation in "
                                  f"/metrics")
            if not page or not done:
                continue
            readers = [rd for res in done for rd in res["readers"]]
            want = sum(res["cancels_hang"] for res in done)
            got = [sum(res["readers"][i]["cancels_hang"] for res in done)
                   for i in range(ADMIN_READERS)]
            summ = [sum(res["readers"][i]["summaries"] for res in done)
                    for i in range(ADMIN_READERS)]
            other = [sum(res["readers"][i]["cancellations"] - res["readers"][i]["cancels_hang"]
                         for res in done) for i in range(ADMIN_READERS)]
            p50 = median([res["event_delay_ms"]["p50"] for res in done])
            mx = max((res["event_delay_ms"]["max"] for res in done
                      if res["event_delay_ms"]["max"] is not None), default=None)
            cpu = sum(rd["cpu_s"] for rd in readers)
            streams = sorted({res["streams_at_start"] for res in done})
            md += ["", f"{name}, all rounds: {sum(res['hangups'] for res in done)} hang-ups, "
                   f"{want} cancellations of route hang in /metrics; per reader "
                   f"{' / '.join(map(str, got))} `event: cancellation` of route hang, "
                   f"{' / '.join(map(str, other))} of route bench (wrk's requests in flight "
                   f"when it stopped), {' / '.join(map(str, summ))} `event: summary`; "
                   f"ctxproxy_admin_streams at the start of each run: "
                   f"{', '.join(map(str, streams))}; a hang-up's event arrived "
                   f"{'-' if p50 is None else f'{p50:.0f}'} ms (median of the rounds' medians, "
                   f"max {'-' if mx is None else f'{mx:.0f}'} ms) after the cancellation's "
                   f"unix_ms; the readers' CPU {cpu * 1000:.0f} ms in all"]
            if any(g != want for g in got):
                self.notes.append(f"{case}: {name}: readers got {'/'.join(map(str, got))} "
                                  f"cancellation events of route hang for {want} cancellations")
            trouble = [rd for rd in readers if rd["error"] or rd["ended"] or rd["bad"]]
            if trouble:
                rd = trouble[0]
                self.notes.append(f"{case}: {name}: {len(trouble)} reader runs in trouble, "
                                  f"e.g. error {rd['error']}, stream ended {rd['ended']}, "
                                  f"{rd['bad']} events not JSON")
        closed = [res for v in variants if not v[2] and v[1] == "ctxproxy"
                  for res in runs.get(v[0], []) if res]
        if closed:
            md += ["", f"page closed: waited {max(r['quiet_wait_s'] for r in closed):.2f} s at "
                   f"most for the hub to go idle; ctxproxy_admin_streams at the start of each "
                   f"run: {', '.join(map(str, sorted({r['streams_at_start'] for r in closed})))}"]
        return md

    # ---- case 2: cancellation ----

    def case_cancel(self):
        cfg = self.cfg
        for n in cfg["cancel_ns"]:
            print(f"cancel N={n}:", file=sys.stderr, flush=True)
            for proxy in PROXIES:
                def go(proxy=proxy, n=n):
                    be = self.start_backend()
                    p = self.start_proxy(proxy, WORKERS, be.port, n)
                    return self.client("cancel_client.py",
                                       ["--port", p.port, "--events", be.out_path, "--n", n,
                                        "--ms", 30000, "--grace", cfg["cancel_grace"],
                                        "--repeat", cfg["cancel_reps"].get(n, 1)],
                                       timeout=90)

                res = self.run_one(f"cancel N={n}", proxy, go) or {}
                case = f"cancel N={n}"
                self.row(case, "p50 ms", {proxy: res.get("p50_ms")}, "{:.3f}")
                self.row(case, "p99 ms", {proxy: res.get("p99_ms")}, "{:.3f}")
                self.row(case, "max ms", {proxy: res.get("max_ms")}, "{:.3f}")
                self.row(case, "lost", {proxy: res.get("lost")}, "{:.0f}")
                total = n * res.get("rounds", 1)
                if res and res.get("seen") != total:
                    self.notes.append(f"{case} / {proxy}: only {res.get('seen')} of {total} "
                                      f"requests reached the backend")
                if res.get("answered_before_close"):
                    self.notes.append(f"{case} / {proxy}: {res['answered_before_close']} "
                                      f"requests were answered before the clients closed")

    # ---- case 3: long-poll concurrency and memory ----

    def case_longpoll(self):
        cfg = self.cfg
        n = cfg["lp_n"]
        cap = (self.nofile - 150) // 2  # a proxy holds 2 sockets per request
        if cap < n:
            why = ("run.sh could not raise the hard limit even as root: no "
                   "CAP_SYS_RESOURCE here" if os.geteuid() == 0 else
                   "run as root to let run.sh raise it")
            self.notes.append(f"long-poll: RLIMIT_NOFILE is {self.nofile} and a proxy needs 2 "
                              f"descriptors per request, so N was cut from {n} to {cap} ({why})")
            n = cap
        case = f"{n} long-polls"
        print(f"{case}:", file=sys.stderr, flush=True)
        for proxy in PROXIES:
            def go(proxy=proxy):
                be = self.start_backend()
                p = self.start_proxy(proxy, WORKERS, be.port, n)
                time.sleep(0.2)
                res = self.client("longpoll_client.py",
                                  ["--port", p.port, "--events", be.out_path, "--n", n,
                                   "--pids", ",".join(map(str, p.pids())),
                                   "--hold", cfg["lp_hold"], "--timeout", 30],
                                  timeout=cfg["lp_hold"] + 60)
                if p.poll() is not None:
                    raise RuntimeError(f"{proxy} exited: {p.err_tail()}")
                return res

            res = self.run_one(case, proxy, go) or {}
            mib = (lambda k: res[k] / 1024 if res.get(k) is not None else None)
            self.row(case, "RSS idle MiB", {proxy: mib("rss_before_kib")}, "{:.1f}")
            self.row(case, "RSS in flight MiB", {proxy: mib("rss_inflight_kib")}, "{:.1f}")
            self.row(case, "KiB/request", {proxy: res.get("kib_per_req")}, "{:.2f}")
            self.row(case, "in flight at sample", {proxy: res.get("in_flight")}, "{:.0f}")
            self.row(case, "completed", {proxy: res.get("completed")}, "{:.0f}")
        self.lp_n = n

    # ---- case 4: streaming ----

    def case_stream(self):
        size = self.cfg["stream_bytes"]
        label = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
        for mode in ("download", "upload"):
            case = f"{label} {mode}"
            print(f"{case}:", file=sys.stderr, flush=True)
            for proxy in PROXIES:
                def go(proxy=proxy, mode=mode):
                    be = self.start_backend(quiet=True)
                    p = self.start_proxy(proxy, WORKERS, be.port, 10)
                    time.sleep(0.1)
                    res = self.client("stream_client.py",
                                      ["--port", p.port, "--mode", mode, "--size", size,
                                       "--pids", ",".join(map(str, p.pids()))],
                                      timeout=240)
                    if not res.get("ok"):
                        raise RuntimeError(f"transfer failed: {res.get('error')}, "
                                           f"{res.get('bytes')} bytes")
                    return res

                res = self.run_one(case, proxy, go) or {}
                mib = (lambda k: res[k] / 1024 if res.get(k) is not None else None)
                growth = (res["rss_peak_kib"] - res["rss_before_kib"]) / 1024 if res else None
                self.row(case, "MiB/s", {proxy: res.get("mib_per_s")}, "{:.0f}")
                self.row(case, "peak RSS MiB", {proxy: mib("rss_peak_kib")}, "{:.1f}")
                self.row(case, "RSS growth MiB", {proxy: growth}, "{:.1f}")
            self.stream_nginx_64k(case, mode, size)

    def stream_nginx_64k(self, case, mode, size):
        """For context: nginx's default proxy_buffer_size is one page (4 KiB), so
        with proxy_buffering off it moves 4 KiB per read; ctxproxy uses 64 KiB."""
        if "nginx" not in self.args.proxies.split(",") or self.out_of_time():
            return
        extra = ("\n            proxy_buffer_size 64k; proxy_buffers 4 64k;"
                 "\n            proxy_busy_buffers_size 128k; client_body_buffer_size 64k;")
        try:
            be = self.start_backend(quiet=True)
            p = self.start_proxy("nginx", WORKERS, be.port, 10, nginx_extra=extra)
            time.sleep(0.1)
            res = self.client("stream_client.py",
                              ["--port", p.port, "--mode", mode, "--size", size,
                               "--pids", ",".join(map(str, p.pids()))], timeout=240)
        except Exception as e:  # noqa: BLE001 - context only
            self.notes.append(f"{case}: nginx with 64 KiB buffers: failed: {e}")
            return
        finally:
            for p in list(LIVE):
                if not getattr(p, "keep", False):
                    p.stop()
        rate = res.get("mib_per_s")
        ctx = next((r[2].get("ctxproxy") for r in self.rows
                    if r[0] == case and r[1] == "MiB/s"), None)
        if rate:
            ratio = f"; ctxproxy/that = {ctx / rate:.2f}" if ctx else ""
            self.notes.append(f"{case}: nginx with 64 KiB proxy buffers (not its default 4 KiB) "
                              f"does {rate:.0f} MiB/s, RSS growth "
                              f"{(res['rss_peak_kib'] - res['rss_before_kib']) / 1024:.1f} MiB"
                              f"{ratio}")
            print(f"  nginx-64k {short(res)}", file=sys.stderr, flush=True)

    # ---- case 5: failover ----

    def case_failover(self):
        """Two tests/backend servers (-i b1, -i b2) behind each proxy, fresh
        for each proxy; wrk GETs /fast and b2 gets SIGKILL a third into the
        run.  (Not the nginx backend of the throughput case: a SIGKILLed
        nginx master leaves its worker serving.)"""
        cfg = self.cfg
        secs, conns = cfg["fo_secs"], cfg["fo_conns"]
        case = f"failover w={FAILOVER_WORKERS} c={conns}"
        print(f"{case}:", file=sys.stderr, flush=True)
        for proxy in PROXIES:
            def go(proxy=proxy):
                b1 = self.start_backend(quiet=True, ident="b1")
                b2 = self.start_backend(quiet=True, ident="b2")
                names = {b1.port: "b1", b2.port: "b2"}
                p = self.start_proxy(proxy, FAILOVER_WORKERS, [b1.port, b2.port], conns,
                                     access_log=self.args.failover_log and
                                     proxy == "ctxproxy")
                if cfg["warmup_secs"]:
                    self.wrk_run(p.port, conns, cfg["warmup_secs"], path="/fast")
                t_start = time.monotonic()

                def kill_b2():
                    t = time.monotonic() - t_start
                    os.kill(b2.pid, signal.SIGKILL)
                    b2.p.wait(5)
                    return t

                out = self.wrk_run(p.port, conns, secs, p.pids(), path="/fast",
                                   at=(secs / 3, kill_b2))
                if out["rps"] is None:
                    raise RuntimeError("wrk gave no figures")
                if p.poll() is not None:
                    raise RuntimeError(f"{proxy} exited: {p.err_tail()}")
                if b1.poll() is not None:
                    raise RuntimeError("backend b1 exited during the run")
                out["killed_at_s"] = out.pop("at")
                if proxy == "ctxproxy":
                    out["metrics"] = pool_metrics(p.admin_port, names)
                    if p.access_log:
                        out["access"] = access_summary(p.access_log, names)
                    out["log"] = log_summary(p.err_path)
                elif proxy == "nginx":
                    out["log"] = log_summary(os.path.join(self.tmp, p.name + ".error.log"))
                else:
                    out["log"] = log_summary(p.err_path)
                return out

            res = self.run_one(case, proxy, go) or {}
            sock = res.get("socket")
            self.row(case, "req/s", {proxy: res.get("rps")}, "{:.0f}")
            self.row(case, "p99 ms", {proxy: res.get("p99_ms")}, "{:.3f}")
            self.row(case, "max ms", {proxy: res.get("max_ms")}, "{:.3f}")
            self.row(case, "proxy CPU us/request", {proxy: res.get("cpu_us_per_req")},
                     "{:.1f}")
            self.row(case, "client errors", {proxy: res.get("errors")}, "{:.0f}")
            self.row(case, "non-2xx/3xx", {proxy: res.get("non2xx")}, "{:.0f}")
            self.row(case, "socket errors", {proxy: sum(sock.values()) if sock else None},
                     "{:.0f}")
            if not res:
                continue
            what = f"{case} / {proxy}: b2 killed at {res['killed_at_s']:.2f} s of {secs} s"
            if res.get("errors"):
                what += (f"; {res['errors']} client errors: {res['non2xx']} non-2xx/3xx, "
                         f"socket errors connect {sock['connect']}, read {sock['read']}, "
                         f"write {sock['write']}, timeout {sock['timeout']}")
            if res.get("metrics"):
                what += f"; upstream attempts (/metrics): {res['metrics']}"
            if res.get("access"):
                what += f"; access log: {res['access']}"
            if res.get("log"):
                what += f"; its log: {res['log']}"
            self.notes.append(what)

    # ---- case 6: TLS termination ----

    def case_tls(self, which):
        """wrk over https through each proxy (TLS 1.3, tls_cert(), no
        resumption) to the nginx `return 200` backend of the throughput
        case.  tls-keepalive: keep-alive GETs.  tls-handshake: every request
        with `Connection: close`, so each proxy closes after its answer and
        wrk connects again with a full handshake (its SSL object keeps the
        old session, but no proxy here issues tickets or keeps a session
        cache, so nothing is resumed; ctxproxy's handshake counter checks)."""
        cfg = self.cfg
        self.notes.append("TLS cases: TLS 1.3 only (ctxproxy tls_min_version \"1.3\", nginx "
                          "ssl_protocols TLSv1.3, HAProxy ssl-min-ver TLSv1.3), one self-signed "
                          "ECDSA P-256 certificate made at start (openssl req) for all three; "
                          "no session tickets or session cache anywhere (nginx "
                          "ssl_session_tickets off + ssl_session_cache off, HAProxy "
                          "no-tls-tickets + tune.ssl.cachesize 0; ctxproxy has neither); "
                          "wrk over https, tls-handshake with -H 'Connection: close' (every "
                          "request on a new connection, full handshake)")
        fast = self.start_fast_backend()
        fast.keep = True
        try:
            for name in which:
                hs = name == "tls-handshake"
                headers = (("Connection", "close"),) if hs else ()
                for w in cfg["tls_hs_workers" if hs else "tls_workers"]:
                    case = f"{name} w={w} c={TLS_CONNS}"
                    print(f"{case}:", file=sys.stderr, flush=True)
                    for proxy in PROXIES:
                        def go(proxy=proxy, w=w, headers=headers, hs=hs):
                            p = self.start_proxy(proxy, w, fast.port, TLS_CONNS, tls=True)
                            if cfg["warmup_secs"]:
                                self.wrk_run(p.port, TLS_CONNS, cfg["warmup_secs"],
                                             headers=headers, scheme="https")
                            before = tls_handshakes(p.admin_port) if proxy == "ctxproxy" \
                                else None
                            out = self.wrk_run(p.port, TLS_CONNS, cfg["wrk_secs"], p.pids(),
                                               headers=headers, scheme="https")
                            if out["rps"] is None:
                                raise RuntimeError("wrk gave no figures")
                            if before is not None:
                                after = tls_handshakes(p.admin_port)
                                if after is not None:
                                    out["handshakes"] = after - before
                            if p.poll() is not None:
                                raise RuntimeError(f"{proxy} exited: {p.err_tail()}")
                            return out

                        res = self.run_one(case, proxy, go) or {}
                        unit = "handshake" if hs else "request"
                        self.row(case, "handshakes/s" if hs else "req/s",
                                 {proxy: res.get("rps")}, "{:.0f}")
                        self.row(case, "p50 ms", {proxy: res.get("p50_ms")}, "{:.3f}")
                        self.row(case, "p99 ms", {proxy: res.get("p99_ms")}, "{:.3f}")
                        self.row(case, f"proxy CPU us/{unit}",
                                 {proxy: res.get("cpu_us_per_req")}, "{:.1f}")
                        self.row(case, "errors", {proxy: res.get("errors")}, "{:.0f}")
                        if res.get("errors"):
                            self.notes.append(f"{case} / {proxy}: {res['errors']} non-2xx "
                                              f"responses or socket errors")
                        if hs and res.get("handshakes") is not None and res.get("requests"):
                            self.notes.append(
                                f"{case} / ctxproxy: {res['handshakes']} full handshakes "
                                f"(ctxproxy_tls_handshakes_total ok) for {res['requests']} "
                                f"requests")
        finally:
            fast.keep = False
            fast.stop()

    # ---- case 7: WebSocket tunnels ----

    def ws_run(self, proxy, n, argv, timeout):
        """A fresh tests/ws_echo and proxy (WORKERS workers, set up for
        WebSockets) for n tunnels, and bench/ws_client.py's result; the
        client gets the proxy's pids (nginx: master and worker)."""
        be = self.start_backend(ws=True)
        p = self.start_proxy(proxy, WORKERS, be.port, n, ws=True)
        time.sleep(0.2)
        res = self.client("ws_client.py", ["--port", p.port, "--events", be.out_path,
                                           "--n", n, "--pids", ",".join(map(str, p.pids()))]
                          + argv, timeout=timeout)
        if p.poll() is not None:
            raise RuntimeError(f"{proxy} exited: {p.err_tail()}")
        why = ", ".join(f"{k} {v}" for k, v in sorted(res.get("why", {}).items()))
        if not res.get("opened"):
            raise RuntimeError(f"no tunnel opened ({why})")
        if res.get("why"):
            self.notes.append(f"ws N={n} / {proxy}: tunnels that failed: {why}")
        return res

    def ws_cap(self, n, what):
        """n, or fewer if RLIMIT_NOFILE cannot cover 2 descriptors per tunnel."""
        cap = (self.nofile - 150) // 2
        if cap >= n:
            return n
        self.notes.append(f"{what}: RLIMIT_NOFILE is {self.nofile} and a proxy needs 2 "
                          f"descriptors per tunnel, so N was cut from {n} to {cap}")
        return cap

    def case_ws_memory(self):
        """ws-idle-memory: N tunnels open and idle at once; the proxy's RSS."""
        cfg = self.cfg
        n = self.ws_cap(cfg["ws_mem_n"], "ws-idle-memory")
        case = f"ws-idle-memory N={n}"
        print(f"{case}:", file=sys.stderr, flush=True)
        for proxy in PROXIES:
            def go(proxy=proxy):
                return self.ws_run(proxy, n, ["--mode", "memory", "--grace", cfg["ws_grace"]],
                                   timeout=120)

            res = self.run_one(case, proxy, go) or {}
            mib = (lambda k: res[k] / 1024 if res.get(k) is not None else None)
            self.row(case, "RSS idle MiB", {proxy: mib("rss_before_kib")}, "{:.1f}")
            self.row(case, "RSS with tunnels MiB", {proxy: mib("rss_idle_kib")}, "{:.1f}")
            self.row(case, "KiB/idle tunnel", {proxy: res.get("kib_per_tunnel")}, "{:.2f}")
            self.row(case, "RSS after close MiB", {proxy: mib("rss_closed_kib")}, "{:.1f}")
            self.row(case, "tunnels open", {proxy: res.get("opened")}, "{:.0f}")
        self.ws_mem_n = n

    def case_ws_close(self):
        """ws-close-latency: N idle tunnels closed by their clients together."""
        cfg = self.cfg
        self.ws_close_n = {}
        for n0 in cfg["ws_close_ns"]:
            n = self.ws_cap(n0, f"ws-close-latency N={n0}")
            self.ws_close_n[n0] = n
            case = f"ws-close-latency N={n}"
            print(f"{case}:", file=sys.stderr, flush=True)
            for proxy in PROXIES:
                def go(proxy=proxy, n=n, n0=n0):
                    return self.ws_run(proxy, n, ["--mode", "close", "--grace", cfg["ws_grace"],
                                                  "--repeat", cfg["ws_close_reps"].get(n0, 1)],
                                       timeout=120)

                res = self.run_one(case, proxy, go) or {}
                self.row(case, "p50 ms", {proxy: res.get("p50_ms")}, "{:.3f}")
                self.row(case, "p99 ms", {proxy: res.get("p99_ms")}, "{:.3f}")
                self.row(case, "max ms", {proxy: res.get("max_ms")}, "{:.3f}")
                self.row(case, "lost", {proxy: res.get("lost")}, "{:.0f}")
                if n >= 100:  # with one tunnel, the proxy's idle wake-ups dominate
                    self.row(case, "proxy CPU us/close", {proxy: res.get("cpu_us_per_close")},
                             "{:.1f}")
                total = n * res.get("rounds", 1)
                if res and res.get("opened") != total:
                    self.notes.append(f"{case} / {proxy}: only {res.get('opened')} of {total} "
                                      f"tunnels were opened")
                if res.get("how", {}).get("rst"):
                    self.notes.append(f"{case} / {proxy}: the backend saw {res['how']['rst']} "
                                      f"resets, not FINs")

    # ---- report ----

    def table(self):
        head = ("case", "metric", "ctxproxy", "nginx", "haproxy", "ctxproxy/nginx")
        body = []
        for case, metric, vals, fmt in self.rows:
            cells = [fmt.format(vals[p]) if isinstance(vals.get(p), (int, float)) else "-"
                     for p in PROXIES]
            c, n = vals.get("ctxproxy"), vals.get("nginx")
            ratio = f"{c / n:.2f}" if isinstance(c, (int, float)) and \
                isinstance(n, (int, float)) and n else "-"
            body.append((case, metric, *cells, ratio))
        return head, body

    def targets(self):
        """[(target, verdict, detail)] for ctxproxy against the issue's targets."""
        out = []

        def val(case, metric, proxy):
            for r in self.rows:
                if r[0] == case and r[1] == metric:
                    v = r[2].get(proxy)
                    return v if isinstance(v, (int, float)) else None
            return None

        def verdict(ok):
            return "n/a" if ok is None else ("met" if ok else "MISSED")

        for w in self.cfg["tp_workers"]:
            for c in self.cfg["conns"]:
                case = f"throughput w={w} c={c}"
                cr, nr = val(case, "req/s", "ctxproxy"), val(case, "req/s", "nginx")
                cp, np_ = val(case, "p99 ms", "ctxproxy"), val(case, "p99 ms", "nginx")
                ok = None if None in (cr, nr, cp, np_) else (cr >= nr and cp <= np_)
                detail = "-" if ok is None else \
                    f"{cr / nr:.2f}x req/s; p99 {cp:.3f} vs {np_:.3f} ms"
                out.append((f"{case}: req/s >= 1.0x nginx and p99 <= nginx",
                            verdict(ok), detail))
        for name, _, conns_key in TP_VARIANTS:
            for w in self.cfg["tp_workers"]:
                for c in self.cfg[conns_key]:
                    case = f"{name} w={w} c={c}"
                    cr, nr = val(case, "req/s", "ctxproxy"), val(case, "req/s", "nginx")
                    cp, np_ = val(case, "p99 ms", "ctxproxy"), val(case, "p99 ms", "nginx")
                    k = ENGINE_RPS.get(w, ENGINE_RPS[max(ENGINE_RPS)])
                    ok = None if None in (cr, nr, cp, np_) or not (nr and np_) else \
                        (cr >= k * nr and cp <= ENGINE_P99 * np_)
                    detail = "-" if ok is None else \
                        f"{cr / nr:.2f}x req/s; p99 {cp / np_:.2f}x ({cp:.3f} vs {np_:.3f} ms)"
                    out.append((f"{case}: req/s >= {k}x nginx and p99 <= {ENGINE_P99}x "
                                f"nginx (engine)", verdict(ok), detail))
        case = f"admin-page w=1 c={ADMIN_CONNS}"
        r = val(f"{case}: page open", "req/s / page closed", "ctxproxy")
        ok = None if r is None else r >= ADMIN_TARGET
        detail = "-" if ok is None else \
            f"{r:.3f}x (median of the rounds' ratios; range in the admin-page section)"
        out.append((f"{case}: req/s with the page open ({ADMIN_READERS} event streams) >= "
                    f"{ADMIN_TARGET}x page closed", verdict(ok), detail))
        for n in self.cfg["cancel_ns"]:
            case = f"cancel N={n}"
            cp, np_ = val(case, "p99 ms", "ctxproxy"), val(case, "p99 ms", "nginx")
            lost = val(case, "lost", "ctxproxy")
            ok = None if None in (cp, np_, lost) else (cp <= np_ and lost == 0)
            detail = "-" if ok is None else \
                f"p99 {cp:.3f} vs {np_:.3f} ms; lost {lost:.0f}"
            out.append((f"{case}: p99 <= nginx, none lost", verdict(ok), detail))
        n = getattr(self, "lp_n", self.cfg["lp_n"])
        case = f"{n} long-polls"
        kib, done = val(case, "KiB/request", "ctxproxy"), val(case, "completed", "ctxproxy")
        ok = None if None in (kib, done) else (kib <= 32 and done == n)
        detail = "-" if ok is None else f"{kib:.2f} KiB/request; {done:.0f}/{n} completed"
        out.append((f"{case}: <= 32 KiB RSS per request, all complete", verdict(ok), detail))
        size = self.cfg["stream_bytes"]
        label = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
        for mode in ("download", "upload"):
            case = f"{label} {mode}"
            cr, nr = val(case, "MiB/s", "ctxproxy"), val(case, "MiB/s", "nginx")
            g = val(case, "RSS growth MiB", "ctxproxy")
            ok = None if None in (cr, nr, g) else (cr >= 0.9 * nr and g < 16)
            detail = "-" if ok is None else f"{cr / nr:.2f}x nginx; RSS growth {g:.1f} MiB"
            out.append((f"{case}: >= 0.9x nginx bytes/s, RSS growth < 16 MiB",
                        verdict(ok), detail))
        case = f"failover w={FAILOVER_WORKERS} c={self.cfg['fo_conns']}"
        err, cr, nr = (val(case, "client errors", "ctxproxy"), val(case, "req/s", "ctxproxy"),
                       val(case, "req/s", "nginx"))
        ok = None if err is None else err == 0
        detail = "-" if ok is None else f"{err:.0f} client errors" + \
            (f"; req/s {cr / nr:.2f}x nginx" if cr is not None and nr else "")
        out.append((f"{case}: no client errors for GETs while a backend is killed",
                    verdict(ok), detail))
        for name, key, metric, k in (("tls-keepalive", "tls_workers", "req/s", TLS_KEEPALIVE_RPS),
                                     ("tls-handshake", "tls_hs_workers", "handshakes/s",
                                      TLS_HANDSHAKE_RPS)):
            for w in self.cfg[key]:
                case = f"{name} w={w} c={TLS_CONNS}"
                cr, nr = val(case, metric, "ctxproxy"), val(case, metric, "nginx")
                unit = "handshake" if metric == "handshakes/s" else "request"
                cc = val(case, f"proxy CPU us/{unit}", "ctxproxy")
                nc = val(case, f"proxy CPU us/{unit}", "nginx")
                ok = None if None in (cr, nr) or not nr else cr >= k * nr
                detail = "-" if ok is None else f"{cr / nr:.2f}x ({cr:.0f} vs {nr:.0f} {metric})"
                if ok is not None and cc and nc:
                    # On 2 cores wrk's own handshakes can cap the rate:
                    # CPU per unit says what a saturated proxy would do.
                    detail += (f"; CPU/{unit} {cc / nc:.2f}x ({cc:.0f} vs {nc:.0f} us), "
                               f"i.e. {nc / cc:.2f}x nginx's {unit}s per CPU-second")
                out.append((f"{case}: {metric} >= {k}x nginx", verdict(ok), detail))
        for n0 in self.cfg["ws_close_ns"]:
            n = getattr(self, "ws_close_n", {}).get(n0, n0)
            case = f"ws-close-latency N={n}"
            cp, np_ = val(case, "p99 ms", "ctxproxy"), val(case, "p99 ms", "nginx")
            lost = val(case, "lost", "ctxproxy")
            cap = WS_CLOSE_1_MS if n == 1 else None
            ok = None if None in (cp, np_, lost) else \
                (cp <= np_ and lost == 0 and (cap is None or cp <= cap))
            detail = "-" if ok is None else \
                f"p99 {cp:.3f} vs {np_:.3f} ms ({cp / np_:.2f}x); lost {lost:.0f}"
            what = f"p99 <= nginx{f' and <= {cap:g} ms' if cap else ''}, none lost"
            out.append((f"{case}: {what}", verdict(ok), detail))
        return out

    def report(self):
        head, body = self.table()
        widths = [max(len(str(r[i])) for r in [head] + body) for i in range(len(head))]
        lines = ["  ".join(str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i])
                           for i, c in enumerate(r)) for r in [head] + body]
        lines.insert(1, "  ".join("-" * w for w in widths))
        print("\n".join(lines))
        for sec in self.sections:
            print()
            print("\n".join(sec))
        tg = self.targets()
        print("\nTargets (ctxproxy):")
        for t, v, d in tg:
            print(f"  {v:6s}  {t}  [{d}]")
        if self.notes:
            print("\nNotes:")
            for n in self.notes:
                print(f"  - {n}")
        return head, body, tg

    def foreign_summary(self):
        worst = max(((r["result"] or {}).get("foreign_cpu", 0.0), r["case"], r["proxy"])
                    for r in self.runs) if self.runs else None
        if worst is None:
            return "CPU used by other processes during the runs: ?"
        return (f"CPU used by other processes during the runs: at most {worst[0] * 100:.0f}% "
                f"({worst[1]} / {worst[2]})")

    def markdown(self, head, body, tg, elapsed):
        md = [f"# ctxproxy benchmark: {'smoke' if self.args.smoke else 'full'} run",
              "",
              f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
              f"- machine: {machine()}",
              f"- ctxproxy: {getattr(self, 'version', '?')}",
              f"- tools: {tool_versions(self)}",
              f"- command: `bench/run.sh{' --smoke' if self.args.smoke else ''}"
              f"{' --only ' + self.args.only if self.args.only_given else ''}"
              f"{' --failover-log' if self.args.failover_log else ''}` "
              f"({elapsed:.0f} s)",
              f"- proxy workers: as in the case name for throughput, browser, failover "
              f"and TLS, "
              f"{WORKERS} for the "
              f"other cases",
              f"- cancel rounds pooled: {self.cfg['cancel_reps']} (N: rounds; others 1); "
              f"ws-close-latency: {self.cfg['ws_close_reps']}",
              f"- {getattr(self, 'idle_note', 'CPU busy before the run: ?')}; "
              f"{self.foreign_summary()}; load average at the end: {load_avg()}",
              "",
              "| " + " | ".join(head) + " |",
              "|" + "|".join(["---", "---"] + ["---:"] * 4) + "|"]
        md += ["| " + " | ".join(r) + " |" for r in body]
        for sec in self.sections:
            md += [""] + sec
        md += ["", "## Targets (ctxproxy)", "", "| target | verdict | figures |",
               "|---|---|---|"]
        md += [f"| {t} | {v} | {d} |" for t, v, d in tg]
        if self.notes:
            md += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(md) + "\n"


class Rounds:
    """Results of variants run in rotated rounds (trace-cost, admin-page):
    runs[name] is a list with one result dict (or None) per round."""

    def __init__(self, runs, variants, rounds):
        self.runs = runs
        self.done = [r for r in range(rounds)
                     if all(len(runs[v[0]]) > r and runs[v[0]][r] for v in variants)]

    def vals(self, name, key):
        """Every round's value of key for variant name (None left out)."""
        return [res[key] for res in self.runs.get(name, [])
                if res and res.get(key) is not None]

    def ratios(self, name, other, key):
        """key of name divided by key of other, within each complete round."""
        return [self.runs[name][r][key] / self.runs[other][r][key] for r in self.done
                if other in self.runs and self.runs[other][r].get(key)]

    @staticmethod
    def mid_range(xs, fmt):
        """"median (min–max)" of xs, formatted; "-" when empty."""
        if not xs:
            return "-"
        if len(xs) == 1:
            return fmt.format(xs[0])
        return f"{fmt.format(median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def short(res):
    s = json.dumps(res, default=str)
    return s if len(s) < 300 else s[:297] + "..."


def parse_wrk(text):
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
    out = {"rps": None, "p50_ms": None, "p99_ms": None, "max_ms": None, "errors": 0,
           "requests": None, "non2xx": 0,
           "socket": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    for line in text.splitlines():
        m = re.match(r"\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m|h)\s", line)
        if m:
            out["max_ms"] = float(m.group(1)) * unit[m.group(2)]
        m = re.match(r"\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", line)
        if m:
            out[f"p{m.group(1)}_ms"] = float(m.group(2)) * unit[m.group(3)]
        m = re.match(r"\s*Requests/sec:\s+([\d.]+)", line)
        if m:
            out["rps"] = float(m.group(1))
        m = re.match(r"\s*(\d+) requests in", line)
        if m:
            out["requests"] = int(m.group(1))
        m = re.match(r"\s*Non-2xx or 3xx responses:\s+(\d+)", line)
        if m:
            out["non2xx"] = int(m.group(1))
            out["errors"] += int(m.group(1))
        m = re.match(r"\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     line)
        if m:
            out["socket"] = dict(zip(("connect", "read", "write", "timeout"),
                                     (int(x) for x in m.groups())))
            out["errors"] += sum(int(x) for x in m.groups())
    return out


def _port_name(text, names):
    """'b1' for a text naming 127.0.0.1:PORT of backend b1, else the text."""
    m = re.search(r":(\d+)", text or "")
    return names.get(int(m.group(1)), text) if m else text


def pool_metrics(admin_port, names):
    """ctxproxy's upstream attempts per server and outcome, retries per
    reason and servers up, from its /metrics, as one line of text."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        return f"/metrics failed: {e}"
    attempts, retries, up = [], [], []
    for line in text.splitlines():
        m = re.match(r'(ctxproxy_upstream_attempts_total|ctxproxy_retries_total|'
                     r'ctxproxy_upstream_server_up)\{([^}]*)\}\s+(\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        v = float(m.group(3))
        if m.group(1) == "ctxproxy_upstream_attempts_total" and v:
            attempts.append(f"{_port_name(labels.get('server'), names)} "
                            f"{labels.get('outcome')} {v:.0f}")
        elif m.group(1) == "ctxproxy_retries_total" and v:
            retries.append(f"{labels.get('reason')} {v:.0f}")
        elif m.group(1) == "ctxproxy_upstream_server_up":
            up.append(f"{_port_name(labels.get('server'), names)} {v:.0f}")
    return (f"{', '.join(sorted(attempts)) or 'none'}; retries: "
            f"{', '.join(sorted(retries)) or 'none'}; up: {', '.join(sorted(up))}")


def trace_spans(admin_port):
    """(spans exported, spans dropped, requests logged) from ctxproxy's
    /metrics (ctxproxy_trace_spans_*_total, ctxproxy_requests_total summed
    over its labels); raises when it cannot be read."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode("utf-8", "replace")
    out = []
    for name in ("ctxproxy_trace_spans_exported_total", "ctxproxy_trace_spans_dropped_total"):
        m = re.search(rf"^{name}\s+(\S+)", text, re.M)
        if not m:
            raise RuntimeError(f"/metrics has no {name}")
        out.append(int(float(m.group(1))))
    out.append(sum(int(float(v)) for v in
                   re.findall(r"^ctxproxy_requests_total(?:\{[^}]*\})?\s+(\S+)", text, re.M)))
    return tuple(out)


def metrics_text(admin_port):
    """ctxproxy's /metrics (raises when it cannot be read).  Reading it does
    not wake the admin hub: it is not one of the live view's JSON requests."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        return r.read().decode("utf-8", "replace")


def route_cancels(admin_port, route):
    """ctxproxy_cancellations_total of a route, summed over its causes."""
    return sum(int(float(v)) for v in re.findall(
        rf'^ctxproxy_cancellations_total\{{route="{re.escape(route)}",[^}}]*\}}\s+(\S+)',
        metrics_text(admin_port), re.M))


def admin_streams(admin_port):
    """ctxproxy_admin_streams: the live view's event streams open."""
    m = re.search(r"^ctxproxy_admin_streams\s+(\d+)", metrics_text(admin_port), re.M)
    if not m:
        raise RuntimeError("/metrics has no ctxproxy_admin_streams")
    return int(m.group(1))


def trace_drain(admin_port):
    """trace_spans() once every logged request's span has been exported or
    dropped (100 % sampling: one span per request) and nothing has moved
    for 0.2 s, or after TRACE_DRAIN_S (the last batch waits up to 1 s)."""
    deadline = time.monotonic() + TRACE_DRAIN_S
    last, since = None, time.monotonic()
    while True:
        cur = trace_spans(admin_port)
        now = time.monotonic()
        if cur != last:
            last, since = cur, now
        elif cur[0] + cur[1] >= cur[2] and now - since >= 0.2:
            return cur
        if now > deadline:
            return cur
        time.sleep(0.05)


def sink_stats(port):
    """tests/otlp_sink's totals: {"posts", "spans", "body_bytes"}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())


def median(xs):
    """The median of a list of numbers, or None if it is empty."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else (xs[k - 1] + xs[k]) / 2


def tls_handshakes(admin_port):
    """ctxproxy_tls_handshakes_total{result="ok"} from ctxproxy's /metrics, or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    m = re.search(r'^ctxproxy_tls_handshakes_total\{result="ok"\}\s+(\S+)', text, re.M)
    return int(float(m.group(1))) if m else None


def access_summary(path, names):
    """ctxproxy's access log (logfmt) counted by status, attempts, last
    server and cause, most frequent first."""
    counts, total = {}, 0
    try:
        with open(path, errors="replace") as f:
            for line in f:
                kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
                if "status" not in kv:
                    continue
                total += 1
                key = (f"status={kv['status']} attempts={kv.get('attempts', '-')} "
                       f"last={_port_name(kv.get('upstream_addr'), names)} "
                       f"cause={kv.get('cause', '-').strip(chr(34))}")
                counts[key] = counts.get(key, 0) + 1
    except OSError as e:
        return f"unreadable: {e}"
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    return f"{total} requests: " + ", ".join(f"{k}: {n}" for k, n in top[:8])


def log_summary(path, top=5):
    """A proxy's warnings and errors (ctxproxy's stderr, nginx's error log,
    HAProxy's stderr), counted by message with times, ids, pids and client
    details taken out; the `top` most frequent, as one line of text."""
    counts = {}
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        m = re.search(r'level=(\w+) msg=("[^"]*"|\S+)', line)
        if m:  # ctxproxy
            if m.group(1) in ("info", "debug"):
                continue
            key = f"{m.group(1)} {m.group(2).strip(chr(34))}"
        elif re.match(r"\S+ \S+ \[\w+\] \d+#\d+: ", line):  # nginx
            if "[notice]" in line or "[info]" in line:
                continue
            key = re.sub(r"^\S+ \S+ (\[\w+\]) \d+#\d+: (\*\d+ )?", r"\1 ", line)
            key = re.sub(r", client: .*", "", key)
            key = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:P", key)
        else:  # HAProxy
            if not re.match(r"\[(WARNING|ALERT)\]", line):
                continue
            key = re.sub(r"\s*\(\d+\)\s*:", ":", line)
            key = re.sub(r"check duration: \d+ms", "check duration: Nms", key)
        counts[key[:160]] = counts.get(key[:160], 0) + 1
    best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return " | ".join(f"{n}x {k}" for k, n in best)


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    return f"{os.cpu_count()} CPUs ({model}), {mem} MiB RAM, Linux {os.uname().release}"


def tool_versions(b):
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"
    hv = re.search(r"version (\S+)", first([b.haproxy, "-v"]))
    wv = re.search(r"wrk (\S+)", first([b.wrk, "-v"]))
    return "; ".join([first([b.nginx, "-v"]).replace("nginx version: ", ""),
                      "haproxy/" + (hv.group(1) if hv else "?"),
                      "wrk " + (wv.group(1) if wv else "?")])


FOREIGN_MAX = 0.10


class CpuWatch:
    """How much of the machine's CPU went to processes that are not ours.

    Ours = this process, every child reaped since (getrusage RUSAGE_CHILDREN
    covers their waited-for descendants too: nginx workers, wrk, clients),
    and the long-lived `kept` processes (read from /proc).  Busy = user +
    nice + system + irq + softirq + steal from /proc/stat.  Loopback
    traffic's softirq time is not always charged to a process, so a few
    percent of "foreign" time is normal; FOREIGN_MAX flags more."""

    def __init__(self, kept):
        self.kept = kept
        self.t0 = time.monotonic()
        self.busy0 = self._busy()
        self.ours0 = self._ours()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def _ours(self):
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        kept = cpu_ticks([pid for p in self.kept for pid in p.pids()])
        return c.ru_utime + c.ru_stime + me.ru_utime + me.ru_stime + \
            kept / os.sysconf("SC_CLK_TCK")

    def foreign(self):
        """Share (0..1) of all CPUs used by others since we started watching."""
        busy = self._busy()
        wall = time.monotonic() - self.t0
        if busy is None or self.busy0 is None or wall <= 0:
            return None
        other = (busy - self.busy0) - (self._ours() - self.ours0)
        return max(0.0, other / (wall * (os.cpu_count() or 1)))


def cpu_ticks(pids):
    """utime + stime (clock ticks) summed over pids, from /proc/PID/stat."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def load_avg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def cpu_busy(secs=1.0):
    """Fraction of all CPUs busy over secs, from /proc/stat (before we start anything)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)
    try:
        t1, i1 = snap()
        time.sleep(secs)
        t2, i2 = snap()
        return 1.0 - (i2 - i1) / max(1, t2 - t1)
    except (OSError, ValueError, IndexError):
        return None


def binary_version(path):
    """'ctxproxy -V' output, the binary's mtime and the checkout's commit."""
    try:
        v = subprocess.run([path, "-V"], capture_output=True, text=True,
                           timeout=5).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        v = "?"
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(path)).strftime("%Y-%m-%d %H:%M")
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "?", ""
    return f"{v}, built {mtime}, checkout {head or '?'}{' (src/ modified)' if dirty else ''}"


def main():
    global CTXPROXY, BACKEND, WS_BACKEND, OTLP_SINK
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", help="write the table as Markdown here")
    ap.add_argument("--json", help="write every figure as JSON here")
    ap.add_argument("--only", default=None,
                    help=f"comma list of {ALL_CASES} (default: all; with --smoke all "
                         f"but trace-cost)")
    ap.add_argument("--failover-log", action="store_true",
                    help="failover case: ctxproxy writes its access log (slower), "
                         "summarised in the notes")
    ap.add_argument("--proxies", default=",".join(PROXIES), help="subset to run (debugging)")
    args = ap.parse_args()
    cfg = SMOKE if args.smoke else FULL
    args.only_given = args.only is not None
    if args.only is None:
        args.only = SMOKE_CASES if args.smoke else ALL_CASES
    cases = args.only.split(",")
    unknown = [c for c in cases if c not in ALL_CASES.split(",")]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)} (cases: {ALL_CASES})")

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    tmp = tempfile.mkdtemp(prefix="ctxproxy-bench.")
    b = Bench(args, cfg, tmp)
    missing = [n for n, p in (("nginx", b.nginx), ("haproxy", b.haproxy), ("wrk", b.wrk),
                              ("build/ctxproxy", CTXPROXY if os.access(CTXPROXY, os.X_OK)
                               else None),
                              ("build/tests/backend", BACKEND if os.access(BACKEND, os.X_OK)
                               else None),
                              ("build/tests/ws_echo", WS_BACKEND
                               if os.access(WS_BACKEND, os.X_OK) else None),
                              ("build/tests/otlp_sink", OTLP_SINK
                               if "trace-cost" not in cases or os.access(OTLP_SINK, os.X_OK)
                               else None)) if not p]
    if missing:
        print(f"bench: missing: {', '.join(missing)}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return 2
    # Other work may rebuild build/ while we run: use copies taken now.
    for src in (CTXPROXY, BACKEND, WS_BACKEND) + \
            ((OTLP_SINK,) if "trace-cost" in cases else ()):
        shutil.copy2(src, os.path.join(tmp, os.path.basename(src)))
    b.version = binary_version(CTXPROXY)
    CTXPROXY = os.path.join(tmp, "ctxproxy")
    BACKEND = os.path.join(tmp, "backend")
    WS_BACKEND = os.path.join(tmp, "ws_echo")
    OTLP_SINK = os.path.join(tmp, "otlp_sink")
    busy = cpu_busy()
    if busy is not None:
        b.idle_note = f"CPU busy before the run (other processes): {busy * 100:.0f}%"
        if busy > 0.10:
            b.notes.append(f"the machine was NOT idle: {busy * 100:.0f}% of the CPUs were "
                           f"busy before the run started; throughput and latency figures "
                           f"are unreliable, compare ratios only")
    t0 = time.monotonic()
    try:
        variants = [v for v in TP_VARIANTS if v[0] in cases]
        if variants:
            try:
                b.case_throughput(variants)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                b.record(",".join(v[0] for v in variants), "all",
                         error=f"{type(e).__name__}: {e}")
        if "trace-cost" in cases:
            try:
                b.case_trace_cost()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                b.record("trace-cost", "all", error=f"{type(e).__name__}: {e}")
        if "admin-page" in cases:
            try:
                b.case_admin_page()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                b.record("admin-page", "all", error=f"{type(e).__name__}: {e}")
        if "cancel" in cases:
            b.case_cancel()
        if "longpoll" in cases:
            b.case_longpoll()
        if "stream" in cases:
            b.case_stream()
        if "failover" in cases:
            b.case_failover()
        tls_cases = [c for c in ("tls-keepalive", "tls-handshake") if c in cases]
        if tls_cases:
            try:
                b.case_tls(tls_cases)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                b.record(",".join(tls_cases), "all", error=f"{type(e).__name__}: {e}")
        if "ws-idle-memory" in cases:
            b.case_ws_memory()
        if "ws-close-latency" in cases:
            b.case_ws_close()
    finally:
        stop_all()
        if os.environ.get("BENCH_KEEP_TMP") == "1":
            print(f"bench: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t0
    print()
    head, body, tg = b.report()
    if args.out:
        with open(args.out, "w") as f:
            f.write(b.markdown(head, body, tg, elapsed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"smoke": args.smoke, "elapsed_s": elapsed, "runs": b.runs,
                       "rows": [{"case": r[0], "metric": r[1], "values": r[2]}
                                for r in b.rows],
                       "targets": tg, "notes": b.notes}, f, indent=1)
    print(f"\nbench: {len(b.runs)} runs, {b.failures} failed, {elapsed:.0f} s",
          file=sys.stderr)
    return 1 if b.failures else 0


if __name__ == "__main__":
    sys.exit(main())
