package election

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// Member states as gossip reports them.
const (
	MemberAlive   = "alive"
	MemberSuspect = "suspect"
	MemberDead    = "dead"
	MemberLeft    = "left"
)

// Peer is what election reads of one server from gossip. The local node must
// be among Membership.Servers(); its intents are overlaid from what this
// package last published, so they never lag behind.
type Peer struct {
	Name          string
	RaftAddr      string // host:port of the raft transport
	State         string // MemberAlive, MemberSuspect, MemberDead, MemberLeft
	ExpectServers int
	ClusterName   string
	HasRaftState  bool   // published by election (Local.HasRaftState)
	BootstrapSet  string // published by election (Local.BootstrapSet), opaque
	WantJoinSlot  bool   // published by election (Local.WantJoinSlot)
	StartedRKE2   bool   // published by election (Local.StartedRKE2)
	Ready         bool   // published by election (Local.Ready)
	CAHash        string // published by election (Local.CAHash)
	// Vouched: a server of a build without signed claims, trusted only
	// because a verified claim lists it as a voter; its raft address is
	// its own unsigned word, so the leader never moves its voter.
	Vouched bool
}

// Membership is the gossip view election needs: every server (alive or not)
// and a signal when anything in that view changes. Changes may coalesce.
type Membership interface {
	Servers() []Peer
	Changes() <-chan struct{}
}

// Local is what election asks gossip to advertise for this node.
type Local struct {
	HasRaftState bool
	// BootstrapSet is "" (no proposal), a 16-hex-digit hash of the set this
	// node proposes, or that hash followed by "!" once this node has locked
	// itself to that set for good.
	BootstrapSet string
	WantJoinSlot bool
	StartedRKE2  bool
	// Ready: this node's RKE2 is ready (ReportReady) and, once cluster
	// ready is committed, serves the committed cluster CA.
	Ready bool
	// CAHash: the CA hash this node's RKE2 serves (ReportReady), or, once
	// cluster ready is committed, the committed cluster CA.
	CAHash string
	// ClusterReady: this node's FSM holds cluster ready. Agents, which are
	// not in raft, learn cluster ready and its CA from it.
	ClusterReady bool
	// What this node's FSM holds of the cluster, advertised for agents,
	// which are not in raft: the bootstrap node, the join slot's holder
	// ("" when free) and the number of joined servers.
	BootstrapNode string
	JoinSlot      string
	JoinedServers int
}

// Publisher advertises Local in this node's gossip metadata. It must not
// block for long; election calls it again when Local changes or it failed.
type Publisher interface {
	Publish(Local) error
}

// Timing holds every duration election uses.
type Timing struct {
	HeartbeatTimeout   time.Duration // raft; follower waits this long for a leader
	ElectionTimeout    time.Duration // raft; candidate waits this long for votes
	LeaderLeaseTimeout time.Duration // raft; must not exceed HeartbeatTimeout
	CommitTimeout      time.Duration // raft; heartbeat when idle
	Tick               time.Duration // how often formation and leader duties re-check
	// Settled*: once the cluster is ready, every expected server has
	// joined and no join slot is out, nothing waits on raft or the loop:
	// raft's heartbeat and election timeouts and the loop's tick relax to
	// these (an idle server's CPU goes mostly to heartbeats), and return
	// to the above as soon as a slot is granted again.
	SettledHeartbeatTimeout time.Duration
	SettledTick             time.Duration
	// FormationSettle: how long every alive server must propose the same
	// bootstrap set before a member locks to it (longer than gossip's
	// propagation, so that lagging views rarely lock another set).
	FormationSettle time.Duration
	ApplyTimeout    time.Duration // one raft Apply/AddVoter
	// BootstrapReassignAfter: a bootstrap node dead in gossip this long
	// before it started RKE2 loses the role to the leader.
	BootstrapReassignAfter time.Duration
	// SlotLease: a join slot is valid this long; the leader renews it at
	// half-time while its holder is alive and still wants it, up to
	// SlotMaxHold after the grant. A dead holder's slot thus frees within
	// SlotLease+SlotGrace.
	SlotLease   time.Duration
	SlotMaxHold time.Duration
	// SlotGrace: the leader frees an expired slot only this long after its
	// expiry, so the holder's own clock sees it expire first (bounds the
	// clock skew between servers that slots tolerate).
	SlotGrace time.Duration
}

// LANTiming is the default: servers on one LAN.
func LANTiming() Timing {
	return Timing{
		// A follower waits 0.8–1.6 s without a leader before it stands for
		// election (raft's defaults: 1–2 s), so the first election after
		// formation usually ends while RKE2 is still being installed; a
		// server busy starting etcd and the kubelet still answers a
		// heartbeat within that. The leader heartbeats every 80–160 ms.
		HeartbeatTimeout: 800 * time.Millisecond,
		ElectionTimeout:  800 * time.Millisecond,
		// Settled, heartbeats come every 175–350 ms: the lease outlasts
		// two of the longest gaps by 100 ms.
		LeaderLeaseTimeout: 800 * time.Millisecond,
		// An idle leader sends each follower an AppendEntries only this
		// often (raft: 50 ms, the largest share of an idle server's CPU);
		// after each decision the leader notifies at once (notifyCommit),
		// so nothing waits for it.
		CommitTimeout:           500 * time.Millisecond,
		Tick:                    100 * time.Millisecond,
		SettledHeartbeatTimeout: 1750 * time.Millisecond,
		SettledTick:             time.Second,
		FormationSettle:         300 * time.Millisecond,
		ApplyTimeout:            5 * time.Second,
		BootstrapReassignAfter:  60 * time.Second,
		SlotLease:               time.Minute,
		SlotMaxHold:             15 * time.Minute,
		SlotGrace:               10 * time.Second,
	}
}

