#!/bin/sh
# profile.sh - instructions (callgrind) and system calls (strace -c) per request
# of ctxproxy with 1 worker, small GET and browser heads (see bench/profile.py).
# usage: bench/profile.sh [--n N] [--warmup W] [--conns C] [--out FILE.md] [--ctxproxy BINARY]
# Needs valgrind, strace and nginx, and build/ctxproxy (built here if
# missing). Takes ~20 s (under a minute on a busy machine); prints a Markdown table.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
PYTHONDONTWRITEBYTECODE=1
export PATH PYTHONDONTWRITEBYTECODE
for t in valgrind strace nginx python3; do
	command -v "$t" >/dev/null 2>&1 || { echo "profile: missing: $t" >&2; exit 3; }
done
if [ ! -x "$root/build/ctxproxy" ]; then
	make -C "$root" --no-print-directory build/ctxproxy >&2 || exit 2
fi
exec python3 "$here/profile.py" "$@"
