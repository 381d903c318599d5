#!/bin/sh
# build.sh VERSION: builds dist/rke2-hanode_<version>_amd64.deb and
# dist/rke2-hanode-<version>-1.x86_64.rpm from bin/rke2-hanode with nfpm.
#
# nfpm is built from the tools/ module (its own go.mod, pinned) and cached in
# tools/bin/nfpm. VERSION is what `git describe` printed; it is turned into a
# version both dpkg and rpm order correctly (see pkg_version below).
#
# Environment: PKG_BINARY (default bin/rke2-hanode), DIST (default dist),
# GO (default go).
set -eu

usage() {
	echo "usage: $0 VERSION" >&2
	exit 2
}
[ $# -eq 1 ] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

GO=${GO:-go}
DIST=${DIST:-dist}
PKG_BINARY=${PKG_BINARY:-bin/rke2-hanode}
. "$root/packaging/version.sh"
PKG_VERSION=$(pkg_version "$1")
export PKG_BINARY PKG_VERSION

if [ ! -x "$PKG_BINARY" ]; then
	echo "build.sh: $PKG_BINARY is missing or not executable (run make build first)" >&2
	exit 1
fi

# nfpm, rebuilt only when tools/go.mod or go.sum changed since the cached copy.
nfpm=tools/bin/nfpm
if [ ! -x "$nfpm" ] || [ tools/go.mod -nt "$nfpm" ] || [ tools/go.sum -nt "$nfpm" ]; then
	echo "build.sh: building nfpm from tools/go.mod"
	(cd tools && CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# A native package carries its changelog as changelog.gz in Debian format.
date_rfc2822=$(LC_ALL=C date -u -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
cat >"$work/changelog" <<CHANGELOG
rke2-hanode ($PKG_VERSION) unstable; urgency=medium

  * Release $1.

 -- rke2-hanode maintainers <maintainers@rke2-hanode.invalid>  $date_rfc2822
CHANGELOG
gzip -n -9 "$work/changelog"
PKG_CHANGELOG="$work/changelog.gz"
export PKG_CHANGELOG

# Shell completions and the man page come from the binary being packaged,
# so they describe exactly its verbs and flags.
"$PKG_BINARY" completion bash >"$work/rke2-hanode.bash"
"$PKG_BINARY" completion zsh >"$work/_rke2-hanode"
"$PKG_BINARY" completion fish >"$work/rke2-hanode.fish"
"$PKG_BINARY" man >"$work/rke2-hanode.1"
gzip -n -9 "$work/rke2-hanode.1"
PKG_COMPLETION_BASH="$work/rke2-hanode.bash"
PKG_COMPLETION_ZSH="$work/_rke2-hanode"
PKG_COMPLETION_FISH="$work/rke2-hanode.fish"
PKG_MANPAGE="$work/rke2-hanode.1.gz"
export PKG_COMPLETION_BASH PKG_COMPLETION_ZSH PKG_COMPLETION_FISH PKG_MANPAGE

mkdir -p "$DIST"
deb="$DIST/rke2-hanode_${PKG_VERSION}_amd64.deb"
rpm="$DIST/rke2-hanode-${PKG_VERSION}-1.x86_64.rpm"
rm -f "$DIST"/rke2-hanode_*.deb "$DIST"/rke2-hanode-*.rpm
"$nfpm" package --config packaging/deb/nfpm.yaml --packager deb --target "$deb"
"$nfpm" package --config packaging/deb/nfpm.yaml --packager rpm --target "$rpm"
echo "build.sh: $deb"
echo "build.sh: $rpm"
"$root/packaging/check.sh" "$DIST"
