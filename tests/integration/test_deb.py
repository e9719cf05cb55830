"""test_deb.py - `make deb`: what the package holds, lintian's verdict, and
its life in a fresh root under `dpkg --root` (install, upgrade keeping an
edited configuration, remove, purge), never touching this system's own
dpkg database. Skipped, naming the package, where the dpkg tools are missing."""

import atexit
import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import unittest

import harness
from harness import ROOT
from test_install import BUILT_BIN, EXAMPLE_CONF, LOGROTATE, MAN_PAGE, read, run, run_make

README = os.path.join(ROOT, "README.md")
NAME = "ctxproxy"
CONF = "etc/ctxproxy/ctxproxy.conf"
UNIT = "lib/systemd/system/ctxproxy.service"
WANTS = "etc/systemd/system/multi-user.target.wants/ctxproxy.service"

# Every file the package installs, with its mode (owner root:root).
FILES = {
    "usr/sbin/ctxproxy": 0o755,
    CONF: 0o644,
    "etc/logrotate.d/ctxproxy": 0o644,
    UNIT: 0o644,
    "usr/share/man/man8/ctxproxy.8.gz": 0o644,
    "usr/share/doc/ctxproxy/copyright": 0o644,
    "usr/share/doc/ctxproxy/changelog.gz": 0o644,
}
CONFFILES = ["/etc/ctxproxy/ctxproxy.conf", "/etc/logrotate.d/ctxproxy"]
SCRIPTS = ("postinst", "prerm", "postrm")

# tool: the Debian package that has it
TOOLS = {"dpkg": "dpkg", "dpkg-deb": "dpkg", "dpkg-shlibdeps": "dpkg-dev"}


def missing_tools():
    """'dpkg-shlibdeps (dpkg-dev), ...' for the tools not installed, or ''."""
    return ", ".join("%s (%s)" % (t, p) for t, p in TOOLS.items() if not shutil.which(t))


def source_version():
    m = re.search(r'^#define CTXPROXY_VERSION "([^"]+)"$',
                  read(os.path.join(ROOT, "src", "main.c")), re.M)
    assert m, "no CTXPROXY_VERSION in src/main.c"
    return m.group(1)


_work = []
_debs = {}


def work_dir():
    """This process's scratch directory for packages, removed at exit."""
    if not _work:
        _work.append(tempfile.mkdtemp(prefix="ctxproxy-deb-"))
        atexit.register(shutil.rmtree, _work[0], True)
    return _work[0]


def package(version=None):
    """The path of `make deb` (DEB_VERSION=version) built from the present
    build/ctxproxy; built once per process and version."""
    key = version or source_version()
    if key not in _debs:
        out = os.path.join(work_dir(), "out-" + key)
        args = ["deb", "DEB_OUT=" + out, "DEB_STAGE=" + os.path.join(work_dir(), "stage-" + key)]
        if version:
            args.append("DEB_VERSION=" + version)
        run_make(*args)
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        assert len(debs) == 1, "make deb left %s in %s" % (debs, out)
        _debs[key] = os.path.join(out, debs[0])
    return _debs[key]


def repack(deb, version, conf_text):
    """deb as version, with conf_text as its default configuration: a
    release that changed the example the operator has already edited."""
    tree = tempfile.mkdtemp(dir=work_dir())
    run(["dpkg-deb", "-R", deb, tree])
    control = os.path.join(tree, "DEBIAN", "control")
    text = re.sub(r"^Version: .*$", "Version: " + version, read(control), flags=re.M)
    with open(control, "w") as f:
        f.write(text)
    with open(os.path.join(tree, CONF), "w") as f:
        f.write(conf_text)
    out = os.path.join(work_dir(), "%s_%s_repacked.deb" % (NAME, version))
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", tree, out])
    return out


