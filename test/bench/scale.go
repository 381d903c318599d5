package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/metrics"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// idleService is a service manager whose RKE2 never becomes active: the
// daemons form gossip and raft, choose the bootstrap node and then wait,
// which is the load this benchmark wants (no RKE2 in the way).
type idleService struct{}

func (idleService) Start(context.Context, installer.Role) error { return nil }
func (idleService) WaitActive(ctx context.Context, _ installer.Role) error {
	<-ctx.Done()
	return ctx.Err()
}
func (idleService) Active(context.Context, installer.Role) (bool, error) { return false, nil }
func (idleService) Stop(context.Context, installer.Role) error           { return nil }

// scaleResult is one cluster size's gossip and election numbers.
type scaleResult struct {
	Members, Servers int
	LightAgents      bool    // agents are bare gossip members (pkg/gossip), not whole daemons
	StartSpread      float64 // first to last daemon started, s (servers at once, then agents one by one)
	Converge         float64 // last daemon started → every member sees every other alive, s
	Converged        bool    // false: gave up after ConvergeTimeout
	WorstSeen        int     // alive members the worst-informed member saw at the end
	Elect            float64 // last server started → every server knows the bootstrap node, s
	Leader           float64 // last server started → every server knows the raft leader, s
	Window           float64 // steady-state window, s
	BytesPerMemberS  float64 // memberlist bytes sent (udp+tcp) per member per second
	CPUPerMember     float64 // fraction of one core per member (whole daemon, idle)
	CPUTotal         float64 // cores used by all members together
	HeapMBPerMember  float64 // Go heap in use per member after convergence
	// UpdateMeta is how long gossip.Member.UpdateMeta blocked its caller
	// (it waits for memberlist to finish re-broadcasting), measured on three
	// agents in turn once the cluster converged: median and max, s.
	UpdateMetaP50, UpdateMetaMax float64
}

