package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// healOptions shape one run of "a server dies, the cluster heals".
type healOptions struct {
	Base    string
	Removal time.Duration // server-removal-timeout
	Join    time.Duration // J: a server's learner phase (RKE2SIM_JOIN_DELAY)
	Daemon  string
	Sim     string
	Dir     string
	Timeout time.Duration
}

// healResult: three servers and a standby; one server dies for good (daemon
// and RKE2); the cluster is at full strength again once the standby is
// ready and etcd has three voters without the dead one. Times are seconds
// after the death.
type healResult struct {
	Servers        int
	Removal, J     float64
	Critical       float64 // Removal + J: the dead timeout, then one join
	Measured       float64 // the standby ready with the dead member gone from etcd
	Victim         string
	Standby        string
	RaftLost       float64 // the raft leader's first failed heartbeat to the victim (its log)
	SeenSuspect    float64 // the raft leader's gossip first doubts the victim
	SeenDead       float64 // the raft leader's gossip shows the victim dead
	Granted        float64 // the standby enters starting (it holds the join slot)
	StandbyReady   float64 // the standby enters ready
	EtcdFullAgain  float64 // the standby's etcd lists three voters, the victim gone
	JoinRefusals   int
	RemovalTimeout string // as configured
}

func runHeal(ctx context.Context, o healOptions, progress func(string, ...any)) (*healResult, error) {
	simEnv := []string{
		"RKE2SIM_START_DELAY=1s",
		"RKE2SIM_JOIN_DELAY=" + o.Join.String(),
		"RKE2SIM_MANIFEST_POLL=200ms",
		"RKE2SIM_CONNECT_RETRY=250ms",
		"RKE2SIM_PROMOTE_INTERVAL=250ms",
		"RKE2SIM_LOG_LEVEL=warn",
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	c, err := demo.New(demo.Options{Servers: 3, Base: o.Base, Dir: o.Dir, Daemon: o.Daemon, Sim: o.Sim, Env: simEnv, ClusterName: "bench"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	base := strings.TrimSuffix(o.Base, ".11")
	if _, err := c.AddNode("server-4", "server", base+".14"); err != nil {
		return nil, err
	}
	hosts := fromDemo(c, func(int, *demo.Node) bool { return false })
	for _, h := range hosts {
		if err := addDropIn(h, "50-bench.yaml", fmt.Sprintf("server-removal-timeout: %s\n", o.Removal)); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	progress("starting 3 servers")
	for _, h := range hosts[:3] {
		if err := h.start(inProcessOptions{}); err != nil {
			return nil, err
		}
	}
	if _, err := waitReady(wctx, hosts[:3], nil); err != nil {
		return nil, fmt.Errorf("heal: the first servers: %w (logs in %s)", err, o.Dir)
	}
	standby := hosts[3]
	if err := standby.start(inProcessOptions{}); err != nil {
		return nil, err
	}
	if err := demo.WaitFor(wctx, 100*time.Millisecond, func() bool {
		st, err := standby.status(wctx)
		return err == nil && st.Node.Phase == status.PhaseStandby
	}); err != nil {
		return nil, fmt.Errorf("heal: the 4th server never reached standby (logs in %s)", o.Dir)
	}
	// etcd refuses a member add until every voter has been connected for
	// 5 s: let the cluster be older than that, as a cluster in service is.
	time.Sleep(6 * time.Second)
	st, err := hosts[0].status(wctx)
	if err != nil {
		return nil, err
	}
	leader := st.Cluster.Raft.Leader
	var victim, watcher *host
	for _, h := range hosts[:3] {
		switch {
		case victim == nil && h.name != leader:
			victim = h
		case h.name == leader:
			watcher = h
		}
	}
	if victim == nil || watcher == nil {
		return nil, fmt.Errorf("heal: no raft leader among the servers (status says %q)", leader)
	}
	progress("killing %s (raft leader %s); %s waits in standby", victim.name, leader, standby.name)
	pids := victim.proc.SimPIDs()
	dead := time.Now()
	victim.proc.Kill()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	r := &healResult{Servers: 3, Removal: o.Removal.Seconds(), J: o.Join.Seconds(), Victim: victim.name, Standby: standby.name, RemovalTimeout: o.Removal.String()}
	r.Critical = r.Removal + r.J
	since := func(t time.Time) float64 { return t.Sub(dead).Seconds() }
	want := []string{}
	for _, h := range hosts {
		if h != victim {
			want = append(want, h.name)
		}
	}
	slices.Sort(want)
	err = demo.WaitFor(wctx, 100*time.Millisecond, func() bool {
		if r.SeenDead == 0 {
			if st, err := watcher.status(wctx); err == nil {
				for _, m := range st.Members {
					if m.Name != victim.name {
						continue
					}
					if m.State != "alive" && r.SeenSuspect == 0 {
						r.SeenSuspect = since(time.Now())
					}
					if m.State == "dead" || m.State == "left" {
						r.SeenDead = since(time.Now())
					}
				}
			}
		}
		if r.StandbyReady == 0 {
			if st, err := standby.status(wctx); err == nil && st.Node.Phase == status.PhaseReady {
				r.StandbyReady = since(st.Node.Since)
			}
		}
		if r.EtcdFullAgain == 0 && etcdVotersAre(standby.proc.RKE2DataDir, want) {
			r.EtcdFullAgain = since(time.Now())
		}
		return r.StandbyReady > 0 && r.EtcdFullAgain > 0
	})
	if err != nil {
		return nil, fmt.Errorf("heal: not at full strength within %s of %s's death: standby ready after %.1f s, etcd full after %.1f s (logs in %s)", o.Timeout, victim.name, r.StandbyReady, r.EtcdFullAgain, o.Dir)
	}
	if pt, err := standby.phaseTimes(ctx); err == nil {
		if t, ok := pt[status.PhaseStarting]; ok {
			r.Granted = since(t)
		}
	}
	r.RaftLost = firstHeartbeatFailure(watcher.proc.LogPath, victim.proc.IP, dead, since)
	// The polled etcd view lags the standby's own ready by up to a poll.
	r.Measured = max(r.StandbyReady, r.EtcdFullAgain)
	r.JoinRefusals = countJoinRefusals(o.Dir)
	progress("  full strength %.2f s after the death; critical path %.2f s (removal timeout %s + J %s)", r.Measured, r.Critical, o.Removal, o.Join)
	return r, nil
}

// etcdVotersAre: the etcd member list rke2sim's state.json under dataDir
// shows is exactly want (host names), all voters.
func etcdVotersAre(dataDir string, want []string) bool {
	var s struct {
		Etcd struct {
			Members []struct {
				Name    string `json:"name"`
				Learner bool   `json:"learner"`
			} `json:"members"`
		} `json:"etcd"`
	}
	if !readJSON(filepath.Join(dataDir, "sim", "state.json"), &s) {
		return false
	}
	var names []string
	for _, m := range s.Etcd.Members {
		if m.Learner {
			return false
		}
		// RKE2 names a member <node name>-<random suffix>.
		name := m.Name
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return slices.Equal(names, want)
}

// firstHeartbeatFailure is when, in seconds after the death, the leader's
// log first says raft failed to heartbeat to the victim's address (0: not
// found). The removal timeout counts from raft's last contact before it,
// when that comes before gossip's suspicion.
func firstHeartbeatFailure(logPath, victimIP string, dead time.Time, since func(time.Time) float64) float64 {
	for _, l := range readLogLines(logPath) {
		if l.msg != "failed to heartbeat to" || l.at.Before(dead.Add(-time.Second)) {
			continue
		}
		if peer, _ := l.fields["peer"].(string); strings.HasPrefix(peer, victimIP+":") {
			return max(since(l.at), 0)
		}
	}
	return 0
}
