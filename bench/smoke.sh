#!/bin/sh
# smoke.sh - prove the benchmark scripts work: bench/run.sh --smoke (budget 85 s).
# Exit 0 when every case produced its figures for every proxy, or (with a
# message) when wrk, nginx or haproxy is not installed; 1 otherwise.
# Never needs root; does not touch bench/last-run.md.
set -u
here=$(cd "$(dirname "$0")" && pwd)
if command -v timeout >/dev/null 2>&1; then
	timeout -k 5 100 "$here/run.sh" --smoke
else
	"$here/run.sh" --smoke
fi
rc=$?
if [ $rc = 3 ]; then
	echo "bench smoke: SKIPPED, a tool is not installed (scripts/deps.sh bench installs them)"
	exit 0
elif [ $rc = 0 ]; then
	echo "bench smoke: ok"
else
	echo "bench smoke: FAILED (run.sh --smoke exited $rc)" >&2
fi
exit $rc
