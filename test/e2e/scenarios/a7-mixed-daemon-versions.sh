# scenario mixed-daemon-versions: rke2-hanode's own upgrade, host by host
# in no particular order. Five hosts run the previous release's package
# (E2E_PREVIOUS_DEB: the commit test/loopback/testdata/previous-release
# names) and form one cluster; the bed's two tokens mean a cluster forms
# with one build (docs/operations.md). Then this tree's package is
# installed over the previous one with dpkg -i (its postinst restarts the
# daemon; RKE2 keeps running) on h2 and h4: the cluster, half one build and
# half the other, stays whole, every host seeing all five members. Then on
# h1, h5 and h3. Each host comes back ready at the new version while every
# other host stays ready, its RKE2 unit not restarted; at the end the same
# cluster: one cluster-init, one CA, the same etcd voters, no rejection,
# every daemon at the new version.

# daemon_version N: the version host N's daemon reports (rke2_hanode_info).
daemon_version() {
	hx "$1" curl -sf --max-time 5 "http://$(host_ip "$1"):9349/metrics" 2>/dev/null |
		sed -n 's/^rke2_hanode_info{.*version="\([^"]*\)".*/\1/p'
}
daemon_version_is() { [ "$(daemon_version "$1")" = "$2" ]; }

# members_alive N COUNT: host N's status lists COUNT members alive.
members_alive() {
	[ "$(status_json "$1" | jq '[.members[] | select(.state == "alive")] | length')" = "$2" ]
}

scenario_mixed_daemon_versions() {
	[ -f "${E2E_PREVIOUS_DEB:-}" ] ||
		die "no previous release's package in E2E_PREVIOUS_DEB (make e2e builds dist/previous with test/e2e/build-previous.sh)"
	bed_up 5
	local n new old voters ca pkg
	for n in 1 2 3; do E2E_DEB=$E2E_PREVIOUS_DEB host_provision "$n" server & done
	for n in 4 5; do E2E_DEB=$E2E_PREVIOUS_DEB host_provision "$n" agent & done
	wait_jobs
	old=$(hx 1 rke2-hanode version | awk '{print $2}')
	pkg=$(dpkg-deb -f "$E2E_DEB" Version)
	for n in 1 2 3 4 5; do host_start "$n"; done
	wait_ready 300 1 2 3 4 5
	check_one_cluster "1 2 3" "4 5"
	wait_voters 60 "h1 h2 h3" 1 2 3
	for n in 1 2 3 4 5; do daemon_version_is "$n" "$old" || die "h$n runs $(daemon_version "$n"), want $old"; done
	voters=$(etcd_voters 1)
	ca=$(sim_state 1 | jq -r .ca_hash)
	log "one cluster of the previous release $old; this tree's package is $pkg"

	upgrade_daemon 2
	upgrade_daemon 4
	new=$(daemon_version 2)
	[ -n "$new" ] && [ "$new" != "$old" ] || die "h2 runs '$new' after the upgrade, the previous release is $old"
	for n in 1 3 5; do daemon_version_is "$n" "$old" || die "h$n runs $(daemon_version "$n"), want $old still"; done
	for n in 1 2 3 4 5; do
		wait_until 60 "h$n sees 5 alive members, daemons of $old and $new" members_alive "$n" 5
	done
	check_one_cluster "1 2 3" "4 5"
	upgrade_daemon 1
	upgrade_daemon 5
	upgrade_daemon 3

	wait_ready 120 1 2 3 4 5
	check_one_cluster "1 2 3" "4 5"
	for n in 1 2 3; do
		[ "$(etcd_voters "$n")" = "$voters" ] || die "h$n: etcd voters '$(etcd_voters "$n")', want the same '$voters'"
	done
	for n in 1 2 3 4 5; do
		[ "$(sim_state "$n" | jq -r .ca_hash)" = "$ca" ] || die "h$n: the CA changed"
		daemon_version_is "$n" "$new" || die "h$n runs $(daemon_version "$n"), want $new"
		wait_until 60 "h$n sees 5 alive members" members_alive "$n" 5
	done
}

# upgrade_daemon N: this tree's package installed over the previous one on
# host N with dpkg -i, as an operator or config management does: its daemon
# comes back ready at another version while every other host stays ready,
# and its RKE2 unit is not restarted.
upgrade_daemon() {
	local n=$1 m rke2=rke2-server.service before started
	[ "$n" -le 3 ] || rke2=rke2-agent.service
	before=$(daemon_version "$n")
	started=$(unit_started "$n" "$rke2")
	cp "$E2E_DEB" "$(host_root "$n")/root/rke2-hanode-new.deb"
	hx "$n" env DEBIAN_FRONTEND=noninteractive dpkg -i /root/rke2-hanode-new.deb >"$(host_dir "$n")/upgrade.log" 2>&1 || {
		cat "$(host_dir "$n")/upgrade.log" >&2
		die "h$n: dpkg -i of this tree's package over the previous release's failed"
	}
	wait_until 60 "h$n's daemon runs another version than $before" daemon_version_differs "$n" "$before"
	for m in 1 2 3 4 5; do
		[ "$m" = "$n" ] || phase_is "$m" ready || die "h$m left ready while h$n's daemon was upgraded: $(host_phase "$m")"
	done
	wait_ready 120 "$n"
	# Ready at once (it adopts its running RKE2); its raft catches up
	# with the leader a moment later.
	if [ "$n" -le 3 ]; then
		wait_until 60 "h$n's raft state holds cluster ready again" cluster_ready_seen "$n"
	fi
	[ "$(jq -r .cluster.etcd.majority_gone <<<"$(status_json "$n")")" != true ] ||
		die "h$n says etcd's quorum is lost after its daemon's upgrade: $(status_json "$n" | jq -c .cluster.etcd)"
	[ ! -e "$(host_root "$n")/var/lib/rke2-hanode/quorum-lost.json" ] ||
		die "h$n recorded a quorum-loss assessment after its daemon's upgrade: $(cat "$(host_root "$n")/var/lib/rke2-hanode/quorum-lost.json")"
	! journal_has "$n" rke2-hanode.service "etcd quorum is lost" ||
		die "h$n's daemon said etcd's quorum was lost after its upgrade, the cluster healthy"
	[ "$(unit_started "$n" "$rke2")" = "$started" ] ||
		die "h$n: $rke2 was restarted by the daemon's upgrade (RKE2 keeps running)"
	log "ok: h$n's daemon upgraded in place ($before -> $(daemon_version "$n")), $rke2 untouched"
}
cluster_ready_seen() { [ "$(status_json "$1" | jq -r .cluster.cluster_ready)" = true ]; }
daemon_version_differs() {
	local v
	v=$(daemon_version "$1")
	[ -n "$v" ] && [ "$v" != "$2" ]
}
