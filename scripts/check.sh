#!/bin/sh
# check.sh - run the unit test binaries, then the integration suite; end with
# one "N passed, N failed" line counting every test case.
set -u
unit_only=0
if [ "${1:-}" = "--unit-only" ]; then unit_only=1; shift; fi
passed=0; failed=0; failures=""
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Add a suite's counts: $1 = passed, $2 = failed, $3 = its exit status.
count() {
	passed=$((passed + ${1:-0}))
	failed=$((failed + ${2:-0}))
	if [ "$3" != 0 ] && [ "${2:-0}" = 0 ]; then failed=$((failed + 1)); fi
}

for t in "$@"; do
	echo "== $t"
	"$t" >"$out" 2>&1; rc=$?
	cat "$out"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	count "${p:-0}" "${f:-0}" $rc
	[ $rc = 0 ] || failures="$failures $t"
done
if [ $unit_only = 0 ]; then
	echo "== integration"
	# Sanitized daemons run in two shards at once (each keeps a core
	# busy), so the three CI runs fit in 15 minutes; plain runs alone.
	jobs=1
	[ -n "${SANITIZE:-}" ] && jobs=2
	python3 tests/integration/run.py -j $jobs >"$out" 2>&1; rc=$?
	cat "$out"
	p=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' "$out" | tail -1)
	f=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' "$out" | tail -1)
	count "${p:-0}" "${f:-0}" $rc
	[ $rc = 0 ] || failures="$failures integration"
	# The bench smoke proves the scripts work and prints figures; a
	# sanitized daemon's figures mean nothing, and the plain run has it.
	if [ -x bench/smoke.sh ] && [ -z "${SANITIZE:-}" ]; then
		echo "== bench smoke"
		bench/smoke.sh; rc=$?
		count $((rc == 0)) 0 $rc
		[ $rc = 0 ] || failures="$failures bench-smoke"
	fi
	# 45 s (every fault, restart, reload and rotation happens in it), and
	# 20 s under the sanitizers: enough mixed traffic for ASan to see a
	# path the suite misses, inside CI's 15 minutes.
	soak_s=45
	[ -n "${SANITIZE:-}" ] && soak_s=20
	echo "== soak smoke ($soak_s s)"
	python3 tests/soak.py --seconds $soak_s; rc=$?
	count $((rc == 0)) 0 $rc
	[ $rc = 0 ] || failures="$failures soak-smoke"
fi
[ -n "$failures" ] && echo "failed suites:$failures"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
