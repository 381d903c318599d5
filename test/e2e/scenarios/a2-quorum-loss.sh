# scenario quorum-loss: three servers; the two that joined are powered off
# for good. The survivor's status says etcd's quorum is lost and names it
# the newest survivor; the operator stops its daemon and runs
# `rke2-hanode recover --from <survivor> --confirm` there (RKE2's
# cluster-reset, raft recovered to it alone), starts the daemon again, and
# two fresh servers join: etcd ends with three voters, one cluster-reset
# recorded, still one cluster-init.
quorum_lost_names() {
	local st
	st=$(status_json "$1")
	jq -e --arg n "h$1" '.cluster.etcd | .majority_gone and (.newest_survivor.name | startswith($n))' <<<"$st" >/dev/null &&
		hx "$1" rke2-hanode status 2>/dev/null | grep -q "etcd quorum is lost.*the newest survivor is h$1.*recover --from h$1 --confirm"
}

scenario_quorum_loss() {
	bed_up 5
	local n s=""
	for n in 1 2 3 4 5; do host_provision "$n" server & done
	wait_jobs
	for n in 1 2 3; do host_start "$n"; done
	wait_ready 240 1 2 3
	check_one_cluster "1 2 3" ""
	local dead=""
	for n in 1 2 3; do
		if [ "$(sim_state "$n" | jq -r .mode)" = cluster-init ]; then s=$n; else dead="$dead $n"; fi
	done
	[ -n "$s" ] || die "no server ran cluster-init"
	log "powering off$dead for good; h$s survives"
	for n in $dead; do host_crash "$n" & done
	wait_jobs
	wait_until 180 "h$s's status says quorum is lost and names h$s the survivor" quorum_lost_names "$s" ||
		die "h$s: etcd status $(status_json "$s" | jq -c .cluster.etcd)"
	local out
	out=$(hx "$s" rke2-hanode recover --from "h$s" --confirm 2>&1) && die "recover ran while the daemon runs: $out"
	grep -q "stop it first" <<<"$out" || die "recover with the daemon running did not say to stop it: $out"
	hx "$s" systemctl stop rke2-hanode.service
	out=$(hx "$s" timeout 300 rke2-hanode recover --from "h$s" --confirm 2>&1) || die "recover failed: $out"
	grep -q "raft recovered: h$s is the only voter" <<<"$out" || die "recover did not say raft was recovered: $out"
	log "recover on h$s: $(tr '\n' ' ' <<<"$out")"
	host_start "$s"
	wait_ready 240 "$s"
	for n in 4 5; do host_start "$n"; done
	wait_ready 300 "$s" 4 5
	wait_voters 120 "$(for n in "$s" 4 5; do echo "h$n"; done | sort | tr '\n' ' ' | sed 's/ $//')" "$s" 4 5
	[ "$(sim_state "$s" | jq '.resets | length')" = 1 ] || die "h$s: cluster-resets recorded: $(sim_state "$s" | jq -c .resets)"
	for n in 4 5; do [ "$(sim_state "$n" | jq -r .mode)" = join ] || die "h$n: mode $(sim_state "$n" | jq -r .mode), want join"; done
	check_one_cluster "$s 4 5" ""
	check_joins_serialized 4 5
	log "ok: recovered on h$s, h4 and h5 joined; one cluster-reset"
}
