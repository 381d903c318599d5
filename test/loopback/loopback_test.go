// Package loopback runs whole clusters of real `rke2-hanode run` processes
// on 127.x addresses, with rke2sim as RKE2 and the VIP on loopback, and
// checks what the runbook promises: one cluster-init, one CA, server joins
// one at a time, agents on the secure token, no secret anywhere.
package loopback

import (
	"github.com/rke2-hanode/rke2-hanode/test/testbin"

	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

var daemonBin, simBin string

func TestMain(m *testing.M) { testbin.Main(m, &daemonBin, &simBin) }

// simEnv gives rke2sim short, distinct delays.
var simEnv = []string{"RKE2SIM_START_DELAY=1s", "RKE2SIM_JOIN_DELAY=1s", "RKE2SIM_AGENT_DELAY=300ms"}

func newCluster(t *testing.T, base string, servers, agents int) *demo.Cluster {
	t.Helper()
	return newClusterEnv(t, base, servers, agents, simEnv)
}

// newClusterEnv is newCluster with rke2sim's environment env.
func newClusterEnv(t *testing.T, base string, servers, agents int, env []string) *demo.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("loopback clusters take tens of seconds; skipped with -short")
	}
	c, err := demo.New(demo.Options{
		Servers: servers, Agents: agents, Base: base, Dir: t.TempDir(),
		Daemon: daemonBin, Sim: simBin, Env: env, LogLevel: "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("---- %s: last lines of its log\n%s", n.Name, tail(n.LogPath, 40))
			}
		}
		c.Close()
	})
	return c
}

func waitReady(t *testing.T, c *demo.Cluster, within time.Duration) []demo.Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	rows, err := c.Watch(ctx, time.Now(), 250*time.Millisecond, nil)
	if err != nil {
		// Watch's last rows were asked with the expired context: ask again.
		rows = c.Snapshot(context.Background())
		for _, r := range rows {
			t.Logf("%s: phase %q error %q (%v)", r.Node.Name, r.Status.Node.Phase, r.Status.Node.Error, r.Err)
		}
		t.Fatalf("cluster not ready within %s", within)
	}
	return rows
}

// simState is rke2sim's evidence file.
type simState struct {
	Mode         string `json:"mode"`
	CAHash       string `json:"ca_hash"`
	JoinedVia    string `json:"joined_via"`
	JoinStarted  string `json:"join_started"`
	JoinFinished string `json:"join_finished"`
	Rejections   []struct {
		At     string `json:"at"`
		Reason string `json:"reason"`
	} `json:"rejections"`
}

func readSim(t *testing.T, n *demo.Node) simState {
	t.Helper()
	var s simState
	data, err := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("%s: state.json: %v", n.Name, err)
	}
	return s
}

// checkCluster asserts the runbook's invariants over every host of c.
func checkCluster(t *testing.T, c *demo.Cluster, allowRejections bool) {
	t.Helper()
	checkClusterInits(t, c, allowRejections, 1)
}

