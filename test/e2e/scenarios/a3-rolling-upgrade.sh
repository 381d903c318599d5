# scenario rolling-upgrade: three servers and two agents installed from
# rke2sim's airgap artifacts of one minor; then every host's config gets the
# next minor (rke2-version and artifact-path, in a drop-in) and its daemon
# is restarted, one host at a time, as an operator would. The leader rolls
# the cluster: a sampler on an agent sees at most one server's supervisor
# down at a time and etcd's quorum never lost; agents restart only after
# every server; each server took one pre-upgrade etcd snapshot; every host
# ends at the target, status done.
E2E_UPGRADE_FROM=v1.35.2+rke2r1
E2E_UPGRADE_TO=v1.36.1+rke2r1

# upgrade_art V: rke2sim's artifacts of version V (make rke2sim-artifacts).
upgrade_art() {
	local d=${E2E_RKE2_ARTIFACTS}-$1
	[ -f "$d/sha256sum-amd64.txt" ] || die "no rke2sim artifacts of $1 in $d (make rke2sim-artifacts builds them)" || return 1
	echo "$d"
}

# upgrade_stage N V: V's artifacts on host N at $E2E_ART_DIR-V.
upgrade_stage() {
	local r
	r=$(host_root "$1")$E2E_ART_DIR-$2
	mkdir -p "$r"
	cp -a "$(upgrade_art "$2")"/. "$r/"
}

# upgrade_cluster SERVERS AGENTS: hosts provisioned from the artifacts of
# E2E_UPGRADE_FROM (rke2-version set to it) and ready, every one at it.
upgrade_cluster() {
	local servers=$1 agents=$2 n from
	from=$(upgrade_art "$E2E_UPGRADE_FROM")
	for n in $servers; do E2E_RKE2_ARTIFACTS=$from host_provision "$n" server & done
	for n in $agents; do E2E_RKE2_ARTIFACTS=$from host_provision "$n" agent & done
	wait_jobs
	for n in $servers $agents; do host_dropin "$n" 60-e2e-upgrade "rke2-version: $E2E_UPGRADE_FROM"; done
	for n in $servers $agents; do host_start "$n"; done
	# shellcheck disable=SC2086
	wait_ready 300 $servers $agents
	check_one_cluster "$servers" "$agents"
	for n in $servers $agents; do
		[ "$(sim_state "$n" | jq -r .version)" = "$E2E_UPGRADE_FROM" ] ||
			die "h$n runs $(sim_state "$n" | jq -r .version) before the roll, want $E2E_UPGRADE_FROM" || return 1
	done
}

# upgrade_reconfigure V HOSTS...: V and its artifacts in every host's
# config; the daemons restarted one at a time, each ready again first.
upgrade_reconfigure() {
	local v=$1 n
	shift
	for n in "$@"; do
		[ -d "$(host_root "$n")$E2E_ART_DIR-$v" ] || upgrade_stage "$n" "$v"
		host_dropin "$n" 60-e2e-upgrade "rke2-version: $v" "artifact-path: $E2E_ART_DIR-$v"
		hx "$n" systemctl restart rke2-hanode.service
		wait_ready 300 "$n"
	done
}

# upgrade_is N JQ: host N's view of the roll (.upgrade) satisfies JQ.
upgrade_is() { status_json "$1" | jq -e ".upgrade // {} | $2" >/dev/null; }

# upgrade_sampler FILE FROM SERVERS...: every half second, one line: the
# time (ns), how many servers' supervisors do not answer /ping seen from
# host FROM, and whether an answering server's etcd view says quorum is
# lost; until FILE.stop exists (or 20 minutes).
upgrade_sampler() {
	local file=$1 from=$2 n down lost end
	shift 2
	end=$(($(date +%s) + 1200))
	local i=0 tmp=$file.ping
	while [ ! -e "$file.stop" ] && [ "$(date +%s)" -lt "$end" ]; do
		down=0 lost=unknown i=$((i + 1))
		# The servers pinged at once, so that a sample is one moment.
		for n in "$@"; do
			nsenter --net="/run/netns/$(host_ns "$from")" curl -sk --max-time 2 "https://$(host_ip "$n"):9345/ping" >"$tmp.$n" 2>/dev/null &
		done
		wait
		for n in "$@"; do
			if [ "$(cat "$tmp.$n" 2>/dev/null)" = pong ]; then
				# One answering server's etcd view, every third sample (status is slower).
				if [ $((i % 3)) -eq 0 ] && [ "$lost" = unknown ]; then
					status_json "$n" >"$tmp.status" 2>/dev/null
					lost=$(jq -r '.cluster.etcd.majority_gone // "unknown"' "$tmp.status" 2>/dev/null)
					# What a view saying quorum lost was made of, for the log.
					[ "$lost" != true ] || echo "$(date +%T.%N | cut -c1-12) h$n: $(jq -c '.cluster.etcd | {healthy, voters, error, observed_at, members: [.members[] | {node, healthy}]}' "$tmp.status" 2>/dev/null)" >>"$file.lost"
				fi
			else
				down=$((down + 1))
			fi
		done
		echo "$(date +%s%N) $down ${lost:-unknown}" >>"$file"
		sleep 0.2
	done
}

