#!/usr/bin/env python3
"""run.py - run ctxproxy's integration tests; ends with "N passed, N failed".

usage: run.py [-v] [-j N] [SUBSTRING ...]
  SUBSTRING  run only the tests whose id contains one of them
  -v         print the processes' output for passing tests too
  -j N       N shards in N processes at once (every Nth test each),
             their outputs printed one after the other at the end
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

# seconds: a backstop for a hung suite, not a speed check (it takes ~2
# minutes plain and idle; a loaded machine, the sanitizers and valgrind's
# 20-50 times slower daemons get room, each shard its own)
if os.environ.get("CTXPROXY_VALGRIND") == "1":
    SUITE_LIMIT = 1200
elif os.environ.get("SANITIZE"):
    SUITE_LIMIT = 600
else:
    SUITE_LIMIT = 360


class SuiteTimeout(Exception):
    """Raised in the running test when the whole suite overran its limit."""


class Result(unittest.TestResult):
    """Prints one line per test; failure details and process output only on failure."""

    def __init__(self, verbose):
        super().__init__()
        self.verbose = verbose
        self.passed = 0
        self.skipped_n = 0
        self.failed = 0
        self._start = 0.0

    def startTest(self, test):
        super().startTest(test)
        self._start = time.monotonic()

    def _line(self, word, test, extra=""):
        print("%-4s %s (%.2fs)%s" % (word, test.id(), time.monotonic() - self._start, extra),
              flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        self._line("ok", test)
        diag = getattr(test, "diagnostics", None)
        if self.verbose and callable(diag):
            print(diag(), flush=True)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.skipped_n += 1
        self._line("skip", test, ": " + reason)

    def _fail(self, word, test, err):
        self.failed += 1
        self._line(word, test)
        print("".join(traceback.format_exception(*err)).rstrip(), flush=True)
        diag = getattr(test, "diagnostics", None)
        if callable(diag):
            print(diag(), flush=True)
        print("", flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail("FAIL", test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._fail("ERR", test, err)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.passed += 1
        self._line("ok", test, " (expected failure)")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed += 1
        self._line("FAIL", test, " (unexpected success)")


def flatten(suite):
    """Every test case in a (nested) suite."""
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def shard_of(tests, shard, shards):
    """The tests of shard (0-based) of shards: every shards-th test, so each
    class's tests (the slow ones too) are spread over the shards and they
    end together.  Each test sets itself up (run() calls no class or module
    fixture), so a class may be split."""
    return tests[shard::shards]


def run_shards(argv, shards):
    """Run run.py --shard K/N argv for each K at once; print each output in
    turn and the summed "N passed, N failed" line."""
    procs = []
    for k in range(shards):
        out = tempfile.TemporaryFile()
        cmd = [sys.executable, os.path.abspath(__file__), "--shard", "%d/%d" % (k, shards)]
        procs.append((subprocess.Popen(cmd + argv, stdout=out, stderr=subprocess.STDOUT), out))

    def on_term(sig, _frame):
        for proc, _ in procs:
            proc.terminate()
        sys.exit(128 + sig)

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    passed = failed = 0
    for k, (proc, out) in enumerate(procs):
        try:
            rc = proc.wait(SUITE_LIMIT + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
        print("== shard %d/%d" % (k + 1, shards))
        print(text.rstrip(), flush=True)
        last = [ln for ln in text.splitlines() if ln.endswith(" failed")]
        try:
            p, f = last[-1].replace(",", "").split()[0:3:2]
            passed, failed = passed + int(p), failed + int(f)
        except (IndexError, ValueError):
            failed += 1
        if rc != 0 and not failed:
            failed += 1
    print("integration (%d shards): %.1fs" % (shards, time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


def main(argv):
    argv = list(argv)
    shard, shards = 0, 1
    if "-j" in argv:
        i = argv.index("-j")
        jobs = int(argv[i + 1])
        del argv[i:i + 2]
        if jobs > 1:
            return run_shards(argv, jobs)
    if "--shard" in argv:
        i = argv.index("--shard")
        shard, shards = (int(x) for x in argv[i + 1].split("/"))
        del argv[i:i + 2]
    verbose = "-v" in argv
    wanted = [a for a in argv if a != "-v"]
    loader = unittest.TestLoader()
    found = list(flatten(loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)))
    tests = [t for t in found if not wanted or any(w in t.id() for w in wanted)]
    if shards > 1:
        tests = shard_of(tests, shard, shards)
    result = Result(verbose)
    started = time.monotonic()

    def on_alarm(_sig, _frame):
        result.stop()
        raise SuiteTimeout("integration suite exceeded %ds" % SUITE_LIMIT)

    def on_term(sig, _frame):
        harness.kill_all()
        sys.exit(128 + sig)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(SUITE_LIMIT)
    not_run = 0
    try:
        for i, test in enumerate(tests):
            if result.shouldStop:
                not_run = len(tests) - i
                break
            test(result)
    finally:
        signal.alarm(0)
        harness.kill_all()
    if not_run:
        print("%d tests not run: the suite hit its time limit" % not_run)
    elapsed = time.monotonic() - started
    if result.skipped_n:
        print("%d skipped" % result.skipped_n)
    print("integration: %.1fs" % elapsed)
    failed = result.failed + not_run
    print("%d passed, %d failed" % (result.passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
