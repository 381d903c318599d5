package loopback

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// powerCut ends every process of the cluster at once, as a power cut does:
// RKE2 (rke2sim, and anything it left) first, so that no RKE2 sees its
// daemon go, then the daemons, all with SIGKILL.
func powerCut(t *testing.T, c *demo.Cluster) {
	t.Helper()
	for _, n := range c.Nodes {
		for _, pid := range n.SimPIDs() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, n := range c.Nodes {
		n.Kill()
	}
	// Whatever a daemon's death let out in the meantime goes too.
	for _, n := range c.Nodes {
		for _, pid := range n.SimPIDs() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestColdStart: three servers and an agent formed; every host loses power
// at once and boots again, in a random order with delays. Each daemon
// resumes: servers start RKE2 on their own datastores (nobody bootstraps
// again, raft kept its state), etcd waits for a quorum, kube-vip brings the
// VIP up once the API answers, the agent reconnects. Real etcd is the
// witness: the same 3 voters on every server, still one cluster-init.
func TestColdStart(t *testing.T) {
	c := newCluster(t, "127.88.0.11", 3, 1)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	checkCluster(t, c, false)
	before := map[string]simState{}
	for _, n := range c.Nodes {
		before[n.Name] = readSim(t, n)
	}

	powerCut(t, c)
	cut := time.Now()
	t.Log("power cut: every daemon and every rke2sim killed")

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	order := slices.Clone(c.Nodes)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var names []string
	for _, n := range order {
		names = append(names, n.Name)
	}
	t.Logf("seed %d: boot order %v", seed, names)
	firstServer := true
	for i, n := range order {
		if i > 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(4 * time.Second))))
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if n.Role == "server" && firstServer {
			firstServer = false
			checkAloneAfterCut(t, n)
		}
	}
	rows := waitReady(t, c, 300*time.Second)
	checkCluster(t, c, false)

	// Nobody bootstrapped or joined again: each host kept its mode and its
	// CA, each server its join times (an agent registers again at every
	// start, as RKE2's agent does).
	for _, n := range c.Nodes {
		after := readSim(t, n)
		b := before[n.Name]
		if n.Role == "agent" {
			after.JoinStarted, after.JoinFinished, after.JoinedVia = b.JoinStarted, b.JoinFinished, b.JoinedVia
		}
		if after.Mode != b.Mode || after.CAHash != b.CAHash || after.JoinStarted != b.JoinStarted || after.JoinFinished != b.JoinFinished {
			t.Errorf("%s: rke2sim evidence changed across the cold start: before %+v, after %+v", n.Name, b, after)
		}
	}
	// The VIP is back with the cluster's CA, and every host says so.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var st status.Status
	err := demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
		for _, n := range c.Nodes {
			var err error
			if st, err = n.Status(ctx); err != nil || !st.Cluster.VIPReachable || !st.Cluster.ClusterReady {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Errorf("the VIP is not reachable from every host after the cold start: last status %+v", st.Cluster)
	}
	// Real etcd, restarted on every server after the cut: the same three
	// voters everywhere, no learner, a leader.
	want := []string{"server-1", "server-2", "server-3"}
	for _, n := range c.Nodes {
		if n.Role != "server" {
			continue
		}
		etcdVoters(t, n, want)
		fi, err := os.Stat(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
		if err != nil || !fi.ModTime().After(cut) {
			t.Errorf("%s: rke2sim's evidence was not rewritten after the cold start (%v)", n.Name, err)
		}
	}
	// Status shows each step of the way back: every server's timeline has
	// starting then ready after the cut; none went through electing a new
	// bootstrap or waiting for a join slot.
	for _, r := range rows {
		if r.Node.Role != "server" {
			continue
		}
		var phases []string
		for _, tr := range r.Status.Timeline[r.Node.Name] {
			if tr.At.After(cut) {
				phases = append(phases, tr.Phase)
			}
		}
		si, ri := slices.Index(phases, status.PhaseStarting), slices.Index(phases, status.PhaseReady)
		if si < 0 || ri < si {
			t.Errorf("%s: timeline after the cut %v lacks starting then ready", r.Node.Name, phases)
		}
		if slices.Contains(phases, status.PhaseWaitingJoinSlot) {
			t.Errorf("%s: waited for a join slot after the cold start (%v): its join was recorded before", r.Node.Name, phases)
		}
	}
}

// checkAloneAfterCut: the first server booted after the cut, with no other
// server up yet, starts RKE2 on its own datastore at once and its status
// says that etcd waits for a quorum.
func checkAloneAfterCut(t *testing.T, n *demo.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var st status.Status
	err := demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		var err error
		st, err = n.Status(ctx)
		return err == nil && st.Node.Phase == status.PhaseStarting && strings.Contains(st.Node.Detail, "etcd waits for a quorum: 1 of the 2")
	})
	if err != nil {
		t.Errorf("%s, alone after the cut: phase %q, detail %q, error %q; want starting, RKE2 on its own datastore waiting for a quorum", n.Name, st.Node.Phase, st.Node.Detail, st.Node.Error)
		return
	}
	t.Logf("%s, alone after the cut: %s (%s)", n.Name, st.Node.Phase, st.Node.Detail)
	if len(n.SimPIDs()) == 0 {
		t.Errorf("%s: no RKE2 runs while its status says it started it", n.Name)
	}
}
