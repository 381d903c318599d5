# scenario join-poweroff: a server is powered off (its systemd killed, its
# link cut) in the middle of its join, while it holds the learner slot; the
# host comes back and all three end up in one cluster, without two learners
# at once. Joins are slowed (RKE2SIM_JOIN_DELAY) to make the window wide.
scenario_join_poweroff() {
	bed_up 3
	local n victim="" t
	for n in 1 2 3; do
		host_provision "$n" server &
	done
	wait_jobs
	for n in 1 2 3; do sim_env "$n" rke2-server RKE2SIM_JOIN_DELAY=15s; done
	for n in 1 2 3; do host_start "$n"; done
	# The first joiner: a server other than the bootstrap whose rke2-server
	# unit has started but is not ready yet (its learner phase), caught a
	# few seconds into it.
	t=$(($(date +%s) + 180))
	while [ -z "$victim" ] && [ "$(date +%s)" -lt "$t" ]; do
		for n in 1 2 3; do
			[ "$(hx "$n" systemctl show -P ActiveState rke2-server.service 2>/dev/null)" = activating ] || continue
			[ "$(status_json "$n" | jq -r .node.bootstrap)" != true ] || continue
			[ "$(sim_state "$n" | jq -r .mode 2>/dev/null)" != cluster-init ] || continue
			sleep 3
			victim=$n
			break
		done
		sleep 0.5
	done
	[ -n "$victim" ] || die "no server started a join within 180 s; phases:$(phases 1 2 3)"
	log "powering off h$victim in the middle of its join"
	host_crash "$victim"
	# rke2sim, like etcd, counts the dead learner as a member once its
	# learner phase ran out, so the cluster may take no other server until
	# it is back: bring it back after a while, as an operator would.
	sleep "${E2E_POWEROFF_SECONDS:-20}"
	log "booting h$victim again"
	host_boot "$victim"
	wait_ready 300 1 2 3
	E2E_ALLOW_REJECTIONS=all check_one_cluster "1 2 3" ""
	# The join slot must have kept joins apart: nobody but the host that died
	# mid-join may ever have been told "too many learner members".
	for n in 1 2 3; do
		[ "$n" = "$victim" ] && continue
		! sim_state "$n" | jq -e '.rejections[] | select(.reason | test("too many learner"))' >/dev/null ||
			die "h$n was refused as a concurrent learner: $(sim_state "$n" | jq -c .rejections)"
		sim_state "$n" | jq -e '.rejections == []' >/dev/null ||
			log "h$n: rke2sim recorded (allowed here): $(sim_state "$n" | jq -c .rejections)"
	done
	check_joins_serialized 1 2 3
}
