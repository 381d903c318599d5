// Package gossip is how hosts of one cluster find each other: a
// hashicorp/memberlist member on the gossip port (tcp+udp) that carries each
// host's metadata (Meta: role, phase, raft address, bootstrap set, CA hash,
// VIP interface MAC, ...).
//
// It owns:
//   - encryption: the memberlist key is derived from the token with the
//     cluster name in the derivation, and the cluster name is memberlist's
//     label, so hosts with another token or cluster name are never admitted,
//     in either direction. Rejected traffic is counted and reported in a
//     rate-limited warning naming the peer;
//   - joining: the seeds are resolved again and contacted on every attempt,
//     with exponential backoff and jitter, until one answers, and again
//     whenever the member finds itself alone;
//   - the membership snapshot (Members), including dead and left members for
//     a while, a coalescing change signal (Changes, Subscribe), a fast
//     re-broadcast of local metadata (UpdateMeta) and a graceful leave;
//   - node-name conflicts between two hosts (NameConflict, Conflicts). Names
//     are owned: memberlist keeps the host it knew first; a host that finds
//     its name held as it joins gets NameConflict (it must be renamed, or
//     wait with RetryName until the holder is gone), while
//     the holder only counts and logs the impostor
//     (rke2_hanode_name_impostor_total) and runs on;
//   - servers' signed claims (see "Signed claims" below): carrying them,
//     verifying them and deriving every member's effective metadata;
//   - a guard on memberlist's inbound TCP streams (streamguard.go): at most
//     8 open per source address and 64 in all, and a stream announcing an
//     encrypted message larger than this cluster's push/pull state can be
//     (about 3.4 MB, from the claim and metadata limits; memberlist takes
//     20 MB) is closed before memberlist reads it
//     (rke2_hanode_gossip_streams_refused_total{reason});
//   - the metrics rke2_hanode_gossip_members{role,state},
//     rke2_hanode_gossip_decrypt_failures_total,
//     rke2_hanode_gossip_claims_rejected_total{reason} and a few more.
//
// What memberlist says only in its log (undecryptable traffic, a failed
// probe) is read from its log lines; the texts are those of memberlist
// v0.6.0 and TestClassifyLine pins them.
//
// It must never: log, export or put in metadata the token or any key; decide
// anything about raft, bootstrap or RKE2 (it reports what hosts say, the
// election and node packages decide); block inside memberlist's callbacks or
// call memberlist from them; route memberlist's go-metrics (the daemon does
// that once per process).
//
// # Wire format of Meta
//
// Hosts of two daemon versions gossip side by side during a rolling
// upgrade, so metadata is read by builds older and newer than its writer.
// An encoded Meta is two header bytes, (the version a reader needs, the
// writer's version), then fields as tag, length, value, tags ascending. A
// reader refuses metadata that needs a version above its own, with an error
// saying to upgrade; otherwise it reads the fields it knows and skips the
// rest. Known fields are checked strictly (lengths, enumerations, printable
// ASCII, ranges), a zero value is sent as no field at all, and a repeated or
// out-of-order tag, a truncated field, a missing role or more than
// memberlist's 512 bytes is refused. The rules for a change:
//   - a new optional field takes the next tag and bumps metaVersion; older
//     readers skip it, so metaNeeds stays;
//   - a tag never changes its meaning or layout; a field that older readers
//     must not skip (they would misread the member without it) raises
//     metaNeeds, which takes every host of the older version out of view:
//     upgrade them all first;
//   - the worst case must fit 512 bytes per role (TestMetaWorstCaseFits):
//     a server's is 425 bytes today; an agent's, with its RKE2 versions and
//     upgrade report at their longest, fits once the advisory fields are
//     left out. Advisory fields (the bootstrap node, join slot and joined
//     servers a server shows agents, and the timeline summary) are shown
//     and acted on by nobody; they are left out when everything at its
//     longest would not fit. The agent-only fields (RKE2Wanted,
//     RKE2Running, UpgradeFailed, UpgradeFailedBegin, UpgradeFinished) are
//     refused beside role server or a server-only field, by the writer and
//     the reader.
//
// # Signed claims
//
// Metadata is self-declared: any holder of the gossip key (the agent
// token) can announce "server, ready, CA x, wants the join slot" under a
// name of its choice, and can even rebroadcast another node's metadata.
// What others act on therefore comes from servers' signed claims
// (pkg/claims), carried beside the metadata:
//
//	what              how it travels                          who accepts it
//	every held claim  memberlist push/pull state (LocalState)  every member with a fingerprint
//	a new claim       user broadcast, when ≤ 1024 bytes        the same; relayed on acceptance
//	a server's own    after each change, push/pull with every  the same
//	                  alive server (SyncRole)
//
// The state and a broadcast are a version byte and (node name, signed
// claim) entries, at most 64 read per message. A receiver verifies each
// claim over the received bytes (key fingerprint, signature, claim node =
// entry name), keeps per node only a claim newer than the one it holds
// (an older relayed copy is dropped unchecked and uncounted; another claim
// under the same sequence number counts as a replay), and relays it on.
// Relaying is safe because claims are signed; a member without a trusted
// fingerprint (an older build) neither checks nor relays them.
//
// MemberInfo.Meta is then the effective metadata:
//   - a member with a verified claim whose AdvertiseAddr is its gossip
//     address: Role server, and AdvertiseAddr, RaftAddr, BootstrapSet, StartedRKE2, Ready,
//     CAHash, WantJoinSlot, ClusterReady, Commands, ExpectServers and
//     RaftState are the claim's; MemberInfo.Claim is the claim (day-2
//     fields: versions, voters, etcd view, requests, upgrade report);
//   - a claim for another address (someone else holds the name here) is
//     not applied, counted as address_mismatch once per claim;
//   - a member without any claim whose metadata says server, that a
//     verified claim lists among its raft voters (Claim.Voters) at the
//     raft address it declares (Claim.VoterAddrs, from raft's
//     configuration), and whose raft address is on its gossip address,
//     keeps its declared fields: a server of the previous build during a
//     rolling upgrade (only server-token holders enter raft's
//     configuration). A name the Verifier ever accepted a claim of is
//     never vouched for so, even once its claim was pruned. Upgrade
//     servers first: until one server runs a build with claims, an agent
//     of this build sees no servers;
//   - every other member is an agent, its server fields cleared.
//
// Names of servers are held: an alive message that puts a name on another
// address than its held verified claim names is refused (NotifyAlive;
// rke2_hanode_gossip_alive_refused_total), so a holder of the agent token
// cannot take a restarting server's name. A server that moved spreads its
// new claim in the push/pull of its join, and is taken then. A newcomer
// to a name another host holds gets NameConflict and asks again with
// RetryName.
//
// Refusals count in rke2_hanode_gossip_claims_rejected_total{reason}:
// bad_signature, wrong_key, replay, wrong_node, address_mismatch,
// malformed. With no trusted fingerprint configured nothing is checked
// and metadata is taken as declared (tests of the layers above).
package gossip
