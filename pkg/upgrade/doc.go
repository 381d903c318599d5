// Package upgrade is the rolling RKE2 upgrade's pure core: the plan the
// raft leader follows (Decide), the committed record of a roll (Progress
// and its transitions, Apply), the steps a host runs (Steps), the status
// model (Report) and the metrics (NewMetrics). It does no I/O, reads no
// clock and calls no raft, gossip or RKE2: the node is the shell that
// gathers the inputs, commits the commands and runs the steps.
//
// # The rules
//
// A roll starts when every server's configuration wants the same version
// (rke2-version, or rke2-channel resolved to a version by the host) and
// some host runs an older one. Servers first, one at a time: a server
// begins only when no other server is upgrading, every server is a healthy
// voter with its supervisor answering, quorum is not at risk and no server
// is joining; the leader itself goes last. Then agents, in batches of
// upgrade-agents-max-unavailable (a count or a percentage of the agents,
// at least 1), agents not Ready counting against the batch; no agent
// begins before every server runs the target. A host whose step fails,
// or that is not healthy at the target within Input.HostTimeout of its
// begin, is committed failed: no host begins until `upgrade resume`,
// which clears the failures so the failed host is retried. `upgrade
// pause` stops new begins; hosts upgrading finish.
//
// Refused, with nothing touched and the reason in status: a downgrade (a
// host wanting older than it runs), a skipped minor (1.35 → 1.37), an
// agent that would run newer than the oldest server. A roll does not
// start while quorum is at risk or a server joins. Servers wanting
// different versions is not refused but waited on: config management
// pushes hosts in any order, and the roll starts once they agree. When
// every server's configuration moves on to another version mid-roll, a new
// roll supersedes the old one once no host is in flight; a roll no host's
// configuration wants any more is over.
//
// plan_test.go model-checks these over random schedules, then settles
// each schedule (no more faults, every host wanting one version) and
// checks that the roll brings every host to it; it shows the mutants it
// catches.
//
// # The protocol
//
//	command         sent by   committed when (evidence)
//	upgrade-start   leader    every server wants T; some host runs < T; nothing refused;
//	                          quorum not at risk; no server joining; not paused; no host in flight
//	upgrade-drain   leader    agents, with Input.DrainAgents: as upgrade-begin; the agent is
//	                          draining (in flight, not begun) while the leader drains its Node
//	upgrade-begin   leader    servers: the rules above, and no join slot held (the FSM checks it);
//	                          agents: every server runs T, the batch has room; a draining
//	                          agent: the leader's drain for its Since succeeded
//	upgrade-done    leader    the host gossips running T, healthy, and Finished = the begin's Since
//	                          (a host not begun that already runs T and is healthy: no steps);
//	                          a drained agent: once the leader's uncordon succeeded
//	upgrade-failed  leader    the host gossips Failed for this begin (FailedBegin = its Since),
//	                          or HostTimeout passed since its begin, or the leader's drain or
//	                          uncordon of it failed
//	upgrade-release leader    a draining agent gone from gossip, or whose configuration no longer
//	                          wants T: once the leader's drain ended and its uncordon succeeded;
//	                          it leaves the roll (and begins again in its turn if it needs to)
//	upgrade-pause   operator  always (through the leader)
//	upgrade-resume  operator  always; clears failures: a failed agent the leader drained (or
//	                          began to) is draining again, the others are retried from the start
//
// The leader's own work, drains and uncordons of agents (an agent holds
// no admin kubeconfig), is not in the log: Decide lists it as Plan.Jobs
// and reads how each ended from Input.Drains and Input.Uncordons, keyed by
// the begin it ran for. A new leader runs them again.
//
// Progress.Apply enforces what holds whatever the leader saw: at most one
// server upgrading, no begin while paused or stopped by a failure, no
// start while a host is in flight (draining or upgrading) or failed; a
// draining agent still begins while paused (it is in flight).
// The cluster FSM (pkg/election, upgrade.go) adds: a server begins only
// while the join slot is free, and no slot is granted while a server
// upgrades: a join and a server's upgrade are one permission.
//
// # How the node executes it (pkg/node, upgrade*.go)
//
// Gossip (servers in their signed claim, agents in their metadata):
// every host advertises Wanted (rke2-version; without one, the version it
// runs: a channel decides the first install only and is never rolled), Running (the
// version of the binary the RKE2 service was last started from: the node
// records installer.RKE2Version when it starts or adopts the service, and
// not after an install, whose binary runs only after the restart), Healthy (servers: the
// etcd member is a voter, not a learner, and GET https://127.0.0.1:9345/cacerts
// answers with the cluster's CA, and its claim's etcd view says a healthy
// voter; agents: the service active, gossiped as phase ready) and, after a
// failed step, Failed = StepFailed(step, err) with FailedBegin = the
// Since of the begin it ran under; after its last step, Finished = that
// Since.
//
// The leader, on every step of its loop after the cluster's own duties
// (election's decide), builds an Input: Hosts from the gossip view of
// servers and agents of this cluster (alive or suspect; a dead host is
// absent and a dead server makes QuorumAtRisk), Progress from the FSM,
// Leader its own name, QuorumAtRisk when healthy voters - 1 < n/2 + 1,
// ServerJoining when the join slot is held or an etcd learner exists,
// MaxUnavailable from config.UpgradeBudget(), Now from its clock,
// HostTimeout (30 minutes is the suggested value). It calls Decide,
// commits plan.Command (if any) with election.UpgradeCommand through raft
// Apply, waits for it, and decides again. It publishes Report(in, plan)
// as status.Upgrade and calls Metrics.Update(in, plan). Upgrade commands
// are issued only once every voter runs a build that knows them (an older
// build refuses an unknown operation).
//
// A host runs its steps when its committed HostProgress is upgrading
// (servers read the FSM; agents learn it from the servers' status, where
// Report lists it), once per begin (keyed by Since), in the order of
// Steps(role, config.UpgradeDrain), each under a deadline:
//
//   - etcd-snapshot (servers): run `rke2 etcd-snapshot save --name
//     SnapshotName(target)` with the config's data-dir (it needs the local
//     server running, 9345), 10 minutes;
//   - install: installer.Install with Method from install-method,
//     Version = the target, Role = the host's role (INSTALL_RKE2_TYPE),
//     Running = false (Running adopts and never reinstalls), the rest as
//     at first install. Then installer.RKE2Version must print the target:
//     in airgap mode the script ignores INSTALL_RKE2_VERSION and installs
//     whatever artifact-path holds, so a mismatch fails the step naming
//     both versions. install-method none installs nothing: the step passes
//     only if config management already put the target on disk;
//   - drain (upgrade-drain, servers): cordon the Node and evict its pods
//     through the Kubernetes API with the admin kubeconfig, honouring
//     PodDisruptionBudgets, 10 minutes; DaemonSet pods and static pods
//     stay. An agent has no such step: the leader drains it before its
//     begin and uncordons it after (JobDrain, JobUncordon);
//   - restart: ServiceManager.Stop then Start of rke2-server or
//     rke2-agent; Start does not block (a server sends READY=1 only once
//     its apiserver is ready), so the state is watched;
//   - wait-healthy: until the host's own Healthy (above) holds at the
//     target, within HostTimeout; it then sets Finished and the leader
//     commits upgrade-done;
//   - uncordon (upgrade-drain, servers).
//
// Any step's error is gossiped as Failed and the host stops: it never
// retries on its own (a retry is the operator's `upgrade resume`).
//
// pkg/election hooks (for the integrator): codec.go gains the Command
// fields Target and Role, a dispatch at the top of validate to
// validateUpgrade and a refusal of target/role on other operations, and
// State.validate a line for Upgrade; fsm.go gains State.Upgrade, its
// clone, a dispatch at the top of apply to applyUpgrade and, in opGrant, a
// refusal while a server upgrades. Everything else is in upgrade.go.
package upgrade
