// Package node is the per-host phase machine (DESIGN.md §5): it walks one
// host from preflight to ready with gossip, election, the installer and the
// VIP prober, persists what only this host can know, and reports the host's
// and the cluster's progress to status, metrics and systemd.
//
// It owns the orchestration and nothing else: how to gossip, agree, install
// or probe lives in the packages it drives. It never starts RKE2 without
// `server:` unless raft committed this host as the bootstrap node, and it
// never stops RKE2 when the daemon stops (under systemd, RKE2 outlives it).
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

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
	retryMin         = time.Second
	retryMax         = 30 * time.Second
)

// Options build a Node.
type Options struct {
	Config     *config.Config
	Logger     *zap.Logger
	Registerer prometheus.Registerer
	// ServiceManager replaces the one service-manager names (tests).
	ServiceManager installer.ServiceManager
}

// Node is one host's daemon.
type Node struct {
	cfg       *config.Config
	log       *zap.Logger
	reg       prometheus.Registerer
	t         *tracker
	role      installer.Role
	advertise string
	mac       net.HardwareAddr

	g        *gossip.Member
	el       *election.Election
	svc      installer.ServiceManager
	closeSvc func()
	prober   *vip.Prober
	instM    *installer.Metrics

	clusterNodes *prometheus.GaugeVec
	agentReady   prometheus.Gauge

	mu           sync.Mutex
	prog         progress
	caHash       string
	vipReachable bool
	vipHolder    string
}

// New builds the host's parts from the configuration; nothing runs yet.
func New(opts Options) (*Node, error) {
	c := opts.Config
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	n := &Node{cfg: c, log: log.Named("node"), reg: opts.Registerer, role: installer.Role(c.Role)}
	var err error
	if n.t, err = newTracker(n.log, time.Now, opts.Registerer); err != nil {
		return nil, err
	}
	n.t.set(status.PhasePreflight, "checking the host")
	if n.advertise, n.mac, err = hostAddress(c); err != nil {
		return nil, err
	}
	n.clusterNodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rke2_hanode_cluster_nodes",
		Help: "Hosts of the cluster by role and phase, as this host sees them through gossip (dead and left hosts not counted).",
	}, []string{"role", "phase"})
	if err := register(opts.Registerer, n.clusterNodes); err != nil {
		return nil, err
	}
	if !c.IsServer() {
		// Servers export this from the raft FSM; agents from gossip.
		n.agentReady = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rke2_hanode_cluster_ready", Help: "1 once the cluster is ready (its CA hash is known and the VIP answers).",
		})
		if err := register(opts.Registerer, n.agentReady); err != nil {
			return nil, err
		}
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
		PhaseSince:    time.Now(),
		AdvertiseAddr: n.advertise,
		ExpectServers: c.ExpectServers,
		ClusterName:   c.ClusterName,
		Version:       shortVersion(),
		MAC:           n.mac,
		CAHash:        n.caHash,
	}
	syncRole := ""
	if c.IsServer() {
		meta.RaftAddr = net.JoinHostPort(n.advertise, fmt.Sprint(c.RaftPort))
		syncRole = gossip.RoleServer // servers coordinate through their metadata
	}
	n.g, err = gossip.New(gossip.Config{
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
	})
	if err != nil {
		return nil, err
	}
	n.prober, err = vip.NewProber(vip.ProberConfig{
		NodeName:       c.NodeName,
		Logger:         log,
		Registerer:     opts.Registerer,
		LoopbackHolder: n.holderByCertificate,
	})
	if err != nil {
		return nil, err
	}
	if n.instM, err = installer.NewMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	n.svc, n.closeSvc = opts.ServiceManager, func() {}
	if n.svc == nil {
		if n.svc, n.closeSvc, err = newServiceManager(c, log); err != nil {
			return nil, err
		}
	}
	return n, nil
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

