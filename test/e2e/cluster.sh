# Cluster helpers for the scenarios: provisioning hosts the way a user
# would (the package and the one-liner installer), reading each host's view
# (`rke2-hanode status --json`) and rke2sim's evidence (state.json).
# Sourced by run.sh after lib.sh.

# e2e_tokens: a fresh server token and agent token for this run, made the way
# an operator makes them (`rke2-hanode token generate`; weak tokens are
# refused at config load). E2E_TOKEN / E2E_AGENT_TOKEN, when set, are kept.
e2e_tokens() {
	local out
	[ -n "${E2E_TOKEN:-}" ] && [ -n "${E2E_AGENT_TOKEN:-}" ] && return 0
	out=$("$REPO/bin/rke2-hanode" token generate) || {
		die "rke2-hanode token generate failed (make build)"
		return 1
	}
	E2E_TOKEN=$(sed -n 's/^server-token: //p' <<<"$out")
	E2E_AGENT_TOKEN=$(sed -n 's/^agent-token: //p' <<<"$out")
	[ -n "$E2E_TOKEN" ] && [ -n "$E2E_AGENT_TOKEN" ] || {
		die "rke2-hanode token generate printed no server-token/agent-token lines"
		return 1
	}
	export E2E_TOKEN E2E_AGENT_TOKEN
}
E2E_ART_DIR=/opt/rke2-artifacts # inside the hosts

# host_stage N: copies the package, the installer and rke2sim's artifacts
# into host N (through its overlay, so also while it is off).
host_stage() {
	local n=$1 r
	r=$(host_root "$n")
	mkdir -p "$r/root" "$r$E2E_ART_DIR"
	cp "$E2E_DEB" "$r/root/rke2-hanode.deb"
	cp "$REPO/deploy/install.sh" "$r/root/install.sh"
	if [ -d "$E2E_RKE2_ARTIFACTS" ]; then
		cp -a "$E2E_RKE2_ARTIFACTS"/. "$r$E2E_ART_DIR/"
	fi
}

# art_sum N FILE: the SHA-256 of an artifact staged on host N (a local
# install-script-url runs only pinned by install-script-sha256).
art_sum() {
	sha256sum "$(host_root "$1")$E2E_ART_DIR/$2" | cut -d' ' -f1
}

# sim_env N UNIT VAR=VALUE...: environment for rke2sim's unit on host N
# (RKE2's units read /etc/default/<unit>).
sim_env() {
	local n=$1 unit=$2 r
	shift 2
	r=$(host_root "$n")
	mkdir -p "$r/etc/default"
	printf '%s\n' "$@" >>"$r/etc/default/$unit"
}

# host_provision N ROLE [config init flags...]: installs the .deb and writes
# the config with deploy/install.sh (which runs dpkg -i and
# `rke2-hanode config init`), without starting the daemon. As RKE2 wants
# them: a server holds the server token and the agent token (agent-token),
# an agent only the agent token. E2E_HOST_TOKEN replaces the host's token
# (server token on a server, agent token on an agent), E2E_HOST_AGENT_TOKEN
# a server's agent-token.
host_provision() {
	local n=$1 role=$2
	shift 2
	local extra=() tokens=()
	if [ "$role" = server ]; then
		extra+=(--expect-servers 3)
		tokens=(RKE2_HANODE_TOKEN="${E2E_HOST_TOKEN:-$E2E_TOKEN}" RKE2_HANODE_AGENT_TOKEN="${E2E_HOST_AGENT_TOKEN:-$E2E_AGENT_TOKEN}")
	else
		tokens=(RKE2_HANODE_TOKEN="${E2E_HOST_TOKEN:-$E2E_AGENT_TOKEN}")
	fi
	host_stage "$n"
	hx "$n" env RKE2_HANODE_PACKAGE=/root/rke2-hanode.deb RKE2_HANODE_SKIP_START=true \
		"${tokens[@]}" \
		sh /root/install.sh "$role" \
		--node-name "h$n" "${extra[@]}" --join "$(host_ip 1),$(host_ip 2),$(host_ip 3)" \
		--vip "$E2E_VIP" --interface eth0 --advertise-address "$(host_ip "$n")" \
		--install-method script --install-script-url "$E2E_ART_DIR/install.sh" \
		--install-script-sha256 "$(art_sum "$n" install.sh)" \
		--artifact-path "$E2E_ART_DIR" --log-level debug "$@" >"$(host_dir "$n")/install.log" 2>&1 || {
		cat "$(host_dir "$n")/install.log" >&2
		die "h$n: install.sh $role failed"
		return 1
	}
}

