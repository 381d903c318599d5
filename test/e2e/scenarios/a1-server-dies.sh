# scenario server-dies: server-removal-timeout 20s; three servers formed
# and a fourth in standby; a server that is neither the raft leader nor the
# one that ran cluster-init is powered off for good. After the timeout it
# is removed (etcd member and Kubernetes Node), the standby server joins,
# and etcd has three healthy voters again.
etcd_three_healthy() {
	status_json "$1" | jq -e '.cluster.etcd | .voters == 3 and .healthy == 3 and (.majority_gone | not)' >/dev/null
}

scenario_server_dies() {
	bed_up 4
	local n
	for n in 1 2 3 4; do host_provision "$n" server & done
	wait_jobs
	for n in 1 2 3 4; do host_dropin "$n" 50-e2e-removal "server-removal-timeout: 20s"; done
	for n in 1 2 3; do host_start "$n"; done
	wait_ready 240 1 2 3
	check_one_cluster "1 2 3" ""
	host_start 4
	wait_until 120 "h4 waits in standby" phase_is 4 standby || die "h4: phase $(host_phase 4)"
	local leader victim="" rest=""
	leader=$(status_json 1 | jq -r .cluster.raft.leader)
	for n in 1 2 3; do
		if [ -z "$victim" ] && [ "h$n" != "$leader" ] && [ "$(sim_state "$n" | jq -r .mode)" = join ]; then
			victim=$n
		else
			rest="$rest $n"
		fi
	done
	[ -n "$victim" ] || die "no server is both a follower and joined (leader $leader)"
	rest=${rest# }
	local s=${rest%% *}
	[ "$(kube_nodes "$s")" != "" ] && grep -qw "h$victim" <<<"$(kube_nodes "$s")" ||
		die "h$victim's Node is not in the API before the power-off: $(kube_nodes "$s")"
	log "powering off h$victim (raft leader $leader) for good"
	host_crash "$victim"
	wait_until 300 "h$victim's Node gone from the Kubernetes API" kube_lacks_node "$s" "h$victim" ||
		die "Nodes: $(kube_nodes "$s")"
	wait_ready 300 $rest 4
	local want
	want=$(for n in $rest 4; do echo "h$n"; done | sort | tr '\n' ' ' | sed 's/ $//')
	wait_voters 120 "$want" $rest 4
	for n in $rest 4; do
		wait_until 60 "h$n's status: 3 healthy etcd voters" etcd_three_healthy "$n" ||
			die "h$n: etcd status $(status_json "$n" | jq -c .cluster.etcd)"
	done
	check_one_cluster "$rest 4" ""
	[ "$(sim_state 4 | jq -r .mode)" = join ] || die "h4 did not join"
	log "ok: h$victim removed, h4 joined from standby: etcd voters $want"
}