// hostAddress is advertise-address, or the first IPv4 address of interface,
// and the interface's MAC.
func hostAddress(c *config.Config) (string, net.HardwareAddr, error) {
	ifi, ifErr := net.InterfaceByName(c.Interface)
	var mac net.HardwareAddr
	if ifErr == nil {
		mac = ifi.HardwareAddr
	}
	if c.AdvertiseAddress != "" {
		return c.AdvertiseAddress, mac, nil
	}
	if ifErr != nil {
		return "", nil, fmt.Errorf("node: advertise-address is not set and interface %q cannot be read (%v): set advertise-address", c.Interface, ifErr)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", nil, fmt.Errorf("node: addresses of %s: %w", c.Interface, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.String() != c.VIP {
			return ipn.IP.String(), mac, nil
		}
	}
	return "", nil, fmt.Errorf("node: interface %s has no IPv4 address besides the VIP: set advertise-address", c.Interface)
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
	if err := n.g.Start(ctx); err != nil {
		return err
	}
	defer n.g.Shutdown()
	n.t.setHook(func(phase string, since time.Time) {
		summary, err := timeline.Encode(n.t.history.Entries())
		if err != nil {
			n.log.Debug("encode timeline", zap.Error(err))
		}
		n.publish(func(m *gossip.Meta) { m.Phase, m.PhaseSince, m.Timeline = phase, since, summary })
	})

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var raftErr chan error // servers: Run's and Close's error, once raft stopped
	if c.IsServer() {
		ms, unsubscribe := newMembership(n.g)
		defer unsubscribe()
		el, err := election.Open(election.Config{
			NodeName:      c.NodeName,
			BindAddr:      c.BindAddress,
			RaftPort:      c.RaftPort,
			AdvertiseAddr: n.advertise,
			DataDir:       c.DataDir,
			Token:         c.Secret(),
			ClusterName:   c.ClusterName,
			ExpectServers: c.ExpectServers,
			VIP:           c.VIP,
			Membership:    ms,
			Publisher:     ms,
			Logger:        n.log,
			Registerer:    n.reg,
		})
		if err != nil {
			return err
		}
		// A raft port in use is as fatal as a gossip port in use: Open
		// bound it, or failed. Raft failing later stops the phase machine
		// and Run returns its error.
		n.el = el
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

	walkCtx, stopWalk := context.WithCancel(runCtx)
	defer stopWalk()
	wg.Add(1)
	go func() { defer wg.Done(); n.watchNameConflict(walkCtx, stopWalk) }()
	err := n.walk(walkCtx)
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

// watchNameConflict stops the phase machine for good when another host
// claims this host's node name: two hosts under one name would confuse
// gossip, raft and RKE2 alike.
func (n *Node) watchNameConflict(ctx context.Context, stopWalk func()) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := n.g.NameConflict(); err != nil {
			stopWalk()
			n.t.fail("gossip", fmt.Errorf("another host uses node-name %q (%v): give every host a unique node-name, then restart", n.cfg.NodeName, err), true)
			return
		}
	}
}

// walk runs the phases for this host's role, then keeps watch once ready.
func (n *Node) walk(ctx context.Context) error {
	n.t.set(status.PhaseInstalling, "installing RKE2 (it is not started yet)")
	if err := n.retry(ctx, "install", status.PhaseInstalling, n.install); err != nil {
		return err
	}
	if n.adopt(ctx) {
		return n.keepReady(ctx)
	}
	var err error
	if n.cfg.IsServer() {
		err = n.runServer(ctx)
	} else {
		err = n.runAgent(ctx)
	}
	if err != nil {
		return err
	}
	return n.keepReady(ctx)
}

// retry runs fn until it succeeds, ctx ends, or it fails permanently. A
// failure shows as the failed phase (with the reason) until the next try
// puts phase back.
func (n *Node) retry(ctx context.Context, stage, phase string, fn func(context.Context) error) error {
	delay := retryMin
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, election.ErrBootstrapRole) {
			return err // the caller changes course
		}
		if isPermanent(err) {
			n.t.fail(stage, err, true)
			<-ctx.Done()
			return ctx.Err()
		}
		n.t.fail(stage, err, false)
		wait := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		delay = min(delay*2, retryMax)
		n.t.set(phase, "retrying after: "+shorten(err.Error(), 120))
	}
}

// permanentError marks failures that a retry cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

func permanent(format string, a ...any) error {
	return &permanentError{err: fmt.Errorf(format, a...)}
}

func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// withDeadline runs fn under a deadline; running past it is an error that
// says what was awaited.
func withDeadline(ctx context.Context, d time.Duration, what string, fn func(context.Context) error) error {
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := fn(dctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		var h *hinted
		if errors.As(err, &h) {
			return fmt.Errorf("still %s after %s: %s", what, d, h.hint)
		}
		return fmt.Errorf("still %s after %s", what, d)
	}
	return err
}

