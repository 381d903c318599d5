# The multi-host test bed: sourced by run.sh (bash). Each host is a
# systemd-nspawn container running real systemd, on an overlayfs over one
# cached debootstrap root, in a network namespace of its own joined by a veth
# pair to a bridge that lives in yet another namespace. 10.99.0.0/24 exists
# only inside those namespaces.
#
# Names: every namespace, cgroup and machine starts with $E2E_PREFIX, and
# every pid the bed starts is recorded under $E2E_RUN, so that cleanup finds
# exactly what the bed made (also after a crashed run) and nothing else.

E2E_PREFIX=${E2E_PREFIX:-r2h}
E2E_DIR=${E2E_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
E2E_CACHE=${E2E_CACHE:-$E2E_DIR/.cache}
E2E_RUN=$E2E_CACHE/run
E2E_ROOTFS=$E2E_CACHE/rootfs
E2E_SUBNET=10.99.0
E2E_VIP=$E2E_SUBNET.200
E2E_BRIDGE_NS=$E2E_PREFIX-lan
# python3-cffi-backend: cloud-init needs it through a virtual package debootstrap cannot resolve.
E2E_ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,iproute2,iputils-ping,iputils-arping,procps,ca-certificates,libpam-systemd,curl,cloud-init,python3-cffi-backend
E2E_CGROUP_ROOTS=(/sys/fs/cgroup/systemd /sys/fs/cgroup/unified)

log() { printf '%s e2e: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAIL: $*"
	return 1
}

# host_ip N: the address of host N (hosts are numbered from 1).
host_ip() { echo "$E2E_SUBNET.$((10 + $1))"; }
host_name() { echo "h$1"; }
host_ns() { echo "$E2E_PREFIX-h$1"; }

# ---------------------------------------------------------------- root image

# The Debian mirror apt is configured with on this machine (deb822 or
# one-line sources), so debootstrap works where only that mirror is reachable.
apt_mirror() {
	if [ -n "${E2E_MIRROR:-}" ]; then
		echo "$E2E_MIRROR"
		return 0
	fi
	local m
	m=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | grep -i debian | head -n1)
	if [ -z "$m" ]; then
		m=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -v security | grep -i debian | head -n1)
	fi
	if [ -z "$m" ]; then
		echo "e2e: no Debian mirror found in /etc/apt/sources.list*; set E2E_MIRROR" >&2
		return 1
	fi
	echo "$m"
}

# rootfs_ensure: a cached minbase bookworm with systemd, reused while its
# package list is unchanged. About a minute and 260 MB the first time.
rootfs_ensure() {
	local key="bookworm minbase $E2E_ROOTFS_PACKAGES v2"
	if [ -f "$E2E_ROOTFS/.e2e-rootfs" ] && [ "$(cat "$E2E_ROOTFS/.e2e-rootfs")" = "$key" ]; then
		return 0
	fi
	local mirror t0
	mirror=$(apt_mirror) || return 1
	t0=$(date +%s)
	log "debootstrap bookworm from $mirror (once; cached in $E2E_ROOTFS)"
	mkdir -p "$E2E_CACHE"
	rm -rf "$E2E_ROOTFS.tmp" "$E2E_ROOTFS"
	debootstrap --variant=minbase --include="$E2E_ROOTFS_PACKAGES" bookworm "$E2E_ROOTFS.tmp" "$mirror" \
		>"$E2E_CACHE/debootstrap.log" 2>&1 || {
		tail -n 20 "$E2E_CACHE/debootstrap.log" >&2
		die "debootstrap failed (log: $E2E_CACHE/debootstrap.log)"
		return 1
	}
	rootfs_customize "$E2E_ROOTFS.tmp"
	echo "$key" >"$E2E_ROOTFS.tmp/.e2e-rootfs"
	mv "$E2E_ROOTFS.tmp" "$E2E_ROOTFS"
	log "root image ready in $(($(date +%s) - t0)) s"
}

