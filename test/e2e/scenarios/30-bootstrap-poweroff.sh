# scenario bootstrap-poweroff: the bootstrap server is powered off after it
# was elected and before it started RKE2 (installs are slowed to hold it
# there); the leader hands the bootstrap to another server, which forms the
# cluster; the old bootstrap comes back and joins it instead of starting a
# second one. While it is off, the third server waits in standby (two
# voters would be an even count); when it is back, both join.
one_ready_one_standby() {
	local p q
	p=$(host_phase "$1") q=$(host_phase "$2")
	{ [ "$p" = ready ] && [ "$q" = standby ]; } || { [ "$p" = standby ] && [ "$q" = ready ]; }
}

scenario_bootstrap_poweroff() {
	bed_up 3
	local n boot="" t
	for n in 1 2 3; do host_provision "$n" server & done
	wait_jobs
	# A slow install script (the real one downloads ~100 MB) keeps every
	# server in "installing" for a while after the election.
	for n in 1 2 3; do
		printf '#!/bin/sh\nsleep %s\nexec sh %s/install.sh "$@"\n' "${E2E_SLOW_INSTALL:-25}" "$E2E_ART_DIR" \
			>"$(host_root "$n")$E2E_ART_DIR/install-slow.sh"
		sed -i -e "s|^install-script-url:.*|install-script-url: $E2E_ART_DIR/install-slow.sh|" \
			-e "s|^install-script-sha256:.*|install-script-sha256: $(art_sum "$n" install-slow.sh)|" \
			"$(host_root "$n")/etc/rke2-hanode/config.yaml"
	done
	for n in 1 2 3; do host_start "$n"; done
	t=$(($(date +%s) + 120))
	while [ -z "$boot" ] && [ "$(date +%s)" -lt "$t" ]; do
		boot=$(status_json 1 | jq -r '.cluster.bootstrap_node // empty' 2>/dev/null || true)
		[ -n "$boot" ] || sleep 0.5
	done
	[ -n "$boot" ] || die "no bootstrap node committed within 120 s; phases:$(phases 1 2 3)"
	n=${boot#h}
	[ ! -e "$(host_root "$n")/var/lib/rancher/rke2/sim/state.json" ] || die "bootstrap $boot already started RKE2: too late"
	log "powering off the bootstrap $boot before it started RKE2"
	host_crash "$n"
	local others
	others=$(for m in 1 2 3; do [ "$m" = "$n" ] || echo "$m"; done | tr '\n' ' ')
	# The new bootstrap forms the cluster alone; the other server waits in
	# standby, RKE2 not started: a second voter would make an even count
	# while the old bootstrap is off.
	# shellcheck disable=SC2086
	wait_until 300 "one server ready as the new bootstrap, the other in standby" one_ready_one_standby $others ||
		die "phases:$(phases $others)"
	local newboot waiter
	newboot=$(status_json "${others%% *}" | jq -r .cluster.bootstrap_node)
	[ "$newboot" != "$boot" ] || die "bootstrap is still $boot"
	[ "$(host_phase "${newboot#h}")" = ready ] || die "the new bootstrap $newboot is not the ready server:$(phases $others)"
	for waiter in $others; do [ "h$waiter" = "$newboot" ] || break; done
	[ ! -e "$(host_root "$waiter")/var/lib/rancher/rke2/sim/state.json" ] || die "h$waiter started RKE2 while in standby"
	log "ok: the bootstrap moved from $boot to $newboot; h$waiter waits in standby: $(status_json "$waiter" | jq -r .node.standby)"
	host_boot "$n"
	wait_ready 240 1 2 3
	check_one_cluster "1 2 3" ""
	[ "$(sim_state "$n" | jq -r .mode)" = join ] || die "old bootstrap $boot did not join (mode $(sim_state "$n" | jq -r .mode))"
}