// hinted carries, with an error, what the operator should look at.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() + ": " + h.hint }
func (h *hinted) Unwrap() error { return h.err }

func (n *Node) preflight(ctx context.Context) error {
	checks := vip.Preflight(ctx, vip.PreflightOptions{Interface: n.cfg.Interface, VIP: n.cfg.VIP, Logger: n.log})
	if err := vip.Failed(checks); err != nil {
		return err
	}
	return nil
}

func (n *Node) install(ctx context.Context) error {
	c := n.cfg
	running, _ := n.svc.Active(ctx, n.role) // a running RKE2 is adopted, never reinstalled
	res, err := installer.Install(ctx, installer.InstallOptions{
		Running:      running,
		Method:       installer.Method(c.InstallMethod),
		Role:         n.role,
		Version:      c.RKE2Version,
		Channel:      c.RKE2Channel,
		ScriptURL:    c.InstallScriptURL,
		ScriptSHA256: c.InstallScriptSHA,
		ArtifactPath: c.ArtifactPath,
		RKE2DataDir:  c.RKE2DataDir,
		RKE2Bin:      c.RKE2Bin,
		Logger:       n.log,
		Metrics:      n.instM,
	})
	if err != nil {
		return err
	}
	n.log.Info("RKE2 installed", zap.Bool("skipped", res.Skipped), zap.String("version", res.Version), zap.String("bin", res.Bin))
	return nil
}

// adopt takes a host whose RKE2 already runs as ready: it never restarts
// or reconfigures a running RKE2.
func (n *Node) adopt(ctx context.Context) bool {
	active, err := n.svc.Active(ctx, n.role)
	if err != nil || !active {
		return false
	}
	n.mu.Lock()
	ca := n.caHash
	n.mu.Unlock()
	if ca == "" && n.cfg.IsServer() {
		if r := n.prober.Probe(ctx, n.advertise, ""); r.Reachable {
			ca = r.CAHash
		}
	}
	n.log.Info("RKE2 is already running here: adopting it as ready", zap.String("service", installer.UnitName(n.role)))
	n.setCA(ca)
	n.markReady(ctx)
	return true
}

// markReady enters ready, publishes it and remembers it.
func (n *Node) markReady(ctx context.Context) {
	n.mu.Lock()
	n.prog.Role = n.cfg.Role
	if !n.prog.Ready {
		n.prog.Ready, n.prog.ReadyAt = true, time.Now().UTC()
	}
	p := n.prog
	n.mu.Unlock()
	if err := saveProgress(n.cfg.DataDir, p); err != nil {
		n.log.Warn("could not save progress", zap.Error(err))
	}
	n.reportReady(true)
	n.t.set(status.PhaseReady, n.readyDetail())
}

func (n *Node) readyDetail() string {
	return fmt.Sprintf("%s is active", installer.UnitName(n.role))
}

// keepReady watches the RKE2 service once ready: if it stops being active
// (under systemd or exec it is restarted), the phase says so until it is back.
func (n *Node) keepReady(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		active, err := n.svc.Active(ctx, n.role)
		phase, _, _ := n.t.get()
		switch {
		case err == nil && active && phase != status.PhaseReady:
			n.reportReady(true)
			n.t.set(status.PhaseReady, n.readyDetail())
		case (err != nil || !active) && phase == status.PhaseReady:
			reason := "not active"
			if err != nil {
				reason = err.Error()
			}
			n.reportReady(false)
			n.t.fail("service", fmt.Errorf("%s: %s; waiting for it to be restarted", installer.UnitName(n.role), reason), false)
		}
	}
}

// reportReady tells the cluster whether this host's RKE2 is ready. On a
// server, election advertises it (with the CA hash this host serves)
// through Publish above; an agent, which runs no election, writes its own
// metadata. Transitional: one place until the phase machine calls
// election's ReportReady and ReportNotReady itself.
func (n *Node) reportReady(ready bool) {
	if n.el == nil {
		n.publish(func(m *gossip.Meta) { m.Ready = ready })
		return
	}
	if !ready {
		n.el.ReportNotReady()
		return
	}
	n.mu.Lock()
	ca := n.caHash
	n.mu.Unlock()
	n.el.ReportReady(ca)
}

