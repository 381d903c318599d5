# scenario vip-held-by-stopped-server: with kube-vip outliving its server
# (RKE2SIM_KUBEVIP_OUTLIVES=1, as kube-vip's container outlives
# `systemctl stop rke2-server`), the VIP holder's rke2-server is stopped:
# the VIP stays on that host and nothing answers on 9345. After the grace
# period (2 × kube-vip-lease-duration, 30 s) the holder's daemon runs
# rke2-killall.sh, and the VIP moves to another server: log, metric and
# status say so. Starting rke2-server again brings the host back to ready.
vip_released_here() {
	status_json "$1" | jq -e '.cluster.vip_released.reason | test("rke2-server has been down")' >/dev/null
}

# The holders read whole first: under pipefail `vip_holder | grep -q`
# fails when grep stops early and a later holder's line meets a closed pipe.
vip_not_on() {
	local h
	h=$(vip_holder)
	! grep -qx "$1" <<<"$h"
}
vip_moved_single() { vip_single && vip_moved_from "$1"; }

scenario_vip_held_by_stopped_server() {
	bed_up 3
	local n
	for n in 1 2 3; do
		host_provision "$n" server &
	done
	wait_jobs
	for n in 1 2 3; do sim_env "$n" rke2-server RKE2SIM_KUBEVIP_OUTLIVES=1; done
	for n in 1 2 3; do host_start "$n"; done
	wait_ready 240 1 2 3
	check_one_cluster "1 2 3" ""
	local holder t0 other
	holder=$(vip_holder)
	case $holder in 1 | 2 | 3) ;; *) die "VIP holder is '$holder', want one server" ;; esac
	other=$((holder % 3 + 1))
	log "stopping rke2-server on the VIP holder h$holder (its kube-vip stays)"
	# The grace counts from the moment the unit stops being active, which
	# is when the stop begins (deactivating), so t0 is taken before it: a
	# stop that takes seconds on a busy machine must not eat into it.
	t0=$(date +%s)
	hx "$holder" systemctl stop rke2-server.service
	# Right after the stop the VIP is still on h$holder and silent.
	[ "$(vip_holder)" = "$holder" ] || die "the VIP left h$holder before the watchdog acted (holder: $(vip_holder))"
	vip_pong "$other" && die "the VIP still answers /ping right after rke2-server stopped on h$holder: is kube-vip outliving it?"
	# On a real interface another server claims the VIP too once it has not
	# answered /ping for a lease (rke2sim's kube-vip on ARP, as a second
	# leader would): for a while both carry it and their ARP announcements
	# compete. Only the watchdog's rke2-killall.sh takes it off h$holder.
	wait_until 150 "VIP gone from h$holder" vip_not_on "$holder"
	local took=$(($(date +%s) - t0))
	[ "$took" -ge 30 ] || die "the VIP left h$holder after ${took}s, before the 30 s grace"
	wait_until 60 "VIP on one other server" vip_moved_single "$holder"
	wait_until 60 "VIP answers /ping from h$other after the move" vip_pong "$other"
	wait_until 30 "h$holder's status shows the release" vip_released_here "$holder"
	grep -qx 'rke2_hanode_vip_released_total 1' <<<"$(hx "$holder" curl -s "http://$(host_ip "$holder"):9349/metrics")" ||
		die "h$holder: rke2_hanode_vip_released_total is not 1"
	journal_has "$holder" rke2-hanode.service "VIP watchdog: releasing the VIP with rke2-killall.sh" ||
		die "h$holder: its journal does not say it released the VIP"
	for n in 1 2 3; do
		[ "$n" = "$holder" ] && continue
		grep -qx 'rke2_hanode_vip_released_total 0' <<<"$(hx "$n" curl -s "http://$(host_ip "$n"):9349/metrics")" ||
			die "h$n released the VIP though its rke2-server runs"
	done
	log "ok: h$holder released the VIP ${took}s after its rke2-server stopped; now on $(vip_holder | sed "s/^/h/" | tr "\n" " ")"
	hx "$holder" systemctl start --no-block rke2-server.service
	wait_ready 240 1 2 3
	# A neighbour whose ARP cache still names the old holder's MAC (its
	# outliving kube-vip announced the VIP until rke2-killall.sh stopped it)
	# reaches the VIP once the new holder's next gratuitous ARP arrives
	# (kube-vip repeats it every 3 s).
	wait_until 30 "the VIP answers from every host" vip_pong_all 1 2 3
	check_one_cluster "1 2 3" ""
}

vip_pong_all() {
	local n
	for n in "$@"; do vip_pong "$n" || return 1; done
}
