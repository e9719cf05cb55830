"""Test certificates made at run time with the openssl CLI: a CA and leaf
certificates it signs (ECDSA P-256, fast to make), an expired one, and a
key that matches none of them."""
import os
import subprocess
import tempfile


def _openssl(*args, cwd):
    res = subprocess.run(["openssl"] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if res.returncode != 0:
        raise AssertionError("openssl %s failed: %s"
                             % (" ".join(args), res.stdout.decode("utf-8", "replace")))


def _key(name, cwd):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", name + ".key", cwd=cwd)


class Certs:
    """A directory of PEM files: ca.pem, and per leaf NAME.pem + NAME.key."""

    def __init__(self, directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="ctxproxy-tls-")
        _key("ca", self.dir)
        _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=ctxproxy test CA",
                 "-days", "2", "-out", "ca.pem", cwd=self.dir)
        self.ca = self.path("ca.pem")

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, cn, sans=(), days=2):
        """NAME.pem (signed by the CA) and NAME.key; sans like "DNS:a",
        "IP:127.0.0.1". Returns (cert path, key path)."""
        _key(name, self.dir)
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            if sans:
                f.write("subjectAltName=%s\n" % ",".join(sans))
        _openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn,
                 "-out", name + ".csr", cwd=self.dir)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-extfile", name + ".ext", "-days", str(days),
                 "-out", name + ".pem", cwd=self.dir)
        return self.path(name + ".pem"), self.path(name + ".key")

    def expired(self, name, cn):
        """A certificate the CA signed for 2020-01-01 only: long expired.
        (openssl 3.0's x509 and req cannot date a certificate in the past;
        `openssl ca` with -startdate/-enddate can.)"""
        _key(name, self.dir)
        db = os.path.join(self.dir, name + ".db")
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("1000\n")
        conf = os.path.join(db, "ca.cnf")
        with open(conf, "w") as f:
            f.write("[ca]\ndefault_ca=d\n[d]\ndir=%s\ndatabase=$dir/index.txt\n"
                    "serial=$dir/serial\nnew_certs_dir=$dir\ndefault_md=sha256\n"
                    "policy=p\nunique_subject=no\n[p]\ncommonName=supplied\n" % db)
        _openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn,
                 "-out", name + ".csr", cwd=self.dir)
        _openssl("ca", "-batch", "-config", conf, "-cert", "ca.pem", "-keyfile", "ca.key",
                 "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
                 "-in", name + ".csr", "-out", name + ".pem", "-notext", cwd=self.dir)
        return self.path(name + ".pem"), self.path(name + ".key")

    def lone_key(self, name):
        """A key no certificate has."""
        _key(name, self.dir)
        return self.path(name + ".key")
