#!/bin/bash
# run.sh - benchmark ctxproxy against nginx and HAProxy on loopback (see bench/bench.py).
# usage: bench/run.sh [--smoke] [--out FILE.md] [--json FILE] [--only CASES]
#                     [--failover-log]
#   CASES: throughput,browser,trace-cost,admin-page,cancel,longpoll,stream,
#          failover,tls-keepalive,tls-handshake,ws-idle-memory,ws-close-latency
#          (default: all; --smoke leaves trace-cost out unless --only names it)
#   full run: < 10 min, writes the table to bench/last-run.md as well;
#   --smoke:  every case briefly (~65 s), just proves the scripts work;
#             writes no file unless --out is given.
# Needs wrk, nginx and haproxy (scripts/deps.sh bench installs them; exit 3
# when one is missing) and build/ctxproxy, build/tests/backend,
# build/tests/ws_echo and build/tests/otlp_sink (built here if missing).  As root the open-file
# limit is raised to 65536 for the 10,000-request case; otherwise the soft
# limit is raised to the hard one and that case may be scaled down.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

smoke=0
for a in "$@"; do [ "$a" = "--smoke" ] && smoke=1; done
out_args=""
if [ $smoke = 0 ]; then
	case " $* " in *" --out "*) ;; *) out_args="--out $here/last-run.md" ;; esac
fi

PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
export PATH
missing=""
for t in wrk nginx haproxy python3; do
	command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
	echo "bench: missing:$missing (run: scripts/deps.sh bench)" >&2
	exit 3   # smoke.sh takes 3 as "skipped"
fi
if [ ! -x "$root/build/ctxproxy" ] || [ ! -x "$root/build/tests/backend" ] ||
	[ ! -x "$root/build/tests/ws_echo" ] || [ ! -x "$root/build/tests/otlp_sink" ]; then
	make -C "$root" --no-print-directory build/ctxproxy build/tests/backend \
		build/tests/ws_echo build/tests/otlp_sink >&2 || exit 2
fi

want=65536
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt $want ] && [ "$(id -u)" = 0 ]; then
	ulimit -Hn $want 2>/dev/null && hard=$want
fi
if [ "$hard" = unlimited ] || [ "$hard" -gt $want ]; then
	ulimit -n $want
else
	ulimit -n "$hard"
fi

# The Python driver stops everything it started when it exits or is
# signalled; this trap makes sure it is signalled when we are.
pid=""
# shellcheck disable=SC2317  # called through the trap
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		i=0
		while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# shellcheck disable=SC2086
python3 "$here/bench.py" $out_args "$@" &
pid=$!
wait "$pid"
rc=$?
pid=""
exit $rc
