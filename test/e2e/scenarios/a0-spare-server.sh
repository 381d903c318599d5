# scenario spare-server: three servers formed; a fourth one waits in
# standby with RKE2 not started (four voters would be an even count); a
# fifth one comes, and both join: real etcd lists five voters everywhere.
scenario_spare_server() {
	bed_up 5
	local n
	for n in 1 2 3 4 5; do host_provision "$n" server & done
	wait_jobs
	for n in 1 2 3; do host_start "$n"; done
	wait_ready 240 1 2 3
	check_one_cluster "1 2 3" ""
	host_start 4
	wait_until 120 "h4 waits in standby" phase_is 4 standby || die "h4: phase $(host_phase 4)"
	# It stays there: a while later still standby, rke2-server never started.
	sleep 15
	phase_is 4 standby || die "h4 left standby alone: phase $(host_phase 4)"
	[ -z "$(sim_state 4)" ] || die "h4 started RKE2 while in standby"
	[ "$(unit_started 4 rke2-server.service)" = 0 ] ||
		die "h4's rke2-server was started while in standby"
	log "ok: h4 in standby: $(status_json 4 | jq -r .node.standby)"
	host_start 5
	wait_ready 300 1 2 3 4 5
	check_one_cluster "1 2 3 4 5" ""
	wait_voters 60 "h1 h2 h3 h4 h5" 1 2 3 4 5
	check_joins_serialized 1 2 3 4 5
}
