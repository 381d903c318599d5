// Package vip owns the cluster's front door: the kube-vip virtual IP.
//
// It does four things, each usable on its own:
//
//   - RenderManifests renders kube-vip's ServiceAccount, ClusterRole,
//     ClusterRoleBinding and DaemonSet (ARP mode, control plane, leader
//     election) for an interface, VIP, image, version and lease timings. The
//     objects are field for field what kube-vip's own generator prints for the
//     same flags at the pinned version (testdata holds the generator's output);
//     nothing is pulled or looked up at run time. WriteManifest puts the result
//     atomically into RKE2's auto-deploy folder.
//   - Preflight checks the host: the interface exists and is up, the VIP lies
//     in one of its subnets and, before a bootstrap, that no other host
//     already answers ARP for the VIP (ProbeARP). A conflict is permanent
//     (ErrVIPConflict) and names the MAC that answered. On lo there is no ARP.
//   - Prober.Probe and Prober.WaitReachable check the VIP the way an RKE2
//     joiner does: fetch /cacerts on 9345 without verification, hash it and
//     compare it with the expected CA hash (a mismatch is ErrCAMismatch, an
//     alarm: the wait returns at once and the caller retries with its own
//     backoff, since a squatter can leave), then GET /ping verified against
//     that CA. Prober.FetchCAHash fetches /cacerts from one server's own
//     address, for the raft leader's check before it commits cluster ready.
//     Waiting uses exponential backoff with full jitter, so that hundreds of
//     waiting hosts spread their probes instead of hammering the supervisor.
//   - Prober.Holder tells which member holds the VIP: this host when the VIP
//     is one of its addresses, else the member whose MAC the neighbour table
//     shows for the VIP. On lo every host owns every 127.x address, so the
//     holder cannot be told by MAC there: the caller supplies another way.
//
// What it must never do: import other packages of this module (it is glued
// in by the node package), send anything but ARP requests and the two
// unauthenticated supervisor GETs, ever send the cluster token or any
// credential to the VIP (the holder is unverified until the CA hash matches),
// or treat a CA mismatch as "not ready yet".
package vip
