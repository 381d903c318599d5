#!/bin/sh
# rke2-hanode installer, in the style of the RKE2 one:
#
#   curl -sfL https://example.com/install.sh | sh -s - server \
#       --token-file /root/token --expect-servers 3 --join 10.0.0.11 \
#       --vip 10.0.0.200 --interface eth0
#   curl -sfL https://example.com/install.sh | sh -s - agent \
#       --token-file /root/token --join 10.0.0.11 --vip 10.0.0.200 --interface eth0
#
# Make the tokens with `rke2-hanode token generate` (server-token and
# agent-token lines); a weak token is refused at config load.
#
# The first argument is the role (server or agent); everything after it is
# passed to `rke2-hanode config init` (see `rke2-hanode config init --help`).
# It installs the package (.deb with dpkg, .rpm with rpm), writes
# /etc/rke2-hanode/config.yaml (mode 0600), enables the unit and starts it.
# Running it again is safe: the same package is not reinstalled, an existing
# config is kept, a running daemon is left alone.
#
# Environment:
#   RKE2_HANODE_PACKAGE         a local .deb or .rpm to install
#   RKE2_HANODE_PACKAGE_URL     URL of the .deb or .rpm to download and install
#   RKE2_HANODE_PACKAGE_SHA256  expected sha256 of the package (optional)
#   RKE2_HANODE_TOKEN           the cluster token, instead of --token/--token-file:
#                               written to /etc/rke2-hanode/token (0600) and
#                               passed as --token-file (keeps it out of `ps`);
#                               on an agent, the agent token
#   RKE2_HANODE_AGENT_TOKEN     servers: the agent token, written to
#                               /etc/rke2-hanode/agent-token (0600) and passed
#                               as --agent-token-file
#   RKE2_HANODE_FORCE_CONFIG    true: replace an existing config (and restart)
#   RKE2_HANODE_SKIP_START      true: install and configure, do not start
# Without a package source, an already installed rke2-hanode is used.
set -eu

CONFIG=/etc/rke2-hanode/config.yaml
TOKEN_FILE=/etc/rke2-hanode/token
AGENT_TOKEN_FILE=/etc/rke2-hanode/agent-token
UNIT=rke2-hanode.service

info() { echo "[INFO]  $*"; }
fatal() {
	echo "[ERROR] $*" >&2
	exit 1
}

usage() {
	cat >&2 <<'USAGE'
usage: install.sh server|agent [rke2-hanode config init flags...]
       e.g. install.sh server --token-file /root/token --expect-servers 3 \
              --join 10.0.0.11 --vip 10.0.0.200 --interface eth0
USAGE
	exit 2
}

is_true() {
	case "${1:-}" in
	true | yes | 1) return 0 ;;
	*) return 1 ;;
	esac
}

check_root() {
	[ "$(id -u)" -eq 0 ] || fatal "run as root (e.g. curl -sfL URL | sudo sh -s - server ...)"
}

# Which package format this host installs: deb where dpkg is the package
# manager, rpm where rpm is (a Debian host may have rpm installed as a tool).
detect_family() {
	if command -v dpkg >/dev/null 2>&1 && [ -d /var/lib/dpkg ]; then
		echo deb
	elif command -v rpm >/dev/null 2>&1; then
		echo rpm
	else
		fatal "neither dpkg nor rpm found: install the package by hand"
	fi
}

download() { # URL FILE
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -qO "$2" "$1"
	else
		fatal "neither curl nor wget found to download $1"
	fi
}

# installed_version FAMILY and package_version FAMILY FILE: equal when the
# file is already installed, so a second run does not reinstall it.
installed_version() {
	case "$1" in
	deb) dpkg-query -W -f '${Status} ${Version}\n' rke2-hanode 2>/dev/null | awk '$3 == "installed" {print $4}' ;;
	rpm) rpm -q --qf '%{VERSION}-%{RELEASE}\n' rke2-hanode 2>/dev/null || true ;;
	esac
}
package_version() {
	case "$1" in
	deb) dpkg-deb -f "$2" Version ;;
	rpm) rpm -qp --qf '%{VERSION}-%{RELEASE}\n' "$2" ;;
	esac
}

