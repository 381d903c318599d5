# scenario cold-start: three servers and an agent formed; every host loses
# power at once (the containers' systemd killed, as a power cut), then all
# boot again in a random order with delays. Nobody bootstraps or joins
# again: each server starts rke2-server on its own datastore (its status
# says how many servers etcd still waits for), kube-vip brings the VIP up
# once the API answers, the agent reconnects. Real etcd on every server
# lists the same three voters, and there is still exactly one cluster-init.
scenario_cold_start() {
	bed_up 4
	local n
	for n in 1 2 3; do host_provision "$n" server & done
	host_provision 4 agent &
	wait_jobs
	for n in 1 2 3 4; do host_start "$n"; done
	wait_ready 240 1 2 3 4
	check_one_cluster "1 2 3" "4"
	local before
	before=$(for n in 1 2 3 4; do sim_state "$n" | jq -c '{mode, ca_hash}'; done)
	log "power cut: every host at once"
	for n in 1 2 3 4; do host_crash "$n" & done
	wait_jobs
	local order first=""
	order=$(printf '%s\n' 1 2 3 4 | shuf | tr '\n' ' ')
	log "booting in the order $order"
	for n in $order; do
		host_boot "$n" starting
		host_start "$n"
		if [ -z "$first" ] && [ "$n" != 4 ]; then
			first=$n
			# Alone, the first server starts RKE2 on its datastore and says
			# that etcd waits for a quorum.
			wait_until 120 "h$n says etcd waits for a quorum" first_server_waits "$n" ||
				die "h$n: phase $(host_phase "$n"), detail $(status_json "$n" | jq -r .node.detail)"
		fi
		sleep "$((RANDOM % 5))"
	done
	wait_ready 420 1 2 3 4
	# A server that finds RKE2 running at boot adopts it as ready at once;
	# its raft state (cluster ready among it) is replayed once the servers
	# elected a leader, a moment later.
	for n in 1 2 3; do
		wait_until 60 "h$n's raft state says cluster ready" cluster_ready_on "$n" ||
			die "h$n: cluster_ready is not true 60 s after ready (raft $(status_json "$n" | jq -c .cluster.raft))"
	done
	check_one_cluster "1 2 3" "4"
	local after
	after=$(for n in 1 2 3 4; do sim_state "$n" | jq -c '{mode, ca_hash}'; done)
	[ "$before" = "$after" ] || die "rke2sim modes or CAs changed across the cold start: before $before, after $after"
	for n in 1 2 3; do
		wait_until 60 "h$n's etcd lists h1 h2 h3 as voters" etcd_voters_are "$n" "h1 h2 h3" ||
			die "h$n: etcd voters '$(etcd_voters "$n")', want h1 h2 h3"
	done
	log "ok: cold start in the order $order: one cluster, the same three etcd voters, VIP on h$(vip_holder)"
}

# first_server_waits N: host N is starting RKE2 on its own datastore and its
# status says that etcd waits for a quorum.
first_server_waits() {
	local st
	st=$(status_json "$1")
	[ "$(jq -r .node.phase <<<"$st")" = starting ] && jq -r .node.detail <<<"$st" | grep -q "etcd waits for a quorum"
}

# cluster_ready_on N: host N's status says cluster ready.
cluster_ready_on() { [ "$(status_json "$1" | jq -r .cluster.cluster_ready)" = true ]; }