// checkClusterInits is checkCluster with wantInits servers whose RKE2 last
// started with cluster-init (none once the bootstrap node rejoined a
// cluster recovered on another server).
func checkClusterInits(t *testing.T, c *demo.Cluster, allowRejections bool, wantInits int) {
	t.Helper()
	inits, cas := 0, map[string]bool{}
	type join struct {
		name          string
		start, finish time.Time
	}
	var joins []join
	for _, n := range c.Nodes {
		s := readSim(t, n)
		if s.Mode == "cluster-init" {
			inits++
		}
		cas[s.CAHash] = true
		if s.Mode == "join" {
			start, err1 := time.Parse(time.RFC3339Nano, s.JoinStarted)
			finish, err2 := time.Parse(time.RFC3339Nano, s.JoinFinished)
			if err1 != nil || err2 != nil {
				t.Errorf("%s: join times %q, %q are not RFC 3339", n.Name, s.JoinStarted, s.JoinFinished)
			}
			joins = append(joins, join{n.Name, start, finish})
		}
		// etcd refuses any member add until every voter has been connected
		// for 5 s ("etcdserver: unhealthy cluster"), so a join right after a
		// promotion is turned away and retried, by k3s as by rke2sim: that
		// one is no product fault. Every other refusal is.
		var refused []string
		for _, r := range s.Rejections {
			if r.Reason != "etcdserver: unhealthy cluster" {
				refused = append(refused, r.Reason)
			}
		}
		if len(refused) > 0 && !allowRejections {
			t.Errorf("%s: rke2sim turned joins away: %q", n.Name, refused)
		}
		if n.Role == "agent" {
			cfg, err := os.ReadFile(filepath.Join(n.RKE2ConfigDir, "config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if want := "token: K10" + s.CAHash + "::node:"; !strings.Contains(string(cfg), want) {
				t.Errorf("%s: RKE2 config lacks the secure token %q", n.Name, want[:20]+"…")
			}
			if !strings.Contains(string(cfg), "server: https://"+c.VIP+":9345") {
				t.Errorf("%s: RKE2 config does not join through the VIP", n.Name)
			}
		}
	}
	if inits != wantInits {
		t.Errorf("%d cluster-inits, want exactly %d", inits, wantInits)
	}
	if len(cas) != 1 {
		t.Errorf("%d CAs across the cluster, want 1: %v", len(cas), cas)
	}
	sort.Slice(joins, func(i, j int) bool { return joins[i].start.Before(joins[j].start) })
	for i := 1; i < len(joins); i++ {
		if joins[i].start.Before(joins[i-1].finish) {
			t.Errorf("server joins overlap: %s [%s, %s] and %s started %s", joins[i-1].name,
				joins[i-1].start.Format(time.StampMicro), joins[i-1].finish.Format(time.StampMicro), joins[i].name, joins[i].start.Format(time.StampMicro))
		}
	}
}

func TestClusterFormsOnce(t *testing.T) {
	c := newCluster(t, "127.81.0.11", 3, 2)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	rows := waitReady(t, c, 90*time.Second)
	checkCluster(t, c, false)

	// Every host agrees on the bootstrap node and sees every member.
	boot := ""
	for _, r := range rows {
		if r.Node.Role == "server" {
			if boot == "" {
				boot = r.Status.Cluster.BootstrapNode
			}
			if r.Status.Cluster.BootstrapNode != boot || boot == "" {
				t.Errorf("%s says the bootstrap node is %q, others %q", r.Node.Name, r.Status.Cluster.BootstrapNode, boot)
			}
		}
		if len(r.Status.Members) != len(c.Nodes) {
			t.Errorf("%s sees %d members, want %d", r.Node.Name, len(r.Status.Members), len(c.Nodes))
		}
		if !r.Status.Cluster.ClusterReady {
			t.Errorf("%s: cluster not ready in its status", r.Node.Name)
		}
	}
	// One scrape of any host shows the whole cluster's progress. Gossip
	// carries the last phase changes within a second or so, and push/pull
	// within its interval whatever gossip lost: memberlist's broadcast
	// queue can drop the relay of one agent's ready when another agent's
	// of the same length comes in just after (see gossip.broadcastQueue),
	// and both agents get ready together here.
	wants := []string{
		`rke2_hanode_cluster_nodes{phase="ready",role="server"} 3`,
		`rke2_hanode_cluster_nodes{phase="ready",role="agent"} 2`,
		`rke2_hanode_phase{phase="ready"} 1`,
		`rke2_hanode_cluster_ready 1`,
		`rke2_hanode_vip_reachable 1`,
	}
	var missing []string
	var metrics string
	ctx, cancel := context.WithTimeout(context.Background(), gossip.LANTimings().PushPullInterval+15*time.Second)
	defer cancel()
	demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		metrics = scrape(t, c.Nodes[len(c.Nodes)-1])
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(metrics, want) {
				missing = append(missing, want)
			}
		}
		return len(missing) == 0
	})
	for _, m := range missing {
		t.Errorf("agent metrics lack %q", m)
	}
	if len(missing) > 0 {
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "rke2_hanode_cluster_nodes") || strings.HasPrefix(line, "rke2_hanode_gossip_members") {
				t.Log(line)
			}
		}
		if raw, err := get("http://" + c.Nodes[len(c.Nodes)-1].HTTPAddress + "/status"); err == nil {
			t.Logf("its /status:\n%s", raw)
		}
	}
	serverMetrics := scrape(t, c.Node(boot))
	for _, want := range []string{`rke2_hanode_bootstrap_node{node="` + boot + `"} 1`, "rke2_hanode_raft_leader", "rke2_hanode_gossip_members"} {
		if !strings.Contains(serverMetrics, want) {
			t.Errorf("bootstrap's metrics lack %q", want)
		}
	}
	checkNoSecrets(t, c)
}

func TestForeignTokenStaysOut(t *testing.T) {
	c := newCluster(t, "127.82.0.11", 1, 1)
	// A host of another cluster (another token) aims at the same seed.
	other, err := demo.New(demo.Options{Servers: 1, Agents: 0, Base: "127.82.0.31", Dir: t.TempDir(),
		Daemon: daemonBin, Sim: simBin, Env: simEnv, LogLevel: "debug"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	intruder, err := other.AddNode("intruder", "agent", "127.82.0.40")
	if err != nil {
		t.Fatal(err)
	}
	// Point the intruder at the first cluster's seed and VIP.
	cfg, _ := os.ReadFile(intruder.ConfigPath)
	cfg = []byte(strings.ReplaceAll(strings.ReplaceAll(string(cfg), "127.82.0.31", "127.82.0.11"), other.VIP, c.VIP))
	os.WriteFile(intruder.ConfigPath, cfg, 0o600)

	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if err := intruder.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 60*time.Second)
	// Give the intruder time to try.
	time.Sleep(3 * time.Second)
	for _, n := range c.Nodes {
		st, err := n.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.Name == "intruder" {
				t.Errorf("%s lists the intruder", n.Name)
			}
		}
	}
	st, err := intruder.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Node.Phase == status.PhaseReady || st.Node.Phase == status.PhaseStarting {
		t.Errorf("intruder reached phase %s", st.Node.Phase)
	}
	if len(st.Members) != 1 {
		t.Errorf("intruder sees %d members, want only itself", len(st.Members))
	}
	if _, err := os.Stat(filepath.Join(intruder.RKE2DataDir, "sim", "state.json")); err == nil {
		t.Error("the intruder's RKE2 ran")
	}
	if !strings.Contains(readFile(c.Nodes[0].LogPath), "different token or cluster name") {
		t.Error("the seed's log does not say why it refused the intruder's gossip")
	}
}

