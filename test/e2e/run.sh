#!/usr/bin/env bash
# The multi-host test bed (root): real systemd hosts on one LAN, the built
# .deb installed in each, RKE2 stood in for by rke2sim's airgap artifacts,
# installed by the daemon's own `script` method. See TESTBED.md in the design
# notes and README.md here.
#
#   make e2e                          # make package + make rke2sim-artifacts, then this
#   E2E_SCENARIOS="bed cluster" test/e2e/run.sh
#
# Environment:
#   E2E_SCENARIOS   scenarios to run, in order (default: all, see below)
#   E2E_DEB         the .deb to install (default: the one dist/rke2-hanode_*_amd64.deb)
#   E2E_PREVIOUS_DEB  the previous release's .deb, for mixed-daemon-versions
#                   (default: the one dist/previous/rke2-hanode_*_amd64.deb)
#   E2E_RKE2_ARTIFACTS  rke2sim's airgap folder (default: bin/rke2sim-artifacts)
#   E2E_ARTIFACTS   where failed scenarios' journals go (default: test/e2e/artifacts/<time>)
#   E2E_KEEP_JOURNALS=1  save journals of passing scenarios too
set -uo pipefail

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
ALL_SCENARIOS="bed cluster join-poweroff bootstrap-poweroff vip-failover wrong-token etcd-at-once hostile-agent cold-start vip-held-by-stopped-server spare-server server-dies quorum-loss rolling-upgrade upgrade-refused upgrade-host-fails mixed-daemon-versions reinstall"

if [ "$(id -u)" -ne 0 ]; then
	echo "e2e: SKIP: the test bed needs root (network namespaces, overlayfs, systemd-nspawn); run it as root or in CI" >&2
	exit 0
fi

# One bed at a time on a machine: the bridge, namespaces and machine names
# are fixed, so a second run would tear down the first one's hosts.
exec 9>/run/rke2-hanode-e2e.lock
if ! flock -n 9; then
	echo "e2e: another test bed run holds /run/rke2-hanode-e2e.lock; waiting for it" >&2
	flock 9
fi

# shellcheck source=lib.sh
source "$E2E_DIR/lib.sh"
# shellcheck source=cluster.sh
source "$E2E_DIR/cluster.sh"
for f in "$E2E_DIR"/scenarios/*.sh; do
	# shellcheck disable=SC1090
	source "$f"
done

# ------------------------------------------------------------ prerequisites

ensure_packages() {
	local need=() pair cmd pkg
	for pair in debootstrap:debootstrap systemd-nspawn:systemd-container arping:iputils-arping \
		ip:iproute2 jq:jq rpm:rpm lintian:lintian nsenter:util-linux; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
	done
	[ ${#need[@]} -eq 0 ] && return 0
	log "installing ${need[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

find_deb() {
	if [ -n "${E2E_DEB:-}" ]; then
		echo "$E2E_DEB"
		return
	fi
	local debs=("$REPO"/dist/rke2-hanode_*_amd64.deb)
	if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
		die "want exactly one dist/rke2-hanode_*_amd64.deb (run make package), found: ${debs[*]}"
		return 1
	fi
	echo "${debs[0]}"
}

# ---------------------------------------------------------------- scenarios

# run_scenario NAME: a fresh bed for every scenario; journals kept on failure;
# the bed is torn down whatever happened.
run_scenario() {
	local name=$1 fn t0 rc
	fn=scenario_${name//-/_}
	if ! declare -F "$fn" >/dev/null; then
		die "unknown scenario '$name' (known: $ALL_SCENARIOS)"
		return 2
	fi
	t0=$(date +%s)
	log "=== scenario $name"
	# In the background and waited for, so that a signal to run.sh is handled
	# at once (a foreground subshell would delay the trap until it ended).
	(
		set -e
		"$fn"
	) &
	E2E_SCENARIO_PID=$!
	wait "$E2E_SCENARIO_PID"
	rc=$?
	E2E_SCENARIO_PID=
	if [ $rc -ne 0 ] || [ "${E2E_KEEP_JOURNALS:-}" = 1 ]; then
		save_journals "$E2E_ARTIFACTS/$name"
	fi
	bed_down
	if [ $rc -eq 0 ]; then
		log "=== scenario $name: PASS ($(($(date +%s) - t0)) s)"
	else
		log "=== scenario $name: FAIL ($(($(date +%s) - t0)) s); journals in $E2E_ARTIFACTS/$name"
	fi
	return $rc
}

# kill_tree PID: SIGTERM to PID and every process below it, children first
# seen, so that a scenario's background loops (boots, waits) end with it
# instead of outliving the run. The containers are left to bed_down.
kill_tree() {
	local pid=$1 child
	is_nspawn_pid "$pid" && return 0
	kill -STOP "$pid" 2>/dev/null || return 0
	for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
		kill_tree "$child"
	done
	kill -TERM "$pid" 2>/dev/null || true
	kill -CONT "$pid" 2>/dev/null || true
}

save_journals() {
	local dir=$1 d n
	mkdir -p "$dir"
	for d in "$E2E_RUN"/h*; do
		[ -d "$d" ] || continue
		n=${d##*/h}
		host_journal "$n" "$dir/h$n.journal"
		cp "$(host_root "$n")/var/lib/rancher/rke2/sim/state.json" "$dir/h$n.state.json" 2>/dev/null || true
	done
}

