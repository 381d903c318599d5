package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
	"github.com/rke2-hanode/rke2-hanode/pkg/version"
)

// Config is everything a Member needs. Zero timing values take the LAN
// defaults.
type Config struct {
	NodeName      string   // unique per host; memberlist's node name
	BindAddr      string   // address the tcp+udp listeners bind; "" = 0.0.0.0
	BindPort      int      // gossip port (tcp+udp); 0 picks a free port (tests)
	AdvertiseAddr string   // address peers reach us on; "" lets memberlist pick
	AdvertisePort int      // 0 = BindPort
	Join          []string // seeds: IP, host name or host:port; the default port is BindPort
	Token         string   // shared secret; the gossip key is derived from it
	ClusterName   string   // memberlist label and part of the key derivation
	Meta          Meta     // initial local metadata
	// SyncRole: after each change of this member's metadata, exchange
	// state directly (a push/pull) with every alive member of this role,
	// instead of leaving it to epidemic gossip alone, which a busy cluster
	// (many hosts joining at once) can delay by seconds. Servers set it to
	// RoleServer: the few servers coordinate through their metadata.
	SyncRole string

	// TrustedFingerprint is the server-claims key's fingerprint
	// (claims.TrustedFingerprint): only claims signed by that key make a
	// member a server. "" checks nothing and takes metadata as declared,
	// for tests of the layers above; the daemon always sets it.
	TrustedFingerprint string
	// Signer signs this member's claim: servers only, nil on agents. Its
	// key must have the trusted fingerprint ("" takes the signer's).
	Signer *claims.Signer
	// TrustUnsigned: the gossip key is derived from the server token (the
	// single-token set-up), so every member holds the server token and an
	// unsigned server Meta (a build from before signed claims) is as good
	// as a signed claim. Never set it when the key comes from an agent
	// token: agent-token holders would then pass as servers.
	TrustUnsigned bool

	Logger     *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // nil: metrics are not registered

	Timings Timings

	Clock    clock.Clock                           // nil: the system clock
	Jitter   func(max time.Duration) time.Duration // random in [0,max); nil: math/rand
	Resolver Resolver                              // nil: net.DefaultResolver

	// transport replaces memberlist's network transport (benchmarks count
	// bytes with it).
	transport memberlist.NodeAwareTransport
	// updateNode replaces memberlist's UpdateNode (tests lose an update
	// as memberlist can, see Member.storeMeta).
	updateNode func(ml *memberlist.Memberlist, timeout time.Duration) error
}

// Resolver looks up the addresses of a seed's host name. *net.Resolver
// satisfies it.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Timings are memberlist's failure-detector and gossip timings plus the
// daemon's own join and reporting intervals. Zero fields take LANTimings.
type Timings struct {
	ProbeInterval       time.Duration
	ProbeTimeout        time.Duration
	GossipInterval      time.Duration
	PushPullInterval    time.Duration
	TCPTimeout          time.Duration
	SuspicionMult       int
	RetransmitMult      int
	GossipToTheDeadTime time.Duration

	JoinBackoffMin time.Duration // first retry delay, and how often "alone?" is checked
	JoinBackoffMax time.Duration // retry delay cap
	// SeedCheckInterval is how often a member with company contacts the
	// seeds that are not members, to merge groups that formed apart.
	SeedCheckInterval time.Duration
	UpdateTimeout     time.Duration // how long UpdateMeta waits for the re-broadcast
	LeaveTimeout      time.Duration // how long Shutdown waits for the leave broadcast
	DeadRetention     time.Duration // dead and left members stay in Members this long
	LogInterval       time.Duration // rate limit of repeated warnings per peer
}

// LANTimings are memberlist's LAN defaults and the daemon's production
// intervals.
func LANTimings() Timings {
	lan := memberlist.DefaultLANConfig()
	return Timings{
		ProbeInterval:       lan.ProbeInterval,
		ProbeTimeout:        lan.ProbeTimeout,
		GossipInterval:      lan.GossipInterval,
		PushPullInterval:    lan.PushPullInterval,
		TCPTimeout:          lan.TCPTimeout,
		SuspicionMult:       lan.SuspicionMult,
		RetransmitMult:      lan.RetransmitMult,
		GossipToTheDeadTime: lan.GossipToTheDeadTime,
		// Hosts of one cluster often start together, each a little before
		// the others listen: the first retry comes soon (a refused
		// connection costs nothing), later ones back off.
		JoinBackoffMin:    250 * time.Millisecond,
		JoinBackoffMax:    30 * time.Second,
		SeedCheckInterval: 30 * time.Second,
		UpdateTimeout:     5 * time.Second,
		LeaveTimeout:      5 * time.Second,
		DeadRetention:     24 * time.Hour,
		LogInterval:       time.Minute,
	}
}

// LocalTimings are fast timings for members on one machine: tests and the
// loopback cluster.
func LocalTimings() Timings {
	t := LANTimings()
	t.ProbeInterval = 200 * time.Millisecond
	t.ProbeTimeout = 100 * time.Millisecond
	t.GossipInterval = 50 * time.Millisecond
	t.PushPullInterval = 5 * time.Second
	t.TCPTimeout = time.Second
	t.SuspicionMult = 3
	t.RetransmitMult = 3
	t.GossipToTheDeadTime = 10 * time.Second
	t.JoinBackoffMin = 100 * time.Millisecond
	t.JoinBackoffMax = 2 * time.Second
	t.SeedCheckInterval = 2 * time.Second
	t.UpdateTimeout = 2 * time.Second
	t.LeaveTimeout = 2 * time.Second
	t.LogInterval = 10 * time.Second
	return t
}

