// Package node is the per-host phase machine (DESIGN.md §5): it walks one
// host from preflight to ready with gossip, election, the installer and the
// VIP prober, persists what only this host can know, and reports the host's
// and the cluster's progress to status, metrics and systemd.
//
// It owns the orchestration and nothing else: how to gossip, agree, install
// or probe lives in the packages it drives. It never starts RKE2 without
// `server:` unless raft committed this host as the bootstrap node, and it
// never stops RKE2 when the daemon stops (under systemd, RKE2 outlives it).
//
// The role paths (server.go: runServer, runBootstrap, runJoiner; agent.go:
// runAgent) are explicit sequences of steps over the small interfaces of
// deps.go, each step retried in the phase the host is in (retry.go). What a
// restarted host redoes is decided by a pure function of its progress
// file, its disk and raft (resume.go: planResume). Readiness is the one
// request node makes of the leader (ready.go: reportReady): the leader
// commits cluster ready, or a join, on that evidence, and election
// advertises it; node writes only its phase and timeline to gossip (and an
// agent, which runs no election, its own readiness, for status only).
//
// Files: node.go (the Node, its parts and Run), deps.go (what node needs of
// gossip, election, the prober, the service and the installer), server.go
// and agent.go (the role paths), resume.go (the resume plan and adoption),
// ready.go (ready, its report and the watch after it), install.go (the
// installer and RKE2's config), retry.go and errors.go (retries, deadlines,
// permanent and hinted errors), vipwait.go (waiting for the VIP),
// watch.go (the cluster view kept fresh), status.go and advertised.go
// (/status), tracker.go (the phase and its reports), progress.go (progress.json),
// coordinator.go and adapters.go (election over gossip), etcdview.go (the
// local etcd's view read every few seconds while RKE2 runs, its carriage to
// the other servers, the quorum assessment for status, metrics and the
// leader's removal judgement), hostaddr.go, tlsdial.go, kubevip.go,
// servicemanager.go; the rolling RKE2 upgrade:
// upgrade.go (the steps a begun host runs, resumed from progress.json),
// upgrade_ops.go (the steps on this host), upgrade_node.go (the facts in
// gossip, the leader's duty, status and metrics), upgrade_agent.go (an
// agent's begin, from a server's /status); day 2: coldstart.go (a server
// restarting RKE2 on its own datastore, as after a power cut of every
// host), voters.go (the raft voters servers publish, and the check that a
// returning server is still counted), vipwatchdog.go (rke2-killall.sh when
// a stopped rke2-server's kube-vip keeps the VIP), recover.go (the offline
// quorum-loss recovery behind `rke2-hanode recover`).
//
// The VIP watchdog is the one place node acts on RKE2 beyond starting it:
// it runs rke2-killall.sh, and only while rke2-server is already down.
package node