# host_seed_cloudinit N ROLE: gives host N, before it boots, a NoCloud seed
# holding the shipped deploy/cloud-init/ROLE.yaml, with the example's URLs,
# token and addresses swapped for the bed's. The host's own cloud-init then
# runs it at boot: write_files, then runcmd (the curl | sh one-liner, which
# installs the package, writes the config and starts the daemon). The
# shipped server.yaml sets no agent-token, so, as its comments say, agents
# get the servers' token there (RKE2's single shared token).
host_seed_cloudinit() {
	local n=$1 role=$2 rel=https://github.com/rke2-hanode/rke2-hanode/releases/download/v0.1.0 seed
	host_stage "$n"
	seed=$(host_root "$n")/var/lib/cloud/seed/nocloud
	mkdir -p "$seed"
	"$E2E_CLOUDINIT" -user-data \
		-replace "$rel/rke2-hanode_0.1.0_amd64.deb=file:///root/rke2-hanode.deb" \
		-replace "$rel/install.sh=file:///root/install.sh" \
		-replace "@$(tr a-z A-Z <<<"$role")_TOKEN@=$E2E_TOKEN" \
		-replace "--join 10.0.0.11 --join 10.0.0.12 --join 10.0.0.13=--join $(host_ip 1) --join $(host_ip 2) --join $(host_ip 3)" \
		-replace "--vip 10.0.0.200=--vip $E2E_VIP" \
		-replace "--interface eth0=--interface eth0 --install-script-url $E2E_ART_DIR/install.sh --install-script-sha256 $(art_sum "$n" install.sh) --artifact-path $E2E_ART_DIR --log-level debug" \
		"$REPO/deploy/cloud-init/$role.yaml" >"$seed/user-data" || die "cannot seed $role.yaml"
	printf 'instance-id: e2e-h%s\nlocal-hostname: h%s\n' "$n" "$n" >"$seed/meta-data"
}

# host_wait_cloudinit N: waits for host N's cloud-init to finish and fails
# with its output unless it finished without errors.
host_wait_cloudinit() {
	local n=$1 out
	out=$(hx "$n" timeout 300 cloud-init status --wait --long 2>&1) && grep -q '^status: done' <<<"$out" || {
		printf '%s\n' "$out" >&2
		hx "$n" cat /var/log/cloud-init-output.log >&2 || true
		die "h$n: cloud-init did not finish cleanly"
		return 1
	}
}

host_start() { hx "$1" systemctl start --no-block rke2-hanode.service; }

# status_json N: host N's own view, or nothing when its daemon does not answer.
status_json() { hx "$1" rke2-hanode status --json 2>/dev/null || true; }
host_phase() { status_json "$1" | jq -r '.node.phase // empty' 2>/dev/null || true; }

# sim_state N: rke2sim's evidence on host N, or nothing before RKE2 started.
sim_state() { cat "$(host_root "$1")/var/lib/rancher/rke2/sim/state.json" 2>/dev/null || true; }

# wait_until SECONDS DESCRIPTION CMD...: polls CMD once a second.
wait_until() {
	local secs=$1 what=$2 deadline
	shift 2
	# E2E_MAX_WAIT caps every wait (to see a failure quickly while debugging).
	if [ -n "${E2E_MAX_WAIT:-}" ] && [ "$secs" -gt "$E2E_MAX_WAIT" ]; then secs=$E2E_MAX_WAIT; fi
	deadline=$(($(date +%s) + secs))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if "$@" >/dev/null 2>&1; then
			log "ok: $what"
			return 0
		fi
		sleep 1
	done
	die "timed out after ${secs}s: $what"
}

all_ready() {
	local n
	for n in "$@"; do
		[ "$(host_phase "$n")" = ready ] || return 1
	done
}

phases() {
	local n out=""
	for n in "$@"; do out="$out h$n=$(host_phase "$n")"; done
	echo "$out"
}

