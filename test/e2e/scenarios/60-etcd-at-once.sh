# scenario etcd-at-once: three servers provisioned and started at the same
# moment, every joiner at once. rke2sim runs real etcd, which admits one
# learner at a time: the product's serialized joins must still end with one
# etcd of three voters and no learner, the same member list on every host,
# and no "too many learner members" refusal (that is an overlapping join).
scenario_etcd_at_once() {
	bed_up 3
	local n
	for n in 1 2 3; do host_provision "$n" server & done
	wait_jobs
	for n in 1 2 3; do host_start "$n" & done
	wait_jobs
	wait_ready 300 1 2 3
	# check_one_cluster fails on any rejection but etcd's retried
	# "unhealthy cluster" (a member add within 5 s of a promotion).
	check_one_cluster "1 2 3" ""
	for n in 1 2 3; do
		wait_until 60 "h$n's state.json shows one etcd of 3 voters" etcd_three_voters "$n"
	done
	local names=""
	for n in 1 2 3; do names="$names$(sim_state "$n" | jq -r '[.etcd.members[].name] | sort | join(",")')"$'\n'; done
	[ "$(sort -u <<<"$names" | grep -c .)" -eq 1 ] || die "hosts disagree on the etcd members: $names"
	check_joins_serialized 1 2 3
	log "ok: one etcd of 3 voters, no learner: $(head -1 <<<"$names")"
}

# etcd_three_voters N: host N's state.json lists 3 started voting members
# named <node-name>-<8 hex>, one per server address, and a leader among them.
etcd_three_voters() {
	sim_state "$1" | jq -e --arg h1 "$(host_ip 1)" --arg h2 "$(host_ip 2)" --arg h3 "$(host_ip 3)" '
		.etcd as $e
		| ($e.members | length) == 3
		and ([$e.members[] | select(.learner)] | length) == 0
		and ([$e.members[] | select(.name | test("^h[0-9]+-[0-9a-f]{8}$"))] | length) == 3
		and ([$e.members[].peer_url | capture("//(?<ip>[^:]+):").ip] | sort) == ([$h1, $h2, $h3] | sort)
		and ($e.leader as $l | [$e.members[].name] | index($l)) != null
		and $e.revision > 0' >/dev/null
}
