"""test_install.py - `make install` with PREFIX and DESTDIR, the man page, and
the logrotate snippet driving a real daemon."""

import gzip
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

import harness
from harness import ROOT, ProxyTest, route

BUILT_BIN = os.path.join(ROOT, "build", "ctxproxy")
MAN_PAGE = os.path.join(ROOT, "man", "ctxproxy.8")
LOGROTATE = os.path.join(ROOT, "conf", "logrotate.d", "ctxproxy")
EXAMPLE_CONF = os.path.join(ROOT, "conf", "ctxproxy.conf")
UNIT = os.path.join(ROOT, "systemd", "ctxproxy.service")


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def run(cmd, ok=True, env=None, timeout=60):
    """Run cmd with no input; its combined output. Fails the test on a
    non-zero status unless ok is False."""
    res = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=timeout)
    out = res.stdout.decode("utf-8", "replace")
    if ok and res.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), res.returncode, out))
    return out


def run_make(*args):
    """`make ARGS...` in the source tree, without rebuilding build/ctxproxy
    (other suites run it; `make check` built it); its output (see run)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return run(["make", "--no-print-directory", "-C", ROOT, "-o", "build/ctxproxy"] + list(args),
               env=env)


def make_install(destdir, *assignments):
    """`make install DESTDIR=destdir ASSIGNMENTS...` (see run_make)."""
    return run_make("install", "DESTDIR=" + destdir, *assignments)


def tree(destdir):
    """{relative path: mode bits} of every file (not directory) under destdir."""
    out = {}
    for dirpath, _, files in os.walk(destdir):
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, destdir)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


def exec_lines(unit_text):
    """The ExecStart/ExecStartPre/ExecReload command lines of a unit."""
    return [line.split("=", 1)[1] for line in unit_text.splitlines()
            if re.match(r"Exec(Start|StartPre|Reload)=", line)]


class Install(unittest.TestCase):
    """`make install PREFIX=/usr DESTDIR=...`: what lands where, with which mode."""

    EXPECTED = {
        "usr/sbin/ctxproxy": 0o755,
        "etc/ctxproxy/ctxproxy.conf": 0o644,
        "etc/logrotate.d/ctxproxy": 0o644,
        "lib/systemd/system/ctxproxy.service": 0o644,
        "usr/share/man/man8/ctxproxy.8": 0o644,
    }

    def setUp(self):
        if not os.access(BUILT_BIN, os.X_OK):
            self.fail("%s is not built (make build/ctxproxy)" % BUILT_BIN)
        self.dest = tempfile.mkdtemp(prefix="ctxproxy-destdir-")
        self.addCleanup(shutil.rmtree, self.dest, True)

    def path(self, rel):
        return os.path.join(self.dest, rel)

    def assertInstalled(self, rel, mode, same_as=None):
        files = tree(self.dest)
        self.assertIn(rel, files, "not installed; got %s" % sorted(files))
        self.assertEqual(oct(files[rel]), oct(mode), "mode of %s" % rel)
        if same_as:
            self.assertEqual(read(self.path(rel), "rb"), read(same_as, "rb"),
                             "%s differs from %s" % (rel, same_as))

    def test_program(self):
        make_install(self.dest, "PREFIX=/usr")
        self.assertInstalled("usr/sbin/ctxproxy", 0o755, BUILT_BIN)
        res = subprocess.run([self.path("usr/sbin/ctxproxy"), "-V"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(res.returncode, 0)
        self.assertTrue(res.stdout.startswith(b"ctxproxy "), res.stdout)

    def test_config(self):
        make_install(self.dest, "PREFIX=/usr")
        self.assertInstalled("etc/ctxproxy/ctxproxy.conf", 0o644, EXAMPLE_CONF)

    def test_unit(self):
        make_install(self.dest, "PREFIX=/usr")
        self.assertInstalled("lib/systemd/system/ctxproxy.service", 0o644)
        text = read(self.path("lib/systemd/system/ctxproxy.service"))
        for cmd in exec_lines(text):
            if "ctxproxy" in cmd:
                self.assertTrue(cmd.startswith("/usr/sbin/ctxproxy "), cmd)
                self.assertIn(" -c /etc/ctxproxy/ctxproxy.conf", cmd)

    def test_man_page(self):
        make_install(self.dest, "PREFIX=/usr")
        self.assertInstalled("usr/share/man/man8/ctxproxy.8", 0o644, MAN_PAGE)

    def test_logrotate_snippet(self):
        make_install(self.dest, "PREFIX=/usr")
        self.assertInstalled("etc/logrotate.d/ctxproxy", 0o644, LOGROTATE)

    def test_nothing_else(self):
        make_install(self.dest, "PREFIX=/usr")
        self.assertEqual(sorted(tree(self.dest)), sorted(self.EXPECTED))

    def test_reinstall_keeps_edited_config_and_replaces_the_program(self):
        make_install(self.dest, "PREFIX=/usr")
        conf = self.path("etc/ctxproxy/ctxproxy.conf")
        with open(conf, "a") as f:
            f.write("# edited by the operator\n")
        edited = read(conf)
        rotate = self.path("etc/logrotate.d/ctxproxy")
        if os.path.exists(rotate):
            with open(rotate, "a") as f:
                f.write("# edited by the operator\n")
        edited_rotate = read(rotate) if os.path.exists(rotate) else None
        with open(self.path("usr/sbin/ctxproxy"), "wb") as f:
            f.write(b"old version")
        make_install(self.dest, "PREFIX=/usr")
        self.assertEqual(read(conf), edited, "make install overwrote an edited config")
        if edited_rotate is not None:
            self.assertEqual(read(rotate), edited_rotate,
                             "make install overwrote an edited logrotate snippet")
        self.assertInstalled("usr/sbin/ctxproxy", 0o755, BUILT_BIN)

    def test_prefix_usr_local(self):
        # The make default: the program under /usr/local, the config still in
        # /etc, and the unit must run the program where it was put.
        make_install(self.dest, "PREFIX=/usr/local")
        self.assertInstalled("usr/local/sbin/ctxproxy", 0o755, BUILT_BIN)
        self.assertInstalled("usr/local/share/man/man8/ctxproxy.8", 0o644, MAN_PAGE)
        self.assertInstalled("etc/ctxproxy/ctxproxy.conf", 0o644, EXAMPLE_CONF)
        text = read(self.path("lib/systemd/system/ctxproxy.service"))
        cmds = [c for c in exec_lines(text) if "ctxproxy" in c]
        self.assertTrue(cmds)
        for cmd in cmds:
            self.assertTrue(cmd.startswith("/usr/local/sbin/ctxproxy "),
                            "unit runs %r, make install put the program in "
                            "/usr/local/sbin" % cmd)

    def test_sysconfdir(self):
        make_install(self.dest, "PREFIX=/usr/local", "SYSCONFDIR=/usr/local/etc")
        self.assertInstalled("usr/local/etc/ctxproxy/ctxproxy.conf", 0o644, EXAMPLE_CONF)
        text = read(self.path("lib/systemd/system/ctxproxy.service"))
        for cmd in exec_lines(text):
            if "ctxproxy" in cmd:
                self.assertIn(" -c /usr/local/etc/ctxproxy/ctxproxy.conf", cmd)


def source(name):
    return read(os.path.join(ROOT, "src", name))


# The files holding configuration key tables (config_keys.c is the engine,
# with no keys of its own).
CONFIG_KEY_SOURCES = ("config.c", "config_upstream.h", "config_upstream.c")


def key_entry_macros(code):
    """Names of the macros that write one key-table entry: a function-like
    macro whose body is an initializer starting with its first parameter,
    { n, ... } (TOP, TIMEOUT_KEY, CONFIG_ROUTE_KEY, HEALTH_KEY_, ...), and
    any plain alias of one (#define ROUTE CONFIG_ROUTE_KEY)."""
    code = code.replace("\\\n", " ")          # a macro body on one line
    macros = set()
    for name, param, body in re.findall(r"^#define (\w+)\((\w+),[^)]*\)(.*)$", code, re.M):
        if re.search(r"\{\s*%s\s*," % param, body):
            macros.add(name)
    for alias, target in re.findall(r"^#define (\w+)[ \t]+(\w+)[ \t]*$", code, re.M):
        if target in macros:
            macros.add(alias)
    return macros


def config_keys_in(code, macros):
    """The key names code's tables hold: { "name", CONFIG_KEY_... } entries
    and the first argument of every key-entry macro call."""
    keys = re.findall(r'\{\s*"(\w+)",\s*CONFIG_KEY_', code)
    for m in sorted(macros):
        keys += re.findall(r'\b%s\(\s*"(\w+)"' % re.escape(m), code)
    return keys


class ManPage(unittest.TestCase):
    """man/ctxproxy.8 renders cleanly and documents what the code has."""

    def setUp(self):
        self.text = read(MAN_PAGE)

    def section(self, title):
        m = re.search(r"^\.SH \"?%s\"?\n(.*?)(?=^\.SH )" % re.escape(title), self.text,
                      re.M | re.S)
        self.assertTrue(m, "no .SH %s" % title)
        return m.group(1)

    def assertDocumented(self, names, section, what):
        body = self.section(section)
        missing = [n for n in names
                   if not re.search(r"(^|[\s\"])%s(\s|$|,|\")" % re.escape(n.replace("-", "\\-")),
                                    body, re.M)]
        self.assertEqual(missing, [], "%s missing from the man page's %s section"
                         % (what, section))

    def test_groff_renders_without_warnings(self):
        if not shutil.which("groff"):
            self.skipTest("groff not installed (Debian package groff-base)")
        res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN_PAGE],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual((res.returncode, res.stdout), (0, b""))

    def test_mandoc_lint(self):
        if not shutil.which("mandoc"):
            self.skipTest("mandoc not installed (Debian package mandoc)")
        res = subprocess.run(["mandoc", "-Tlint", "-Wall", MAN_PAGE],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual((res.returncode, res.stdout.decode()), (0, ""))

    def test_every_config_key(self):
        # Top-level, defaults and route keys (config.c), the upstream pool's
        # route keys (config_upstream.h) and the health group's keys
        # (config_upstream.c); each file must yield some, so a table written
        # in a new way fails here instead of going unchecked.
        codes = {name: source(name) for name in CONFIG_KEY_SOURCES}
        macros = key_entry_macros("\n".join(codes.values()))
        keys = []
        for name, code in codes.items():
            found = config_keys_in(code, macros)
            self.assertTrue(found, "no config keys found in src/%s (macros known: %s)"
                            % (name, ", ".join(sorted(macros))))
            keys += found
        for key in ("listen", "connect_timeout_ms", "name", "upstream", "retry_on", "rise"):
            self.assertIn(key, keys, "the key tables were not read whole")
        self.assertDocumented(sorted(set(keys)), "CONFIGURATION", "config keys")

    def test_every_metric_family(self):
        names = re.findall(r'family\(out, "(\w+)"', source("metrics.c"))
        self.assertGreater(len(names), 3, "no metric families found in src/metrics.c")
        # Families written elsewhere print their own "# TYPE name kind" line
        # (health.c: ctxproxy_upstream_server_up).
        others = []
        for name in sorted(os.listdir(os.path.join(ROOT, "src"))):
            if name.endswith(".c") and name != "metrics.c":
                others += re.findall(r'# TYPE (\w+) ', source(name))
        self.assertIn("ctxproxy_upstream_server_up", others,
                      "the server up gauge's family not found in src/health.c")
        self.assertDocumented(names + others, "METRICS", "metric families")

    def test_every_cancel_cause(self):
        causes = re.findall(r'\[CTX_CAUSE_\w+\] = "(\w+)"', source("context.c"))
        causes = [c for c in causes if c != "none"]
        self.assertGreater(len(causes), 5, "no cause names found in src/context.c")
        self.assertDocumented(causes, "DESCRIPTION", "cancellation causes")

    def test_every_access_log_field(self):
        code = source("log.c")
        m = re.search(r"access_fields\[\] = \{\n.*?\n};\n", code, re.S)
        self.assertTrue(m, "the access_fields table not found in src/log.c")
        fields = re.findall(r'\{ "(\w+)", \w+_FIELD\(', m.group(0))
        self.assertGreater(len(fields), 10, "no rows found in access_fields")
        fields += re.findall(r'put_key\(&l, "(\w+)"\)', code)   # ts, type
        self.assertIn("type", fields)
        self.assertDocumented(sorted(set(fields)), "ACCESS LOG", "access log fields")

    def test_every_signal(self):
        sigs = re.findall(r"sigaddset\(\w+, (SIG\w+)\)", source("main.c"))
        self.assertGreater(len(sigs), 2, "no handled signals found in src/main.c")
        self.assertDocumented(sigs, "SIGNALS", "signals")


class LogrotateSnippet(ProxyTest):
    """conf/logrotate.d/ctxproxy, run by logrotate against a live daemon whose
    access log is a file: rotated, reopened on SIGUSR1, nothing lost."""

    def setUp(self):
        super().setUp()
        self.tool = shutil.which("logrotate") or (
            "/usr/sbin/logrotate" if os.access("/usr/sbin/logrotate", os.X_OK) else None)
        if not self.tool:
            self.skipTest("logrotate not installed (Debian package logrotate)")
        self.dir = tempfile.mkdtemp(prefix="ctxproxy-logrotate-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def rotate(self, conf):
        res = subprocess.run([self.tool, "-f", "-s", os.path.join(self.dir, "state"), conf],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(res.returncode, 0, res.stdout.decode("utf-8", "replace"))

    def wait_in_file(self, path, needle, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path) and needle in read(path):
                return
            time.sleep(0.05)
        self.fail("%r not in %s within %.0fs" % (needle, path, timeout))

    def request(self, proxy, path):
        resp = self.client(proxy).request("GET", path)
        self.assertEqual(resp.status, 404)

    def test_rotate_reopen_compress(self):
        logs = os.path.join(self.dir, "log")
        os.mkdir(logs, 0o755)
        access = os.path.join(logs, "access.log")
        proxy = self.start_proxy([route("dead", "/dead/", "http://127.0.0.1:9")],
                                 access_log=access, workers=1)
        text = read(LOGROTATE)
        self.assertIn("/var/log/ctxproxy/*.log", text)
        signal_line = re.search(r"^\s*systemctl kill .*USR1.*$", text, re.M)
        self.assertTrue(signal_line, "no `systemctl kill ... USR1` in the postrotate script")
        text = text.replace("/var/log/ctxproxy/", logs + "/")
        text = text.replace(signal_line.group(0), "\t\tkill -USR1 %d" % proxy.pid)
        conf = os.path.join(self.dir, "ctxproxy.logrotate")
        with open(conf, "w") as f:
            f.write(text)

        self.request(proxy, "/first")
        self.wait_in_file(access, "path=/first")
        mark = proxy.log.mark()
        self.rotate(conf)
        proxy.log.wait(start=mark, msg="access log reopened")
        self.assertIn("path=/first", read(access + ".1"))
        self.request(proxy, "/second")
        self.wait_in_file(access, "path=/second")
        self.assertNotIn("path=/first", read(access))
        self.assertNotIn("path=/second", read(access + ".1"))
        self.assertEqual(oct(stat.S_IMODE(os.stat(access).st_mode)), oct(0o640))

        # Next day: .1 (kept plain by delaycompress) becomes .2.gz.
        self.rotate(conf)
        self.request(proxy, "/third")
        self.wait_in_file(access, "path=/third")
        with gzip.open(access + ".2.gz", "rt") as f:
            self.assertIn("path=/first", f.read())
        self.assertIn("path=/second", read(access + ".1"))
        self.assertTrue(proxy.alive())


if __name__ == "__main__":
    unittest.main()
