package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/backoff"
	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/timeline"
	"github.com/rke2-hanode/rke2-hanode/pkg/version"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// Deadlines of single attempts. A wait that runs past one is reported as a
// failure naming what it waited for, and tried again.
const (
	discoverDeadline = 15 * time.Minute
	electDeadline    = 10 * time.Minute
	clusterDeadline  = 30 * time.Minute
	slotDeadline     = 60 * time.Minute
	startDeadline    = 20 * time.Minute
	vipDeadline      = 10 * time.Minute
	markDeadline     = 2 * time.Minute
	// gossipRecheck re-reads gossip this often even when no change is
	// signalled.
	gossipRecheck = 2 * time.Second
)

// Options build a Node.
type Options struct {
	Config     *config.Config
	Logger     *zap.Logger
	Registerer prometheus.Registerer
	// ServiceManager replaces the one service-manager names (tests).
	ServiceManager installer.ServiceManager
	// Clock is the time of the phase machine; nil: the system clock.
	Clock clock.Clock
}

// Node is one host's daemon.
type Node struct {
	cfg       *config.Config
	log       *zap.Logger
	reg       prometheus.Registerer
	clk       clock.Clock
	t         *tracker
	role      installer.Role
	advertise string
	mac       net.HardwareAddr
	// lastSurvivor: the quorum-loss assessment last written (survivor.go;
	// the etcd watch's goroutine only).
	lastSurvivor survivorRecord

	// The parts the role paths drive, as they use them.
	members     memberView
	coord       coordinator // servers only, once Run has started raft
	prober      vipProber
	svc         rke2Service
	host        rke2Host
	retryPolicy backoff.Policy

	// The long-lived parts Run opens and closes.
	gossipCfg gossip.Config
	closeSvc  func()

	clusterNodes *prometheus.GaugeVec
	agentReady   prometheus.Gauge
	alarm        *alarms      // trust alarms (alarms.go)
	watchdog     *vipWatchdog // the VIP watchdog's metric and last release (vipwatchdog.go)
	// standbyServers counts the servers gossip shows in phase standby.
	standbyServers prometheus.Gauge

	mu           sync.Mutex
	prog         progress
	caHash       string
	vipReachable bool
	vipHolder    string
	standby      string // why the leader does not admit this server yet ("" when it does)
	exec         executorState

	etcd        *etcdState    // servers: the local etcd's view and its carriage (etcdview.go)
	upg         *upgradeState // the rolling upgrade (upgrade_node.go)
	agentBegins *agentBeginSource
	// reqs are the operators' requests this server relays (admin.go).
	reqs  requestBook
	relay requestRelay
}