def fields(deb):
    """The control fields of deb, as a dict."""
    out = {}
    key = None
    for line in run(["dpkg-deb", "-f", deb]).splitlines():
        if line.startswith(" ") and key:
            out[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def archive(deb, which):
    """The path of deb's data (which='fsys') or control (which='ctrl') tar
    archive, written out by dpkg-deb once per process."""
    path = os.path.join(work_dir(), "%s.%s.tar" % (os.path.basename(deb), which))
    if not os.path.exists(path):
        res = subprocess.run(["dpkg-deb", "--%s-tarfile" % which, deb], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, timeout=60, check=True)
        with open(path, "wb") as f:
            f.write(res.stdout)
    return path


def members(deb, which):
    """{path without ./: TarInfo} of one of deb's archives (see archive)."""
    with tarfile.open(archive(deb, which)) as tar:
        return {m.name[2:] if m.name.startswith("./") else m.name: m for m in tar.getmembers()
                if m.name not in (".", "./")}


def member_text(deb, which, name):
    """The bytes of file name in one of deb's archives (see archive)."""
    with tarfile.open(archive(deb, which)) as tar:
        return tar.extractfile("./" + name).read()


def owning_packages(paths):
    """{path: the package (without :arch) owning it} for the paths that this
    system's dpkg knows, looked up as given, resolved, and across the
    /usr merge (/lib/x/libc.so.6 is /usr/lib/x/libc.so.6), in one query."""
    variants = {}
    for path in paths:
        for p in {path, os.path.realpath(path)}:
            variants.setdefault(p, path)
            variants.setdefault(p[4:] if p.startswith("/usr/") else "/usr" + p, path)
    res = subprocess.run(["dpkg-query", "-S"] + sorted(variants), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=60)
    owners = {}
    for line in res.stdout.decode().splitlines():
        pkgs, _, found = line.partition(": ")
        if found in variants:
            owners[variants[found]] = pkgs.split(",")[0].split(":")[0].strip()
    return owners


class DebTest(unittest.TestCase):
    def setUp(self):
        if harness.VALGRIND:
            # no daemon runs here: memcheck would check nothing, and the
            # plain run has already tested the package
            self.skipTest("packaging runs no daemon: nothing for valgrind (the plain run has it)")
        missing = missing_tools()
        if missing:
            self.skipTest("not installed: %s; scripts/deps.sh test installs them" % missing)
        if not os.access(BUILT_BIN, os.X_OK):
            self.fail("%s is not built (make build/ctxproxy)" % BUILT_BIN)


class Package(DebTest):
    """The .deb that `make deb` writes: its files, control data and lintian."""

    def test_name_and_control_fields(self):
        deb = package()
        arch = run(["dpkg", "--print-architecture"]).strip()
        self.assertEqual(os.path.basename(deb),
                         "%s_%s_%s.deb" % (NAME, source_version(), arch))
        f = fields(deb)
        self.assertEqual((f["Package"], f["Version"], f["Architecture"]),
                         (NAME, source_version(), arch))
        for key in ("Maintainer", "Section", "Priority", "Description", "Depends"):
            self.assertTrue(f.get(key), "no %s field" % key)
        self.assertGreater(int(f["Installed-Size"]), 0)

    def test_files_modes_and_owner(self):
        data = members(package(), "fsys")
        files = {n: m for n, m in data.items() if not m.isdir()}
        self.assertEqual(sorted(files), sorted(FILES))
        for name, mode in FILES.items():
            self.assertTrue(files[name].isfile(), "%s is not a plain file" % name)
            self.assertEqual(oct(files[name].mode), oct(mode), "mode of %s" % name)
        for name, m in data.items():
            self.assertEqual((m.uname, m.gname, m.uid, m.gid), ("root", "root", 0, 0),
                             "owner of %s" % name)
            if m.isdir():
                self.assertEqual(oct(m.mode), oct(0o755), "mode of %s/" % name)

    def test_file_contents(self):
        deb = package()
        self.assertEqual(member_text(deb, "fsys", CONF), read(EXAMPLE_CONF, "rb"))
        self.assertEqual(member_text(deb, "fsys", "etc/logrotate.d/ctxproxy"),
                         read(LOGROTATE, "rb"))
        self.assertEqual(gzip.decompress(member_text(deb, "fsys",
                                                     "usr/share/man/man8/ctxproxy.8.gz")),
                         read(MAN_PAGE, "rb"))
        unit = member_text(deb, "fsys", UNIT).decode()
        self.assertIn("ExecStart=/usr/sbin/ctxproxy -c /etc/ctxproxy/ctxproxy.conf", unit)
        changelog = gzip.decompress(member_text(deb, "fsys",
                                                "usr/share/doc/ctxproxy/changelog.gz")).decode()
        self.assertTrue(changelog.startswith("%s (%s) " % (NAME, source_version())), changelog)
        # Debian policy: a stripped program (`file` is not always there).
        program = member_text(deb, "fsys", "usr/sbin/ctxproxy")
        self.assertNotIn(b".debug_info", program)
        self.assertNotIn(b".symtab", program)

    def test_conffiles_and_maintainer_scripts(self):
        deb = package()
        ctrl = members(deb, "ctrl")
        self.assertEqual(member_text(deb, "ctrl", "conffiles").decode().split(), CONFFILES)
        for name in SCRIPTS:
            self.assertIn(name, ctrl)
            self.assertEqual(oct(ctrl[name].mode), oct(0o755), "mode of %s" % name)
            res = subprocess.run(["sh", "-n", "-"], input=member_text(deb, "ctrl", name),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            self.assertEqual(res.returncode, 0, "%s: %s" % (name, res.stdout))
        # md5sums covers every file but the conffiles (dpkg keeps theirs).
        sums = member_text(deb, "ctrl", "md5sums").decode().splitlines()
        self.assertEqual(sorted(line.split()[1] for line in sums),
                         sorted(n for n in FILES if "/" + n not in CONFFILES))

    def test_depends_cover_the_linked_libraries(self):
        # Each library the program names (DT_NEEDED), found where ldd finds
        # it, belongs to a package that Depends names, and Depends names no
        # other package.
        depends = {d.split()[0] for d in fields(package())["Depends"].split(", ")}
        dyn = run(["readelf", "-d", BUILT_BIN]) if shutil.which("readelf") else ""
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
        if not needed:
            self.skipTest("readelf (binutils) not installed or no NEEDED entries")
        where = dict(re.findall(r"^\s*(\S+) => (/\S+)", run(["ldd", BUILT_BIN]), re.M))
        for soname in needed:
            self.assertIn(soname, where, "ldd does not find %s" % soname)
        owners = owning_packages([where[s] for s in needed])
        for soname in needed:
            pkg = owners.get(where[soname])
            self.assertTrue(pkg, "no package owns %s (%s)" % (where[soname], soname))
            self.assertIn(pkg, depends, "%s (%s) is not in Depends" % (soname, pkg))
        self.assertEqual(depends - set(owners.values()), set(),
                         "Depends names packages the program does not link")

    def test_lintian(self):
        if not shutil.which("lintian"):
            self.skipTest("lintian not installed (Debian package lintian)")
        if harness.SANITIZED:
            self.skipTest("build/ctxproxy is a sanitizer build here, not what `make deb` ships")
        out = run(["lintian", "--no-tag-display-limit", package()], ok=False, timeout=300)
        errors = [line for line in out.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], out)
        # Each warning is listed and explained in the README.
        readme = read(README)
        for tag in re.findall(r"^W: \S+ (\S+)", out, re.M):
            self.assertIn(tag, readme, "lintian warning %s is not explained in README.md" % tag)


class Root:
    """A fresh, empty root for `dpkg --root`: its own database and log. The
    maintainer scripts run outside it (--force-script-chrootless, with
    DPKG_ROOT set), so fake systemctl and deb-systemd-invoke record any call
    to the service manager they make; there must be none."""

    def __init__(self, path):
        self.path = path
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"):
            os.makedirs(self.at(d))
        for f in ("var/lib/dpkg/status", "var/lib/dpkg/available"):
            open(self.at(f), "w").close()
        self.fakes = os.path.join(path, "..", "fakes")
        os.makedirs(self.fakes)
        self.calls = os.path.join(self.fakes, "calls")
        for tool in ("systemctl", "deb-systemd-invoke"):
            script = os.path.join(self.fakes, tool)
            with open(script, "w") as f:
                f.write('#!/bin/sh\necho "%s $*" >>"%s"\n' % (tool, self.calls))
            os.chmod(script, 0o755)

    def at(self, rel):
        return os.path.join(self.path, rel)

    def dpkg(self, *args):
        """dpkg on this root only; its output. --force-depends: the root has
        no libc. --path-include: whatever this host's dpkg.cfg.d excludes
        (man pages, docs) is installed all the same."""
        env = dict(os.environ)
        env["PATH"] = "%s:%s:/usr/sbin:/sbin" % (self.fakes, env.get("PATH", "/usr/bin:/bin"))
        env.pop("DPKG_ROOT", None)
        return run(["dpkg", "--root=" + self.path, "--log=" + self.at("var/log/dpkg.log"),
                    "--force-script-chrootless", "--force-not-root", "--force-depends",
                    "--path-include=*"] + list(args), env=env)

    def status_text(self):
        return read(self.at("var/lib/dpkg/status"))

    def status(self):
        """(Status, Version) of the package in this root's database, or None."""
        for stanza in self.status_text().split("\n\n"):
            if re.search(r"^Package: %s$" % NAME, stanza, re.M):
                return (re.search(r"^Status: (.*)$", stanza, re.M).group(1),
                        re.search(r"^Version: (.*)$", stanza, re.M).group(1))
        return None

    def service_calls(self):
        return read(self.calls).splitlines() if os.path.exists(self.calls) else []


class Lifecycle(DebTest):
    """The package in a fresh root: install, upgrade, remove, purge."""

    def setUp(self):
        super().setUp()
        top = tempfile.mkdtemp(prefix="ctxproxy-dpkg-root-")
        self.addCleanup(shutil.rmtree, top, True)
        self.root = Root(os.path.join(top, "root"))
        self.addCleanup(self.assertNoServiceCalls)

    def assertNoServiceCalls(self):
        self.assertEqual(self.root.service_calls(), [],
                         "a maintainer script called the service manager under dpkg --root")

    def exists(self, rel):
        return os.path.lexists(self.root.at(rel))

    def edit_config(self):
        with open(self.root.at(CONF), "a") as f:
            f.write("# edited by the operator\n")
        return read(self.root.at(CONF))

    def test_first_install(self):
        self.root.dpkg("-i", package())
        self.assertEqual(self.root.status(), ("install ok installed", source_version()))
        for rel, mode in FILES.items():
            st = os.lstat(self.root.at(rel))
            self.assertTrue(stat.S_ISREG(st.st_mode), "%s is not a plain file" % rel)
            self.assertEqual(oct(stat.S_IMODE(st.st_mode)), oct(mode), "mode of %s" % rel)
            if os.geteuid() == 0:
                self.assertEqual((st.st_uid, st.st_gid), (0, 0), "owner of %s" % rel)
        self.assertEqual(read(self.root.at("var/lib/dpkg/info/%s.conffiles" % NAME)).split(),
                         CONFFILES)
        self.assertIn("\nConffiles:\n %s " % CONFFILES[0], self.root.status_text())
        # Enabled (deb-systemd-helper, under DPKG_ROOT), and no start: the
        # fakes record none.
        self.assertEqual(os.readlink(self.root.at(WANTS)), "/" + UNIT)
        # The program runs and the configuration it was given is valid.
        program = self.root.at("usr/sbin/ctxproxy")
        self.assertEqual(run([program, "-V"]).strip(), "ctxproxy " + source_version())
        self.assertIn("ok", run([program, "-t", "-c", self.root.at(CONF)]))

    def test_upgrade_keeps_the_edited_config(self):
        self.root.dpkg("-i", package())
        edited = self.edit_config()
        v2 = source_version() + "+1"
        # A rebuilt package whose default configuration did not change: the
        # edit stays, with no question asked (stdin is /dev/null).
        self.root.dpkg("-i", package(v2))
        self.assertEqual(self.root.status(), ("install ok installed", v2))
        self.assertEqual(read(self.root.at(CONF)), edited)
        for suffix in (".dpkg-dist", ".dpkg-new", ".dpkg-old"):
            self.assertFalse(self.exists(CONF + suffix), CONF + suffix)
        self.assertTrue(os.path.islink(self.root.at(WANTS)))

        # The administrator disabled the unit, then a release changed the
        # default configuration too: --force-confold keeps the edit and puts
        # the new default beside it; the unit stays disabled.
        os.unlink(self.root.at(WANTS))
        new_default = read(EXAMPLE_CONF) + "# changed in the next release\n"
        v3 = source_version() + "+2"
        self.root.dpkg("--force-confold", "-i", repack(package(v2), v3, new_default))
        self.assertEqual(self.root.status(), ("install ok installed", v3))
        self.assertEqual(read(self.root.at(CONF)), edited)
        self.assertEqual(read(self.root.at(CONF + ".dpkg-dist")), new_default)
        self.assertFalse(self.exists(WANTS), "the upgrade enabled a disabled unit again")
        digest = hashlib.md5(new_default.encode()).hexdigest()
        self.assertIn(" %s %s\n" % (CONFFILES[0], digest), self.root.status_text())

    def test_remove_keeps_config_and_logs_purge_drops_them(self):
        self.root.dpkg("-i", package())
        edited = self.edit_config()
        # The logs as systemd lays them out for DynamicUser=yes + LogsDirectory=.
        os.makedirs(self.root.at("var/log/private/ctxproxy"))
        os.symlink("private/ctxproxy", self.root.at("var/log/ctxproxy"))
        for name in ("access.log", "access.log.1", "access.log.2.gz"):
            with open(self.root.at("var/log/ctxproxy/" + name), "w") as f:
                f.write("line\n")
        # A file of the administrator's own beside the configuration.
        with open(self.root.at("etc/ctxproxy/site.pem"), "w") as f:
            f.write("certificate\n")

        self.root.dpkg("--remove", NAME)
        self.assertEqual(self.root.status(), ("deinstall ok config-files", source_version()))
        for rel in ("usr/sbin/ctxproxy", UNIT, "usr/share/man/man8/ctxproxy.8.gz"):
            self.assertFalse(self.exists(rel), "%s left after remove" % rel)
        self.assertEqual(read(self.root.at(CONF)), edited)
        self.assertTrue(self.exists("etc/logrotate.d/ctxproxy"))
        self.assertTrue(self.exists("var/log/ctxproxy/access.log.2.gz"))
        self.assertTrue(os.path.islink(self.root.at(WANTS)), "remove dropped the enabled state")

        self.root.dpkg("--purge", NAME)
        self.assertIsNone(self.root.status())
        for rel in (CONF, "etc/logrotate.d/ctxproxy", "var/log/ctxproxy",
                    "var/log/private/ctxproxy", WANTS,
                    "var/lib/systemd/deb-systemd-helper-enabled/ctxproxy.service.dsh-also"):
            self.assertFalse(self.exists(rel), "%s left after purge" % rel)
        self.assertEqual(os.listdir(self.root.at("etc/ctxproxy")), ["site.pem"])


if __name__ == "__main__":
    unittest.main()
