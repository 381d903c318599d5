package loopback

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// cli runs an rke2-hanode verb against node n's configuration (its admin
// socket), as an operator on that host would.
func cli(t *testing.T, n *demo.Node, within time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	out, err := exec.CommandContext(ctx, daemonBin, append(args, "--config", n.ConfigPath)...).CombinedOutput()
	t.Logf("on %s: rke2-hanode %s:\n%s", n.Name, strings.Join(args, " "), out)
	return string(out), err
}

// roles splits a formed cluster's servers into the raft leader and the
// others.
func roles(t *testing.T, c *demo.Cluster) (leader *demo.Node, others []*demo.Node) {
	t.Helper()
	st, err := c.Nodes[0].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if n.Role != "server" {
			continue
		}
		if n.Name == st.Cluster.Raft.Leader {
			leader = n
		} else {
			others = append(others, n)
		}
	}
	if leader == nil {
		t.Fatalf("no raft leader among the servers (status says %q)", st.Cluster.Raft.Leader)
	}
	return leader, others
}

func waitPhase(t *testing.T, c *demo.Cluster, n *demo.Node, phase string, within time.Duration) status.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var st status.Status
	err := demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		var err error
		st, err = n.Status(ctx)
		return err == nil && st.Node.Phase == phase
	})
	if err != nil {
		logTail(t, n)
		for _, o := range c.Nodes {
			logGrep(t, o, "request", "clear", "WARN", "ERROR")
		}
		t.Fatalf("%s: phase %q (%s), want %s", n.Name, st.Node.Phase, st.Node.Error, phase)
	}
	return st
}

// logTail shows the end of n's daemon log.
func logTail(t *testing.T, n *demo.Node) {
	t.Helper()
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		t.Logf("%s: no log: %v", n.Name, err)
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("%s: end of its log:\n%s", n.Name, strings.Join(lines, "\n"))
}

// logGrep shows the last lines of n's log holding any of words.
func logGrep(t *testing.T, n *demo.Node, words ...string) {
	t.Helper()
	b, _ := os.ReadFile(n.LogPath)
	var hits []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				hits = append(hits, l)
				break
			}
		}
	}
	if len(hits) > 25 {
		hits = hits[len(hits)-25:]
	}
	t.Logf("%s: %v in its log:\n%s", n.Name, words, strings.Join(hits, "\n"))
}

