package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// ttcOptions shape one time-to-cluster run.
type ttcOptions struct {
	Servers, Agents int
	InProcess       bool
	Base            string
	Install, Start  time.Duration // I and S
	Join, Agent     time.Duration // J and A
	Daemon, Sim     string
	Dir             string
	Timeout         time.Duration
}

// ttcResult is what one run measured.
type ttcResult struct {
	Servers, Agents int
	Mode            string
	I, S, J, A      float64 // seconds
	CriticalDAG     float64 // I + S + max((servers-1)·J, A)
	CriticalIssue   float64 // I + S + (servers-1)·J + A
	Runbook         float64 // every host's install and start in turn
	IRun            float64 // the slowest server's install as it ran (installing → discovering), s
	Measured        float64 // first daemon start to last host ready
	LastHost        string
	// Breakdown of the critical chain, seconds from the first start.
	Bootstrap      string
	Phases         []phaseRow
	AgentsReadyP50 float64
	AgentsReadyMax float64
	// ProductWaits are the gaps on the critical chain that are neither a
	// simulated delay nor the next host's work: the product's own latency.
	SlotGaps []float64 // per joiner: previous server ready → this joiner starting
	VIPGap   float64   // bootstrap: RKE2 active (waiting-vip) → ready
	Stalls   stalls
	// JoinRefusals counts the member adds etcd refused a joining server
	// ("unhealthy cluster": a voter connected for less than 5 s), from
	// every log under the run's folder.
	JoinRefusals int
}

type phaseRow struct {
	Host, Role, Phase string
	At                float64
}

