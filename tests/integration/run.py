#!/usr/bin/env python3
"""run.py - run ctxproxy's integration tests; ends with "N passed, N failed".

usage: run.py [-v] [SUBSTRING ...]
  SUBSTRING  run only the tests whose id contains one of them
  -v         print the processes' output for passing tests too
"""

import os
import signal
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

# seconds; the whole suite must stay under 3 minutes (under valgrind, whose
# daemons run 20-50 times slower, `make check-valgrind` gets 20 minutes)
SUITE_LIMIT = 1200 if os.environ.get("CTXPROXY_VALGRIND") == "1" else 175


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


def main(argv):
    verbose = "-v" in argv
    wanted = [a for a in argv if a != "-v"]
    loader = unittest.TestLoader()
    found = list(flatten(loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)))
    tests = [t for t in found if not wanted or any(w in t.id() for w in wanted)]
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
