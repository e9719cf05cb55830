#!/bin/sh
# deps.sh - install the Debian packages a target needs (as root), or say how.
# usage: scripts/deps.sh build|test|demo|bench|fuzz|deb
set -u
pkgs="gcc make pkg-config libmicrohttpd-dev libcurl4-openssl-dev libconfig-dev libsystemd-dev libgnutls28-dev"
case "${1:-build}" in
build) ;;
test) pkgs="$pkgs libcmocka-dev python3 python3-websockets curl openssl valgrind logrotate mandoc wrk nginx-light haproxy chromium dpkg-dev lintian" ;;
demo) pkgs="$pkgs python3" ;;
bench) pkgs="$pkgs python3 wrk nginx-light haproxy" ;;
fuzz) pkgs="$pkgs clang libclang-rt-14-dev" ;;
deb) pkgs="$pkgs dpkg-dev" ;;
*) echo "usage: $0 build|test|demo|bench|fuzz|deb" >&2; exit 2 ;;
esac
# One dpkg-query for all (~0.1 s; one per package took ~1.5 s): the names
# of those installed, then whichever of ours is not among them.
# shellcheck disable=SC2086
installed=" $(dpkg-query -W -f='${Package} ${Status}\n' $pkgs 2>/dev/null |
	awk '$3 == "ok" && $4 == "installed" { printf "%s ", $1 }')"
missing=""
for p in $pkgs; do
	case "$installed" in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing packages:$missing" >&2
	echo "run: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || exit 1
# shellcheck disable=SC2086
apt-get install -y -qq $missing >/dev/null || exit 1