// New builds the host's parts from the configuration; nothing runs yet.
func New(opts Options) (*Node, error) {
	c := opts.Config
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	n := &Node{cfg: c, log: log.Named("node"), reg: opts.Registerer, clk: clock.Or(opts.Clock),
		role: installer.Role(c.Role), retryPolicy: retryPolicy, relay: noRelay{}}
	var err error
	if n.t, err = newTracker(n.log, n.clk.Now, opts.Registerer); err != nil {
		return nil, err
	}
	n.t.set(status.PhasePreflight, "checking the host")
	if n.advertise, n.mac, err = HostAddress(c); err != nil {
		return nil, err
	}
	if c.IsServer() {
		n.etcd = n.newEtcdState()
	}
	if n.alarm, err = newAlarms(opts.Registerer); err != nil {
		return nil, err
	}
	if c.IsServer() {
		if n.watchdog, err = newVIPWatchdog(opts.Registerer); err != nil {
			return nil, err
		}
	}
	if err := n.registerClusterMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	if n.prog, err = loadProgress(c.DataDir); err != nil {
		return nil, err
	}
	if n.prog.Role != "" && n.prog.Role != c.Role {
		return nil, fmt.Errorf("node: this host joined as role %s (%s) and is now configured as role %s: RKE2 cannot change a host's role; uninstall RKE2 and remove %s first",
			n.prog.Role, progressPath(c.DataDir), c.Role, c.DataDir)
	}
	n.caHash = n.prog.CAHash

	meta := gossip.Meta{
		Role:          c.Role,
		Phase:         status.PhasePreflight,
		PhaseSince:    n.clk.Now(),
		AdvertiseAddr: n.advertise,
		ExpectServers: c.ExpectServers,
		ClusterName:   c.ClusterName,
		Version:       shortVersion(),
		MAC:           n.mac,
		Commands:      election.CommandVersion,
	}
	syncRole := ""
	if c.IsServer() {
		meta.RaftAddr = net.JoinHostPort(n.advertise, fmt.Sprint(c.RaftPort))
		syncRole = gossip.RoleServer // servers coordinate through their metadata
	}
	n.gossipCfg = gossip.Config{
		NodeName:      c.NodeName,
		BindAddr:      c.BindAddress,
		BindPort:      c.GossipPort,
		AdvertiseAddr: n.advertise,
		AdvertisePort: c.GossipPort,
		Join:          c.Join,
		Token:         c.GossipSecret(), // the agent secret when there is one: every host holds it
		ClusterName:   c.ClusterName,
		Meta:          meta,
		SyncRole:      syncRole,
		Logger:        log,
		Registerer:    opts.Registerer,
	}
	if n.gossipCfg.TrustedFingerprint, n.gossipCfg.Signer, err = claimKeys(c); err != nil {
		return nil, err
	}
	n.gossipCfg.TrustUnsigned = gossipKeyFromServerToken(c)
	n.prober, err = vip.NewProber(vip.ProberConfig{
		NodeName:       c.NodeName,
		Logger:         log,
		Registerer:     opts.Registerer,
		LoopbackHolder: n.holderByCertificate,
		Clock:          n.clk,
	})
	if err != nil {
		return nil, err
	}
	instM, err := installer.NewMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	svc, closeSvc := opts.ServiceManager, func() {}
	if svc == nil {
		if svc, closeSvc, err = newServiceManager(c, log); err != nil {
			return nil, err
		}
	}
	n.svc, n.closeSvc = svc, closeSvc
	n.host = &rke2Installer{cfg: c, log: n.log, metrics: instM, advertise: n.advertise}
	if err := n.initUpgrade(nil, nil); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) registerClusterMetrics(reg prometheus.Registerer) error {
	n.clusterNodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rke2_hanode_cluster_nodes",
		Help: "Hosts of the cluster by role and phase, as this host sees them through gossip (dead and left hosts not counted).",
	}, []string{"role", "phase"})
	if err := register(reg, n.clusterNodes); err != nil {
		return err
	}
	n.standbyServers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rke2_hanode_standby_servers",
		Help: "Servers waiting in standby (not admitted: they would make the etcd voters an even count, or max-servers is reached), as this host sees them through gossip.",
	})
	if err := register(reg, n.standbyServers); err != nil {
		return err
	}
	if n.etcd != nil {
		if err := register(reg, newEtcdCollector(n)); err != nil {
			return err
		}
	}
	if !n.cfg.IsServer() {
		// Servers export this from the raft FSM; agents from gossip.
		n.agentReady = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rke2_hanode_cluster_ready", Help: "1 once the cluster is ready (its CA hash is known and the VIP answers).",
		})
		if err := register(reg, n.agentReady); err != nil {
			return err
		}
	}
	return nil
}

func register(reg prometheus.Registerer, c prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	return reg.Register(c)
}

func shortVersion() string {
	v := version.Version
	if len(v) > 64 {
		v = v[:64]
	}
	return v
}

// Run walks the phases until ctx ends. It returns an error only when the
// daemon cannot run at all (a port in use); every other failure is shown in
// the failed phase and retried.
func (n *Node) Run(ctx context.Context) error {
	defer n.closeSvc()
	c := n.cfg
	if err := n.preflight(ctx); err != nil {
		n.t.fail("preflight", err, true)
		<-ctx.Done()
		return nil
	}
	// A gossip port in use fails here.
	g, err := gossip.Open(n.gossipCfg)
	if err != nil {
		return err
	}
	defer g.Close() // after the parts below have stopped: leaves gracefully
	if n.etcd != nil {
		n.etcd.carrier = claimCarrier{g} // before members: readers see it once they see gossip
	}
	n.mu.Lock()
	n.members = g
	if c.IsServer() {
		n.relay = claimRelay{g}
	}
	n.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.Run(runCtx); err != nil {
			n.log.Error("gossip stopped", zap.Error(err))
		}
	}()
	n.t.setHook(func(phase string, since time.Time) {
		n.publishPhase(phase, since)
	})
	var raftErr chan error // servers: Run's and Close's error, once raft stopped
	if c.IsServer() {
		// A datastore from before a recovery is wiped before raft opens.
		if err := n.wipeIfRecovered(runCtx); err != nil {
			n.t.fail("datastore", err, true)
			<-ctx.Done()
			return nil
		}
		el, unsubscribe, err := n.openElection(g)
		if err != nil {
			return err // a raft port in use is as fatal as a gossip port in use
		}
		defer unsubscribe()
		n.mu.Lock()
		n.coord = el
		n.mu.Unlock()
		// Raft failing later stops the phase machine and Run returns its
		// error.
		raftErr = make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := el.Run(runCtx)
			raftErr <- errors.Join(err, el.Close())
			if err != nil {
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); n.watchCluster(runCtx) }()
	if c.IsServer() {
		wg.Add(1)
		go func() { defer wg.Done(); n.executeRemovals(runCtx) }()
		wg.Add(3)
		go func() { defer wg.Done(); n.publishVoters(runCtx, g) }()
		go func() { defer wg.Done(); n.watchEtcd(runCtx) }()
		go func() { defer wg.Done(); n.watchVIPHolder(runCtx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); n.runUpgrades(runCtx) }()

	err = n.walkUnderOwnName(runCtx)
	select {
	case rerr := <-raftErr:
		if rerr != nil && ctx.Err() == nil {
			return rerr
		}
	default:
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		n.log.Error("phase machine stopped", zap.Error(err))
	}
	<-ctx.Done()
	n.log.Info("stopping: RKE2 is left running under systemd; an exec child stops with the daemon")
	return nil
}

