package loopback

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
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
		fitOldConfig(t, oldBin, n)
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 180*time.Second)
	checkCluster(t, c, false)
	newVersion := versionOf(t, daemonBin)
	for _, n := range c.Nodes {
		want := newVersion
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
		othersReady(t, c, n)
		n.SetDaemon(daemonBin)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c, 180*time.Second)
		runsVersion(t, n, newVersion)
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

// fitOldConfig makes n's config one the old build reads: keys that release
// does not know (it refuses unknown keys, naming them) are left out, as an
// operator leaves them out on a host not yet upgraded, and said in the
// log. Any other refusal fails the test. preflight exits 2 on a config
// error; its host checks may fail here (exit 1) and do not matter.
func fitOldConfig(t *testing.T, oldBin string, n *demo.Node) {
	t.Helper()
	var dropped []string
	for range 10 {
		out, err := exec.Command(oldBin, "preflight", "--config", n.ConfigPath).CombinedOutput()
		var exit *exec.ExitError
		if err == nil || errors.As(err, &exit) && exit.ExitCode() != 2 {
			if len(dropped) > 0 {
				t.Logf("%s: left out of its config, unknown to the previous release: %v", n.Name, dropped)
			}
			return
		}
		unknown := unknownKeys.FindAllStringSubmatch(string(out), -1)
		if exit == nil || len(unknown) == 0 {
			t.Fatalf("%s: the previous release refuses its config (%v):\n%s", n.Name, err, out)
		}
		for _, m := range unknown {
			dropped = append(dropped, m[1])
		}
		dropKeys(t, n.ConfigPath, dropped)
	}
	t.Fatalf("%s: the previous release still refuses its config after leaving out %v", n.Name, dropped)
}

// unknownKeys matches preflight's line for an unknown key.
var unknownKeys = regexp.MustCompile(`(?m)^FAIL\s+config\s+(\S+) \([^)]*\): unknown key`)

// dropKeys rewrites the config file at path without the top-level keys.
func dropKeys(t *testing.T, path string, keys []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("%s: not a YAML mapping (%v)", path, err)
	}
	root := doc.Content[0]
	var kept []*yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if !slices.Contains(keys, root.Content[i].Value) {
			kept = append(kept, root.Content[i], root.Content[i+1])
		}
	}
	root.Content = kept
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsutil.WriteFileAtomic(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// othersReady fails the test unless every host but down is ready while
// down is stopped (a minute at most to see it).
func othersReady(t *testing.T, c *demo.Cluster, down *demo.Node) {
	t.Helper()
	var rows []demo.Row
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		rows = c.Snapshot(ctx)
		rows = slices.DeleteFunc(rows, func(r demo.Row) bool { return r.Node == down })
		return demo.AllReady(rows)
	}) != nil {
		for _, r := range rows {
			t.Logf("%s: phase %q error %q (%v)", r.Node.Name, r.Status.Node.Phase, r.Status.Node.Error, r.Err)
		}
		t.Fatalf("with %s stopped for its upgrade, the other hosts are not all ready", down.Name)
	}
}

// versionOf is the version an rke2-hanode executable reports.
func versionOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) < 2 {
		t.Fatalf("%s version: %q, %v", bin, out, err)
	}
	return f[1]
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
