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
//     its name held as it joins gets NameConflict (it must be renamed), while
//     the holder only counts and logs the impostor
//     (rke2_hanode_name_impostor_total) and runs on;
//   - the metrics rke2_hanode_gossip_members{role,state},
//     rke2_hanode_gossip_decrypt_failures_total and a few more.
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
//   - the worst case must fit 512 bytes (TestMetaWorstCaseFits; 425 today,
//     96 of them the timeline summary), advisory fields aside: the bootstrap
//     node, join slot and joined servers a server shows agents are left out
//     when everything at its longest would not fit.
package gossip