install_package() {
	family=$(detect_family)
	pkg=${RKE2_HANODE_PACKAGE:-}
	if [ -z "$pkg" ] && [ -n "${RKE2_HANODE_PACKAGE_URL:-}" ]; then
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' EXIT
		pkg="$tmp/rke2-hanode.$family"
		info "downloading $RKE2_HANODE_PACKAGE_URL"
		download "$RKE2_HANODE_PACKAGE_URL" "$pkg"
	fi
	if [ -z "$pkg" ]; then
		command -v rke2-hanode >/dev/null 2>&1 ||
			fatal "rke2-hanode is not installed: set RKE2_HANODE_PACKAGE (a file) or RKE2_HANODE_PACKAGE_URL"
		info "no package given; using the installed $(command -v rke2-hanode)"
		return 0
	fi
	[ -f "$pkg" ] || fatal "RKE2_HANODE_PACKAGE: $pkg is not a file"
	if [ -n "${RKE2_HANODE_PACKAGE_SHA256:-}" ]; then
		got=$(sha256sum "$pkg" | awk '{print $1}')
		[ "$got" = "$RKE2_HANODE_PACKAGE_SHA256" ] ||
			fatal "package sha256 is $got, RKE2_HANODE_PACKAGE_SHA256 wants $RKE2_HANODE_PACKAGE_SHA256"
	fi
	want=$(package_version "$family" "$pkg") || fatal "$pkg is not a readable .$family package"
	have=$(installed_version "$family")
	if [ -n "$have" ] && [ "$have" = "$want" ]; then
		info "rke2-hanode $have is already installed"
		return 0
	fi
	info "installing rke2-hanode $want (.$family)"
	case "$family" in
	deb) dpkg -i "$pkg" ;;
	rpm) rpm -U --replacepkgs "$pkg" ;;
	esac
}

# write_config ROLE ARGS...: 1 when a new config was written.
write_config() {
	role=$1
	shift
	if [ -f "$CONFIG" ] && ! is_true "${RKE2_HANODE_FORCE_CONFIG:-}"; then
		info "keeping the existing $CONFIG (RKE2_HANODE_FORCE_CONFIG=true replaces it)"
		return 1
	fi
	force=""
	if [ -f "$CONFIG" ]; then force=--force; fi
	if [ -n "${RKE2_HANODE_TOKEN:-}" ]; then
		# Into a 0600 file, never onto a command line.
		mkdir -p "$(dirname "$TOKEN_FILE")"
		(umask 077 && printf '%s\n' "$RKE2_HANODE_TOKEN" >"$TOKEN_FILE")
		set -- --token-file "$TOKEN_FILE" "$@"
	fi
	if [ -n "${RKE2_HANODE_AGENT_TOKEN:-}" ]; then
		[ "$role" = server ] || fatal "RKE2_HANODE_AGENT_TOKEN is for servers: an agent's RKE2_HANODE_TOKEN is the agent token"
		mkdir -p "$(dirname "$AGENT_TOKEN_FILE")"
		(umask 077 && printf '%s\n' "$RKE2_HANODE_AGENT_TOKEN" >"$AGENT_TOKEN_FILE")
		set -- --agent-token-file "$AGENT_TOKEN_FILE" "$@"
	fi
	info "writing $CONFIG"
	# rke2-hanode reads RKE2_HANODE_<KEY> variables as config keys: the
	# installer's own (and the token, now in the file) must not reach it.
	(
		unset RKE2_HANODE_TOKEN RKE2_HANODE_AGENT_TOKEN RKE2_HANODE_PACKAGE RKE2_HANODE_PACKAGE_URL \
			RKE2_HANODE_PACKAGE_SHA256 RKE2_HANODE_FORCE_CONFIG RKE2_HANODE_SKIP_START
		rke2-hanode config init --role "$role" "$@" $force --output "$CONFIG"
	) || fatal "rke2-hanode config init failed (exit $?): fix the flags above"
	return 0
}

start_unit() {
	changed=$1
	systemctl enable "$UNIT" >/dev/null 2>&1 || fatal "systemctl enable $UNIT failed"
	if is_true "${RKE2_HANODE_SKIP_START:-}"; then
		info "not starting $UNIT (RKE2_HANODE_SKIP_START)"
		return 0
	fi
	if systemctl is-active --quiet "$UNIT"; then
		if [ "$changed" = 1 ]; then
			info "config changed: restarting $UNIT"
			systemctl restart --no-block "$UNIT"
		else
			info "$UNIT is already running"
		fi
		return 0
	fi
	# --no-block: the unit becomes active only when this host's part of the
	# cluster is done, which may wait for other hosts.
	info "starting $UNIT"
	systemctl reset-failed "$UNIT" >/dev/null 2>&1 || true
	systemctl start --no-block "$UNIT"
	info "follow it with: rke2-hanode status; journalctl -u $UNIT -f"
}

main() {
	[ $# -ge 1 ] || usage
	role=$1
	shift
	case "$role" in
	server | agent) ;;
	-h | --help) usage ;;
	*) fatal "first argument must be server or agent, not '$role'" ;;
	esac
	check_root
	install_package
	changed=0
	if write_config "$role" "$@"; then changed=1; fi
	start_unit "$changed"
}

main "$@"