func TestKilledDaemonResumes(t *testing.T) {
	seeds := []uint64{0, 1, 2, 3}
	if s := os.Getenv("LOOPBACK_SEEDS"); s != "" {
		seeds = nil
		for _, f := range strings.Split(s, ",") {
			var v uint64
			fmt.Sscan(f, &v)
			seeds = append(seeds, v)
		}
	}
	for i, seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			c := newCluster(t, fmt.Sprintf("127.83.%d.11", i), 3, 1)
			if err := c.StartAll(); err != nil {
				t.Fatal(err)
			}
			// The seed picks the host (so the default seeds cover every
			// server and the agent) and the moment.
			victim := c.Nodes[int(seed)%len(c.Nodes)]
			after := time.Duration(rng.Int64N(int64(8 * time.Second)))
			time.Sleep(after)
			phase := "unknown"
			if st, err := victim.Status(context.Background()); err == nil {
				phase = st.Node.Phase
			}
			t.Logf("seed %d: SIGKILL %s after %s, in phase %s", seed, victim.Name, after, phase)
			victim.Kill()
			time.Sleep(time.Duration(rng.Int64N(int64(2 * time.Second))))
			if err := victim.Start(); err != nil {
				t.Fatal(err)
			}
			waitReady(t, c, 120*time.Second)
			// A join cut short by the kill may be refused once and retried,
			// as RKE2 does; what must never happen is a second cluster.
			checkCluster(t, c, true)
		})
	}
}

func TestVIPMovesWhenHolderDies(t *testing.T) {
	c := newCluster(t, "127.84.0.11", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 90*time.Second)
	holder := ""
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for holder == "" && time.Now().Before(deadline) {
		for _, n := range c.Nodes {
			if st, err := n.Status(ctx); err == nil && st.Cluster.VIPHolder != "" {
				holder = st.Cluster.VIPHolder
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if holder == "" {
		t.Fatal("no host reports the VIP holder")
	}
	h := c.Node(holder)
	// Kill the holder's RKE2 (its sim) and its daemon: the host is gone.
	h.Kill()
	for _, pid := range h.SimPIDs() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// An agent added now still joins through the VIP.
	agent, err := c.AddNode("agent-late", "agent", "127.84.0.20")
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	var newHolder string
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err = demo.WaitFor(wctx, 500*time.Millisecond, func() bool {
		st, err := agent.Status(ctx)
		if err != nil || st.Node.Phase != status.PhaseReady {
			return false
		}
		for _, n := range c.Nodes {
			if n == h {
				continue
			}
			if st, err := n.Status(ctx); err == nil && st.Cluster.VIPHolder != "" && st.Cluster.VIPHolder != holder {
				newHolder = st.Cluster.VIPHolder
			}
		}
		return newHolder != ""
	})
	if err != nil {
		st, _ := agent.Status(ctx)
		t.Fatalf("after %s died: late agent phase %q (%s), new holder %q", holder, st.Node.Phase, st.Node.Error, newHolder)
	}
	t.Logf("VIP moved from %s to %s; the late agent joined", holder, newHolder)
}

func checkNoSecrets(t *testing.T, c *demo.Cluster) {
	t.Helper()
	token := c.Opts.Token
	gossipKey, _ := keys.Derive(token, keys.PurposeGossip, c.Opts.ClusterName, 32)
	raftSeed, _ := keys.Derive(token, keys.PurposeRaftCA, c.Opts.ClusterName, 32)
	secrets := map[string]string{"token": token}
	for name, k := range map[string][]byte{"gossip key": gossipKey, "raft CA seed": raftSeed} {
		secrets[name+" (hex)"] = hex.EncodeToString(k)
		secrets[name+" (base64)"] = base64.StdEncoding.EncodeToString(k)
	}
	for _, n := range c.Nodes {
		texts := map[string]string{"log": readFile(n.LogPath), "/metrics": scrape(t, n)}
		if raw, err := get("http://" + n.HTTPAddress + "/status"); err == nil {
			texts["/status"] = raw
		}
		for where, text := range texts {
			for what, s := range secrets {
				if s != "" && strings.Contains(text, s) {
					t.Errorf("%s: the %s appears in its %s", n.Name, what, where)
				}
			}
		}
	}
}

func scrape(t *testing.T, n *demo.Node) string {
	t.Helper()
	body, err := get("http://" + n.HTTPAddress + "/metrics")
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return body
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func tail(path string, n int) string {
	lines := strings.Split(strings.TrimRight(readFile(path), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