func runTTC(ctx context.Context, o ttcOptions, progress func(string, ...any)) (*ttcResult, error) {
	simEnv := []string{
		"RKE2SIM_START_DELAY=" + o.Start.String(),
		"RKE2SIM_JOIN_DELAY=" + o.Join.String(),
		"RKE2SIM_AGENT_DELAY=" + o.Agent.String(),
		// The kube-vip stand-in reads the manifests at once when RKE2 is
		// ready; a short poll keeps the sim's own latencies off the chain.
		"RKE2SIM_MANIFEST_POLL=200ms",
		"RKE2SIM_CONNECT_RETRY=250ms",
		// The leader promotes a learner once it has been one for J; a
		// refused promotion is retried this soon, not after the default 2 s.
		"RKE2SIM_PROMOTE_INTERVAL=250ms",
		"RKE2SIM_LOG_LEVEL=warn",
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	c, err := demo.New(demo.Options{
		Servers: o.Servers, Agents: o.Agents, Base: o.Base, Dir: o.Dir,
		Daemon: o.Daemon, Sim: o.Sim, Env: simEnv, LogLevel: cmp.Or(os.Getenv("BENCH_LOG_LEVEL"), "info"), ClusterName: "bench",
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// install-method script with a wanted version the sim does not report,
	// so every host runs the (local) install script, which takes I.
	script := filepath.Join(o.Dir, "install.sh")
	if err := writeScript(script, fmt.Sprintf("sleep %.3f\n", o.Install.Seconds())); err != nil {
		return nil, err
	}
	// A local script runs only pinned by its SHA-256.
	body, err := os.ReadFile(script)
	if err != nil {
		return nil, err
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(body))
	hosts := fromDemo(c, func(int, *demo.Node) bool { return o.InProcess })
	for _, h := range hosts {
		if err := addDropIn(h, "50-bench.yaml", fmt.Sprintf("install-method: script\ninstall-script-url: %s\ninstall-script-sha256: %s\nrke2-version: v1.0.1+rke2r1\n", script, sum)); err != nil {
			return nil, err
		}
	}
	ipo := inProcessOptions{Logger: zap.NewNop()}
	if o.InProcess {
		for _, kv := range simEnv {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
		var err error
		if ipo.Logger, err = daemonLog(o.Dir, "info"); err != nil {
			return nil, err
		}
		defer stopAll(hosts)
	}
	progress("starting %d servers and %d agents (%s)", o.Servers, o.Agents, mode(o.InProcess))
	for _, h := range hosts {
		if err := h.start(ipo); err != nil {
			return nil, err
		}
	}
	first := hosts[0].started
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	lastLog := time.Now()
	ready, err := waitReady(wctx, hosts, func(n int) {
		if time.Since(lastLog) > 5*time.Second || n == len(hosts) {
			progress("  %d of %d hosts ready after %s", n, len(hosts), time.Since(first).Truncate(100*time.Millisecond))
			lastLog = time.Now()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("time-to-cluster %d+%d: %d of %d hosts ready: %w (logs in %s)", o.Servers, o.Agents, len(ready), len(hosts), err, o.Dir)
	}

	r := &ttcResult{Servers: o.Servers, Agents: o.Agents, Mode: mode(o.InProcess),
		I: o.Install.Seconds(), S: o.Start.Seconds(), J: o.Join.Seconds(), A: o.Agent.Seconds()}
	joins := float64(o.Servers-1) * r.J
	r.CriticalDAG = r.I + r.S + max(joins, r.A)
	r.CriticalIssue = r.I + r.S + joins + r.A
	r.Runbook = float64(o.Servers+o.Agents)*r.I + r.S + joins + float64(o.Agents)*r.A
	var last time.Time
	var agentTimes []float64
	for _, h := range hosts {
		t := ready[h.name]
		if t.After(last) {
			last, r.LastHost = t, h.name
		}
		if h.role == "agent" {
			agentTimes = append(agentTimes, t.Sub(first).Seconds())
		}
	}
	r.Measured = last.Sub(first).Seconds()
	sort.Float64s(agentTimes)
	if len(agentTimes) > 0 {
		r.AgentsReadyP50 = agentTimes[len(agentTimes)/2]
		r.AgentsReadyMax = agentTimes[len(agentTimes)-1]
	}

	// The servers' timeline, in the order they became ready.
	type srv struct {
		h     *host
		times map[string]time.Time
	}
	var servers []srv
	for _, h := range hosts {
		if h.role != "server" {
			continue
		}
		pt, err := h.phaseTimes(ctx)
		if err != nil {
			return nil, err
		}
		st, err := h.status(ctx)
		if err == nil && st.Node.Bootstrap {
			r.Bootstrap = h.name
		}
		servers = append(servers, srv{h, pt})
		if a, b := pt[status.PhaseInstalling], pt[status.PhaseDiscovering]; !a.IsZero() && !b.IsZero() {
			r.IRun = max(r.IRun, b.Sub(a).Seconds())
		}
	}
	sort.Slice(servers, func(i, j int) bool {
		return servers[i].times[status.PhaseReady].Before(servers[j].times[status.PhaseReady])
	})
	at := func(t time.Time) float64 { return t.Sub(first).Seconds() }
	for i, s := range servers {
		var rows []phaseRow
		for p, t := range s.times {
			rows = append(rows, phaseRow{Host: s.h.name, Role: "server", Phase: p, At: at(t)})
		}
		sort.Slice(rows, func(a, b int) bool { return rows[a].At < rows[b].At })
		r.Phases = append(r.Phases, rows...)
		if i == 0 {
			if wv, ok := s.times[status.PhaseWaitingVIP]; ok {
				r.VIPGap = s.times[status.PhaseReady].Sub(wv).Seconds()
			}
			continue
		}
		if st, ok := s.times[status.PhaseStarting]; ok {
			r.SlotGaps = append(r.SlotGaps, st.Sub(servers[i-1].times[status.PhaseReady]).Seconds())
		}
	}
	logs := map[string]string{}
	for _, h := range hosts {
		if h.proc != nil {
			logs[h.name] = h.proc.LogPath
		}
	}
	if o.InProcess {
		logs[""] = filepath.Join(o.Dir, "daemons.log")
	}
	r.Stalls = readStalls(logs)
	r.JoinRefusals = countJoinRefusals(o.Dir)
	progress("  measured %.2fs; critical path %.2fs; runbook %.0fs", r.Measured, r.CriticalDAG, r.Runbook)
	return r, nil
}

func countJoinRefusals(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil
		}
		n += refusals(path)
		return nil
	})
	return n
}

func mode(inProcess bool) string {
	if inProcess {
		return "in-process daemons"
	}
	return "processes"
}
