# scenario vip-failover: after the cluster is ready the VIP holder is powered
# off; the VIP moves to another server (and answers /ping there), and an
# agent that starts only then still joins through the VIP.
scenario_vip_failover() {
	bed_up 5
	local n
	for n in 1 2 3; do host_provision "$n" server & done
	host_provision 4 agent &
	host_provision 5 agent &
	wait_jobs
	for n in 1 2 3 4; do host_start "$n"; done
	wait_ready 240 1 2 3 4
	check_one_cluster "1 2 3" "4"
	local holder
	holder=$(vip_holder)
	case $holder in 1 | 2 | 3) ;; *) die "VIP holder is '$holder', want one server" ;; esac
	log "powering off the VIP holder h$holder"
	host_crash "$holder"
	wait_until 90 "VIP moved off h$holder" vip_moved_from "$holder"
	wait_until 60 "VIP answers /ping from h4 after the move" vip_pong 4
	wait_until 60 "VIP held by exactly one host" vip_single
	log "ok: VIP now on h$(vip_holder)"
	host_start 5
	wait_ready 180 5
	local st
	st=$(sim_state 5)
	[ "$(jq -r .mode <<<"$st")" = agent ] || die "h5 mode $(jq -r .mode <<<"$st")"
	[ "$(jq -c .rejections <<<"$st")" = "[]" ] || die "h5 rejections: $(jq -c .rejections <<<"$st")"
	[ "$(jq -r .ca_hash <<<"$st")" = "$(sim_state 4 | jq -r .ca_hash)" ] || die "h5 joined another CA"
	log "ok: a new agent joined through the moved VIP"
}