// publishPhase shows this host's phase, and the timeline of the phases it
// entered, to the others.
func (n *Node) publishPhase(phase string, since time.Time) {
	summary, err := timeline.Encode(n.t.history.Entries())
	if err != nil {
		n.log.Debug("encode timeline", zap.Error(err))
	}
	if err := n.members.UpdateMeta(func(m *gossip.Meta) { m.Phase, m.PhaseSince, m.Timeline = phase, since, summary }); err != nil {
		n.log.Debug("publish phase", zap.Error(err))
	}
}

// walkUnderOwnName runs the phase machine while the cluster holds this
// host's node name as its own. When another host holds it (two hosts under
// one name would confuse gossip, raft and RKE2 alike) the phase machine
// stops, with an alarm, and starts again once the name is free: a host
// that took the name while this one restarted (an agent token is enough to
// take an agent's name) must not halt it for good.
func (n *Node) walkUnderOwnName(ctx context.Context) error {
	for {
		walkCtx, stopWalk := context.WithCancel(ctx)
		taken := make(chan error, 1)
		done := make(chan struct{})
		go func() { defer close(done); n.watchNameConflict(walkCtx, stopWalk, taken) }()
		err := n.walk(walkCtx)
		stopWalk()
		<-done
		select {
		case conflict := <-taken:
			if err := n.reclaimName(ctx, conflict); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// watchNameConflict stops the walk and reports the conflict when another
// host holds this host's node name.
func (n *Node) watchNameConflict(ctx context.Context, stopWalk func(), taken chan<- error) {
	for n.clk.Sleep(ctx, time.Second) == nil {
		if err := n.members.NameConflict(); err != nil {
			taken <- err
			stopWalk()
			return
		}
	}
}

// reclaimName raises the name alarm (status, metric, log) and asks the
// cluster again, with backoff, until the name is this host's; it returns
// nil then, or when ctx ends its error.
func (n *Node) reclaimName(ctx context.Context, conflict error) error {
	n.alarm.nameTaken(true)
	defer n.alarm.nameTaken(false)
	n.log.Error("another host holds this host's node name: the phase machine stops and asks again with backoff "+
		"(RKE2, if running, is left as it is); if that host is not this one restarting, give every host a unique node-name",
		zap.String("node_name", n.cfg.NodeName), zap.Error(conflict))
	n.t.fail("gossip", fmt.Errorf("another host holds node-name %q (%v): waiting for the name to be free, asking again with backoff; give every host a unique node-name", n.cfg.NodeName, conflict), false)
	b := n.retryPolicy.Start()
	for {
		if err := b.Wait(ctx, n.clk); err != nil {
			return err
		}
		err := n.members.RetryName(ctx)
		if err == nil {
			n.log.Info("the cluster holds this host's node name again: the phase machine resumes", zap.String("node_name", n.cfg.NodeName))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.log.Debug("node name still held by another host", zap.Error(err))
	}
}

// walk runs the phases for this host's role, then keeps watch once ready.
func (n *Node) walk(ctx context.Context) error {
	n.t.set(status.PhaseInstalling, "installing RKE2 (it is not started yet)")
	if err := n.retry(ctx, "install", n.install); err != nil {
		return err
	}
	if !n.adoptIfRunning(ctx) {
		var err error
		if n.cfg.IsServer() {
			err = n.runServer(ctx)
		} else {
			err = n.runAgent(ctx)
		}
		if err != nil {
			return err
		}
	}
	return n.keepReady(ctx)
}

func (n *Node) preflight(ctx context.Context) error {
	checks := vip.Preflight(ctx, vip.PreflightOptions{Interface: n.cfg.Interface, VIP: n.cfg.VIP, Logger: n.log})
	return vip.Failed(checks)
}