rootfs_customize() {
	local r=$1
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
	# A persistent journal, so a host's log can be read after it is off.
	mkdir -p "$r/var/log/journal"
	# Nothing on the console; no login prompts to wait for.
	chroot "$r" systemctl mask console-getty.service getty@.service systemd-logind.service \
		apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
	: >"$r/etc/machine-id"
	echo "nameserver 127.0.0.1" >"$r/etc/resolv.conf"
	# cloud-init runs only on a host given a NoCloud seed (the others boot
	# as before) and leaves the network to the bed; the minimal root has no
	# en_US locale (cloud-init's default), C.UTF-8 is always there.
	mkdir -p "$r/etc/cloud/cloud.cfg.d"
	printf '%s\n' '# test bed: NoCloud seeds only; the bed configures the network' \
		'datasource_list: [NoCloud]' 'network: {config: disabled}' 'locale: C.UTF-8' >"$r/etc/cloud/cloud.cfg.d/90-e2e.cfg"
}

# ------------------------------------------------------------------- network

net_up_bridge() {
	ip netns add "$E2E_BRIDGE_NS"
	ip -n "$E2E_BRIDGE_NS" link set lo up
	ip -n "$E2E_BRIDGE_NS" link add br0 type bridge
	ip -n "$E2E_BRIDGE_NS" link set br0 up
}

# net_up_host N: namespace, veth (eth0 inside, hN on the bridge), address.
net_up_host() {
	local n=$1 ns
	ns=$(host_ns "$n")
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$E2E_BRIDGE_NS" link add "h$n" type veth peer name eth0 netns "$ns"
	ip -n "$E2E_BRIDGE_NS" link set "h$n" master br0 up
	ip -n "$ns" addr add "$(host_ip "$n")/24" dev eth0
	ip -n "$ns" link set eth0 up
	# Observers must take a gratuitous ARP for the VIP at once, also for an
	# entry they do not have yet (see TESTBED.md).
	ip netns exec "$ns" sh -c 'sysctl -qw net.ipv4.neigh.eth0.locktime=0 net.ipv4.conf.eth0.arp_accept=1' || true
}

# net_cut N / net_restore N: a powered-off host answers nothing and holds no
# address but its own (the namespace outlives the container).
net_cut() {
	local ns
	ns=$(host_ns "$1")
	ip -n "$ns" link set eth0 down 2>/dev/null || true
	ip -n "$ns" addr flush dev eth0 2>/dev/null || true
	ip -n "$ns" addr flush dev lo scope global 2>/dev/null || true
}
net_restore() {
	local ns
	ns=$(host_ns "$1")
	ip -n "$ns" addr replace "$(host_ip "$1")/24" dev eth0
	ip -n "$ns" link set eth0 up
}

# --------------------------------------------------------------------- hosts

host_dir() { echo "$E2E_RUN/h$1"; }
host_root() { echo "$E2E_RUN/h$1/merged"; }

# host_create N: overlay over the cached root with this host's identity.
host_create() {
	local n=$1 d
	d=$(host_dir "$n")
	mkdir -p "$d/upper" "$d/work" "$d/merged"
	host_disk "$n"
	net_up_host "$n"
}

# host_disk N: mounts host N's overlay over the cached root and gives it
# its name and address and a new machine-id.
host_disk() {
	local n=$1 d r
	d=$(host_dir "$n")
	r=$d/merged
	mount -t overlay overlay -o "lowerdir=$E2E_ROOTFS,upperdir=$d/upper,workdir=$d/work" "$r"
	echo "h$n" >"$r/etc/hostname"
	printf '127.0.0.1 localhost\n%s h%s\n' "$(host_ip "$n")" "$n" >"$r/etc/hosts"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$r/etc/machine-id"
	echo >>"$r/etc/machine-id"
}

# host_wipe N: host N, powered off, gets a new empty disk (the same name
# and address): what a reinstall leaves.
host_wipe() {
	local n=$1 d
	d=$(host_dir "$n")
	if host_pid "$n" >/dev/null; then
		die "h$n must be off to be wiped"
		return 1
	fi
	umount "$d/merged" 2>/dev/null || umount -l "$d/merged"
	rm -rf "$d/upper" "$d/work"
	mkdir -p "$d/upper" "$d/work"
	host_disk "$n"
}

