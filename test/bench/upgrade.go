package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// upgradeOptions shape one rolling-upgrade run.
type upgradeOptions struct {
	Servers, Agents int
	Base            string
	Start           time.Duration // S: a server's RKE2 (re)start, RKE2SIM_START_DELAY
	Agent           time.Duration // A: an agent's RKE2 (re)start, RKE2SIM_AGENT_DELAY
	Join            time.Duration // J: a server's join while the cluster forms
	Batch           string        // upgrade-agents-max-unavailable
	From, To        string        // versions
	ArtifactsScript string        // rke2sim's make-artifacts.sh
	Daemon, Sim     string
	Dir             string
	Timeout         time.Duration
}

// upgradeResult: servers and agents formed at From, every daemon restarted
// with rke2-version To (agents first, then the servers one at a time, so
// the roll starts when the last server wants To); the leader then rolls
// the cluster. Times are seconds after the leader committed the roll's
// start.
type upgradeResult struct {
	Servers, Agents int
	From, To        string
	S, A            float64 // the simulated restarts, s
	Batch           int     // agents upgraded at once
	AgentBatches    int     // ceil(agents ÷ batch)
	Critical        float64 // servers·S + AgentBatches·A
	Measured        float64 // the roll's start committed → the last host's done committed
	// CriticalAsRan replaces S and A by each host's steps as they ran
	// ("upgrade began" → "upgrade finished" in its log): servers in turn,
	// each agent batch its slowest host.
	CriticalAsRan float64
	// RestartsAsRan is the critical path with S and A replaced by each
	// host's restart step as it ran (stopping the old RKE2, starting the
	// new until READY=1): the time RKE2 itself took, which no coordination
	// can shorten. Measured − RestartsAsRan is what the product added.
	// The servers' restarts in turn, then the longest of the agents'
	// places (agentPlaces): the longest path through the restarts as the
	// roll ordered them.
	RestartsAsRan float64
	// RestartsSpread is RestartsAsRan with the agents' restarts summed and
	// divided by the batch instead: below any schedule's path whenever the
	// places' restarts differ.
	RestartsSpread float64
	Hosts          []upgradeHostTimes
	// Gaps on the chain, over the hosts (seconds): the leader's begin
	// committed → the host's runner starting its steps; the host's steps
	// finished → the leader's done committed; a host's done committed →
	// the next begin committed.
	PickupServers, PickupAgents []float64
	ReportToDone                []float64
	DoneToBegin                 []float64
	StartToFirstBegin           float64
	JoinRefusals                int
	Skew                        int // version skew rke2sim recorded, over every host
}

// upgradeHostTimes is one host's roll, seconds after the start.
type upgradeHostTimes struct {
	Host, Role string
	Begin      float64 // the leader committed its begin
	Began      float64 // its runner started the steps
	Steps      map[string]float64
	Finished   float64 // its runner finished the last step
	Done       float64 // the leader committed its done
	// Stop is how long its restart step took to stop the old RKE2 (the
	// service manager's "stopping rke2" → the new one's "rke2 started").
	Stop float64
}

