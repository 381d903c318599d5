# scenario wrong-token: a fourth server configured with another token, joined
# to the same seeds, stays out: the cluster forms without it, nobody lists it,
# it never starts RKE2, and its log says why.
scenario_wrong_token() {
	bed_up 4
	local n
	for n in 1 2 3; do host_provision "$n" server & done
	# Another cluster's pair of tokens (server and agent token).
	local other
	other=$("$REPO/bin/rke2-hanode" token generate)
	E2E_HOST_TOKEN=$(sed -n 's/^server-token: //p' <<<"$other") \
		E2E_HOST_AGENT_TOKEN=$(sed -n 's/^agent-token: //p' <<<"$other") \
		host_provision 4 server &
	wait_jobs
	for n in 1 2 3 4; do host_start "$n"; done
	wait_ready 240 1 2 3
	check_one_cluster "1 2 3" ""
	sleep 5
	for n in 1 2 3; do
		! status_json "$n" | jq -e '.members[] | select(.name == "h4")' >/dev/null ||
			die "h$n lists the intruder h4 as a member"
	done
	[ "$(host_phase 4)" != ready ] || die "h4 with another token became ready"
	[ -z "$(sim_state 4)" ] || die "h4 with another token started RKE2"
	hx 4 journalctl -u rke2-hanode.service --no-pager -o cat | grep -iE >/dev/null 'token|decrypt|encrypt|key|label' ||
		die "h4's log does not say why it cannot join"
	log "ok: the host with another token stayed out (phase $(host_phase 4))"
}
