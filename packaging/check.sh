#!/bin/sh
# check.sh [DIST]: inspects the packages build.sh made: file lists, modes,
# conffiles, maintainer scripts, the unit, lintian (when installed) and
# `rpm -qp` (when installed). Exits non-zero on the first broken expectation.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dist=${1:-$root/dist}
fail() {
	echo "check.sh: FAIL: $*" >&2
	exit 1
}
ok() { echo "check.sh: ok: $*"; }

# --- versions ---------------------------------------------------------------
. "$root/packaging/version.sh"
while read -r in want; do
	got=$(pkg_version "$in")
	[ "$got" = "$want" ] || fail "pkg_version $in = $got, want $want"
done <<'TABLE'
v1.2.3 1.2.3
v1.2.3-rc.1 1.2.3~rc.1
v1.2.3-4-gabc1234 1.2.3+git4.abc1234
v1.2.3-4-gabc1234-dirty 1.2.3+git4.abc1234.dirty
dev 0.0.0~dev
2807a2a 0.0.0~g2807a2a
2807a2a-dirty 0.0.0~g2807a2a.dirty
1.0 1.0
weird_ver/x 0.0.0~weird.ver.x
TABLE
if command -v dpkg >/dev/null 2>&1; then
	# Each sorts before the next, for dpkg and for rpm.
	prev=""
	for v in 0.0.0~dev 1.2.3~rc.1 1.2.3 1.2.3+git4.abc1234 1.2.4~rc.1; do
		if [ -n "$prev" ]; then
			dpkg --compare-versions "$prev" lt "$v" || fail "dpkg orders $prev after $v"
			if command -v rpm >/dev/null 2>&1; then
				[ "$(rpm --eval "%{lua: print(rpm.vercmp('$prev', '$v'))}")" = -1 ] || fail "rpm orders $prev after $v"
			fi
		fi
		prev=$v
	done
fi
ok "version mapping"

set -- "$dist"/rke2-hanode_*_amd64.deb
[ -f "$1" ] && [ $# -eq 1 ] || fail "want exactly one .deb in $dist, found: $*"
deb=$1
set -- "$dist"/rke2-hanode-*.x86_64.rpm
[ -f "$1" ] && [ $# -eq 1 ] || fail "want exactly one .rpm in $dist, found: $*"
rpm=$1

# --- .deb -----------------------------------------------------------------
listing=$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}')
want_entry() { # MODE PATH
	printf '%s\n' "$listing" | grep -qx -- "$1 root/root ./$2" ||
		fail "deb: want $1 root/root $2; listing:
$listing"
}
want_entry -rwxr-xr-x usr/bin/rke2-hanode
want_entry -rw-r--r-- lib/systemd/system/rke2-hanode.service
want_entry -rw-r--r-- etc/rke2-hanode/config.yaml.example
want_entry drwx------ var/lib/rke2-hanode/
want_entry -rw-r--r-- usr/share/doc/rke2-hanode/copyright
want_entry -rw-r--r-- usr/share/bash-completion/completions/rke2-hanode
want_entry -rw-r--r-- usr/share/zsh/vendor-completions/_rke2-hanode
want_entry -rw-r--r-- usr/share/fish/vendor_completions.d/rke2-hanode.fish
want_entry -rw-r--r-- usr/share/man/man1/rke2-hanode.1.gz
if printf '%s\n' "$listing" | grep -q 'etc/rke2-hanode/config.yaml$'; then
	fail "deb: ships /etc/rke2-hanode/config.yaml (it must be written by the administrator)"
fi
ok "deb file list and modes"

# The completions and the man page are the binary's own, and name its verbs.
fsys() { dpkg-deb --fsys-tarfile "$deb" | tar -xO "./$1"; }
fsys usr/share/bash-completion/completions/rke2-hanode | grep -q '__start_rke2-hanode' ||
	fail "deb: the bash completion is not rke2-hanode's"
fsys usr/share/zsh/vendor-completions/_rke2-hanode | grep -q '^#compdef rke2-hanode' ||
	fail "deb: the zsh completion is not rke2-hanode's"
fsys usr/share/fish/vendor_completions.d/rke2-hanode.fish | grep -q 'complete -c rke2-hanode' ||
	fail "deb: the fish completion is not rke2-hanode's"
man=$(fsys usr/share/man/man1/rke2-hanode.1.gz | gzip -dc)
printf '%s\n' "$man" | grep -q '^\.TH RKE2-HANODE 1 ' || fail "deb: the man page has no .TH RKE2-HANODE 1"
for verb in run preflight status 'render kube\\-vip' 'config init' demo version completion; do
	printf '%s\n' "$man" | grep -q "^\.SS \"rke2\\\\-hanode $verb" || fail "deb: the man page has no section for $verb"
done
ok "deb completions and man page"

ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT INT TERM
dpkg-deb -e "$deb" "$ctl"
[ "$(cat "$ctl/conffiles")" = /etc/rke2-hanode/config.yaml.example ] ||
	fail "deb: conffiles is '$(cat "$ctl/conffiles")'"
for s in postinst prerm postrm; do
	[ -x "$ctl/$s" ] || fail "deb: $s missing or not executable"
	sh -n "$ctl/$s" || fail "deb: $s is not valid sh"
done
grep -q 'daemon-reload' "$ctl/postinst" || fail "deb: postinst does not reload systemd"
grep -q 'deb-systemd-helper enable' "$ctl/postinst" || fail "deb: postinst does not enable the unit"
grep -q '"\$1" = remove' "$ctl/prerm" && grep -q 'stop' "$ctl/prerm" || fail "deb: prerm does not stop on remove"
grep -q 'purge' "$ctl/postrm" && grep -q 'rm -rf /var/lib/rke2-hanode /etc/rke2-hanode' "$ctl/postrm" ||
	fail "deb: postrm does not remove data on purge"
ok "deb conffiles and maintainer scripts"

unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./lib/systemd/system/rke2-hanode.service)
for line in Type=notify Wants=network-online.target After=network-online.target \
	ConditionPathExists=/etc/rke2-hanode/config.yaml Restart=on-failure \
	'ExecStart=/usr/bin/rke2-hanode run --config /etc/rke2-hanode/config.yaml' \
	ConfigurationDirectory=rancher ReadWritePaths=/etc/rancher StateDirectory=rke2-hanode \
	WantedBy=multi-user.target; do
	printf '%s\n' "$unit" | grep -qx "$line" || fail "unit: missing line '$line'"
