# scenario upgrade-refused: a skipped minor (two ahead) and then a
# downgrade in every server's config: the roll refuses both with nothing
# restarted (rke2-server keeps its process, no snapshot, the version
# unchanged) and status says why.
scenario_upgrade_refused() {
	bed_up 3
	upgrade_cluster "1 2 3" ""
	local n pids
	pids=$(for n in 1 2 3; do hx "$n" systemctl show -P MainPID rke2-server.service; done | tr '\n' ' ')
	upgrade_reconfigure v1.37.0+rke2r1 1 2 3
	wait_until 180 "the skipped minor refused" upgrade_is 1 '.phase == "refused" and (.blocked | contains("2 minor versions ahead: upgrade to v1.36 first"))' ||
		die "upgrade: $(status_json 1 | jq -c .upgrade)"
	log "refused: $(status_json 1 | jq -r .upgrade.blocked)"
	upgrade_reconfigure v1.34.5+rke2r1 1 2 3
	wait_until 180 "the downgrade refused" upgrade_is 1 '.phase == "refused" and (.blocked | contains("is not downgraded in place"))' ||
		die "upgrade: $(status_json 1 | jq -c .upgrade)"
	log "refused: $(status_json 1 | jq -r .upgrade.blocked)"
	hx 1 rke2-hanode status 2>/dev/null | grep -q "is not downgraded in place" || die "h1: rke2-hanode status does not say why"
	local now
	now=$(for n in 1 2 3; do hx "$n" systemctl show -P MainPID rke2-server.service; done | tr '\n' ' ')
	[ "$now" = "$pids" ] || die "rke2-server was restarted: main pids $pids, now $now"
	for n in 1 2 3; do
		[ "$(sim_state "$n" | jq -r .version)" = "$E2E_UPGRADE_FROM" ] || die "h$n runs $(sim_state "$n" | jq -r .version)"
		[ -z "$(find "$(host_root "$n")/var/lib/rancher/rke2/server/db/snapshots" -maxdepth 1 -name 'pre-upgrade-*' 2>/dev/null)" ] ||
			die "h$n took a snapshot for a refused upgrade"
	done
	check_one_cluster "1 2 3" ""
}
