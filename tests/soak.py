#!/usr/bin/env python3
"""soak.py - ctxproxy under mixed faults for a long time, every request accounted for.

Two workers and real backends (tests/backend); at once: keep-alive GET load,
client hang-ups while uploading, awaiting headers and streaming, route and
client (X-Request-Timeout-Ms) deadlines, upstream idle timeouts, client idle
timeouts, backends that reset or stall, one backend killed and restarted on
its port, SIGHUP every few seconds and SIGUSR1 after renaming the access log.

Every request carries a unique X-Request-Id.  The run fails when RSS grows
more than 10 % over the second half; descriptors, client connections or
upstream sockets do not return to their idle baseline; a request lacks
exactly one access line; the access lines, ctxproxy_requests_total and the
clients disagree by status (or the access line's cause is not the one the
client caused); or a cancellation the backend had seen did not reach it
(no ev=cancelled / ev=close by=peer on its backend connection).

usage: tests/soak.py [--seconds N] [--write bench/SOAK.md]
"""

import argparse
import collections
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import harness  # noqa: E402
from harness import Client, Closed, Proxy, config_text, parse_logfmt, route  # noqa: E402

CANCEL_CAUSES = ("client_disconnect", "deadline_exceeded", "idle_timeout")
KEEPALIVE_MS = 1000          # upstream_keepalive_timeout_ms: the pool empties quickly
CLIENT_IDLE_MS = 1500        # client_idle_timeout_ms
SAMPLE_S = 5.0
HUP_S = 3.0
ROTATE_S = 15.0
RESTART_S = 10.0
READ_S = 10.0                # no response of this run should take longer


# ---------------------------------------------------------------- processes

