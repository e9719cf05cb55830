"""test_systemd.py - the sd_notify protocol without systemd, and the unit file.

The daemon is started with NOTIFY_SOCKET pointing at a datagram socket the
test owns, as systemd would for Type=notify, and the test asserts what a
service manager would see: READY=1 only once it serves, WATCHDOG=1 keep-alives
in time, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGTERM.
"""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import ROOT, Client, config_text, route

UNIT = os.path.join(ROOT, "systemd", "ctxproxy.service")
MAN_PAGE = os.path.join(ROOT, "man", "ctxproxy.8")
EXAMPLE_CONF = os.path.join(ROOT, "conf", "ctxproxy.conf")
SLOW = 6 if harness.VALGRIND else 1     # valgrind stretches every wait

# Nothing listens on port 9: a route there answers 502 at once.
DEAD_UPSTREAM = "http://127.0.0.1:9"

# sd_watchdog_enabled() only honours WATCHDOG_USEC when WATCHDOG_PID is the
# caller's pid: the shell exports its own pid, then execs the daemon in it.
EXEC_WITH_WATCHDOG_PID = 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"'


class Notified:
    """A daemon started as systemd would start a Type=notify service: its
    datagrams on our NOTIFY_SOCKET and its stderr, read by one select loop
    so that what arrived on each channel can be compared."""

    def __init__(self, text, watchdog_usec=None):
        self.dir = tempfile.mkdtemp(prefix="ctxproxy-notify-")
        self.sock_path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.config_path = os.path.join(self.dir, "ctxproxy.conf")
        self.write_config(text)
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        for k in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
            env.pop(k, None)
        cmd = [harness.PROXY_BIN, "-c", self.config_path]
        if harness.VALGRIND:
            cmd = ["valgrind", "-q", "--leak-check=full",
                   "--errors-for-leak-kinds=definite",
                   "--error-exitcode=%d" % harness.VALGRIND_EXIT] + cmd
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
            cmd = ["sh", "-c", EXEC_WITH_WATCHDOG_PID] + cmd
        self.proc = harness._register(subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.out = bytearray()
        self.out_eof = False
        self.msgs = []          # (monotonic time, [ "KEY=VALUE", ... ]) in order
        self.seen = 0           # messages before this index were consumed

    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    # -- reading both channels --

    def _drain_output(self):
        """Everything the daemon has written to stderr so far (non-blocking)."""
        while not self.out_eof:
            try:
                data = os.read(self.proc.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not data:
                self.out_eof = True
                return
            self.out += data

    def _poll(self, timeout):
        """Wait up to timeout for a datagram or output; keep what came."""
        fds = [self.sock] + ([] if self.out_eof else [self.proc.stdout])
        readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if self.sock in readable:
            data = self.sock.recv(4096)
            # Whatever the daemon logged before sending this is in the pipe
            # by now: drain it so lines_at() can compare the two channels.
            self._drain_output()
            self.msgs.append((time.monotonic(),
                              data.decode("utf-8", "replace").split("\n")))
        elif readable:
            self._drain_output()

    def lines(self):
        """The daemon's output lines so far."""
        self._drain_output()
        return self.out.decode("utf-8", "replace").splitlines()

    def log(self, msg):
        """Parsed output lines with msg=msg."""
        return [e for e in map(harness.parse_logfmt, self.lines()) if e.get("msg") == msg]

    def next(self, want, timeout, what=None):
        """The first message from the cursor on that contains the assignment
        want; moves the cursor past it.  Returns (time, fields, out_len)
        where out_len is how much output had arrived with it."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            while self.seen < len(self.msgs):
                t, fields = self.msgs[self.seen]
                self.seen += 1
                if want in fields:
                    return t, fields
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s from the daemon within %.1fs; got %r\n%s"
                                     % (what or want, timeout * SLOW,
                                        [m for _, m in self.msgs], "\n".join(self.lines())))
            self._poll(left)

    def collect(self, seconds):
        """Read messages for that long; returns those that came."""
        start = len(self.msgs)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._poll(deadline - time.monotonic())
        return self.msgs[start:]

    def wait_count(self, want, count, seconds, since=0.0):
        """Read until count messages containing want came at or after the
        time since, or seconds passed; returns their times."""
        deadline = time.monotonic() + seconds
        while True:
            times = [t for t in self.messages(want) if t >= since]
            left = deadline - time.monotonic()
            if len(times) >= count or left <= 0:
                return times
            self._poll(left)

    def messages(self, want):
        """Times of every message so far containing want."""
        return [t for t, fields in self.msgs if want in fields]

    # -- process control --

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """The exit status, reading both channels meanwhile."""
        deadline = time.monotonic() + timeout * SLOW
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._poll(min(0.05, deadline - time.monotonic()))
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("ctxproxy did not exit within %.1fs\n%s"
                                 % (timeout * SLOW, "\n".join(self.lines())))
        self._drain_output()
        while select.select([self.sock], [], [], 0)[0]:
            self._poll(0)
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def proxy_config(**top):
    """One route to a dead upstream; "/" itself matches no route (404)."""
    return config_text([route("dead", "/dead/", DEAD_UPSTREAM)], **top)


class NotifyProtocol(unittest.TestCase):
    """What systemd sees of the daemon through NOTIFY_SOCKET."""

    def setUp(self):
        if not os.access(harness.PROXY_BIN, os.X_OK):
            self.fail("%s is not built (make build/ctxproxy)" % harness.PROXY_BIN)
        self.daemons = []
        self.backends = []

    def tearDown(self):
        for d in self.daemons:
            d.close()
        for b in self.backends:
            b.stop()

    def start(self, text=None, watchdog_usec=None):
        d = Notified(text or proxy_config(), watchdog_usec)
        self.daemons.append(d)
        return d

    def diagnostics(self):
        parts = []
        for d in self.daemons:
            parts.append("--- ctxproxy notifications: %r\n--- ctxproxy output:\n%s"
                         % ([m for _, m in d.msgs], "\n".join(d.lines())))
        return "\n".join(parts)

    def port_of(self, d):
        listening = d.log("listening")
        self.assertTrue(listening, "no msg=listening line")
        return int(listening[0]["addr"].rsplit(":", 1)[1])

    def test_ready_only_once_serving(self):
        d = self.start()
        d.next("READY=1", harness.START_TIMEOUT)
        # The listening line was written before READY=1 was sent...
        self.assertTrue(d.log("listening"),
                        "READY=1 came before the msg=listening line:\n%s"
                        % "\n".join(d.lines()))
        # ...and the daemon answers at once: systemd starts dependent units
        # (and `systemctl start` returns) on READY=1.
        c = Client(self.port_of(d), timeout=5.0 * SLOW)
        try:
            resp = c.request("GET", "/nothing-here", timeout=5.0 * SLOW)
        finally:
            c.sock.close()
        self.assertEqual(resp.status, 404)
        # Without WATCHDOG_USEC there is no keep-alive (its 1 s tick passes).
        d.collect(1.5)
        self.assertEqual(len(d.messages("READY=1")), 1, "READY=1 sent twice at start")
        self.assertEqual(d.messages("WATCHDOG=1"), [], "WATCHDOG=1 without WATCHDOG_USEC")

    def test_watchdog_keepalives(self):
        usec = 2000000
        d = self.start(watchdog_usec=usec)
        t_ready, _ = d.next("READY=1", harness.START_TIMEOUT)
        beats = d.wait_count("WATCHDOG=1", 2, 3.5 * SLOW, since=t_ready)
        self.assertGreaterEqual(len(beats), 2, "WATCHDOG=1 within 3.5 s of READY=1: %d"
                                % len(beats))
        # systemd starts the watchdog timer on READY=1 and kills the service
        # when WATCHDOG_USEC passes without a keep-alive; sd_watchdog_enabled(3)
        # asks for one every half period.  Three quarters leaves room for a
        # loaded machine while still catching a first keep-alive that comes
        # only a whole period after READY=1.
        limit = 0.75 * usec / 1e6 * SLOW
        gaps = [b - a for a, b in zip([t_ready] + beats, beats)]
        self.assertLess(gaps[0], limit,
                        "first WATCHDOG=1 came %.2fs after READY=1: with "
                        "WatchdogSec=%gs systemd would have killed the daemon "
                        "(gaps: %s)" % (gaps[0], usec / 1e6,
                                        ", ".join("%.2f" % g for g in gaps)))
        for g in gaps[1:]:
            self.assertLess(g, limit, "WATCHDOG=1 gaps: %s"
                            % ", ".join("%.2f" % g for g in gaps))
        self.assertEqual(d.proc.poll(), None)

    def test_reload_sends_reloading_then_ready(self):
        d = self.start()
        d.next("READY=1", harness.START_TIMEOUT)
        d.write_config(config_text([route("dead", "/dead/", DEAD_UPSTREAM),
                                    route("other", "/other/", DEAD_UPSTREAM)]))
        d.signal(signal.SIGHUP)
        t_reloading, _ = d.next("RELOADING=1", 5.0)
        t_ready, _ = d.next("READY=1", 5.0)
        self.assertLessEqual(t_reloading, t_ready)
        self.assertTrue(d.log("reloaded"), "\n".join(d.lines()))

    def test_broken_reload_still_ends_with_ready(self):
        # Otherwise systemd would leave the unit "reloading" for good.
        d = self.start()
        d.next("READY=1", harness.START_TIMEOUT)
        d.write_config("listen = \"127.0.0.1:0\";\nno_such_key = 1;\n")
        d.signal(signal.SIGHUP)
        d.next("RELOADING=1", 5.0)
        d.next("READY=1", 5.0)
        self.assertEqual(d.log("reloaded"), [])
        self.assertIsNone(d.proc.poll(), "a broken reload stopped the daemon")
        c = Client(self.port_of(d), timeout=5.0 * SLOW)
        try:
            self.assertEqual(c.request("GET", "/dead/x", timeout=5.0 * SLOW).status, 502)
        finally:
            c.sock.close()

    def test_sigterm_sends_stopping_and_exits_zero(self):
        d = self.start()
        d.next("READY=1", harness.START_TIMEOUT)
        d.signal(signal.SIGTERM)
        d.next("STOPPING=1", 5.0)
        self.assertEqual(d.wait_exit(harness.STOP_TIMEOUT), 0, "\n".join(d.lines()))
        self.assertEqual(len(d.messages("READY=1")), 1)

    def test_stopping_is_sent_before_the_grace_period(self):
        # systemd shows "deactivating" (and stops routing to us) at once,
        # not after the requests in flight have finished.
        backend = harness.Backend()
        self.backends.append(backend)
        d = self.start(config_text([route("main", "/", backend)], shutdown_grace_ms=5000))
        d.next("READY=1", harness.START_TIMEOUT)
        c = Client(self.port_of(d), timeout=10.0 * SLOW)
        try:
            c.send_request("GET", "/slow?ms=1500")
            backend.wait_request("/slow")
            t_term = time.monotonic()
            d.signal(signal.SIGTERM)
            t_stopping, _ = d.next("STOPPING=1", 5.0)
            self.assertLess(t_stopping - t_term, 1.0 * SLOW,
                            "STOPPING=1 %.2fs after SIGTERM" % (t_stopping - t_term))
            self.assertIsNone(d.proc.poll(), "exited before the request finished")
            resp = c.read_response(10.0 * SLOW)
            self.assertEqual(resp.status, 200)
        finally:
            c.sock.close()
        self.assertEqual(d.wait_exit(harness.STOP_TIMEOUT), 0)

    def test_no_ready_on_config_error(self):
        d = self.start("listen = \"127.0.0.1:0\";\nno_such_key = 1;\n")
        self.assertEqual(d.wait_exit(harness.START_TIMEOUT), 1)
        self.assertEqual(d.messages("READY=1"), [])

    def test_no_ready_on_startup_error(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            port = taken.getsockname()[1]
            d = self.start(proxy_config(listen="127.0.0.1:%d" % port))
            self.assertEqual(d.wait_exit(harness.START_TIMEOUT), 2, "\n".join(d.lines()))
        finally:
            taken.close()
        self.assertEqual(d.messages("READY=1"), [])


def unit_entries(path):
    """[(section, key, value)] of a unit file, in order (keys may repeat)."""
    out, section = [], None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = line.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out


def seconds(value):
    """A systemd time span such as "20s", "1min 30s" or "90", in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(num) * units[unit]
    return total


class UnitFile(unittest.TestCase):
    """systemd/ctxproxy.service against the daemon it runs."""

    def setUp(self):
        self.entries = unit_entries(UNIT)

    def values(self, key, section="Service"):
        return [v for s, k, v in self.entries if s == section and k == key]

    def value(self, key, section="Service"):
        vals = self.values(key, section)
        self.assertTrue(vals, "%s= missing from [%s]" % (key, section))
        return vals[-1]

    def test_notify_and_commands(self):
        self.assertEqual(self.value("Type"), "notify")
        self.assertEqual(self.value("NotifyAccess"), "main")
        start = self.value("ExecStart").split()
        self.assertEqual(start[1:], ["-c", "/etc/ctxproxy/ctxproxy.conf"])
        self.assertIn(start[0] + " -t -c /etc/ctxproxy/ctxproxy.conf",
                      self.values("ExecStartPre"))
        self.assertIn("/bin/kill -HUP $MAINPID", self.values("ExecReload"))
        self.assertTrue(seconds(self.value("WatchdogSec")) > 0)
        self.assertEqual(self.value("Restart"), "on-failure")

    def test_default_config_path_matches_the_binary(self):
        rc, out = harness.run_proxy_cli(["-h"])
        self.assertEqual(rc, 0, out)
        self.assertIn("/etc/ctxproxy/ctxproxy.conf", out)

    def test_stop_timeout_covers_the_grace_period(self):
        # SIGTERM: up to shutdown_grace_ms for requests in flight, then up to
        # 2 s for the cancelled ones' upstream connections to close.
        grace_ms = 10000   # the default
        with open(EXAMPLE_CONF) as f:
            m = re.search(r"^\s*shutdown_grace_ms\s*=\s*(\d+)", f.read(), re.M)
        if m:
            grace_ms = max(grace_ms, int(m.group(1)))
        self.assertEqual(self.value("KillSignal"), "SIGTERM")
        self.assertGreater(seconds(self.value("TimeoutStopSec")), grace_ms / 1000 + 2 + 2)

    def test_open_file_limit_covers_max_connections(self):
        # Each connection holds a client and an upstream descriptor.
        self.assertGreaterEqual(int(self.value("LimitNOFILE")), 10000 * 2 + 1024)

    def test_sandboxing(self):
        for key, want in [("DynamicUser", "yes"), ("ProtectSystem", "strict"),
                          ("ProtectHome", "yes"), ("NoNewPrivileges", "yes"),
                          ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                          ("CapabilityBoundingSet", ""),
                          ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                          ("SystemCallFilter", "@system-service"),
                          ("MemoryDenyWriteExecute", "yes"),
                          ("LogsDirectory", "ctxproxy"),
                          ("ConfigurationDirectory", "ctxproxy")]:
            self.assertEqual(self.value(key), want, key)

    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if not tool:
            print("\n    (systemd-analyze not installed: Debian package systemd)", end="")
            self.skipTest("systemd-analyze not installed")
        tmp = tempfile.mkdtemp(prefix="ctxproxy-unit-")
        try:
            # verify wants ExecStart's binary to exist, and the man page of
            # Documentation= to be found: point both at this tree.
            unit = os.path.join(tmp, "ctxproxy.service")
            with open(UNIT) as f:
                text = f.read()
            with open(unit, "w") as f:
                f.write(text.replace("/usr/sbin/ctxproxy", os.path.abspath(harness.PROXY_BIN)))
            os.makedirs(os.path.join(tmp, "man", "man8"))
            shutil.copy(MAN_PAGE, os.path.join(tmp, "man", "man8"))
            env = dict(os.environ, MANPATH=os.path.join(tmp, "man"), SYSTEMD_LOG_LEVEL="notice")
            res = subprocess.run([tool, "verify", unit], env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=60)
            out = res.stdout.decode("utf-8", "replace")
            # Unknown or misspelt keys are only warnings (status 0): any line
            # about the unit is a failure.
            about_unit = [l for l in out.splitlines() if "ctxproxy.service" in l]
            self.assertEqual((res.returncode, about_unit), (0, []), out)

            res = subprocess.run([tool, "security", "--offline=yes", unit], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=60)
            out = res.stdout.decode("utf-8", "replace")
            m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
            if res.returncode == 0 and m:
                # 0 (safe) .. 10 (unsafe); the unit scores 1.6 on systemd 252.
                self.assertLess(float(m.group(1)), 3.0, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