# host_boot N [starting]: start systemd in the container, from a subshell
# that first moved itself into cgroups of its own (the host has no systemd
# to do it). With "starting", a boot still running its start jobs is enough
# (an enabled rke2-server of a cold-started cluster holds the boot until its
# etcd has a quorum, which needs the other servers booted too).
host_boot() {
	local n=$1 until=${2:-} d ns
	d=$(host_dir "$n")
	ns=$(host_ns "$n")
	net_restore "$n"
	rm -rf "/run/systemd/nspawn/propagate/$E2E_PREFIX-h$n"
	(
		for c in "${E2E_CGROUP_ROOTS[@]}"; do
			mkdir -p "$c/$E2E_PREFIX/h$n"
			echo "$BASHPID" >"$c/$E2E_PREFIX/h$n/cgroup.procs"
		done
		exec systemd-nspawn --quiet --boot --directory="$d/merged" --machine="$E2E_PREFIX-h$n" \
			--hostname="h$n" --register=no --keep-unit --console=read-only \
			--network-namespace-path="/run/netns/$ns" --capability=CAP_NET_ADMIN \
			--resolv-conf=off --timezone=off --link-journal=no
	) >>"$d/console.log" 2>&1 </dev/null &
	echo $! >"$d/nspawn.pid"
	host_wait_running "$n" "$until"
}