func names(ns ...*demo.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

// TestRemoveVerb: `rke2-hanode remove` on a server. A removal that would
// break quorum (one of three servers down) is refused with the numbers and
// changes nothing; with all three up, removing a live server that does not
// lead raft, asked on the third server (the request travels in its signed
// claim to the leader), ends with real etcd without it, and its daemon
// stops RKE2 and says to run `rejoin --wipe`.
func TestRemoveVerb(t *testing.T) {
	c := newCluster(t, "127.87.0.31", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	leader, others := roles(t, c)
	victim, asker := others[0], others[1]

	// One server down: removing another would leave one of two answering.
	asker.Stop(10 * time.Second)
	out, err := cli(t, leader, 3*time.Minute, "remove", victim.Name)
	if err == nil || !strings.Contains(out, "removing "+victim.Name+" would break quorum: 2 etcd voters would remain, 1 of them answer, and 2 are needed") {
		t.Fatalf("remove with one server down: %v\n%s", err, out)
	}
	etcdVoters(t, leader, names(leader, victim, asker))
	if err := asker.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 180*time.Second)

	out, err = cli(t, asker, 12*time.Minute, "remove", victim.Name)
	if err != nil || !strings.Contains(out, victim.Name+" removed") {
		t.Fatalf("remove %s: %v\n%s", victim.Name, err, out)
	}
	for _, n := range []*demo.Node{leader, asker} {
		etcdVoters(t, n, names(leader, asker))
	}
	st := waitPhase(t, c, victim, status.PhaseFailed, 2*time.Minute)
	if !strings.Contains(st.Node.Error, "rke2-hanode rejoin --wipe") {
		t.Fatalf("%s: error %q, want it to say rejoin --wipe", victim.Name, st.Node.Error)
	}
	// Not a voter any more: a second removal is refused by the asker's own view.
	out, err = cli(t, leader, 3*time.Minute, "remove", victim.Name)
	if err == nil || !strings.Contains(out, victim.Name+" is not an etcd voter") {
		t.Fatalf("second remove: %v\n%s", err, out)
	}
}

// TestRemovedHostRejoinsWithWipe: a removed server, its daemon stopped,
// `rejoin --wipe`, started again: it tells the leader it was wiped and
// joins in its turn; real etcd lists the three again, no learner.
func TestRemovedHostRejoinsWithWipe(t *testing.T) {
	c := newCluster(t, "127.87.0.41", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	leader, others := roles(t, c)
	victim := others[0]
	if out, err := cli(t, leader, 12*time.Minute, "remove", victim.Name); err != nil {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	waitPhase(t, c, victim, status.PhaseFailed, 2*time.Minute)
	// Restarted as it is, it refuses to start on its stale datastore.
	victim.Stop(10 * time.Second)
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitPhase(t, c, victim, status.PhaseFailed, 3*time.Minute)
	if !strings.Contains(st.Node.Error, "rejoin --wipe") {
		t.Fatalf("restarted removed host: %q", st.Node.Error)
	}
	if out, err := cli(t, victim, time.Minute, "rejoin", "--wipe"); err == nil || !strings.Contains(out, "the daemon is running") {
		t.Fatalf("wipe while the daemon runs: %v\n%s", err, out)
	}
	victim.Stop(10 * time.Second)
	for _, pid := range victim.SimPIDs() {
		_ = syscallKill(pid)
	}
	if out, err := cli(t, victim, time.Minute, "rejoin", "--wipe"); err != nil {
		t.Fatalf("rejoin --wipe: %v\n%s", err, out)
	}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, c, victim, status.PhaseReady, 5*time.Minute)
	for _, n := range c.Nodes {
		etcdVoters(t, n, names(c.Nodes...))
	}
}

// TestReinstall: a server (not the raft leader) dies and comes back under
// the same name on a fresh disk — no daemon state, no RKE2 datastore, a new
// node password. It asks the leader to clear its old etcd member and node
// password (granted, its old self being dead), then joins in its turn:
// real etcd lists it once, no learner left.
func TestReinstall(t *testing.T) {
	c := newCluster(t, "127.87.0.51", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	_, others := roles(t, c)
	reinstall(t, c, others[0])
}

// The bootstrap node reinstalled (same name, fresh disk): it must not run
// cluster-init again on its empty disk (a second cluster), but clear its
// old member and join the cluster the others kept, through the slot.
func TestReinstallBootstrapNode(t *testing.T) {
	c := newCluster(t, "127.87.0.61", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	st, err := c.Nodes[0].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var victim *demo.Node
	for _, n := range c.Nodes {
		if n.Name == st.Cluster.BootstrapNode {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("no host is the bootstrap node %q", st.Cluster.BootstrapNode)
	}
	reinstall(t, c, victim)
	if s := readSim(t, victim); s.Mode != "join" {
		t.Fatalf("the reinstalled bootstrap node's RKE2 started in mode %q, want join", s.Mode)
	}
	checkClusterInits(t, c, false, 0)
}

// reinstall kills victim for good (daemon and RKE2), wipes its disk (the
// daemon's data-dir, RKE2's data dir and node password) and starts it
// again under the same name: it must ask for its old member to be cleared
// and join again, every server's etcd listing each name once.
func reinstall(t *testing.T, c *demo.Cluster, victim *demo.Node) {
	t.Helper()
	pids := victim.SimPIDs()
	victim.Kill()
	for _, pid := range pids {
		_ = syscallKill(pid)
	}
	for _, dir := range []string{filepath.Join(victim.Dir, "hanode"), victim.RKE2DataDir, filepath.Join(victim.RKE2ConfigDir, "node")} {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, c, victim, status.PhaseReady, 8*time.Minute)
	for _, n := range c.Nodes {
		etcdVoters(t, n, names(c.Nodes...))
	}
	// It went through the clear, not around it.
	b, _ := os.ReadFile(victim.LogPath)
	if !strings.Contains(string(b), "a fresh disk: a reinstall") || !strings.Contains(string(b), "the raft leader cleared this host's old self") {
		logGrep(t, victim, "reinstall", "clear", "WARN")
		t.Fatal("the reinstalled host did not ask for its old member to be cleared")
	}
}
