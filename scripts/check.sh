#!/bin/sh
# check.sh - run the unit test binaries, then the integration suite; print a
# closing "N passed, N failed" line.
set -u
unit_only=0
if [ "${1:-}" = "--unit-only" ]; then unit_only=1; shift; fi
passed=0; failed=0; failures=""
for t in "$@"; do
	echo "== $t"
	if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures="$failures $t"; fi
done
if [ $unit_only = 0 ]; then
	echo "== integration"
	if python3 tests/integration/run.py; then passed=$((passed + 1)); else
		failed=$((failed + 1)); failures="$failures integration"; fi
fi
[ -n "$failures" ] && echo "failed suites:$failures"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
