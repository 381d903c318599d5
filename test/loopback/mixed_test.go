package loopback

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/test/testbin"
)

// previousRelease names the commit whose daemon must work beside this
// tree's: the one place that records it.
const previousRelease = "testdata/previous-release"

// TestMixedDaemonVersions is rke2-hanode's own rolling upgrade: the new
// package installed host by host. A cluster forms with daemons of two
// releases side by side (servers 1 and 3 and agent 1 run this tree's
// build, server 2 and agent 2 the previous release's), so gossip metadata,
// raft commands, snapshots and progress files cross versions both ways.
// Then each old daemon is stopped and started again on its data dir with
// the new build, one at a time: the cluster stays formed throughout, with
// one cluster-init, the same etcd members (no server joins again) and the
// same bootstrap node.
func TestMixedDaemonVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("loopback clusters take tens of seconds; skipped with -short")
	}
	commit, err := testbin.ReadRelease(previousRelease)
	if err != nil {
		t.Fatal(err)
	}
	oldVersion := "previous-" + commit[:min(len(commit), 7)]
	oldBin, err := testbin.BuildRelease(t.TempDir(), commit, oldVersion)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, "127.103.0.11", 3, 2)
	olds := []*demo.Node{c.Node("server-2"), c.Node("agent-2")}
	for _, n := range olds {
		n.SetDaemon(oldBin)
		oldAccepts(t, oldBin, n)
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 180*time.Second)
	checkCluster(t, c, false)
	for _, n := range c.Nodes {
		want := "dev"
		if slices.Contains(olds, n) {
			want = oldVersion
		}
		runsVersion(t, n, want)
	}
	servers := []string{"server-1", "server-2", "server-3"}
	for _, n := range c.Nodes[:3] {
		etcdVoters(t, n, servers)
	}
	before := evidence(t, c)
	boot := bootstrapNode(t, c)
	t.Logf("formed with %s and %s on %s; bootstrap node %s", olds[0].Name, olds[1].Name, oldVersion, boot)

	// The upgrade: one host at a time, stopped as systemd stops a unit for
	// a package upgrade, and started with the new build on the same folders.
	for _, n := range olds {
		t.Logf("upgrading %s to this tree's build", n.Name)
		n.Stop(30 * time.Second)
		n.SetDaemon(daemonBin)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c, 180*time.Second)
		runsVersion(t, n, "dev")
		for _, s := range c.Nodes[:3] {
			etcdVoters(t, s, servers)
		}
		checkCluster(t, c, false)
		if after := evidence(t, c); !sameEvidence(t, before, after) {
			t.Fatalf("after upgrading %s the cluster is not the one that formed", n.Name)
		}
		if got := bootstrapNode(t, c); got != boot {
			t.Errorf("after upgrading %s the bootstrap node is %q, was %q", n.Name, got, boot)
		}
	}
	checkNoSecrets(t, c)
}

// oldAccepts fails the test when the old build refuses n's config: its
// config must hold only keys that release knows. preflight exits 2 on a
// config error; its host checks may fail here (exit 1) and do not matter.
func oldAccepts(t *testing.T, oldBin string, n *demo.Node) {
	t.Helper()
	out, err := exec.Command(oldBin, "preflight", "--config", n.ConfigPath).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 || err != nil && exit == nil {
		t.Fatalf("%s: the previous release refuses its config (%v): a key it does not know must not be written for it:\n%s", n.Name, err, out)
	}
}

// runsVersion waits until n's metrics show the daemon version want, so the
// test knows which build each host runs.
func runsVersion(t *testing.T, n *demo.Node, want string) {
	t.Helper()
	line := `rke2_hanode_info{node="` + n.Name + `",role="` + n.Role + `",version="` + want + `"} 1`
	var metrics string
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		body, err := get("http://" + n.HTTPAddress + "/metrics")
		metrics = body
		return err == nil && containsLine(body, line)
	}) != nil {
		var infos []string
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, "rke2_hanode_info") {
				infos = append(infos, l)
			}
		}
		t.Fatalf("%s does not run version %q: its info metric is %q", n.Name, want, infos)
	}
}

// hostEvidence is what must not change while daemons are upgraded: how a
// host's RKE2 came to be, and for a server its own join and the etcd
// members (names carry a random suffix, so a server that joined again
// would show up as a new member).
type hostEvidence struct {
	mode, caHash, joinStarted, joinFinished string
	members                                 []string
}

func evidence(t *testing.T, c *demo.Cluster) map[string]hostEvidence {
	t.Helper()
	out := map[string]hostEvidence{}
	for _, n := range c.Nodes {
		s := readSim(t, n)
		h := hostEvidence{mode: s.Mode, caHash: s.CAHash}
		if n.Role == "server" {
			h.joinStarted, h.joinFinished = s.JoinStarted, s.JoinFinished
			var e simEtcd
			readJSON(t, filepath.Join(n.RKE2DataDir, "sim", "state.json"), &e)
			for _, m := range e.Etcd.Members {
				h.members = append(h.members, m.Name)
			}
			slices.Sort(h.members)
		}
		out[n.Name] = h
	}
	return out
}

func sameEvidence(t *testing.T, before, after map[string]hostEvidence) bool {
	t.Helper()
	same := true
	for name, b := range before {
		a := after[name]
		if a.mode != b.mode || a.caHash != b.caHash || a.joinStarted != b.joinStarted || a.joinFinished != b.joinFinished || !slices.Equal(a.members, b.members) {
			t.Errorf("%s: RKE2 evidence changed:\n  before %+v\n  after  %+v", name, b, a)
			same = false
		}
	}
	return same
}

// bootstrapNode is the bootstrap node every server reports; the test fails
// when they disagree.
func bootstrapNode(t *testing.T, c *demo.Cluster) string {
	t.Helper()
	boot := ""
	for _, n := range c.Nodes {
		if n.Role != "server" {
			continue
		}
		st, err := n.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if boot == "" {
			boot = st.Cluster.BootstrapNode
		}
		if st.Cluster.BootstrapNode == "" || st.Cluster.BootstrapNode != boot {
			t.Errorf("%s says the bootstrap node is %q, another server %q", n.Name, st.Cluster.BootstrapNode, boot)
		}
	}
	return boot
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