// gossipBytes reads memberlist's go-metrics counters of bytes sent, routed
// into reg (go-metrics is process-global: every member of this process adds
// to the same counters).
func gossipBytes(reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "rke2_hanode_memberlist_udp_sent_total", "rke2_hanode_memberlist_tcp_sent_total":
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

var routeOnce sync.Once
var routeReg = prometheus.NewRegistry()

const scaleToken = "bench-scale-token-Xk8pQ2mZ7rT4vN9wB3yL6h"

// runScale starts members daemons (3 servers, the rest agents) in this
// process and measures gossip convergence, the election, and the steady
// traffic and CPU per member.
func runScale(ctx context.Context, members int, window, stagger, convergeTimeout time.Duration, lightAgents bool, dir string, progress func(string, ...any)) (*scaleResult, error) {
	routeOnce.Do(func() { metrics.RouteGoMetrics(routeReg) })
	const servers = 3
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fake := filepath.Join(dir, "rke2")
	if err := writeScript(fake, "echo 'rke2 version v1.36.4+rke2r1 (bench)'\n"); err != nil {
		return nil, err
	}
	log, err := daemonLog(dir, "warn")
	if err != nil {
		return nil, err
	}
	ip := func(i int) string { return fmt.Sprintf("127.94.%d.%d", i/200, 10+i%200) }
	seeds := []string{ip(0), ip(1), ip(2)}
	hosts := make([]*host, members)
	var light []gossip.Config
	var lightRunning []*gossip.Member
	defer func() {
		var wg sync.WaitGroup
		for _, g := range lightRunning {
			wg.Go(func() { g.Close() }) // ends its Run
		}
		wg.Wait()
	}()
	for i := range members {
		if i >= servers && lightAgents {
			light = append(light, gossip.Config{
				NodeName: fmt.Sprintf("agent-%d", i-servers+1), BindAddr: ip(i), BindPort: 9347, AdvertiseAddr: ip(i),
				Join: seeds, Token: scaleToken, ClusterName: "bench",
				Meta: gossip.Meta{Role: gossip.RoleAgent, Phase: status.PhaseWaitingCluster, PhaseSince: time.Now(),
					AdvertiseAddr: ip(i), ClusterName: "bench", Version: "bench"},
				Logger: log,
			})
			continue
		}
		role, name := "server", fmt.Sprintf("server-%d", i+1)
		if i >= servers {
			role, name = "agent", fmt.Sprintf("agent-%d", i-servers+1)
		}
		hdir := filepath.Join(dir, name)
		c := config.Defaults()
		c.NodeName, c.Role, c.Token, c.ClusterName = name, role, scaleToken, "bench"
		if role == "server" {
			c.ExpectServers = servers
		}
		c.Join = seeds
		c.BindAddress, c.AdvertiseAddress = ip(i), ip(i)
		c.HTTPAddress = ip(i) + ":9349"
		c.VIP, c.Interface = "127.94.250.200", "lo"
		c.InstallMethod, c.ServiceManager, c.RKE2Bin = "none", "exec", fake
		c.RKE2ConfigDir, c.RKE2DataDir, c.DataDir = filepath.Join(hdir, "etc"), filepath.Join(hdir, "rke2"), filepath.Join(hdir, "hanode")
		c.LogLevel = "warn"
		data, err := config.Marshal(c)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(hdir, "config.yaml")
		if err := fsutil.WriteFileAtomic(path, data, 0o600); err != nil {
			return nil, err
		}
		hosts[i] = &host{name: name, role: role, configPath: path, dir: hdir}
	}
	hosts = hosts[:len(hosts)-len(light)]
	defer stopAll(hosts)
	ipo := inProcessOptions{Logger: log, Service: func() installer.ServiceManager { return idleService{} }}
	progress("scale %d: starting %d servers and %d agents in this process", members, servers, members-servers)
	for i, h := range hosts {
		if err := h.start(ipo); err != nil {
			return nil, err
		}
		if i >= servers-1 {
			time.Sleep(stagger) // hosts boot over a while, not in one instant
		}
	}
	for _, gc := range light {
		g, err := gossip.Open(gc)
		if err != nil {
			return nil, err
		}
		lightRunning = append(lightRunning, g)
		go g.Run(ctx) // ended by Close above
		time.Sleep(stagger)
	}
	first, lastServer := hosts[0].started, hosts[servers-1].started
	lastStart := time.Now()
	r := &scaleResult{Members: members, Servers: servers, LightAgents: lightAgents, StartSpread: lastStart.Sub(first).Seconds()}

	// Election: poll the servers often (they are few).
	var electMu sync.Mutex
	var electAt, leaderAt time.Time
	electDone, electStop := make(chan struct{}), make(chan struct{})
	defer close(electStop)
	go func() {
		defer close(electDone)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			boot, lead := 0, 0
			for _, h := range hosts[:servers] {
				st := h.nd.Status()
				if st.Cluster.BootstrapNode != "" {
					boot++
				}
				if st.Cluster.Raft.Leader != "" {
					lead++
				}
			}
			now := time.Now()
			electMu.Lock()
			if lead == servers && leaderAt.IsZero() {
				leaderAt = now
			}
			if boot == servers && electAt.IsZero() {
				electAt = now
			}
			both := !electAt.IsZero() && !leaderAt.IsZero()
			electMu.Unlock()
			if both {
				return
			}
			select {
			case <-electStop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()

	// Convergence: every member sees every other alive.
	deadline := time.Now().Add(convergeTimeout)
	lastLog := time.Now()
	for {
		worst := members
		for _, h := range hosts {
			if err := h.exited(); err != nil {
				return nil, err
			}
			alive := 0
			for _, m := range h.nd.Status().Members {
				if m.State == string(gossip.StateAlive) {
					alive++
				}
			}
			worst = min(worst, alive)
		}
		for _, g := range lightRunning {
			worst = min(worst, g.NumAlive(""))
		}
		r.WorstSeen = worst
		if worst == members {
			r.Converged = true
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			progress("  not converged after %s: the worst member sees %d of %d alive; measuring anyway", convergeTimeout, worst, members)
			break
		}
		if time.Since(lastLog) > 5*time.Second {
			progress("  %s after the last start: the worst member sees %d of %d alive", time.Since(lastStart).Truncate(100*time.Millisecond), worst, members)
			lastLog = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.Converge = time.Since(lastStart).Seconds()
	select {
	case <-electDone:
	case <-time.After(10 * time.Second):
	}
	electMu.Lock()
	if !electAt.IsZero() {
		r.Elect = electAt.Sub(lastServer).Seconds()
	}
	if !leaderAt.IsZero() {
		r.Leader = leaderAt.Sub(lastServer).Seconds()
	}
	electMu.Unlock()
	if r.Converged {
		progress("  converged %.2fs after the last start", r.Converge)
	}
	progress("  bootstrap known to all servers %.2fs after the last server started (0: not within the wait)", r.Elect)

	// Steady state: let the joins' traffic settle, then measure.
	time.Sleep(3 * time.Second)
	var took []float64
	for _, g := range lightRunning[:min(3, len(lightRunning))] {
		t := time.Now()
		g.UpdateMeta(func(m *gossip.Meta) { m.PhaseSince = t })
		took = append(took, time.Since(t).Seconds())
	}
	r.UpdateMetaP50, r.UpdateMetaMax = medianMax(took)
	time.Sleep(2 * time.Second)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.HeapMBPerMember = float64(ms.HeapInuse) / (1 << 20) / float64(members)
	b0, c0, t0 := gossipBytes(routeReg), cpuSeconds(), time.Now()
	time.Sleep(window)
	b1, c1, t1 := gossipBytes(routeReg), cpuSeconds(), time.Now()
	el := t1.Sub(t0).Seconds()
	r.Window = el
	r.BytesPerMemberS = (b1 - b0) / float64(members) / el
	r.CPUTotal = (c1 - c0) / el
	r.CPUPerMember = r.CPUTotal / float64(members)
	progress("  steady: %.0f B/member/s, %.3f%% of a core per member", r.BytesPerMemberS, 100*r.CPUPerMember)
	return r, nil
}