done
printf '%s\n' "$unit" | grep -q '^RestartSec=' || fail "unit: no RestartSec"
printf '%s\n' "$unit" | grep -q '^TimeoutStartSec=' || fail "unit: no TimeoutStartSec"
if command -v systemd-analyze >/dev/null 2>&1; then
	# Only syntax: the unit's ExecStart binary is not on this host.
	printf '%s\n' "$unit" >"$ctl/rke2-hanode.service"
	out=$(systemd-analyze verify "$ctl/rke2-hanode.service" 2>&1 || true)
	if printf '%s\n' "$out" | grep -v -e 'rke2-hanode: No such file' -e 'is not executable' \
		-e 'Command .* is not executable' -e '^$' | grep -qi -e 'unknown' -e 'invalid' -e 'failed to parse'; then
		fail "unit: systemd-analyze verify:
$out"
	fi
fi
ok "unit file"

if command -v lintian >/dev/null 2>&1; then
	# Every remaining tag is explained in packaging/deb/lintian-overrides.
	out=$(lintian --fail-on warning,error --suppress-tags unused-override "$deb" 2>&1 | grep -v 'running with root privileges' || true)
	lintian --fail-on warning,error "$deb" >/dev/null 2>&1 || fail "lintian:
$out"
	ok "lintian clean${out:+ (info: $out)}"
else
	echo "check.sh: lintian not installed; skipped"
fi

# --- .rpm -----------------------------------------------------------------
if command -v rpm >/dev/null 2>&1; then
	files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm")
	want_rpm() { # LINE
		printf '%s\n' "$files" | grep -qx -- "$1" || fail "rpm: want '$1'; files:
$files"
	}
	want_rpm '-rwxr-xr-x root:root  /usr/bin/rke2-hanode'
	want_rpm '-rw-r--r-- root:root  /usr/lib/systemd/system/rke2-hanode.service'
	want_rpm '-rw-r--r-- root:root cn /etc/rke2-hanode/config.yaml.example'
	want_rpm 'drwx------ root:root  /var/lib/rke2-hanode'
	want_rpm '-rw-r--r-- root:root  /usr/share/bash-completion/completions/rke2-hanode'
	want_rpm '-rw-r--r-- root:root  /usr/share/zsh/vendor-completions/_rke2-hanode'
	want_rpm '-rw-r--r-- root:root  /usr/share/fish/vendor_completions.d/rke2-hanode.fish'
	want_rpm '-rw-r--r-- root:root  /usr/share/man/man1/rke2-hanode.1.gz'
	scripts=$(rpm -qp --scripts "$rpm")
	for want in 'postinstall scriptlet' 'preuninstall scriptlet' 'postuninstall scriptlet' \
		'systemctl enable rke2-hanode.service' 'disable --now rke2-hanode.service' 'try-restart'; do
		printf '%s\n' "$scripts" | grep -q -- "$want" || fail "rpm: scripts lack '$want'"
	done
	rpm -qp --info "$rpm" >/dev/null || fail "rpm: --info"
	ok "rpm file list, modes, config|noreplace and scriptlets"

	# Install into an empty root with its own rpm database (scriptlets
	# need systemd, so they are only syntax-checked), then erase it: the
	# files land with their modes, an edited config file is kept as
	# .rpmsave, and nothing else is left behind.
	root=$ctl/rpmroot
	mkdir -p "$root"
	rpm --root "$root" --initdb || fail "rpm: initdb in $root"
	rpm --root "$root" -i --nodeps --noscripts "$rpm" || fail "rpm: install into an empty root"
	rpm --root "$root" -V rke2-hanode || fail "rpm: verify after install"
	[ -x "$root/usr/bin/rke2-hanode" ] || fail "rpm: /usr/bin/rke2-hanode not installed"
	[ "$(stat -c %a "$root/var/lib/rke2-hanode")" = 700 ] || fail "rpm: /var/lib/rke2-hanode is not 0700"
	"$root/usr/bin/rke2-hanode" version >/dev/null || fail "rpm: the installed binary does not run"
	for s in POSTIN PREUN POSTUN; do
		body=$(rpm --root "$root" -q --qf "%{$s}" rke2-hanode)
		[ "$body" = "(none)" ] || printf '%s\n' "$body" | sh -n || fail "rpm: $s scriptlet is not valid sh"
	done
	echo "# edited" >>"$root/etc/rke2-hanode/config.yaml.example"
	rpm --root "$root" -e --noscripts rke2-hanode || fail "rpm: erase"
	[ ! -e "$root/usr/bin/rke2-hanode" ] || fail "rpm: erase left /usr/bin/rke2-hanode"
	[ -f "$root/etc/rke2-hanode/config.yaml.example.rpmsave" ] || fail "rpm: an edited config file was not kept as .rpmsave"
	ok "rpm installs into a fresh root, verifies, runs, and erases keeping the edited config"
else
	echo "check.sh: rpm not installed; .rpm not inspected"
fi