// Stores are raft's stores; tests pass in-memory ones and keep them across
// restarts. Nil means raft-boltdb and file snapshots under DataDir/raft.
type Stores struct {
	Log       raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore
}

// Config configures one server's election.
type Config struct {
	NodeName      string // unique; also the raft server ID
	BindAddr      string // raft listen address; default 0.0.0.0
	RaftPort      int    // default 9348
	AdvertiseAddr string // address peers reach this node at (required with the TLS transport)
	DataDir       string // raft state lives in DataDir/raft (required without Stores)
	Token         string // the cluster secret; root of the raft CA (required with the TLS transport)
	ClusterName   string // required
	ExpectServers int    // servers that form the cluster; >= 1
	VIP           string // committed with cluster ready; required

	Membership Membership // required
	Publisher  Publisher  // required
	// FetchCA fetches the CA hash a server serves at its own address: the
	// leader commits cluster ready only with a hash it saw served there.
	// nil: nothing is ever verified, so cluster ready is never committed.
	FetchCA CAFetcher

	Logger     *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // nil: metrics not registered
	// Duties turns on the leader's membership duties (odd voter set,
	// standbys, removals by consensus). nil keeps them off: switch them on
	// only once every server runs a build that reads the version-2
	// membership commands.
	Duties *MembershipDuties
	Clock  clock.Clock // nil: the wall clock; leases, reassignment and formation read it
	Timing Timing      // zero: LANTiming()

	// Transport replaces the mutual-TLS TCP transport (tests use raft's
	// in-memory one). Its LocalAddr is this node's raft address.
	Transport raft.Transport
	Stores    *Stores
}

func (c *Config) setDefaults() {
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	if c.RaftPort == 0 {
		c.RaftPort = 9348
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	c.Clock = clock.Or(c.Clock)
	if c.Timing == (Timing{}) {
		c.Timing = LANTiming()
	}
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("election: "+format, a...)) }
	if c.NodeName == "" {
		bad("node-name is empty")
	} else if err := checkText("node-name", c.NodeName); err != nil {
		bad("%v", err)
	}
	if c.ClusterName == "" {
		bad("cluster-name is empty")
	}
	if c.ExpectServers < 1 {
		bad("expect-servers %d: want 1 or more", c.ExpectServers)
	}
	if c.VIP == "" {
		bad("vip is empty")
	}
	if c.Membership == nil {
		bad("Membership is nil")
	}
	if c.Publisher == nil {
		bad("Publisher is nil")
	}
	if c.Transport == nil {
		if c.Token == "" {
			bad("token is empty")
		}
		if c.AdvertiseAddr == "" {
			bad("advertise-address is empty")
		}
		if c.RaftPort < 0 || c.RaftPort > 65535 {
			bad("raft-port %d: want 1-65535", c.RaftPort)
		}
	}
	if c.Stores == nil && c.DataDir == "" {
		bad("data-dir is empty")
	}
	t := c.Timing
	if t.HeartbeatTimeout < 5*time.Millisecond || t.ElectionTimeout < 5*time.Millisecond {
		bad("raft timeouts %v/%v: want at least 5ms", t.HeartbeatTimeout, t.ElectionTimeout)
	}
	if t.LeaderLeaseTimeout <= 0 || t.LeaderLeaseTimeout > t.HeartbeatTimeout {
		bad("leader lease %v: want > 0 and <= heartbeat timeout %v", t.LeaderLeaseTimeout, t.HeartbeatTimeout)
	}
	// Settled, the leader heartbeats every SettledHeartbeatTimeout/10 to /5:
	// the lease must outlast two of the longest gaps with room to spare,
	// or one late heartbeat makes the leader step down.
	if h := t.SettledHeartbeatTimeout; h != 0 && (h < t.HeartbeatTimeout || h*2/5+t.LeaderLeaseTimeout/8 > t.LeaderLeaseTimeout) {
		bad("settled heartbeat timeout %v: want 0, or at least heartbeat timeout %v and at most 35/16 × leader lease %v", h, t.HeartbeatTimeout, t.LeaderLeaseTimeout)
	}
	if t.SettledTick < 0 {
		bad("settled tick %v: want 0 (never relax) or positive", t.SettledTick)
	}
	for name, d := range map[string]time.Duration{
		"commit timeout": t.CommitTimeout, "tick": t.Tick, "apply timeout": t.ApplyTimeout,
		"bootstrap reassign after": t.BootstrapReassignAfter, "slot lease": t.SlotLease,
		"slot max hold": t.SlotMaxHold,
	} {
		if d <= 0 {
			bad("%s %v: want > 0", name, d)
		}
	}
	if t.SlotGrace < 0 || t.FormationSettle < 0 {
		bad("slot grace %v, formation settle %v: want >= 0", t.SlotGrace, t.FormationSettle)
	}
	return errors.Join(errs...)
}
