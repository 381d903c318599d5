# scenario reinstall: three servers formed; one (not the cluster-init one)
# is powered off, its disk wiped, and it is installed again with the same
# name and address. It asks the leader to clear its old etcd member, then
# joins in its turn: one cluster, etcd lists every name once (no "duplicate
# node name", no refused node password), the three voters everywhere.
# Then the same for the cluster-init host: it joins the cluster the others
# kept, and no host has run cluster-init since.
# The host's own words, from its journal: status shows them only for the
# moment the request takes, and the leader's words for a host with a new
# host ID ("…is a reinstalled host…") show there whatever path it takes.
reinstall_asking() {
	journal_has "$1" rke2-hanode.service "a fresh disk: a reinstall; asking the leader to clear its old member"
}
reinstall_cleared() {
	journal_has "$1" rke2-hanode.service "the raft leader cleared this host's old self"
}

scenario_reinstall() {
	bed_up 3
	local n v=""
	for n in 1 2 3; do host_provision "$n" server & done
	wait_jobs
	for n in 1 2 3; do host_start "$n"; done
	wait_ready 240 1 2 3
	check_one_cluster "1 2 3" ""
	for n in 3 2 1; do
		[ "$(sim_state "$n" | jq -r .mode)" = join ] && { v=$n; break; }
	done
	[ -n "$v" ] || die "no joined server"
	reinstall_host "$v"
	check_one_cluster "1 2 3" ""
	log "ok: h$v reinstalled and rejoined; etcd lists it once"
	# Then the bootstrap node: on its fresh disk it must not run
	# cluster-init again (a second cluster) but join the one the others kept.
	v=""
	for n in 1 2 3; do
		[ "$(sim_state "$n" | jq -r .mode)" = cluster-init ] && v=$n
	done
	[ -n "$v" ] || die "no server ran cluster-init"
	reinstall_host "$v"
	check_one_cluster "1 2 3" "" 0
	log "ok: the bootstrap node h$v reinstalled and joined the cluster the others kept; no second cluster-init"
}

# reinstall_host V: host V powered off, its disk wiped, installed again
# with the same name and address; it asks for its old member to be
# cleared and joins in its turn, with the cluster's CA, etcd listing every
# name once.
reinstall_host() {
	local v=$1 n old_ca
	old_ca=$(sim_state "$v" | jq -r .ca_hash)
	log "reinstalling h$v: powered off, new disk, installed again"
	host_crash "$v"
	host_wipe "$v"
	[ -z "$(sim_state "$v")" ] || die "h$v's wiped disk still has rke2sim's state" || return 1
	host_boot "$v"
	host_provision "$v" server
	host_start "$v"
	wait_until 180 "h$v says it is a reinstalled host asking for its old member to be cleared" reinstall_asking "$v" ||
		die "h$v: $(status_json "$v" | jq -c .node)" || return 1
	wait_until 180 "the leader cleared h$v's old member" reinstall_cleared "$v" ||
		die "h$v: $(status_json "$v" | jq -c .node)" || return 1
	wait_ready 300 1 2 3 || return 1
	[ "$(sim_state "$v" | jq -r .mode)" = join ] || die "h$v: mode $(sim_state "$v" | jq -r .mode), want join" || return 1
	[ "$(sim_state "$v" | jq -r .ca_hash)" = "$old_ca" ] || die "h$v joined with another CA" || return 1
	wait_voters 120 "h1 h2 h3" 1 2 3 || return 1
	for n in 1 2 3; do
		[ "$(sim_state "$n" | jq '.etcd.members | length')" = 3 ] || die "h$n: etcd members $(sim_state "$n" | jq -c .etcd.members)" || return 1
	done
}
