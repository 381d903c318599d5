// Package status is the model of what one host knows about itself and its
// cluster: the JSON served on /status (DESIGN.md §9) and read back by
// `rke2-hanode status`. It holds no secrets by construction: there is no
// field a token or key could go into.
package status

import "time"

// Phases of a host, in the order a server or agent walks them (contract).
const (
	PhasePreflight       = "preflight"
	PhaseInstalling      = "installing"
	PhaseDiscovering     = "discovering"
	PhaseElecting        = "electing"
	PhaseWaitingCluster  = "waiting-cluster"
	PhaseWaitingJoinSlot = "waiting-join-slot"
	// PhaseStandby: a server the leader does not admit yet (it would make
	// the etcd voters an even count, or max-servers is reached) waits with
	// RKE2 installed and not started; Error-free, its detail says why.
	PhaseStandby    = "standby"
	PhaseStarting   = "starting"
	PhaseWaitingVIP = "waiting-vip"
	PhaseReady      = "ready"
	PhaseFailed     = "failed"
)

// Phases lists every phase, for metrics that carry one series per phase.
var Phases = []string{
	PhasePreflight, PhaseInstalling, PhaseDiscovering, PhaseElecting, PhaseWaitingCluster,
	PhaseStandby, PhaseWaitingJoinSlot, PhaseStarting, PhaseWaitingVIP, PhaseReady, PhaseFailed,
}

// Status is the /status document.
type Status struct {
	Node    Node     `json:"node"`
	Cluster Cluster  `json:"cluster"`
	Members []Member `json:"members"`
	// Timeline holds each host's phase transitions, oldest first, keyed by
	// node name: this host's from its own history, the others' from the
	// summary they gossip (tenth-of-a-second precision, newest kept).
	Timeline map[string][]Transition `json:"timeline"`
	// Upgrade is the rolling RKE2 upgrade as this host knows it: on a
	// server the committed progress and the plan of the raft leader's view,
	// absent where the daemon does not report one (an older build).
	Upgrade *Upgrade `json:"upgrade,omitempty"`
}

// Upgrade is the rolling RKE2 upgrade (docs/operations.md, "Upgrades").
type Upgrade struct {
	// Phase: idle, waiting, refused, servers, agents, paused, failed, done.
	Phase string `json:"phase"`
	// Target is the version being rolled out ("" before any roll).
	Target string `json:"target"`
	Paused bool   `json:"paused"`
	// Blocked says why the roll does not proceed ("" when it does or has
	// nothing to do): a refusal, a failed host, a pause, or what it waits for.
	Blocked string `json:"blocked"`
	// Servers and Agents still to upgrade, in the order they will; those
	// upgrading now first.
	Servers []string `json:"servers"`
	Agents  []string `json:"agents"`
	// MaxUnavailable is the agents' batch size in force.
	MaxUnavailable int `json:"max_unavailable"`
	// Hosts is every host's wanted and running version and its place in
	// the roll, by name.
	Hosts []UpgradeHost `json:"hosts"`
}

// UpgradeHost is one host in the roll.
type UpgradeHost struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Wanted  string `json:"wanted"`  // from its config ("" not known yet)
	Running string `json:"running"` // what rke2 --version prints ("" not known)
	// State: "" (not begun), upgrading, done, failed.
	State  string    `json:"state"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"` // why it failed
}

// Transition is a host entering a phase.
type Transition struct {
	Phase string    `json:"phase"`
	At    time.Time `json:"at"`
}

// Node is this host.
type Node struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Phase     string    `json:"phase"`
	Since     time.Time `json:"since"`
	Error     string    `json:"error"`
	Bootstrap bool      `json:"bootstrap"`
	// Standby is why the leader does not admit this server yet, while it
	// is in phase standby ("" otherwise).
	Standby string `json:"standby,omitempty"`
}

// Cluster is the cluster as this host sees it.
type Cluster struct {
	Name          string `json:"name"`
	ExpectServers int    `json:"expect_servers"`
	BootstrapNode string `json:"bootstrap_node"`
	ClusterReady  bool   `json:"cluster_ready"`
	CAHash        string `json:"ca_hash"`
	VIP           string `json:"vip"`
	VIPReachable  bool   `json:"vip_reachable"`
	VIPHolder     string `json:"vip_holder"`
	Raft          Raft   `json:"raft"`
	JoinSlot      string `json:"join_slot"`
	// JoinedServers counts servers that finished joining (not the bootstrap).
	JoinedServers int `json:"joined_servers"`
	// VIPCAMismatch: the VIP last answered with another CA than the
	// cluster's (a squatter or another cluster); nil when it did not.
	VIPCAMismatch *CAMismatch `json:"vip_ca_mismatch,omitempty"`
	// CAMismatch: on the bootstrap server, the committed cluster CA hash
	// differs from the server CA on its disk; nil when they agree.
	CAMismatch *CAMismatch `json:"ca_mismatch,omitempty"`
	// StandbyServers are the servers gossip shows in phase standby, by name.
	StandbyServers []string `json:"standby_servers"`
}

// CAMismatch is an alarm: a CA hash seen where the cluster's was expected.
type CAMismatch struct {
	Seen     string    `json:"seen_ca_hash"` // the hash found
	Expected string    `json:"expected_ca_hash"`
	Holder   string    `json:"holder,omitempty"` // VIP: who holds it, by the neighbour table ("" unknown)
	Since    time.Time `json:"since"`
}

// Raft is this server's view of the raft group (empty on agents).
type Raft struct {
	State  string `json:"state"`
	Leader string `json:"leader"`
}

// Member is one host seen through gossip.
type Member struct {
	Name    string    `json:"name"`
	Address string    `json:"address"`
	Role    string    `json:"role"`
	Phase   string    `json:"phase"`
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
	// ClaimVerified: a verified server claim (pkg/claims) backs the
	// member; only then is it a server to the others. UnverifiedServer:
	// it says it is a server and nothing backs that, so it counts as an
	// agent (a host with the agent token only, or a misconfigured one).
	ClaimVerified    bool `json:"claim_verified"`
	UnverifiedServer bool `json:"unverified_server,omitempty"`
}