class SoakBackend:
    """A tests/backend process whose events go to a file (not kept in memory)."""

    def __init__(self, tmp, name, mode=None, port=0, quiet=False):
        self.tmp, self.name, self.mode, self.quiet = tmp, name, mode, quiet
        self.files = []
        self.port = port
        self.proc = None
        self.start()

    def start(self):
        """Start an incarnation on self.port (0 the first time: the kernel picks)."""
        path = os.path.join(self.tmp, "backend-%s-%d.events" % (self.name, len(self.files)))
        self.files.append(path)
        cmd = [harness.BACKEND_BIN, "-p", str(self.port), "-i", self.name]
        if self.mode:
            cmd += ["-m", self.mode]
        if self.quiet:
            cmd.append("-q")
        out = open(path, "wb")
        self.proc = harness._register(subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT))
        out.close()
        deadline = time.monotonic() + harness.START_TIMEOUT
        while time.monotonic() < deadline:
            with open(path, "rb") as f:
                m = re.search(rb"listening port=(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError("backend %s did not start on port %d" % (self.name, self.port))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def restart(self):
        """Kill this incarnation (SIGKILL by pid) and start another on the same port."""
        self.proc.kill()
        self.proc.wait(5)
        time.sleep(0.3)
        self.start()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def socket_inodes(pid):
    """Inodes of the sockets pid holds."""
    out = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def upstream_sockets(pid, ports):
    """pid's TCP sockets whose remote port is one of ports (its upstream connections)."""
    inodes = socket_inodes(pid)
    n = 0
    for table in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    rport = int(cols[2].rsplit(":", 1)[1], 16)
                    if rport in ports and cols[9] in inodes:
                        n += 1
        except FileNotFoundError:
            pass
    return n


def scrape(admin_port):
    """/metrics as {(name, frozenset(labels)): value}."""
    resp = harness.Client(admin_port, READ_S)
    try:
        r = resp.request("GET", "/metrics", timeout=READ_S)
    finally:
        resp.close()
    if r.status != 200:
        raise AssertionError("/metrics answered %s" % r.status)
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric_sum(m, name, by=None):
    """Sum of a family, or {label value: sum} grouped by label `by`."""
    if by is None:
        return sum(v for (n, _), v in m.items() if n == name)
    out = collections.Counter()
    for (n, labels), v in m.items():
        if n == name:
            out[dict(labels).get(by)] += int(v)
    return out


# ---------------------------------------------------------------- clients

class Record:
    """What a client sent and got for one request."""
    __slots__ = ("rid", "kind", "t", "status", "outcome", "want_status", "want_cause")

    def __init__(self, rid, kind):
        self.rid, self.kind, self.t = rid, kind, time.monotonic()
        self.status = None        # the status the client read, if any
        self.outcome = None       # ok / hung_up / truncated / closed / timeout / error
        self.want_status = None   # what its access line must say (None: the status read)
        self.want_cause = None    # the cause the client caused, if it knows


class Load:
    """The client threads; each records into its own list (merged at the end)."""

    def __init__(self, port, stop_at):
        self.port = port
        self.stop_at = stop_at
        self.seq = 0
        self.lock = threading.Lock()
        self.records = []
        self.idle_closes = 0
        self.idle_not_closed = 0
        self.errors = []

    def rid(self, kind):
        with self.lock:
            self.seq += 1
            rec = Record("soak-%s-%d" % (kind, self.seq), kind)
            self.records.append(rec)
        return rec

    def running(self):
        return time.monotonic() < self.stop_at

    def one(self, c, rec, method, path, headers=(), body=None):
        """Send a request on c and read the whole response into rec."""
        c.send_request(method, path, [("X-Request-Id", rec.rid)] + list(headers), body)
        try:
            r = c.read_response(READ_S, method)
        except TimeoutError:
            rec.outcome = "timeout"
            return None
        if r.status is None:
            rec.outcome = "closed"
            return r
        rec.status = r.status
        rec.outcome = "ok" if r.complete else "truncated"
        return r

    # -- threads --

    def keepalive(self, prefix, pause):
        """GETs on one kept-alive connection (a fresh one when it closes)."""
        c = None
        i = 0
        while self.running():
            i += 1
            if c is None:
                c = Client(self.port, READ_S)
            rec = self.rid("ka")
            try:
                r = self.one(c, rec, "GET", "%s/fast?i=%d" % (prefix, i))
                if r is None or r.closed or r.status is None:
                    c.close()
                    c = None
            except (OSError, Closed) as e:
                rec.outcome = "error:%s" % type(e).__name__
                c.close()
                c = None
            time.sleep(pause)
        if c is not None:
            c.close()

    def hangups(self):
        """Hang up while uploading, awaiting headers and streaming, FIN and RST."""
        phases = ("uploading", "awaiting", "streaming")
        i = 0
        while self.running():
            phase = phases[i % 3]
            rst = (i // 3) % 2 == 1
            i += 1
            rec = self.rid("hup-" + phase)
            rec.want_status, rec.want_cause = 499, "client_disconnect"
            rec.outcome = "hung_up"
            try:
                c = Client(self.port, READ_S)
            except OSError as e:
                rec.outcome = "error:%s" % type(e).__name__
                continue
            try:
                hdr = [("X-Request-Id", rec.rid)]
                if phase == "uploading":
                    c.send_request("POST", "/upload", hdr + [("Content-Length", str(1 << 20))])
                    c.send(b"u" * 65536)
                    time.sleep(0.15)
                elif phase == "awaiting":
                    c.send_request("GET", "/slow?ms=5000", hdr)
                    time.sleep(0.15)
                else:
                    c.send_request("GET", "/stream?chunks=400&size=1000&interval_ms=10", hdr)
                    r = c.read_head(READ_S)
                    rec.status = r.status
                    if r.status == 200:
                        c.read_chunk(READ_S)
                    else:
                        rec.outcome = "unexpected"
            except (OSError, Closed, TimeoutError) as e:
                rec.outcome = "error:%s" % type(e).__name__
            if rst:
                c.reset()
            else:
                c.close()
            time.sleep(0.02)

    def deadlines(self):
        """Route budget, client deadline header, upstream idle timeout, stalled backend."""
        cases = (
            ("dl-route", "/deadline/slow?ms=3000", (), 504, "deadline_exceeded"),
            ("dl-header", "/slow?ms=3000", (("X-Request-Timeout-Ms", "150"),), 504,
             "deadline_exceeded"),
            ("idle", "/idle/idle?after_ms=3000", (), None, "idle_timeout"),
            ("stall", "/stall/anything", (), 504, "deadline_exceeded"),
        )
        i = 0
        while self.running():
            kind, path, hdrs, want_status, want_cause = cases[i % len(cases)]
            i += 1
            rec = self.rid(kind)
            rec.want_status, rec.want_cause = want_status, want_cause
            try:
                c = Client(self.port, READ_S)
                self.one(c, rec, "GET", path, hdrs)
                c.close()
            except (OSError, Closed) as e:
                rec.outcome = "error:%s" % type(e).__name__
            time.sleep(0.05)

    def faults(self):
        """Backends that reset, and the one that is restarted (200 or 502)."""
        i = 0
        while self.running():
            i += 1
            kind, path = (("reset", "/reset/fast"), ("flappy", "/flappy/fast?i=%d" % i))[i % 2]
            rec = self.rid(kind)
            if kind == "reset":
                rec.want_status = 502
            try:
                c = Client(self.port, READ_S)
                self.one(c, rec, "GET", path)
                c.close()
            except (OSError, Closed) as e:
                rec.outcome = "error:%s" % type(e).__name__
            time.sleep(0.03)

    def client_idle(self):
        """One request, then silence: the proxy must close the connection."""
        while self.running():
            rec = self.rid("cidle")
            try:
                c = Client(self.port, READ_S)
                self.one(c, rec, "GET", "/ka/fast")
                if c.wait_closed(CLIENT_IDLE_MS / 1000 + 3):
                    self.idle_closes += 1
                else:
                    self.idle_not_closed += 1
                c.close()
            except (OSError, Closed) as e:
                rec.outcome = "error:%s" % type(e).__name__

    def upload_ok(self):
        """Whole uploads that complete (so the upload path is not only aborted)."""
        while self.running():
            rec = self.rid("upload")
            try:
                c = Client(self.port, READ_S)
                self.one(c, rec, "POST", "/upload", body=b"p" * 200000)
                c.close()
            except (OSError, Closed) as e:
                rec.outcome = "error:%s" % type(e).__name__
            time.sleep(0.1)


# ---------------------------------------------------------------- checks

def read_access(paths):
    lines = []
    for p in paths:
        with open(p, "rb") as f:
            for raw in f:
                item = parse_logfmt(raw.decode("utf-8", "replace").rstrip("\n"))
                if item.get("type") == "access":
                    lines.append(item)
    return lines


def backend_view(files):
    """From event files: {request id: (file, conn, req)}, {cancelled (file, conn, req):
    its t}, and the (file, conn)s closed by the peer."""
    ids, cancelled, peer_closed = {}, {}, set()
    for path in files:
        with open(path, "rb") as f:
            for raw in f:
                if b"ev=header " in raw:
                    if b"name=x-request-id " not in raw:
                        continue
                elif b"ev=cancelled" not in raw and b"ev=close " not in raw:
                    continue
                ev = parse_logfmt(raw.decode("utf-8", "replace").rstrip("\n"))
                e = ev.get("ev")
                if e == "header":
                    ids[ev["value"]] = (path, ev["conn"], ev["req"])
                elif e == "cancelled":
                    cancelled[(path, ev["conn"], ev["req"])] = int(ev["t"])
                elif e == "close" and ev.get("by") == "peer":
                    peer_closed.add((path, ev["conn"]))
    return ids, cancelled, peer_closed


def minute_table(records, access_by_id, samples, t0, seconds):
    rows = []
    nmin = max(1, int((seconds + 59) // 60))
    for m in range(nmin):
        lo, hi = t0 + 60 * m, t0 + 60 * (m + 1)
        recs = [r for r in records if lo <= r.t < hi]
        st = collections.Counter()
        canc = 0
        for r in recs:
            a = access_by_id.get(r.rid)
            if a is None:
                continue
            st[a.get("status")] += 1
            if a.get("cause") in CANCEL_CAUSES:
                canc += 1
        smp = [s for s in samples if lo <= s["t"] < hi] or samples[-1:]
        last = smp[-1]
        other = sum(v for k, v in st.items() if k not in ("200", "499", "502", "504"))
        rows.append("| %d | %d | %d | %d | %d | %d | %d | %d | %.1f | %d | %d | %d | %d |" % (
            m + 1, len(recs), st["200"], st["499"], st["502"], st["504"], other, canc,
            last["rss"] / 1024, last["fds"], max(s["inflight"] for s in smp),
            max(s["conns"] for s in smp), max(s["upstream"] for s in smp)))
    head = ("| min | requests | 200 | 499 | 502 | 504 | other | cancellations "
            "| RSS MiB (end) | fds (end) | inflight (max) | client conns (max) "
            "| upstream socks (max) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    ap.add_argument("--write", help="write the table to this markdown file")
    args = ap.parse_args()
    failures = []
    tmp = tempfile.mkdtemp(prefix="ctxproxy-soak-")
    access_path = os.path.join(tmp, "access.log")

    main_b = SoakBackend(tmp, "main")
    ka_b = SoakBackend(tmp, "ka", quiet=True)
    reset_b = SoakBackend(tmp, "reset", mode="reset")
    hang_b = SoakBackend(tmp, "hang", mode="hang")
    flappy = SoakBackend(tmp, "flappy")
    backends = (main_b, ka_b, reset_b, hang_b, flappy)
    ports = {b.port for b in backends}
    routes = [
        route("main", "/", main_b.url),
        route("ka", "/ka/", ka_b.url, strip_prefix=True),
        route("deadline", "/deadline/", main_b.url, strip_prefix=True, timeout_ms=150),
        route("idle", "/idle/", main_b.url, strip_prefix=True, idle_timeout_ms=200),
        route("reset", "/reset/", reset_b.url, strip_prefix=True),
        route("stall", "/stall/", hang_b.url, strip_prefix=True, timeout_ms=300),
        route("flappy", "/flappy/", flappy.url, strip_prefix=True),
    ]
    proxy = Proxy(config_text(routes, access_log=access_path, admin="127.0.0.1:0",
                              workers=2, client_idle_timeout_ms=CLIENT_IDLE_MS,
                              upstream_keepalive_timeout_ms=KEEPALIVE_MS))
    admin = proxy.admin_port()
    pid = proxy.pid
    print("soak: %ds, ctxproxy pid %d, port %d, admin %d, files in %s"
          % (args.seconds, pid, proxy.port, admin, tmp), flush=True)

    def sample(t):
        m = scrape(admin)
        return {"t": t, "rss": harness.rss_kib(pid), "fds": harness.fd_count(pid),
                "inflight": int(metric_sum(m, "ctxproxy_inflight_requests")),
                "conns": int(metric_sum(m, "ctxproxy_client_connections")),
                "upstream": upstream_sockets(pid, ports)}

    # Warm up every route, then let the pools empty: the idle baseline.
    warm = Load(proxy.port, 0)
    for path in ("/fast", "/ka/fast", "/reset/fast", "/flappy/fast", "/deadline/slow?ms=1000",
                 "/upload"):
        rec = warm.rid("warm")
        c = Client(proxy.port, READ_S)
        warm.one(c, rec, "GET", path)
        c.close()
    time.sleep(KEEPALIVE_MS / 1000 + 2)
    base = sample(time.monotonic())
    print("soak: baseline fds=%d rss=%d KiB upstream=%d conns=%d"
          % (base["fds"], base["rss"], base["upstream"], base["conns"]), flush=True)

    t0 = time.monotonic()
    load = Load(proxy.port, t0 + args.seconds)
    load.records = warm.records
    load.seq = warm.seq
    threads = [threading.Thread(target=load.keepalive, args=("/ka", 0.008)),
               threading.Thread(target=load.keepalive, args=("/ka", 0.008)),
               threading.Thread(target=load.keepalive, args=("", 0.05)),
               threading.Thread(target=load.hangups),
               threading.Thread(target=load.hangups),
               threading.Thread(target=load.deadlines),
               threading.Thread(target=load.deadlines),
               threading.Thread(target=load.faults),
               threading.Thread(target=load.client_idle),
               threading.Thread(target=load.upload_ok)]
    for th in threads:
        th.daemon = True
        th.start()

    samples = []
    rotated = []
    next_hup, next_rot = t0 + HUP_S, t0 + ROTATE_S
    next_restart, next_sample = t0 + RESTART_S, t0
    hups = restarts = 0
    while load.running():
        now = time.monotonic()
        if proxy.proc.poll() is not None:
            failures.append("ctxproxy exited during the run, status %s" % proxy.proc.returncode)
            break
        if now >= next_sample:
            samples.append(sample(now))
            s = samples[-1]
            print("soak: t=%4ds rss=%d KiB fds=%d inflight=%d conns=%d upstream=%d requests=%d"
                  % (now - t0, s["rss"], s["fds"], s["inflight"], s["conns"], s["upstream"],
                     len(load.records)), flush=True)
            next_sample += SAMPLE_S
        if now >= next_hup:
            os.kill(pid, signal.SIGHUP)
            hups += 1
            next_hup += HUP_S
        if now >= next_rot:
            dst = "%s.%d" % (access_path, len(rotated) + 1)
            os.rename(access_path, dst)
            rotated.append(dst)
            os.kill(pid, signal.SIGUSR1)
            next_rot += ROTATE_S
        if now >= next_restart:
            flappy.restart()
            restarts += 1
            next_restart += RESTART_S
        time.sleep(0.05)
    for th in threads:
        th.join(READ_S + 10)
        if th.is_alive():
            failures.append("client thread %s did not finish" % th.name)

    # Drain: back to the idle baseline (pools empty after KEEPALIVE_MS).
    end = None
    deadline = time.monotonic() + KEEPALIVE_MS / 1000 + 20
    while time.monotonic() < deadline and proxy.proc.poll() is None:
        end = sample(time.monotonic())
        if (end["fds"] <= base["fds"] and end["upstream"] == 0 and end["conns"] == 0
                and end["inflight"] == 0):
            break
        time.sleep(0.5)
    if end is None:
        failures.append("ctxproxy is gone; no final sample")
        end = samples[-1]
    samples.append(end)
    if end["fds"] > base["fds"]:
        failures.append("fds %d at the end, baseline %d" % (end["fds"], base["fds"]))
    if end["upstream"]:
        failures.append("%d upstream sockets at the end" % end["upstream"])
    if end["conns"] or end["inflight"]:
        failures.append("at the end client_connections=%d inflight=%d"
                        % (end["conns"], end["inflight"]))
    mid = [s for s in samples if s["t"] >= t0 + args.seconds / 2]
    rss_mid, rss_end = mid[0]["rss"], max(s["rss"] for s in mid)
    growth = (rss_end - rss_mid) / rss_mid * 100
    # A sanitizer build's heap (ASan's quarantine) says nothing about the
    # daemon's own growth: there, only the accounting is checked.
    if growth > 10 and not os.environ.get("SANITIZE"):
        failures.append("RSS grew %.1f %% over the second half (%d -> %d KiB)"
                        % (growth, rss_mid, rss_end))

    final = scrape(admin) if proxy.proc.poll() is None else {}
    proxy.stop()
    for b in backends:
        b.stop()

    # Accounting.
    records = load.records
    access = read_access(rotated + [access_path])
    by_id = collections.defaultdict(list)
    for a in access:
        by_id[a.get("id")].append(a)
    sent = {r.rid for r in records}
    problems = collections.Counter()
    examples = collections.defaultdict(list)

    def problem(kind, text):
        problems[kind] += 1
        if len(examples[kind]) < 5:
            examples[kind].append(text)

    for r in records:
        lines = by_id.get(r.rid, [])
        if len(lines) != 1:
            problem("access lines != 1", "%s (%s): %d lines" % (r.rid, r.kind, len(lines)))
            continue
        a = lines[0]
        if r.outcome in ("timeout",) or (r.outcome or "").startswith("error") \
                or r.outcome == "unexpected":
            problem("client " + r.outcome, "%s (%s): access %s" % (r.rid, r.kind, _short(a)))
        want = r.want_status if r.want_status is not None else r.status
        if want is not None and a.get("status") != str(want):
            problem("status", "%s (%s) client %s/%s, access %s" % (r.rid, r.kind, r.status,
                                                                   r.outcome, _short(a)))
        if r.want_cause and a.get("cause") != r.want_cause:
            problem("cause", "%s (%s) want %s, access %s" % (r.rid, r.kind, r.want_cause,
                                                            _short(a)))
    for rid in by_id:
        if rid not in sent:
            problem("access line for no client request", rid)
    acc_status = collections.Counter(a.get("status") for a in access)
    met_status = metric_sum(final, "ctxproxy_requests_total", "code")
    if dict(acc_status) != {k: v for k, v in met_status.items() if v}:
        problem("requests_total", "access %s, metrics %s" % (dict(acc_status), dict(met_status)))
    cli_status = collections.Counter(
        str(r.want_status if r.want_status is not None else r.status) for r in records)
    if dict(cli_status) != dict(acc_status):
        problem("client counts", "client %s, access %s" % (dict(cli_status), dict(acc_status)))
    acc_cause = collections.Counter(a.get("cause") for a in access)
    met_cause = metric_sum(final, "ctxproxy_cancellations_total", "cause")
    for cause, n in met_cause.items():
        if acc_cause.get(cause, 0) != n:
            problem("cancellations_total", "%s: access %d, metrics %d"
                    % (cause, acc_cause.get(cause, 0), n))

    files = [f for b in backends for f in b.files]
    seen_ids, cancelled, peer_closed = backend_view(files)
    never_reached = collections.Counter()
    propagated = 0
    delays = []
    for a in access:
        if a.get("cause") not in CANCEL_CAUSES:
            continue
        where = seen_ids.get(a.get("id"))
        if where is None:
            never_reached[a.get("cause")] += 1
            continue
        path, conn, req = where
        # ev=cancelled, not a later close: a connection wrongly returned to
        # the pool would be closed by the peer too, once its keep-alive ran out.
        if (path, conn, req) in cancelled:
            propagated += 1
            if a.get("cancel_us"):
                delays.append(cancelled[(path, conn, req)] - int(a["cancel_us"]))
        else:
            problem("cancellation not at backend", "%s cause=%s phase=%s conn=%s req=%s in %s"
                    % (a.get("id"), a.get("cause"), a.get("phase"), conn, req,
                       os.path.basename(path)) + (" (only a later close by=peer)"
                                                  if (path, conn) in peer_closed else ""))
    if load.idle_not_closed:
        problem("client idle", "%d idle connections not closed within %.1f s"
                % (load.idle_not_closed, CLIENT_IDLE_MS / 1000 + 3))
    # The error log at the default level: no debug line (issue 15: one per hang-up
    # flooded the journal) and no error; warnings (ejections of the failing
    # servers, the fd-limit note) are expected and counted by message.
    levels = collections.Counter("%s %s" % (e.get("level"), e.get("msg"))
                                 for e in proxy.log.items if e.get("level") != "info")
    for e, raw in zip(proxy.log.items, proxy.log.raw):
        if e.get("level") in ("debug", "error"):
            problem("error log", raw)
    for kind, n in problems.items():
        failures.append("%s: %d, e.g. %s" % (kind, n, "; ".join(examples[kind])))

    kinds = collections.Counter(r.kind for r in records)
    table = minute_table(records, {k: v[0] for k, v in by_id.items()}, samples[:-1] or samples,
                         t0, args.seconds)
    summary = [
        "requests %d (%s)" % (len(records), ", ".join("%s %d" % kv for kv in sorted(kinds.items()))),
        "access lines %d in %d files; statuses %s" % (len(access), len(rotated) + 1,
                                                      dict(sorted(acc_status.items()))),
        "causes %s" % dict(sorted(acc_cause.items())),
        "cancellations seen by a backend and propagated: %d; cancelled before reaching one: %s"
        % (propagated, dict(never_reached)),
        "backend's ev=cancelled after the proxy's cancel_us: %s" % _quantiles(delays),
        "error log, not info: %s" % dict(levels),
        "client idle closes %d; SIGHUP %d; rotations %d; backend restarts %d"
        % (load.idle_closes, hups, len(rotated), restarts),
        "baseline fds %d, end fds %d; upstream sockets at end %d; RSS baseline %.1f MiB, "
        "second half %.1f -> %.1f MiB (%+.1f %%)"
        % (base["fds"], end["fds"], end["upstream"], base["rss"] / 1024, rss_mid / 1024,
           rss_end / 1024, growth),
    ]
    verdict = "PASS" if not failures else "FAIL"
    print(table)
    for line in summary:
        print("soak: " + line)
    for f in failures:
        print("soak: FAIL " + f)
    print("soak: %s" % verdict, flush=True)
    if args.write:
        machine = "%s cores, Linux %s, %s" % (os.cpu_count(), platform.release(),
                                              platform.processor() or platform.machine())
        with open(args.write, "w") as f:
            f.write("# Soak run (tests/soak.py, `make soak`)\n\n")
            f.write("- date: %s\n- machine: %s\n- duration: %d s, result: %s\n\n"
                    % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine,
                       args.seconds, verdict))
            f.write(table + "\n\n")
            for line in summary:
                f.write("- %s\n" % line)
            for line in failures:
                f.write("- FAIL %s\n" % line)
    return 0 if not failures else 1


def _quantiles(us):
    """p50/p99/max of microsecond values, in ms."""
    if not us:
        return "none"
    us = sorted(us)
    pick = lambda q: us[min(len(us) - 1, int(q * len(us)))] / 1000  # noqa: E731
    return "p50 %.2f ms, p99 %.2f ms, max %.2f ms (n=%d)" % (pick(0.5), pick(0.99),
                                                            us[-1] / 1000, len(us))


def _short(a):
    return "status=%s cause=%s phase=%s route=%s" % (a.get("status"), a.get("cause"),
                                                      a.get("phase"), a.get("route"))


if __name__ == "__main__":
    sys.exit(main())
