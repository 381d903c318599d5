# scenario hostile-agent: servers set agent-token; an agent host holds only
# the agent token and joins RKE2 as `node` with it. From that host a hostile
# program (test/e2e/hostile) builds the raft CA the way a server does, from
# everything the agent token gives it, and dials every server's raft port:
# each TLS handshake must be refused (the raft CA derives from the server
# token only), each server must log the refusal, and the cluster must stay
# healthy. A control run of the same program on a server, with the server
# token, must be accepted, so a refusal is the token's doing, not the
# program's.
#
# Then the gossip-claim attack from the same host (hostile -gossip): it
# joins gossip with the agent token as "intruder", announcing role server,
# a raft address and advertise address on h2's, want-join-slot, ready,
# cluster ready and a CA of its own, its claim signed with the only key the
# agent token gives. Every host must count the refused claim, list the
# intruder as an unverified agent, never give it the join slot, and the
# cluster must stay one.
scenario_hostile_agent() {
	bed_up 4
	local n s out
	for n in 1 2 3; do host_provision "$n" server & done
	host_provision 4 agent &
	wait_jobs
	for n in 1 2 3 4; do host_start "$n"; done
	wait_ready 240 1 2 3 4
	check_one_cluster "1 2 3" "4"

	# The agent host holds the agent token and nothing of the server token,
	# and RKE2 on it joins as node with the agent token (RKE2's node password
	# is the servers' agent-token), its CA pinned.
	grep -qxF "$E2E_AGENT_TOKEN" "$(host_root 4)/etc/rke2-hanode/token" || die "h4's token file is not the agent token"
	! grep -rqF "$E2E_TOKEN" "$(host_dir 4)/upper" || die "the server token is on the agent host h4: $(grep -rlF "$E2E_TOKEN" "$(host_dir 4)/upper")"
	grep -qxE "token: \"?K10[0-9a-f]{64}::node:${E2E_AGENT_TOKEN//./\\.}\"?" "$(host_root 4)/etc/rancher/rke2/config.yaml" ||
		die "h4's RKE2 config does not join as node with the agent token: $(grep -c '^token:' "$(host_root 4)/etc/rancher/rke2/config.yaml") token lines"
	log "ok: h4 holds only the agent token and joined RKE2 as K10<CA hash>::node:<agent token>"

	cp "$E2E_HOSTILE" "$(host_root 4)/root/hostile"
	cp "$E2E_HOSTILE" "$(host_root 1)/root/hostile"
	# The control: a server's own token is accepted by another server.
	out=$(hx 1 /root/hostile -addr "$(host_ip 2):9348" -token-file /etc/rke2-hanode/token -id h1 -want accept) ||
		die "control: h1 with the server token was not accepted by h2's raft port: $out"
	log "ok: control: the server token's raft CA is accepted ($(tr '\n' ';' <<<"$out"))"
	for s in 1 2 3; do
		out=$(hx 4 /root/hostile -addr "$(host_ip "$s"):9348" -token-file /etc/rke2-hanode/token -id "h$s") ||
			die "h4 with the agent token got through to h$s's raft port (or reached nothing): $out"
		log "ok: h$s refused every raft handshake from h4: $(tr '\n' ';' <<<"$out")"
	done
	for s in 1 2 3; do
		wait_until 30 "h$s logged the refused raft handshake from h4" raft_refusal_logged "$s" "$(host_ip 4)"
	done
	# Still one healthy cluster, with the same raft leader seen everywhere.
	sleep 3
	check_one_cluster "1 2 3" "4"
	local leaders=""
	for n in 1 2 3; do leaders="$leaders$(status_json "$n" | jq -r '.cluster.raft.leader // empty')"$'\n'; done
	[ "$(grep -c . <<<"$leaders")" -eq 3 ] && [ "$(sort -u <<<"$leaders" | grep -c .)" -eq 1 ] ||
		die "servers do not agree on one raft leader: $(tr '\n' ' ' <<<"$leaders")"
	log "ok: the cluster stayed healthy (raft leader $(head -1 <<<"$leaders"))"

	local fake_ca
	fake_ca=$(printf 'e%.0s' $(seq 64))
	hx 4 /root/hostile -gossip -token-file /etc/rke2-hanode/token -name intruder -bind "$(host_ip 4)" -port 9447 \
		-spoof "$(host_ip 2)" -join "$(host_ip 1):9347,$(host_ip 2):9347,$(host_ip 3):9347" -ca "$fake_ca" -for 120s >"$(host_dir 4)/hostile-gossip.log" 2>&1 &
	local attacker=$!
	for n in 1 2 3 4; do
		wait_until 90 "h$n lists the intruder as an unverified agent" intruder_unverified "$n"
		wait_until 90 "h$n counted the intruder's claim as signed with the wrong key" claim_refused_counted "$n"
	done
	for n in 1 2 3; do
		[ "$(status_json "$n" | jq -r '.cluster.join_slot // ""')" != intruder ] || die "h$n shows the join slot held by the intruder"
		[ "$(status_json "$n" | jq -r '.cluster.bootstrap_node // ""')" != intruder ] || die "h$n shows the intruder as the bootstrap node"
		[ "$(status_json "$n" | jq -r '.cluster.ca_hash // ""')" != "$fake_ca" ] || die "h$n shows the intruder's CA"
	done
	hx 1 rke2-hanode status | grep -q 'intruder !' || die "h1's status table does not mark the intruder"
	check_one_cluster "1 2 3" "4"
	wait "$attacker" || die "the hostile gossip member failed: $(cat "$(host_dir 4)/hostile-gossip.log")"
	log "ok: the intruder with the agent token stayed an unverified agent everywhere"
}

# intruder_unverified N: host N's status lists "intruder" as an agent whose
# server claim is not verified.
intruder_unverified() {
	status_json "$1" | jq -e '.members[] | select(.name == "intruder") |
		.role == "agent" and .claim_verified == false and .unverified_server == true' >/dev/null
}

# claim_refused_counted N: host N's metrics count a claim signed with a key
# other than the server token's.
claim_refused_counted() {
	hx "$1" curl -sf --max-time 10 "http://$(host_ip "$1"):9349/metrics" |
		grep -qE '^rke2_hanode_gossip_claims_rejected_total\{reason="wrong_key"\} [1-9]'
}

# raft_refusal_logged N IP: host N's daemon logged a refused raft connection from IP.
raft_refusal_logged() {
	hx "$1" journalctl -u rke2-hanode.service --no-pager -o cat |
		grep 'raft: refused an inbound connection' | grep 'TLS handshake failed' | grep -qF "$2"
}
