#!/bin/sh
# build-previous.sh [DIST]: the previous release's own package, for the test
# bed's mixed-daemon-versions scenario: test/e2e/previous builds the daemon
# of the commit test/loopback/testdata/previous-release names (statically,
# as make build does), and that commit's own packaging (its packaging/ and
# tools/, exported with git archive) packages it into DIST (default
# dist/previous). Run from a full clone.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
GO=${GO:-go}
dist=$root/${1:-dist/previous}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
bin=$("$GO" run ./test/e2e/previous -dir "$work")
commit=${bin##*/rke2-hanode-}
version=$("$bin" version | awk '{print $2}')
mkdir -p "$work/tree" "$dist"
git archive --format=tar "$commit" packaging tools | tar -x -C "$work/tree"
(cd "$work/tree" && GO=$GO PKG_BINARY=$bin DIST=$dist ./packaging/build.sh "$version")
