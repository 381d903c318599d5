// Package election forms the servers' raft group and keeps, in its
// replicated state machine, the few facts the cluster must agree on for its
// whole life: which server is the bootstrap node (the one that runs RKE2
// without `server:`), whether it started RKE2, cluster ready {VIP, CA hash},
// the join slot, and the servers that joined.
//
// It owns: the raft instance (raft-boltdb and file snapshots under
// DataDir/raft, 0700), the raft transport (TCP in mutual TLS), formation,
// the FSM, and the leader's duties. Agents never use it.
//
// Its lifecycle: Open checks the config, opens the stores and binds the
// raft transport, returning any error at once; Run runs raft, formation
// and the leader's duties until its context ends; Close releases what Open
// took.
//
// It must never: import gossip or the node phase machine (it reads gossip
// through Membership and writes through Publisher); start or stop RKE2; log
// or expose the token or anything derived from it; remove a raft voter
// except the one whose etcd removal is done (membership duties, below); and,
// above all, let a second node start RKE2 as the bootstrap node.
//
// # Identity
//
// A server's raft ID is its node name. Names must be unique and stable; its
// raft address is what gossip advertises as RaftAddr.
//
// # Transport
//
// Raft speaks TLS 1.3, both sides presenting and verifying certificates. The
// CA key is an ed25519 key whose seed is derived from the token and the
// cluster name (keys.PurposeRaftCA); its self-signed certificate has a fixed
// template, so every token holder builds the same CA. Each node generates a
// fresh leaf key at start and signs its leaf with that CA. Without the token
// there is no CA key, so no leaf a peer accepts: the handshake fails.
//
// # Requests from followers: the protocol
//
// Followers never write raft. They state requests in their gossip metadata,
// and the leader, which reads all of them, turns them into commands. Every
// server is a voter and reads the outcome in its own FSM. This keeps one
// writer, needs no RPC endpoint besides raft's, and every request is
// idempotent: a lost or repeated one changes nothing. The node makes every
// request through this package's API (protocol.go), which advertises it as
// Local through Publisher; the node writes none of these gossip fields
// itself. The leader's decisions are one pure step, decide (leader.go).
//
//	request         sent by (API)            carried as         who commits       what                  on what evidence
//	--------------  -----------------------  -----------------  ----------------  --------------------  ------------------------------------------------
//	propose set     election, no raft state  BootstrapSet hash  each member       its formation lock    every alive server proposes the same set
//	                (formation)                                 (stable store)                          for FormationSettle; see Formation
//	lock set        election, locked member  BootstrapSet hash! each member       BootstrapCluster      every other member advertises hash!, none has
//	                                                                                                    raft state
//	be a voter      election                 RaftAddr,          leader            AddVoter (or move     alive, same cluster, raft address, and in the
//	                                         RaftState                            its address)          configuration or without raft state
//	(claim)         the leader itself        -                  leader            claim(leader)         no bootstrap node committed
//	(reassign)      the leader itself        -                  leader            reassign(from,        bootstrap node not started and dead or absent
//	                                                                              leader)               in gossip for BootstrapReassignAfter
//	started         bootstrap node           StartedRKE2        leader            started(node)         node is the committed bootstrap node, alive,
//	                (MarkStarted)                                                                       and advertises StartedRKE2
//	ready + CA      any server               Ready, CAHash      leader            cluster-ready(VIP,    started; the bootstrap node alive, Ready, with
//	                (ReportReady)                                                 CA)                   a CA hash that the leader fetched from
//	                                                                                                    /cacerts at the bootstrap node's own address
//	                                                                                                    (Config.FetchCA, not the VIP); never replaced
//	                                                                                                    once committed
//	slot request    joiner                   WantJoinSlot       leader            grant(node, lease)    cluster ready; no slot out; the lowest-named
//	                (AcquireJoinSlot)                                                                   alive server of this cluster, not the bootstrap
//	                                                                                                    node, not joined, that wants the slot (or is
//	                                                                                                    already Ready with the committed CA)
//	                                                                              renew(node, lease)    holder alive, still wants it, less than half
//	                                                                                                    the lease left, granted < SlotMaxHold ago
//	release         holder (ReleaseJoinSlot) WantJoinSlot off   leader            free(node), later     no renewal; the lease plus SlotGrace passed
//	joined          holder (ReportReady,     Ready, CAHash      leader            joined(node)          holder alive, Ready, CAHash = the committed CA
//	                then MarkJoined waits)
//	not ready       any server               Ready off          nobody            -                     withdraws ready; nothing committed is undone
//	                (ReportNotReady)
//	(for agents)    election, from its FSM   ClusterReady,      -                 -                     agents read cluster ready and its CA here
//	                                         CAHash
//	operator        a server's daemon (an    claims.Request in  leader            request-accepted or   decided once per ID, from alive servers with a
//	request         operator verb, or a      its signed claim   (command v3)      request-refused with  verified claim only; the table in requests.go
//	                reinstall)               (Duties.Requests)                    the change it makes
//
// Once cluster ready is committed a server advertises Ready only while the
// CA it reported is the committed one, and CAHash is the committed CA: a
// server serving another CA is not part of this cluster.
//
// # Formation: at most one raft group
//
// A server with raft state on disk resumes it and never bootstraps. A server
// without state proposes a bootstrap set once it sees at least ExpectServers
// alive servers, all with the same expect-servers and cluster name, and none
// with raft state: the ExpectServers lowest names. It advertises the set's
// hash (16 hex digits of SHA-256 over cluster name, expect-servers, and each
// member's name and raft address) as BootstrapSet.
//
// A member of the set that sees every other alive server advertise the
// same hash (or a lock on it), continuously for FormationSettle, LOCKS
// itself to that set; servers locked to another set do not count unless
// they are members. It writes the lock into raft's stable store (so it
// survives restarts) and only then advertises "hash!". A lock is forever:
// the node never proposes or locks another set. A member bootstraps raft
// (BootstrapCluster with exactly the locked configuration) only when every
// other member advertises "hash!" and none advertises raft state.
//
// Why at most one configuration is ever bootstrapped: bootstrapping set S
// needs every member of S locked to S. Two different sets S1 and S2 both
// have ExpectServers members; if fewer than 2×ExpectServers servers take
// part in formation, they share a member, which would hold two locks — which
// a node never does. Equal hashes mean equal configurations, so all the
// servers that bootstrap do so with one configuration, which raft handles.
// Locks live in DataDir: a server whose DataDir is wiped during formation
// may lock again, which the argument does not cover (it cannot know).
// The one assumption the operator must keep: at first boot, start
// fewer than twice expect-servers servers (3 → at most 5). Servers added
// later see raft state in gossip and wait to be added; a group of fresh
// servers that cannot see the formed cluster and could form by itself is
// indistinguishable from a new cluster, as with any expect-style formation.
//
// A partitioned minority sees fewer than ExpectServers servers and proposes
// nothing.
//
// Locks trade liveness for safety, as any commit protocol without a
// majority must: a lock whose set can no longer complete (a member dead for
// good between locking and bootstrapping, or locked to another set because
// its gossip view lagged by more than FormationSettle) leaves its holders
// waiting. Both need a fault inside a window of about one gossip round plus
// FormationSettle at first boot. The operator clears it by removing the
// waiting servers' DataDir/raft (they have no raft state, only the lock).
// To keep it rare: a server that is not locked prefers completing a set that
// others have locked to, when all its members are alive and not locked
// elsewhere; and locking needs every alive server, not just the members, to
// propose the same set for FormationSettle.
//
// The leader adds every alive server without raft state that is not yet in
// the configuration as a voter, and updates the address of members whose
// raft address changed. It never adds a server that has raft state but is
// not in its configuration (its log belongs to another group: merging would
// be unsafe), and removes a voter only once its etcd member's removal is
// done (membership duties): a dead server still counts towards quorum,
// which is safe (it can only stall progress, never split the group).
//
// # The FSM: at most one node starts RKE2 as the bootstrap node
//
// Commands are versioned JSON decoded strictly (see Wire format). Apply is a
// pure function of the previous state and the command; invalid transitions
// leave the state unchanged and return an error wrapping ErrTransition:
//
//   - claim(node): the first one sets the bootstrap node; later claims are
//     no-ops that return the existing one. The leader claims for itself.
//   - reassign(from, node): only while not started and the bootstrap node is
//     still from. The leader proposes it when from has been dead in gossip
//     for BootstrapReassignAfter.
//   - started(node): only if node is the bootstrap node. After it, the
//     bootstrap node never changes again.
//   - cluster-ready(vip, ca): only after started; once.
//   - grant / renew / free / joined: see join slots.
//
// MarkStarted returns nil only when the node's own FSM shows it is the
// bootstrap node AND started; since both are permanent once true and all
// replicas apply the same log, no other node can ever see the same. A node
// told by WaitBootstrap that it is the bootstrap node may lose the role
// before started (reassignment); MarkStarted then returns ErrNotBootstrap,
// and the node must go on as a joiner. The node phase machine must start
// RKE2 as the first server only after MarkStarted returned nil.
//
// # Join slots: never two holders at once
//
// After cluster ready, the leader grants the slot to the lowest-named alive
// server that wants it and has not joined, with a lease (SlotLease). While
// the holder is alive and still wants it, the leader renews the lease at
// half-time, up to SlotMaxHold. The slot ends only when the holder is Ready
// with the cluster CA (joined is committed) or when the lease ran out: the
// leader frees it SlotGrace after its expiry. It is never taken back early,
// not even from a dead holder — gossip's "dead" may be wrong, a lease is
// not. A holder uses its slot only while its own clock is before the expiry
// it last saw, so two holders would need clocks apart by more than
// SlotGrace. AcquireJoinSlot
// also requires the local FSM to have caught up with the leader since this
// process started, so a grant replayed from an old log never counts. A
// follower is caught up once its commit index reached the leader's commit
// index carried by the first AppendEntries it accepted since start
// (leadercommit.go; a fresh server receiving a long log in batches has a
// commit index at the end of the batch at hand) and its FSM holds every
// command up to it (fsmHolds: raft moves its applied index before the FSM
// applied; a snapshot records its last command).
//
// # Proof
//
// leader_test.go model-checks decide: thousands of schedules of random
// gossip (servers flapping, wanting and withdrawing the slot, reporting
// ready with the cluster's CA or another, claiming started), views stale
// by up to a few seconds and inconsistent with each other, commands
// applied late or lost, leaders changing, clocks skewed by less than
// SlotGrace. It checks, against the true history: never two slot holders;
// started committed once; cluster ready never replaced and carrying the CA
// the bootstrap node serves, even when gossip claims another; a join recorded
// only after that server reported ready with the committed CA; the slot
// handed on only after the holder's ready or its lease's end by the
// holder's clock. It finds each of four weakened rules unsafe (freeing a
// dead holder's slot early, joining on any CA, freeing without SlotGrace,
// committing a claimed CA that no fetch confirmed).
//
// modelcheck_test.go explores formationStep alone under arbitrarily stale
// gossip views, arrivals, deaths and returns, and finds the lock-free rule
// ("bootstrap once every member proposes the set") bootstrapping two
// configurations within a few hundred runs; with locks it never does.
// sim_test.go runs hundreds of randomized schedules with real raft over the
// in-memory transport (a few tests use the TLS transport and raft-boltdb):
// simultaneous and staggered starts, more servers than expect-servers,
// minority partitions during formation, leader and bootstrap-node deaths
// before and after "started", random restarts from the stores. It records
// every answer that told a node it is the bootstrap node, every MarkStarted
// success and every slot tenure, and fails with the schedule's seed.
// growth_test.go runs the membership duties over real raft the same way:
// servers arrive later (standbys), die for good (removed after the dead
// timeout, the executor reporting as the node's does; an executor may die
// mid-way, so the removal fails by its deadline and is decided again),
// restart, and lose their etcd while their daemon runs. Replaying the leader's log against
// the true world, it checks that no removal is committed while another is
// active, none loses quorum (the voters that answered were a quorum before
// and after) or removes a server not down for the whole timeout, the voter
// count never passes max-servers and, once settled, is odd unless a
// removal with nobody waiting made it even; and every server dead for
// good is removed. It finds each of three weakened rules (admitting to an
// even count, removing without the answering-quorum check, a second
// removal while one is active).
//
// # Membership duties
//
// With the membership duties switched on (leaderSelf.Membership, from the
// max-servers and server-removal-timeout keys), the leader's step hands the
// free join slot and member removals to pkg/membership's Step
// (membership_leader.go), which keeps the etcd voters (EtcdVoters: the
// bootstrap node and the joined servers, less the removed) odd as they
// grow, removes a server dead in gossip for the timeout only when the
// members that answer keep quorum, and never makes two membership changes
// at once. The FSM holds the removal (removal-committed with its executor,
// removal-executing, removal-done or removal-failed) and the removed
// servers; it refuses a second active removal, a grant during a removal
// and a removal while the slot is held. On removal-done the leader drops
// the raft voter. Switched off, the leader does what command version 1
// did. pkg/membership's doc says what the node feeds it. Operators'
// requests (requests.go) are decided before Step: a remove or a reinstall's
// clear-member commits a removal through the same FSM rules.
//
// # Wire format
//
// Servers of two daemon versions share one raft group during a rolling
// upgrade, so commands, snapshots (sent by the leader: network input) and
// the formation lock (codec.go) are read by builds older and newer than
// their writer. Each is a JSON object with "v", its writer's version, and
// "needs", the version a reader must understand (absent: the same as "v";
// a formation lock written without "v" reads as version 1). A reader
// refuses what needs a version above its own, with an error saying to
// upgrade, and skips the fields it does not know. What it knows it checks
// as strictly as before: types, required and surplus fields per operation,
// printable bounded names, times in order; keys must be lower-case
// snake_case and appear once per object (encoding/json would take the last
// of repeated keys and match keys in any case); no trailing data; a
// snapshot is at most 1 MiB and must be a state the log could produce
// (started only with a bootstrap node, a slot only after cluster ready,
// joined sorted and unique, ...). The rules for a change:
//   - a new optional field bumps the version and writes "needs" with the
//     oldest version that may skip it;
//   - a field never changes its meaning; a change an older reader must not
//     skip raises "needs";
//   - a new operation is never skippable: a server that does not know it
//     refuses it (the entry is not applied, the error names the operation),
//     so a new operation needs every server upgraded first, and the leader
//     must issue it only when every voter's advertised daemon version
//     knows it. TODO(election): that check belongs to the leader's step;
//     today's operations are understood by every build that reads "needs".
//
// Snapshot version 3 carries the recovery epoch ("recovery"), and a
// snapshot holding one needs version 3: an older build must not skip it.
// Snapshot version 4 carries the request records. Command version 4 brought
// upgrade-drain (the leader drains an agent before its begin), which the
// node issues only while every voter gossips a build that reads version 4
// (election.DrainCommandVersion); snapshot version 5 carries the agents
// draining or drained, and a snapshot holding one is version 5.
//
// # Quorum-loss recovery
//
// With a majority of the servers gone for good nothing can be committed, so
// the recovery (recover.go) is offline, on the survivor with its daemon
// stopped: ReadRaftOffline reads the voters and the state, and
// RecoverRaftOffline runs hashicorp/raft's RecoverCluster to the survivor
// alone, rewriting the state once in the snapshot RecoverCluster takes: a
// recovery epoch one above the last, every other voter recorded as removed
// (it rejoins only wiped, through the join slot), no slot or removal in
// flight. Every later replica starts from that snapshot. It is never
// automatic; `rke2-hanode recover` (pkg/node) decides when it is allowed.
package election
