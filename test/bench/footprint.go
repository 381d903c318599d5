package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
)

// footprintResult is one daemon process's cost in a formed cluster.
type footprintResult struct {
	Members    int
	Window     float64 // s
	BinaryMB   float64 // bin/rke2-hanode as built by make build (-s -w)
	Daemons    []daemonCost
	FormedIn   float64 // s, first start to every host ready
	Processes  int
	InProcess  int
	MeasuredAt string
}

type daemonCost struct {
	Host, Role string
	RSSMB      float64 // VmRSS at the end of the window
	PeakRSSMB  float64 // VmHWM
	CPU        float64 // fraction of one core over the window
}

// procStat reads a process's utime+stime (clock ticks) and its VmRSS and
// VmHWM (kB).
func procStat(pid int) (ticks int64, rssKB, hwmKB int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// Fields after the command name, which is in parentheses.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rssKB = n
		case "VmHWM":
			hwmKB = n
		}
	}
	return ut + st, rssKB, hwmKB, nil
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture this runs on.
const clockTicks = 100

// runFootprint forms a cluster of members hosts (3 servers), the three
// servers and one agent as processes and the rest in this process, and
// measures the processes over window once everything is ready.
func runFootprint(ctx context.Context, members int, window time.Duration, daemon, sim, dir string, progress func(string, ...any)) (*footprintResult, error) {
	simEnv := []string{"RKE2SIM_START_DELAY=1s", "RKE2SIM_JOIN_DELAY=1s", "RKE2SIM_AGENT_DELAY=500ms", "RKE2SIM_LOG_LEVEL=warn"}
	for _, kv := range simEnv {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	c, err := demo.New(demo.Options{
		Servers: 3, Agents: members - 3, Base: "127.93.0.11", Dir: dir,
		Daemon: daemon, Sim: sim, Env: simEnv, LogLevel: "info", ClusterName: "bench",
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	measured := func(i int, n *demo.Node) bool { return n.Role == "server" || n.Name == "agent-1" }
	hosts := fromDemo(c, func(i int, n *demo.Node) bool { return !measured(i, n) })
	defer stopAll(hosts)
	log, err := daemonLog(dir, "warn")
	if err != nil {
		return nil, err
	}
	r := &footprintResult{Members: members, MeasuredAt: time.Now().UTC().Format(time.RFC3339)}
	if fi, err := os.Stat(daemon); err == nil {
		r.BinaryMB = float64(fi.Size()) / (1 << 20)
	}
	progress("footprint: a %d-member cluster, 3 servers and agent-1 as processes, the rest in this process", members)
	for _, h := range hosts {
		if h.proc != nil {
			r.Processes++
		} else {
			r.InProcess++
		}
		if err := h.start(inProcessOptions{Logger: log}); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ready, err := waitReady(wctx, hosts, nil)
	if err != nil {
		return nil, fmt.Errorf("footprint: %d of %d ready: %w (logs in %s)", len(ready), len(hosts), err, dir)
	}
	r.FormedIn = time.Since(hosts[0].started).Seconds()
	progress("  formed in %.1fs; settling 10s, then measuring for %s", r.FormedIn, window)
	time.Sleep(10 * time.Second)
	type sample struct {
		h     *host
		pid   int
		ticks int64
	}
	var ss []sample
	for _, h := range hosts {
		if h.proc == nil {
			continue
		}
		pid, err := daemonPID(h.proc, daemon)
		if err != nil {
			return nil, err
		}
		t, _, _, err := procStat(pid)
		if err != nil {
			return nil, err
		}
		ss = append(ss, sample{h, pid, t})
	}
	t0 := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	el := time.Since(t0).Seconds()
	r.Window = el
	for _, s := range ss {
		t, rss, hwm, err := procStat(s.pid)
		if err != nil {
			return nil, err
		}
		d := daemonCost{Host: s.h.name, Role: s.h.role, RSSMB: float64(rss) / 1024, PeakRSSMB: float64(hwm) / 1024,
			CPU: float64(t-s.ticks) / clockTicks / el}
		r.Daemons = append(r.Daemons, d)
		progress("  %s: RSS %.1f MB (peak %.1f), %.2f%% of a core", d.Host, d.RSSMB, d.PeakRSSMB, 100*d.CPU)
	}
	return r, nil
}

// daemonPID finds the host's rke2-hanode process among the processes that
// name its folder (the daemon and its RKE2).
func daemonPID(n *demo.Node, daemon string) (int, error) {
	for _, pid := range n.SimPIDs() {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && exe == daemon {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("footprint: no %s process for %s", daemon, n.Name)
}