main() {
	local t0 scenario failed=() passed=()
	t0=$(date +%s)
	ensure_packages || exit 1
	E2E_DEB=$(find_deb) || exit 1
	if [ -z "${E2E_PREVIOUS_DEB:-}" ]; then
		E2E_PREVIOUS_DEB=$(ls "$REPO"/dist/previous/rke2-hanode_*_amd64.deb 2>/dev/null | head -n 1)
	fi
	export E2E_PREVIOUS_DEB
	E2E_RKE2_ARTIFACTS=${E2E_RKE2_ARTIFACTS:-$REPO/bin/rke2sim-artifacts}
	E2E_ARTIFACTS=${E2E_ARTIFACTS:-$E2E_DIR/artifacts/$(date -u +%Y%m%dT%H%M%SZ)}
	export E2E_DEB E2E_RKE2_ARTIFACTS E2E_ARTIFACTS
	trap 'bed_down quiet; bed_verify_clean' EXIT
	trap 'log "interrupted"; [ -z "${E2E_SCENARIO_PID:-}" ] || kill_tree "$E2E_SCENARIO_PID"; exit 130' INT TERM
	rootfs_ensure || exit 1
	e2e_tokens || exit 1
	# Fills the shipped cloud-init user-data in with the bed's values, for the
	# hosts' NoCloud seeds.
	E2E_CLOUDINIT=$E2E_CACHE/cloudinit
	(cd "$REPO" && CGO_ENABLED=0 go build -o "$E2E_CLOUDINIT" ./test/e2e/cloudinit) || exit 1
	export E2E_CLOUDINIT
	# The hostile agent's raft client (scenario hostile-agent).
	E2E_HOSTILE=$E2E_CACHE/hostile
	(cd "$REPO" && CGO_ENABLED=0 go build -o "$E2E_HOSTILE" ./test/e2e/hostile) || exit 1
	export E2E_HOSTILE
	log "package: $E2E_DEB; the previous release's: ${E2E_PREVIOUS_DEB:-none (make e2e builds it)}"
	if [ -f "$E2E_RKE2_ARTIFACTS/install.sh" ]; then
		log "rke2 stand-in: $E2E_RKE2_ARTIFACTS"
	else
		log "no rke2sim artifacts in $E2E_RKE2_ARTIFACTS (make rke2sim-artifacts): cluster scenarios will fail"
	fi
	for scenario in ${E2E_SCENARIOS:-$ALL_SCENARIOS}; do
		# Not in an if: errexit must stay on inside the scenario.
		run_scenario "$scenario"
		if [ $? -eq 0 ]; then passed+=("$scenario"); else failed+=("$scenario"); fi
	done
	bed_down quiet
	bed_verify_clean || failed+=(teardown)
	trap - EXIT
	log "passed: ${passed[*]:-none}; failed: ${failed[*]:-none}; total $(($(date +%s) - t0)) s"
	[ ${#failed[@]} -eq 0 ]
}

main "$@"
