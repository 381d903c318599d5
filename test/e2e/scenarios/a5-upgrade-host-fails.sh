# scenario upgrade-host-fails: one server's artifacts of the target fail
# their checksum: its install step fails, the roll stops there (the agent
# never begins) and status names the host and the install script's words.
scenario_upgrade_host_fails() {
	bed_up 4
	upgrade_cluster "1 2 3" "4"
	local to=$E2E_UPGRADE_TO n
	upgrade_stage 2 "$to"
	printf '%064d  rke2.linux-amd64.tar.gz\n' 0 >"$(host_root 2)$E2E_ART_DIR-$to/sha256sum-amd64.txt"
	upgrade_reconfigure "$to" 1 2 3 4
	wait_until 900 "the roll failed" upgrade_is 1 '.phase == "failed"' || die "upgrade: $(status_json 1 | jq -c .upgrade)"
	local u
	u=$(status_json 1 | jq -c .upgrade)
	log "failed: $(jq -r .blocked <<<"$u")"
	jq -r .blocked <<<"$u" | grep -Eq "server h2 failed: install: .*got [0-9a-f]{64}; fix it and run \`rke2-hanode upgrade resume\`" ||
		die "blocked does not name h2, the install step and the script's words: $(jq -r .blocked <<<"$u")"
	journal_has 2 rke2-hanode.service "download sha256 does not match" || die "h2's log lacks the install script's words"
	# The roll stays stopped.
	sleep 10
	u=$(status_json 1 | jq -c .upgrade)
	jq -e --arg from "$E2E_UPGRADE_FROM" '.phase == "failed" and
		([.hosts[] | select(.name == "h2" and .state == "failed" and .running == $from)] | length) == 1 and
		([.hosts[] | select(.role == "agent" and (.state != "" or .running != $from))] | length) == 0' <<<"$u" >/dev/null ||
		die "after the failure: $u"
	[ "$(sim_state 4 | jq -r .version)" = "$E2E_UPGRADE_FROM" ] || die "h4 (agent) was upgraded after a server failed"
	log "ok: the roll stopped at h2"
}