func runUpgrade(ctx context.Context, o upgradeOptions, progress func(string, ...any)) (*upgradeResult, error) {
	simEnv := []string{
		"RKE2SIM_START_DELAY=" + o.Start.String(),
		"RKE2SIM_JOIN_DELAY=" + o.Join.String(),
		"RKE2SIM_AGENT_DELAY=" + o.Agent.String(),
		"RKE2SIM_MANIFEST_POLL=200ms",
		"RKE2SIM_CONNECT_RETRY=250ms",
		"RKE2SIM_PROMOTE_INTERVAL=250ms",
		"RKE2SIM_LOG_LEVEL=warn",
	}
	budget, err := upgrade.ParseBudget(o.Batch)
	if err != nil {
		return nil, fmt.Errorf("-batch %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	from, err := makeArtifacts(o, "from", o.From)
	if err != nil {
		return nil, err
	}
	to, err := makeArtifacts(o, "to", o.To)
	if err != nil {
		return nil, err
	}
	c, err := demo.New(demo.Options{Servers: o.Servers, Agents: o.Agents, Base: o.Base, Dir: o.Dir, Daemon: o.Daemon, Sim: o.Sim, Env: simEnv, ClusterName: "bench",
		LogLevel: cmp.Or(os.Getenv("BENCH_LOG_LEVEL"), "info")})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	hosts := fromDemo(c, func(int, *demo.Node) bool { return false })
	progress("installing %s on %d hosts by rke2sim's install script", o.From, len(hosts))
	for _, h := range hosts {
		if err := installFrom(h, from, o.From, o.Batch); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	progress("starting %d servers and %d agents", o.Servers, o.Agents)
	for _, h := range hosts {
		if err := h.start(inProcessOptions{}); err != nil {
			return nil, err
		}
	}
	if _, err := waitReady(wctx, hosts, nil); err != nil {
		return nil, fmt.Errorf("upgrade: the cluster at %s: %w (logs in %s)", o.From, err, o.Dir)
	}
	// Every daemon reads rke2-version at its start: restart the agents
	// (together: the roll waits for the servers), then the servers one at
	// a time, each ready again before the next, as an operator would.
	var agents, servers []*host
	for _, h := range hosts {
		if h.role == "agent" {
			agents = append(agents, h)
		} else {
			servers = append(servers, h)
		}
	}
	progress("restarting the daemons with rke2-version %s", o.To)
	restart := func(hs []*host) error {
		for _, h := range hs {
			if err := addDropIn(h, "60-upgrade.yaml", fmt.Sprintf("rke2-version: %s\nartifact-path: %s\n", o.To, to)); err != nil {
				return err
			}
		}
		var wg sync.WaitGroup
		for _, h := range hs {
			wg.Go(func() { h.proc.Stop(30 * time.Second) })
		}
		wg.Wait()
		for _, h := range hs {
			if err := h.start(inProcessOptions{}); err != nil {
				return err
			}
		}
		_, err := waitReady(wctx, hs, nil)
		return err
	}
	if err := restart(agents); err != nil {
		return nil, fmt.Errorf("upgrade: restarting the agents: %w (logs in %s)", err, o.Dir)
	}
	for _, h := range servers {
		if err := restart([]*host{h}); err != nil {
			return nil, fmt.Errorf("upgrade: restarting %s: %w (logs in %s)", h.name, err, o.Dir)
		}
	}
	progress("rolling %d servers and %d agents to %s", o.Servers, o.Agents, o.To)
	var last status.Upgrade
	err = demo.WaitFor(wctx, 250*time.Millisecond, func() bool {
		for _, h := range servers {
			st, err := h.status(wctx)
			if err != nil || st.Upgrade == nil {
				continue
			}
			last = *st.Upgrade
			if last.Phase == upgrade.PhaseFailed {
				return true
			}
			return last.Phase == upgrade.PhaseDone && last.Target == o.To
		}
		return false
	})
	if err != nil || last.Phase != upgrade.PhaseDone {
		b, _ := json.Marshal(last)
		return nil, fmt.Errorf("upgrade: the roll did not end done within %s: %w; last seen %s (logs in %s)", o.Timeout, err, b, o.Dir)
	}
	r := &upgradeResult{Servers: o.Servers, Agents: o.Agents, From: o.From, To: o.To, S: o.Start.Seconds(), A: o.Agent.Seconds(), Batch: budget.Of(o.Agents)}
	r.AgentBatches = (o.Agents + r.Batch - 1) / r.Batch
	r.Critical = float64(o.Servers)*r.S + float64(r.AgentBatches)*r.A
	if err := rollTimeline(r, hosts, o.To); err != nil {
		return nil, fmt.Errorf("upgrade: %w (logs in %s)", err, o.Dir)
	}
	r.JoinRefusals = countJoinRefusals(o.Dir)
	for _, h := range hosts {
		var s struct {
			Skew []json.RawMessage `json:"skew"`
		}
		if readJSON(filepath.Join(h.proc.RKE2DataDir, "sim", "state.json"), &s) {
			r.Skew += len(s.Skew)
		}
	}
	progress("  rolled in %.2f s; critical path %.2f s (%d×S %s + %d×A %s)", r.Measured, r.Critical, o.Servers, o.Start, r.AgentBatches, o.Agent)
	return r, nil
}

// makeArtifacts builds rke2sim's airgap artifacts of version v.
func makeArtifacts(o upgradeOptions, name, v string) (string, error) {
	dir := filepath.Join(o.Dir, "artifacts-"+name)
	out, err := exec.Command("sh", o.ArtifactsScript, o.Sim, dir, v).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("-artifacts-script %s %s: %w: %s", o.ArtifactsScript, v, err, out)
	}
	return dir, nil
}

// installFrom installs artifacts once, as a host set up before the daemon
// ran, and configures the install method for the roll: rke2sim's install
// script with the host's own prefix and unit folder, pinned by SHA-256.
func installFrom(h *host, artifacts, version, batch string) error {
	n := h.proc
	prefix := filepath.Join(n.Dir, "prefix")
	wrapper := filepath.Join(n.Dir, "install-rke2.sh")
	if err := os.MkdirAll(filepath.Join(n.Dir, "units"), 0o755); err != nil {
		return err
	}
	script := fmt.Sprintf("#!/bin/sh\nexport INSTALL_RKE2_TAR_PREFIX=%q RKE2SIM_INSTALL_UNIT_DIR=%q\nexec sh %q\n",
		prefix, filepath.Join(n.Dir, "units"), filepath.Join(artifacts, "install.sh"))
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		return err
	}
	cmd := exec.Command("sh", wrapper)
	cmd.Env = append(os.Environ(), "INSTALL_RKE2_ARTIFACT_PATH="+artifacts, "INSTALL_RKE2_TYPE="+n.Role,
		"INSTALL_RKE2_AGENT_IMAGES_DIR="+filepath.Join(n.RKE2DataDir, "agent", "images"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: install: %w: %s", n.Name, err, out)
	}
	return addDropIn(h, "50-bench.yaml", fmt.Sprintf("install-method: script\ninstall-script-url: %s\ninstall-script-sha256: %x\nartifact-path: %s\nrke2-bin: %s\nrke2-version: %s\nupgrade-agents-max-unavailable: %q\n",
		wrapper, sha256.Sum256([]byte(script)), artifacts, filepath.Join(prefix, "bin", "rke2"), version, batch))
}

// logLine is one zap console line of a daemon's log.
type logLine struct {
	at     time.Time
	msg    string
	fields map[string]any
}

func readLogLines(path string) []logLine {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "\t", 5)
		if len(parts) < 4 {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", parts[0])
		if err != nil {
			continue
		}
		l := logLine{at: ts, msg: parts[3]}
		if len(parts) == 5 {
			json.Unmarshal([]byte(parts[4]), &l.fields)
		}
		out = append(out, l)
	}
	return out
}

// rollTimeline reads the roll from the daemons' logs: the leader's
// commits ("committed", op upgrade-*) and each host's runner ("upgrade
// began", "upgrade step", "upgrade finished").
func rollTimeline(r *upgradeResult, hosts []*host, target string) error {
	var start time.Time
	begins, dones := map[string]time.Time{}, map[string]time.Time{}
	runs := map[string][]logLine{}
	service := map[string][]logLine{} // the service manager's stops and starts
	for _, h := range hosts {
		for _, l := range readLogLines(h.proc.LogPath) {
			if l.msg == "stopping rke2" || l.msg == "rke2 started" {
				service[h.name] = append(service[h.name], l)
			}
			op, _ := l.fields["op"].(string)
			node, _ := l.fields["server"].(string)
			switch {
			case l.msg == "committed" && op == upgrade.OpStart:
				if start.IsZero() || l.at.Before(start) {
					start = l.at
				}
			case l.msg == "committed" && op == upgrade.OpBegin:
				begins[node] = l.at // the last begin: a resumed host's counts
			case l.msg == "committed" && op == upgrade.OpDone:
				dones[node] = l.at
			case l.msg == "upgrade began: running its steps" || l.msg == "upgrade step" || l.msg == "upgrade finished":
				if t, _ := l.fields["target"].(string); t == target {
					runs[h.name] = append(runs[h.name], l)
				}
			}
		}
	}
	if start.IsZero() {
		return fmt.Errorf("no leader's log records the roll's start (%s committed)", upgrade.OpStart)
	}
	at := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return t.Sub(start).Seconds()
	}
	var end time.Time
	for _, h := range hosts {
		ht := upgradeHostTimes{Host: h.name, Role: h.role, Begin: at(begins[h.name]), Done: at(dones[h.name]), Steps: map[string]float64{}}
		if dones[h.name].IsZero() {
			return fmt.Errorf("no leader's log records %s's done", h.name)
		}
		if dones[h.name].After(end) {
			end = dones[h.name]
		}
		for _, l := range runs[h.name] {
			switch l.msg {
			case "upgrade began: running its steps":
				ht.Began = at(l.at)
			case "upgrade step":
				s, _ := l.fields["step"].(string)
				ht.Steps[s] = at(l.at)
			case "upgrade finished":
				ht.Finished = at(l.at)
			}
		}
		if rs, ok := ht.Steps[string(upgrade.StepRestart)]; ok {
			var stopping time.Time
			for _, l := range service[h.name] {
				switch {
				case at(l.at) < rs:
				case l.msg == "stopping rke2" && stopping.IsZero():
					stopping = l.at
				case l.msg == "rke2 started" && !stopping.IsZero() && ht.Stop == 0:
					ht.Stop = l.at.Sub(stopping).Seconds()
				}
			}
		}
		r.Hosts = append(r.Hosts, ht)
	}
	r.Measured = end.Sub(start).Seconds()
	sort.Slice(r.Hosts, func(i, j int) bool { return r.Hosts[i].Begin < r.Hosts[j].Begin })
	r.StartToFirstBegin = r.Hosts[0].Begin
	var agentSteps float64
	for i, h := range r.Hosts {
		if h.Began > 0 {
			if h.Role == "server" {
				r.PickupServers = append(r.PickupServers, h.Began-h.Begin)
			} else {
				r.PickupAgents = append(r.PickupAgents, h.Began-h.Begin)
			}
		}
		if h.Finished > 0 {
			r.ReportToDone = append(r.ReportToDone, h.Done-h.Finished)
			if h.Role == "server" {
				r.CriticalAsRan += h.Finished - h.Began
			} else {
				agentSteps += h.Finished - h.Began
			}
		}
		// The begin waited for the latest done before it (a server's for
		// the previous server; an agent's for a place in the batch).
		if i > 0 {
			prev := -1.0
			for _, o := range r.Hosts {
				if o.Done <= h.Begin && o.Done > prev {
					prev = o.Done
				}
			}
			if prev >= 0 {
				r.DoneToBegin = append(r.DoneToBegin, h.Begin-prev)
			}
		}
	}
	// Agents go batch at a time at most: their steps as they ran, spread
	// over the batch.
	r.CriticalAsRan += agentSteps / float64(r.Batch)
	var agentRestarts, servers float64
	for _, h := range r.Hosts {
		d := restartStep(h)
		if h.Role == "server" {
			servers += d
		} else {
			agentRestarts += d
		}
	}
	r.RestartsSpread = servers + agentRestarts/float64(r.Batch)
	longest := 0.0
	for _, place := range agentPlaces(r.Hosts, r.Batch) {
		var d float64
		for _, h := range place {
			d += restartStep(h)
		}
		longest = max(longest, d)
	}
	r.RestartsAsRan = servers + longest
	return nil
}