func (t Timings) withDefaults() Timings {
	d := LANTimings()
	pick := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&t.ProbeInterval, d.ProbeInterval)
	pick(&t.ProbeTimeout, d.ProbeTimeout)
	pick(&t.GossipInterval, d.GossipInterval)
	pick(&t.PushPullInterval, d.PushPullInterval)
	pick(&t.TCPTimeout, d.TCPTimeout)
	pick(&t.GossipToTheDeadTime, d.GossipToTheDeadTime)
	pick(&t.JoinBackoffMin, d.JoinBackoffMin)
	pick(&t.JoinBackoffMax, d.JoinBackoffMax)
	pick(&t.SeedCheckInterval, d.SeedCheckInterval)
	pick(&t.UpdateTimeout, d.UpdateTimeout)
	pick(&t.LeaveTimeout, d.LeaveTimeout)
	pick(&t.DeadRetention, d.DeadRetention)
	pick(&t.LogInterval, d.LogInterval)
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	if t.RetransmitMult <= 0 {
		t.RetransmitMult = d.RetransmitMult
	}
	if t.JoinBackoffMax < t.JoinBackoffMin {
		t.JoinBackoffMax = t.JoinBackoffMin
	}
	return t
}

// normalize checks cfg and fills defaults, including the metadata fields the
// config already determines.
func (cfg Config) normalize() (Config, error) {
	if cfg.NodeName == "" {
		return cfg, errors.New("gossip: node name is empty")
	}
	if cfg.ClusterName == "" {
		return cfg, errors.New("gossip: cluster name is empty")
	}
	if len(cfg.ClusterName) > memberlist.LabelMaxSize {
		return cfg, fmt.Errorf("gossip: cluster name %q is longer than %d bytes", cfg.ClusterName, memberlist.LabelMaxSize)
	}
	if cfg.Token == "" {
		return cfg, errors.New("gossip: token is empty")
	}
	if cfg.BindPort < 0 || cfg.BindPort > 65535 {
		return cfg, fmt.Errorf("gossip: bind port %d out of range", cfg.BindPort)
	}
	if cfg.AdvertisePort < 0 || cfg.AdvertisePort > 65535 {
		return cfg, fmt.Errorf("gossip: advertise port %d out of range", cfg.AdvertisePort)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if _, err := netip.ParseAddr(cfg.BindAddr); err != nil {
		return cfg, fmt.Errorf("gossip: bind address %q: not an IP address", cfg.BindAddr)
	}
	if cfg.AdvertiseAddr != "" {
		if _, err := netip.ParseAddr(cfg.AdvertiseAddr); err != nil {
			return cfg, fmt.Errorf("gossip: advertise address %q: not an IP address", cfg.AdvertiseAddr)
		}
	}
	if cfg.AdvertisePort == 0 {
		cfg.AdvertisePort = cfg.BindPort
	}
	for _, seed := range cfg.Join {
		if _, _, err := splitSeed(seed, 1); err != nil {
			return cfg, err
		}
	}

	if cfg.Signer != nil {
		switch {
		case cfg.TrustedFingerprint == "":
			cfg.TrustedFingerprint = cfg.Signer.Fingerprint()
		case cfg.TrustedFingerprint != cfg.Signer.Fingerprint():
			return cfg, fmt.Errorf("gossip: the signer's key (fingerprint %s) is not the trusted one (%s): the server token and the agent token do not belong together", cfg.Signer.Fingerprint(), cfg.TrustedFingerprint)
		}
		if cfg.Meta.Role != RoleServer {
			return cfg, fmt.Errorf("gossip: a signer on a member of role %q: only servers sign claims", cfg.Meta.Role)
		}
	}

	if cfg.Meta.ClusterName == "" {
		cfg.Meta.ClusterName = cfg.ClusterName
	} else if cfg.Meta.ClusterName != cfg.ClusterName {
		return cfg, fmt.Errorf("gossip: meta cluster name %q differs from cluster name %q", cfg.Meta.ClusterName, cfg.ClusterName)
	}
	if cfg.Meta.AdvertiseAddr == "" {
		cfg.Meta.AdvertiseAddr = cfg.AdvertiseAddr
	}
	if cfg.Meta.Version == "" {
		cfg.Meta.Version = version.Version
	}
	if cfg.Meta.RaftState == "" {
		cfg.Meta.RaftState = RaftNone
	}
	if _, err := cfg.Meta.Encode(); err != nil {
		return cfg, err
	}

	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Jitter == nil {
		cfg.Jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max)
		}
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	cfg.Timings = cfg.Timings.withDefaults()
	return cfg, nil
}

// memberlistConfig translates cfg (normalized) for memberlist.
func (cfg Config) memberlistConfig() (*memberlist.Config, error) {
	key, err := keys.Derive(cfg.Token, keys.PurposeGossip, cfg.ClusterName, 32)
	if err != nil {
		return nil, fmt.Errorf("gossip: derive key: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	mc.Label = cfg.ClusterName
	mc.SecretKey = key
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true

	t := cfg.Timings
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.GossipInterval = t.GossipInterval
	mc.PushPullInterval = t.PushPullInterval
	mc.TCPTimeout = t.TCPTimeout
	mc.SuspicionMult = t.SuspicionMult
	mc.RetransmitMult = t.RetransmitMult
	mc.GossipToTheDeadTime = t.GossipToTheDeadTime
	if cfg.transport != nil {
		mc.Transport = cfg.transport
	}
	return mc, nil
}
