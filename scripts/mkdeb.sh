#!/bin/sh
# mkdeb.sh - turn a staged `make install PREFIX=/usr DESTDIR=STAGE` into
# OUTDIR/ctxproxy_VERSION_ARCH.deb; `make deb` runs it. The metadata is in
# conf/deb/: the control template, the maintainer scripts, the copyright.
# usage: scripts/mkdeb.sh STAGE OUTDIR [VERSION]  (default: src/main.c's)
set -eu
stage=$1 outdir=$2 version=${3:-}
top=$(cd "$(dirname "$0")/.." && pwd)
meta=$top/conf/deb
name=ctxproxy
if [ -z "$version" ]; then
	version=$(sed -n 's/^#define CTXPROXY_VERSION "\(.*\)"$/\1/p' "$top/src/main.c")
fi
[ -n "$version" ] || { echo "mkdeb.sh: no CTXPROXY_VERSION in src/main.c" >&2; exit 1; }
arch=$(dpkg --print-architecture)
stage=$(cd "$stage" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Debian's layout: a stripped program (unless DEB_BUILD_OPTIONS=nostrip), a
# compressed man page, copyright and changelog under /usr/share/doc.
case " ${DEB_BUILD_OPTIONS:-} " in
*" nostrip "*) ;;
*) strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$stage/usr/sbin/$name" ;;
esac
gzip -9nf "$stage/usr/share/man/man8/$name.8"
doc=$stage/usr/share/doc/$name
install -d "$doc"
install -m 0644 "$meta/copyright" "$doc/copyright"
maint=$(sed -n 's/^Maintainer: //p' "$meta/control")
when=$(date -u -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
printf '%s (%s) unstable; urgency=medium\n\n  * Built from the source tree by make deb.\n\n -- %s  %s\n' \
	"$name" "$version" "$maint" "$when" | gzip -9n >"$doc/changelog.gz"
# install -d makes missing parents with the caller's umask.
find "$stage" -type d -exec chmod 0755 {} +

# Dependencies from the libraries the program links: dpkg-shlibdeps wants
# a debian/control naming the package and the files under debian/PACKAGE.
mkdir "$tmp/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$name" "$name" >"$tmp/debian/control"
ln -s "$stage" "$tmp/debian/$name"
if ! (cd "$tmp" && dpkg-shlibdeps -O "debian/$name/usr/sbin/$name") >"$tmp/deps" 2>"$tmp/err"; then
	cat "$tmp/err" >&2
	exit 1
fi
depends=$(sed -n 's/^shlibs:Depends=//p' "$tmp/deps")
[ -n "$depends" ] || { echo "mkdeb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -d "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	-e "s/@DEPENDS@/$depends/" "$meta/control" >"$stage/DEBIAN/control"
for script in postinst prerm postrm; do
	install -m 0755 "$meta/$script" "$stage/DEBIAN/$script"
done
# Everything under /etc is the administrator's: a conffile, which dpkg never
# overwrites once edited. md5sums lists the other files (dpkg keeps the
# conffiles' sums itself).
(cd "$stage" && find etc -type f | LC_ALL=C sort | sed 's|^|/|') >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
	sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

mkdir -p "$outdir"
deb=$outdir/${name}_${version}_$arch.deb
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