// agentPlaces are the agents as the roll ran them through the batch's
// places, in begin order: the first batch agents take a place each, and
// every later agent the place whose last agent's done was the latest
// committed at or before its begin (the done that freed the place; with
// none, the place freed first). hosts are in begin order.
func agentPlaces(hosts []upgradeHostTimes, batch int) [][]upgradeHostTimes {
	var places [][]upgradeHostTimes
	for _, h := range hosts {
		if h.Role != "agent" {
			continue
		}
		if len(places) < batch {
			places = append(places, []upgradeHostTimes{h})
			continue
		}
		freed := func(i int) float64 { return places[i][len(places[i])-1].Done }
		best := 0
		for i := 1; i < len(places); i++ {
			a, b := freed(i), freed(best)
			switch {
			case a <= h.Begin && b > h.Begin,
				a <= h.Begin && b <= h.Begin && a > b, // the latest done before the begin
				a > h.Begin && b > h.Begin && a < b:   // none before it: the first freed
				best = i
			}
		}
		places[best] = append(places[best], h)
	}
	return places
}

// restartStep is how long host h's restart step ran: its start to the
// next step's start (or to its finish).
func restartStep(h upgradeHostTimes) float64 {
	rs, ok := h.Steps[string(upgrade.StepRestart)]
	if !ok {
		return 0
	}
	end := h.Finished
	for _, t := range h.Steps {
		if t > rs && t < end {
			end = t
		}
	}
	return end - rs
}

// stepShare is the median over hosts of role of what step took (its
// start to the next step's start, or to finished).
func stepShare(hs []upgradeHostTimes, role string) map[string]float64 {
	out := map[string]float64{}
	per := map[string][]float64{}
	for _, h := range hs {
		if h.Role != role || h.Finished == 0 {
			continue
		}
		type st struct {
			name string
			at   float64
		}
		var ss []st
		for k, v := range h.Steps {
			ss = append(ss, st{k, v})
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].at < ss[j].at })
		for i, s := range ss {
			next := h.Finished
			if i+1 < len(ss) {
				next = ss[i+1].at
			}
			per[s.name] = append(per[s.name], next-s.at)
		}
	}
	for k, v := range per {
		out[k] = median(v)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2]
}
