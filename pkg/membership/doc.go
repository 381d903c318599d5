// Package membership decides the servers' etcd membership over a cluster's
// whole life: who joins and who waits in standby so that the voting set
// only settles at an odd count, when a dead server is removed and whether
// an operator's removal keeps quorum, what a reinstalled or removed host
// may do, and how close the cluster is to losing quorum.
//
// It is pure: no I/O, no clock (now is passed in), no goroutines. The raft
// leader calls Step from its own pure step (election's decide) with the
// replicated Cluster, the gossip view and the time; the shell carries out
// the Decision. model_test.go model-checks Step against a true world.
//
// # Rules
//
//   - Admission (Admit): with n voters (the join slot's holder counted) and
//     c waiting servers, the lowest names are admitted up to the largest odd
//     count at most min(n+c, max-servers), never below n. A healthy member
//     is never removed to make the count odd.
//   - Removal (CheckRemoval): with V voters, A answering, and V', A' after
//     the removal: A ≥ V/2+1 (the removal must commit in etcd) and
//     A' ≥ V'/2+1 (etcd's strict reconfiguration check: the started voters
//     that remain must be a quorum of the voters that remain). A learner
//     counts in neither. etcd itself applies the second check again when
//     RKE2's controller removes the member, so a decision taken on a view a
//     moment old is refused by etcd rather than applied.
//   - One change at a time: while a removal is committed or executing, no
//     other removal and no slot grant is decided; while the slot is held,
//     no removal is committed. Cluster.Apply refuses a second active
//     removal, so two leaders' decisions cannot make two either.
//   - Dead servers: a voter dead in gossip (dead, left or absent) whose etcd
//     does not answer, continuously for server-removal-timeout as this
//     leader saw it (Book; a new leader counts afresh), is removed if
//     CheckRemoval allows it. The time counts from the first suspicion
//     (memberlist's own suspicion takes seconds before it declares a member
//     dead); a suspect that answers again starts afresh, and a suspect is
//     never removed while it is only suspected. 0 disables it.
//   - Operators: `rke2-hanode remove NODE` sets Server.Remove on the server
//     it ran on; the leader commits it at once or refuses it with the
//     numbers (Decision.Refused, by the requesting server).
//   - Reinstalled host (ReinstallAllowed): same name, new host ID, no
//     datastore, Clear set: its old member is removed like any other
//     (quorum-checked), only when the old member's etcd does not answer.
//   - Removed host: a name in Cluster.Removed that advertises a datastore is
//     told to run `rke2-hanode rejoin --wipe` and is never admitted; after
//     the wipe it is an ordinary candidate, and joining clears the record.
//   - Quorum (Assess): margin = healthy voters − quorum; at risk when
//     margin ≤ 0; the survivor with the newest data is the reporting voter
//     with the highest revision, equal revisions by lowest name. Recovery is
//     never automatic.
//
// # Removal states
//
// requested (a server asked: nothing replicated) → committed (the leader
// checked quorum and committed it, naming itself the executor) → executing
// (the executor reports that it started) → done (the executor saw the Node
// gone and the member out of etcd's list) or failed (the executor reported
// an error, or ExecuteTimeout passed). The executor is the leader that
// committed it: it is the one writer already, and the Kubernetes deletion is
// idempotent (a Node not found counts as done), so a second executor after
// a leader change is harmless; the first one's removal fails by timeout and
// a later step requests it again.
//
// # What the node must call (design note for the phase machine)
//
// The wiring is the node's; nothing here needs pkg/node:
//
//  1. Standby. A server that wants the slot and is not granted it asks
//     Admit (through election's status: the same inputs every server reads
//     from its FSM) and shows phase `standby` with Waiting.Reason, RKE2
//     installed and not started. It leaves standby when granted the slot.
//  2. Gossip. Every server advertises, through election's Publisher, its
//     host ID (a random value made once in data-dir, mode 0600), whether it
//     has an RKE2 datastore (<rke2-data-dir>/server/db exists), its EtcdView
//     (pkg/etcdview: etcd's /health, status and member list on RKE2's
//     loopback HTTP client URL: member, revision, healthy; node/etcdview.go
//     reads it and assesses quorum with Assess), an operator's remove
//     request, a reinstall's clear
//     request, and, as executor, its Progress.
//  3. Executing a removal. The executor (Removal.Executor == itself) reports
//     Progress{executing}, then with pkg/kubeapi (the admin kubeconfig
//     <rke2-config-dir>/rke2.yaml): DeleteNode(name) — RKE2's finalizer holds
//     the Node until its etcd controller removed the member; it polls GetNode
//     until not found and the member list (its local etcd) lacks the name,
//     with a deadline below ExecuteTimeout, then DeleteNodePassword(name)
//     (normally gone with the Node; not found is done), then reports
//     Progress{done}, or Progress{failed, reason}. Backoff between polls.
//  4. The leader shell. On Advance to done it removes the raft voter
//     (RemoveServer) after the FSM entry committed; on Grant it issues
//     election's grant as today.
//  5. Removed host. A host whose name is in the FSM's removed list, with a
//     datastore, stops in a permanent `failed` saying to run
//     `rke2-hanode rejoin --wipe` (daemon stopped), which stops RKE2, moves
//     <rke2-data-dir>/server/db and the raft store aside (never deletes them)
//     and resets the progress file: started again, the daemon asks
//     clear-member and joins in its turn.
//  6. `rke2-hanode remove NODE`: the CLI calls the local daemon's admin
//     socket (pkg/adminsock), which checks with CheckRemoval on its own
//     view, relays a request in its signed claim and waits, with a
//     deadline, for the outcome the leader commits in the FSM by request ID
//     (election's requests.go: accepted with the removal committed, or
//     refused with the Verdict's words and numbers).
//  7. Status and metrics: Assess's numbers (etcd voters, healthy, quorum
//     margin, rke2_hanode_quorum_at_risk), the removal in flight and the
//     standby servers.
package membership
