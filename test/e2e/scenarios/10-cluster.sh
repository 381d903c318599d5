# scenario cluster: 3 servers and 2 agents, provisioned by cloud-init at
# their first boot from a NoCloud seed holding the shipped user-data (which
# runs the one-liner installer and starts the daemon), all booted at once,
# form one cluster: every host ready, exactly one cluster-init, one CA hash,
# no rejected join, the VIP on one host and answering /ping from every host,
# every host seeing all five members.
scenario_cluster() {
	bed_up 5 seed_cluster_host
	local n
	for n in 1 2 3 4 5; do host_wait_cloudinit "$n" & done
	wait_jobs
	log "ok: cloud-init ran the shipped user-data on every host"
	[ "$(stat -c %a "$(host_root 1)/etc/rke2-hanode/token")" = 600 ] || die "token file is not 0600"
	wait_ready 240 1 2 3 4 5
	check_one_cluster "1 2 3" "4 5"
	for n in 1 2 3 4 5; do
		[ "$(status_json "$n" | jq '[.members[] | select(.state == "alive")] | length')" = 5 ] ||
			die "h$n does not see 5 alive members"
	done
	check_joins_serialized 1 2 3
}

# seed_cluster_host N: hosts 1-3 are servers, the others agents.
seed_cluster_host() {
	local role=agent
	[ "$1" -gt 3 ] || role=server
	host_seed_cloudinit "$1" "$role"
}

# check_joins_serialized SERVERS...: the learner phases of the joined servers
# (rke2sim's join_started/join_finished) never overlap.
check_joins_serialized() {
	local n st spans=""
	for n in "$@"; do
		st=$(sim_state "$n")
		[ "$(jq -r .mode <<<"$st")" = join ] || continue
		spans="$spans$(jq -r '.join_started + " " + .join_finished' <<<"$st")"$'\n'
	done
	# Sorted by start, each join must finish before the next one starts
	# (RFC 3339 times in UTC of the same length compare as strings).
	local prev_end="" s e
	while read -r s e; do
		[ -n "$s" ] || continue
		if [ -n "$prev_end" ] && [[ "$s" < "$prev_end" ]]; then
			die "server joins overlap: one ended $prev_end, the next started $s"
			return 1
		fi
		prev_end=$e
	done < <(sort <<<"$spans")
	log "ok: server joins did not overlap"
}