scenario_rolling_upgrade() {
	bed_up 5
	upgrade_cluster "1 2 3" "4 5"
	local to=$E2E_UPGRADE_TO n samples=$E2E_RUN/upgrade.samples
	upgrade_sampler "$samples" 4 1 2 3 &
	upgrade_reconfigure "$to" 1 2 3 4 5
	wait_until 900 "the roll to $to is done" upgrade_is 1 ".phase == \"done\" and .target == \"$to\"" ||
		die "upgrade: $(status_json 1 | jq -c .upgrade)"
	touch "$samples.stop"
	wait_jobs
	log "upgrade: $(status_json 1 | jq -c '.upgrade.hosts | map({name, running, state})')"
	status_json 1 | jq -e --arg to "$to" '[.upgrade.hosts[] | select(.running != $to or .state != "done")] == [] and (.upgrade.hosts | length) == 5' >/dev/null ||
		die "not every host runs $to with state done: $(status_json 1 | jq -c .upgrade.hosts)"
	local maxdown downs lost
	maxdown=$(awk '$2 > m {m = $2} END {print m + 0}' "$samples")
	downs=$(awk '$2 > 0' "$samples" | grep -c . || true)
	lost=$(awk '$3 == "true"' "$samples" | grep -c . || true)
	log "sampler: $(grep -c . "$samples") samples, $downs with a server down, at most $maxdown down at once, $lost with quorum lost"
	[ "$maxdown" -le 1 ] || die "$maxdown servers' supervisors were down at once, want at most 1"
	[ "$downs" -gt 0 ] || die "the sampler never saw a server restart: it saw nothing of the roll"
	[ "$lost" -eq 0 ] || die "a server's etcd view said quorum lost during the roll ($lost samples): $(cat "$samples.lost")"
	# systemd's own times of each server's upgrade restart (the last one):
	# left active, then active again (READY=1: for a joiner, once it is an
	# etcd voter again). Those windows must not overlap, and each must come
	# after a restart (later than the roll's start).
	local windows=""
	for n in 1 2 3; do
		windows="$windows$(hx "$n" systemctl show -P ActiveExitTimestampMonotonic rke2-server.service) $(unit_started "$n" rke2-server.service) h$n"$'\n'
	done
	local prev_end=0 prev="" s e h
	while read -r s e h; do
		[ -n "$s" ] || continue
		[ "$s" -gt 0 ] && [ "$e" -gt "$s" ] || die "$h: rke2-server was not restarted by the roll (left active at $s, active at $e)"
		[ "$s" -gt "$prev_end" ] || die "$h's rke2-server stopped at $s, while $prev was down (until $prev_end): two servers down at once"
		prev_end=$e prev=$h
	done < <(sort -n <<<"$windows")
	log "ok: the servers' restarts did not overlap: $(sort -n <<<"$windows" | awk 'NF {printf "%s %.1fs; ", $3, ($2 - $1) / 1e6}')"
	# Agents after every server: each unit's last start is its upgrade restart.
	local last_server=0 t
	for n in 1 2 3; do
		t=$(unit_started "$n" rke2-server.service)
		[ "$t" -gt "$last_server" ] && last_server=$t
	done
	for n in 4 5; do
		t=$(unit_started "$n" rke2-agent.service)
		[ "$t" -gt "$last_server" ] || die "h$n's rke2-agent restarted at $t, before the last server ($last_server)"
	done
	local snaps
	for n in 1 2 3 4 5; do
		[ "$(sim_state "$n" | jq -c '.skew // []')" = "[]" ] || die "h$n: rke2sim recorded version skew: $(sim_state "$n" | jq -c .skew)"
		[ "$n" -le 3 ] || continue
		snaps=$(find "$(host_root "$n")/var/lib/rancher/rke2/server/db/snapshots" -maxdepth 1 -name "pre-upgrade-${to//+/-}-h$n-*" 2>/dev/null | grep -c . || true)
		[ "$snaps" = 1 ] || die "h$n: $snaps pre-upgrade snapshots of $to, want 1"
	done
	check_one_cluster "1 2 3" "4 5"
	log "ok: rolled to $to: at most one server down, quorum kept, agents last, one snapshot per server"
}
