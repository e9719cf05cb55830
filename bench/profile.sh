#!/bin/sh
# profile.sh - instructions (callgrind) and system calls (strace -c) per request
# of ctxproxy with 1 worker, small GET and browser heads (see bench/profile.py).
# usage: bench/profile.sh [--n N] [--warmup W] [--conns C] [--out FILE.md] [--ctxproxy BINARY]
#                         [--config TEXT] [--header 'NAME: VALUE']... [--otlp-sink]
#                         [--heads small|browser|all] [--no-strace]
#   e.g. the cost of trace context, instructions per small GET:
#   bench/profile.sh --heads small --no-strace --config 'trace_context = false;'
#   bench/profile.sh --heads small --no-strace --config 'trace_sample_percent = 100;' --otlp-sink
# Needs valgrind, strace and nginx, and build/ctxproxy and build/tests/otlp_sink
# (built here if missing). Takes ~20 s (under a minute on a busy machine);
# prints a Markdown table.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
PYTHONDONTWRITEBYTECODE=1
export PATH PYTHONDONTWRITEBYTECODE
for t in valgrind strace nginx python3; do
	command -v "$t" >/dev/null 2>&1 || { echo "profile: missing: $t" >&2; exit 3; }
done
if [ ! -x "$root/build/ctxproxy" ] || [ ! -x "$root/build/tests/otlp_sink" ]; then
	make -C "$root" --no-print-directory build/ctxproxy build/tests/otlp_sink >&2 || exit 2
fi
exec python3 "$here/profile.py" "$@"