# host_pid N: the container's PID 1 (systemd), as seen from here.
host_pid() {
	local d np
	d=$(host_dir "$1")
	[ -f "$d/nspawn.pid" ] || return 1
	np=$(cat "$d/nspawn.pid")
	[ -d "/proc/$np" ] || return 1
	local p
	for p in $(cat /proc/"$np"/task/*/children 2>/dev/null); do
		if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# hx N CMD...: run CMD inside host N, with a clean environment.
hx() {
	local n=$1 pid
	shift
	pid=$(host_pid "$n") || {
		echo "host h$n is not running" >&2
		return 125
	}
	nsenter -t "$pid" -m -u -i -n -p -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 "$@"
}

host_wait_running() {
	local n=$1 until=${2:-} i state
	for i in $(seq 1 120); do
		if host_pid "$n" >/dev/null; then
			state=$(hx "$n" systemctl is-system-running 2>/dev/null || true)
			case $state in
			running | degraded) return 0 ;;
			starting) [ "$until" != starting ] || return 0 ;;
			esac
		fi
		sleep 0.5
	done
	tail -n 30 "$(host_dir "$n")/console.log" >&2
	die "h$n did not boot (state: ${state:-none})"
}

# host_poweroff N: a clean halt (systemctl poweroff); host_crash N: the power
# cord (SIGKILL to the container's systemd). Both cut the host's network.
host_poweroff() {
	local n=$1 np
	np=$(cat "$(host_dir "$n")/nspawn.pid" 2>/dev/null) || return 0
	hx "$n" systemctl poweroff --no-block >/dev/null 2>&1 || true
	wait_pid_gone "$np" 30 || host_crash "$n"
	net_cut "$n"
}
host_crash() {
	local n=$1 np pid
	np=$(cat "$(host_dir "$n")/nspawn.pid" 2>/dev/null) || return 0
	if pid=$(host_pid "$n"); then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait_pid_gone "$np" 15 || kill -KILL "$np" 2>/dev/null || true
	wait_pid_gone "$np" 5 || true
	net_cut "$n"
}
wait_pid_gone() {
	local pid=$1 secs=$2 i
	for i in $(seq 1 $((secs * 5))); do
		[ -d "/proc/$pid" ] || return 0
		# A zombie child of ours: reap it.
		if grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# host_journal N FILE: the host's whole journal, also when it is off.
host_journal() {
	local n=$1 out=$2 r
	r=$(host_root "$n")
	if [ -d "$r/var/log/journal" ]; then
		journalctl -D "$r/var/log/journal" --no-pager -o short-precise >"$out" 2>&1 || true
	fi
	cp "$(host_dir "$n")/console.log" "$out.console" 2>/dev/null || true
}

# ---------------------------------------------------------- bed up and down

# bed_up COUNT [PREPARE]: creates and boots COUNT hosts; PREPARE N, when
# given, runs for each host between its creation and its boot (to seed it).
bed_up() {
	local count=$1 prepare=${2:-} n t0
	t0=$(date +%s%N)
	bed_down quiet
	mkdir -p "$E2E_RUN"
	net_up_bridge
	for n in $(seq 1 "$count"); do
		host_create "$n"
		[ -z "$prepare" ] || "$prepare" "$n" || return 1
	done
	for n in $(seq 1 "$count"); do host_boot "$n" & done
	local rc=0
	wait_jobs || rc=$?
	E2E_HOSTS=$count
	log "bed: $count hosts booted in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	return $rc
}

# wait_jobs: wait for every background job except the containers.
wait_jobs() {
	local rc=0 j
	for j in $(jobs -p); do
		if ! is_nspawn_pid "$j"; then
			wait "$j" || rc=$?
		fi
	done
	return $rc
}
is_nspawn_pid() {
	grep -qx "$1" "$E2E_RUN"/h*/nspawn.pid 2>/dev/null
}

# bed_down: stops and removes everything the bed made, idempotently; also
# what a crashed earlier run left behind.
bed_down() {
	local quiet=${1:-} d np pid
	for d in "$E2E_RUN"/h*; do
		[ -d "$d" ] || continue
		np=$(cat "$d/nspawn.pid" 2>/dev/null || true)
		if [ -n "$np" ] && [ "$(cat /proc/"$np"/comm 2>/dev/null)" = systemd-nspawn ]; then
			for pid in $(cat /proc/"$np"/task/*/children 2>/dev/null); do
				kill -KILL "$pid" 2>/dev/null || true
			done
			wait_pid_gone "$np" 10 || kill -KILL "$np" 2>/dev/null || true
			wait_pid_gone "$np" 5 || true
		fi
		rm -f "$d/nspawn.pid"
	done
	# Overlays (and anything mounted below them), deepest first.
	local m
	for m in $(awk -v p="$E2E_RUN/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$E2E_PREFIX-" || true); do
		ip netns del "$ns" 2>/dev/null || true
	done
	local c
	for c in "${E2E_CGROUP_ROOTS[@]}"; do
		if [ -d "$c/$E2E_PREFIX" ]; then
			find "$c/$E2E_PREFIX" -depth -type d -exec rmdir {} + 2>/dev/null || true
		fi
	done
	rm -rf /run/systemd/nspawn/propagate/"$E2E_PREFIX"-h* 2>/dev/null || true
	rm -rf "$E2E_RUN"
	[ -n "$quiet" ] || log "bed: torn down"
}

# bed_verify_clean: proves bed_down left nothing behind.
bed_verify_clean() {
	local left=""
	if ip netns list 2>/dev/null | grep "^$E2E_PREFIX-" >/dev/null; then left="$left netns"; fi
	if awk -v p="$E2E_CACHE/" 'index($2, p) == 1' /proc/self/mounts | grep . >/dev/null; then left="$left mounts"; fi
	local c
	for c in "${E2E_CGROUP_ROOTS[@]}"; do
		if [ -e "$c/$E2E_PREFIX" ]; then left="$left cgroup:$c"; fi
	done
	if ps -eo args= | grep "^systemd-nspawn .*--machine=$E2E_PREFIX-" >/dev/null; then left="$left nspawn"; fi
	if [ -e "$E2E_RUN" ]; then left="$left run-dir"; fi
	if [ -n "$left" ]; then
		die "teardown left:$left"
		return 1
	fi
	log "bed: teardown verified (no namespaces, mounts, cgroups, containers or files left)"
}