# wait_ready SECONDS HOSTS...: every host reports phase ready.
wait_ready() {
	local secs=$1
	shift
	if ! wait_until "$secs" "hosts $* ready" all_ready "$@"; then
		log "phases:$(phases "$@")"
		explain_not_ready "$@"
		return 1
	fi
}

# explain_not_ready HOSTS...: for each host not ready, what its status,
# rke2sim's evidence and the last journal lines say, in the run's output
# (where a CI log shows it; the journals go to the artifacts).
explain_not_ready() {
	local n
	for n in "$@"; do
		[ "$(host_phase "$n")" = ready ] && continue
		log "h$n status: $(status_json "$n" | jq -c '{node: .node, slot: .cluster.join_slot, raft: .cluster.raft}' 2>/dev/null)"
		log "h$n rke2sim: $(sim_state "$n" | jq -c '{mode, rejections, etcd: .etcd.members}' 2>/dev/null)"
		hx "$n" journalctl -u rke2-hanode.service -u rke2-server.service -u rke2-agent.service --no-pager -o cat -n 25 2>/dev/null |
			sed "s/^/  h$n| /" | cut -c1-400 >&2 || true
	done
}

# vip_holder: the host whose eth0 carries the VIP (the network's truth).
vip_holder() {
	local d n
	for d in "$E2E_RUN"/h*; do
		n=${d##*/h}
		if ip -n "$(host_ns "$n")" -4 -o addr show 2>/dev/null | grep " $E2E_VIP/" >/dev/null; then
			echo "$n"
		fi
	done
}

vip_single() { [ "$(vip_holder | grep -c .)" -eq 1 ]; }

vip_moved_from() {
	local h
	h=$(vip_holder)
	[ -n "$h" ] && [ "$h" != "$1" ]
}

# vip_pong N: the VIP answers https://VIP:9345/ping with pong, seen from host N.
vip_pong() {
	[ "$(hx "$1" curl -sk --max-time 3 "https://$E2E_VIP:9345/ping" 2>/dev/null)" = pong ]
}

# check_one_cluster SERVERS AGENTS: the contract's checks across hosts:
# exactly one cluster-init, one CA hash everywhere, no rejected join, every
# host ready and seeing the same CA hash, the VIP answering from every host.
check_one_cluster() {
	local servers=$1 agents=$2 want_inits=${3:-1} n inits=0 mode ca cas="" rej st
	for n in $servers $agents; do
		st=$(sim_state "$n")
		[ -n "$st" ] || die "h$n: no rke2sim state.json (RKE2 never started)" || return 1
		mode=$(jq -r .mode <<<"$st")
		ca=$(jq -r .ca_hash <<<"$st")
		# etcd's "unhealthy cluster" (a member add within 5 s of the previous
		# promotion) is retried by k3s and rke2sim alike: not a product fault.
		# A scenario that proves itself when etcd's "too many learner members"
		# was right (join-poweroff: a dead learner still in etcd) names the
		# hosts that may show it in E2E_LEARNER_REFUSALS_CHECKED.
		rej=$(jq -c --arg checked " ${E2E_LEARNER_REFUSALS_CHECKED:-} " --arg n "$n" '[.rejections // [] | .[]
			| select(.reason != "etcdserver: unhealthy cluster")
			| select((.reason | test("too many learner members")) and ($checked | contains(" " + $n + " ")) | not)]' <<<"$st")
		[ "$mode" = cluster-init ] && inits=$((inits + 1))
		case " $agents " in
		*" $n "*) [ "$mode" = agent ] || die "h$n: agent runs rke2 in mode $mode" || return 1 ;;
		esac
		if [ "$rej" != "[]" ]; then
			if [ "${E2E_ALLOW_REJECTIONS:-}" = all ] || [ "${E2E_ALLOW_REJECTIONS:-}" = "$n" ]; then
				log "h$n: rke2sim recorded rejections (allowed here): $rej"
			else
				die "h$n: rke2sim recorded rejections: $rej" || return 1
			fi
		fi
		[ -n "$ca" ] && [ "$ca" != null ] || die "h$n: no CA hash in state.json" || return 1
		cas="$cas $ca"
	done
	[ "$inits" -eq "$want_inits" ] || die "$inits hosts ran a cluster-init, want exactly $want_inits" || return 1
	[ "$(tr ' ' '\n' <<<"$cas" | sort -u | grep -c .)" -eq 1 ] || die "more than one CA hash:$cas" || return 1
	ca=${cas# }
	ca=${ca%% *}
	for n in $servers $agents; do
		st=$(status_json "$n")
		[ "$(jq -r .node.phase <<<"$st")" = ready ] || die "h$n: phase $(jq -r .node.phase <<<"$st")" || return 1
		[ "$(jq -r .cluster.cluster_ready <<<"$st")" = true ] || die "h$n: cluster_ready is not true" || return 1
		[ "$(jq -r .cluster.ca_hash <<<"$st")" = "$ca" ] ||
			die "h$n: status ca_hash $(jq -r .cluster.ca_hash <<<"$st") != rke2sim's $ca" || return 1
		vip_pong "$n" || die "h$n: https://$E2E_VIP:9345/ping does not answer pong" || return 1
	done
	[ "$(vip_holder | grep -c .)" -eq 1 ] || die "VIP held by hosts: $(vip_holder | tr '\n' ' ')" || return 1
	log "ok: one cluster: $inits cluster-init, CA ${ca:0:12}…, no rejections, VIP on h$(vip_holder), pong from every host"
}

# etcd_voters N: the node names of the voters real etcd lists on host N
# (rke2sim's state.json; etcd's member names are <node>-<8 hex>), sorted.
etcd_voters() {
	sim_state "$1" | jq -r '[.etcd.members[] | select(.learner | not) | .name | sub("-[0-9a-f]{8}$"; "")] | sort | join(" ")'
}
etcd_voters_are() { [ "$(etcd_voters "$1")" = "$2" ]; }

# wait_voters SECONDS "hA hB ..." HOSTS...: real etcd on every host lists
# exactly those voters.
wait_voters() {
	local secs=$1 want=$2 n
	shift 2
	for n in "$@"; do
		wait_until "$secs" "h$n's etcd lists $want as voters" etcd_voters_are "$n" "$want" ||
			die "h$n: etcd voters '$(etcd_voters "$n")', want $want" || return 1
	done
}

phase_is() { [ "$(host_phase "$1")" = "$2" ]; }

# host_dropin N NAME LINES...: a config drop-in
# (/etc/rke2-hanode/config.yaml.d/NAME.yaml) on host N, replaced whole,
# written to a temporary file and renamed; read at the daemon's next start.
host_dropin() {
	local n=$1 name=$2 d
	shift 2
	d=$(host_root "$n")/etc/rke2-hanode/config.yaml.d
	mkdir -p "$d"
	chmod 0755 "$d"
	printf '%s\n' "$@" >"$d/.$name.yaml.tmp"
	chmod 0600 "$d/.$name.yaml.tmp"
	mv "$d/.$name.yaml.tmp" "$d/$name.yaml"
}

# kube_nodes N: the Node names RKE2's Kubernetes API lists, asked on server
# N with its admin kubeconfig's client certificate.
kube_nodes() {
	hx "$1" sh -c '
		k=/etc/rancher/rke2/rke2.yaml d=$(mktemp -d) && trap "rm -rf $d" EXIT &&
		sed -n "s/^ *client-certificate-data: //p" $k | base64 -d >$d/crt &&
		sed -n "s/^ *client-key-data: //p" $k | base64 -d >$d/key &&
		curl -sfk --max-time 5 --cert $d/crt --key $d/key https://127.0.0.1:6443/api/v1/nodes' |
		jq -r '.items[].metadata.name' | sort | tr '\n' ' ' | sed 's/ $//'
}
kube_lacks_node() {
	local names
	names=$(kube_nodes "$1") && [ -n "$names" ] && ! grep -qw "$2" <<<"$names"
}

# unit_started N UNIT: when UNIT last became active on host N (µs on the
# kernel's monotonic clock, which all hosts share; 0 if never).
unit_started() {
	hx "$1" systemctl show -P ActiveEnterTimestampMonotonic "$2" 2>/dev/null
}

# journal_has N UNIT TEXT: UNIT's journal on host N contains TEXT. Read
# whole first: `journalctl | grep -q` fails under pipefail when grep
# stops reading early and journalctl dies of SIGPIPE.
journal_has() {
	local out
	out=$(hx "$1" journalctl -u "$2" --no-pager 2>/dev/null) || return 1
	grep -qF -- "$3" <<<"$out"
}
