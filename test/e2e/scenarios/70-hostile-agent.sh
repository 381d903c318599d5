# scenario hostile-agent: servers set agent-token; an agent host holds only
# the agent token and joins RKE2 as `node` with it. From that host a hostile
# program (test/e2e/hostile) builds the raft CA the way a server does, from
# everything the agent token gives it, and dials every server's raft port:
# each TLS handshake must be refused (the raft CA derives from the server
# token only), each server must log the refusal, and the cluster must stay
# healthy. A control run of the same program on a server, with the server
# token, must be accepted, so a refusal is the token's doing, not the
# program's.
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
}

# raft_refusal_logged N IP: host N's daemon logged a refused raft connection from IP.
raft_refusal_logged() {
	hx "$1" journalctl -u rke2-hanode.service --no-pager -o cat |
		grep 'raft: refused an inbound connection' | grep 'TLS handshake failed' | grep -qF "$2"
}