func (n *Node) publish(fn func(*gossip.Meta)) {
	if err := n.g.UpdateMeta(fn); err != nil {
		n.log.Debug("publish metadata", zap.Error(err))
	}
}

func (n *Node) setCA(ca string) {
	if ca == "" {
		return
	}
	n.mu.Lock()
	n.caHash = ca
	n.prog.CAHash = ca
	n.mu.Unlock()
	n.publish(func(m *gossip.Meta) { m.CAHash = ca })
}

// writeRKE2Config renders and writes RKE2's config (and, on servers, the
// kube-vip manifest RKE2 applies at start).
func (n *Node) writeRKE2Config(kind installer.Case, caHash string) error {
	c := n.cfg
	if c.IsServer() {
		m, err := vip.RenderManifests(KubeVIPOptions(c))
		if err != nil {
			return permanent("kube-vip manifest: %w", err)
		}
		if err := vip.WriteManifest(filepath.Join(c.RKE2DataDir, "server", "manifests"), m); err != nil {
			return err
		}
	}
	data, err := installer.RenderConfig(installer.RenderOptions{
		Case:        kind,
		NodeName:    c.NodeName,
		NodeIP:      n.advertise,
		VIP:         c.VIP,
		Token:       c.Secret(),
		AgentToken:  c.AgentSecret(), // servers only; "" on agents
		CAHash:      caHash,
		TLSSANs:     c.TLSSAN,
		NodeTaints:  c.NodeTaint,
		RKE2DataDir: c.RKE2DataDir,
		Extra:       c.RKE2Config,
	})
	if err != nil {
		return permanent("RKE2 config: %w", err)
	}
	return installer.WriteConfig(c.RKE2ConfigDir, data)
}

// rememberStart records, before the service first starts, that this host
// starts RKE2 for the cluster with caHash (empty for the bootstrap node).
func (n *Node) rememberStart(bootstrap bool, caHash string) error {
	n.mu.Lock()
	n.prog.Role = n.cfg.Role
	n.prog.StartedRKE2 = true
	n.prog.Bootstrap = bootstrap
	if caHash != "" {
		n.prog.CAHash = caHash
	}
	p := n.prog
	n.mu.Unlock()
	return saveProgress(n.cfg.DataDir, p)
}

// startService starts RKE2 without blocking and waits until it is active.
func (n *Node) startService(ctx context.Context) error {
	return withDeadline(ctx, startDeadline, "waiting for "+installer.UnitName(n.role)+" to become active", func(ctx context.Context) error {
		if err := n.svc.Start(ctx, n.role); err != nil {
			return err
		}
		return n.svc.WaitActive(ctx, n.role)
	})
}

// KubeVIPOptions maps the configuration onto the kube-vip renderer.
func KubeVIPOptions(c *config.Config) vip.ManifestOptions {
	return vip.ManifestOptions{
		Interface:     c.Interface,
		VIP:           c.VIP,
		Image:         c.KubeVIPImage,
		Version:       c.KubeVIPVersion,
		LeaseDuration: c.KubeVIPLease,
		RenewDeadline: c.KubeVIPRenew,
		RetryPeriod:   c.KubeVIPRetry,
	}
}

// holderByCertificate names the VIP's holder by the certificate it serves
// on 9345: RKE2's serving certificate carries the holder's own node IP, which
// gossip maps to a member. It is how the holder is told on loopback, where
// every host owns every 127.x address and there is no MAC.
func (n *Node) holderByCertificate(vipAddr string) (string, bool, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(vipAddr, "9345"), &tls.Config{InsecureSkipVerify: true}) // only reads the certificate's addresses
	if err != nil {
		return "", false, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", false, errors.New("no certificate")
	}
	ips := map[string]bool{}
	for _, ip := range certs[0].IPAddresses {
		ips[ip.String()] = true
	}
	for _, m := range n.g.Members() {
		if m.State == gossip.StateAlive && m.Meta.Role == gossip.RoleServer && ips[m.Meta.AdvertiseAddr] {
			return m.Name, m.Name == n.cfg.NodeName, nil
		}
	}
	return "", false, errors.New("the certificate names no known server")
}

func shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max-1] + "…"
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(word, "s"))
}
