package election

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func peers(spec ...string) []Peer {
	// spec: "name" or "name:set" or "name:set:state"; "+" after name = raft state
	var out []Peer
	for _, s := range spec {
		f := strings.Split(s, ":")
		p := Peer{Name: f[0], RaftAddr: f[0] + ":9348", State: MemberAlive, ExpectServers: 3, ClusterName: "c"}
		if name, ok := strings.CutSuffix(p.Name, "+"); ok {
			p.Name, p.RaftAddr, p.HasRaftState = name, name+":9348", true
		}
		if len(f) > 1 {
			p.BootstrapSet = f[1]
		}
		if len(f) > 2 {
			p.State = f[2]
		}
		out = append(out, p)
	}
	return out
}

func ms(names ...string) []member {
	var out []member
	for _, n := range names {
		out = append(out, member{Name: n, Addr: n + ":9348"})
	}
	return out
}

func TestFormationStep(t *testing.T) {
	hABC := setHash("c", 3, ms("a", "b", "c"))
	hABD := setHash("c", 3, ms("a", "b", "d"))
	lockABC := &formationLock{Hash: hABC, Members: ms("a", "b", "c")}
	tests := []struct {
		name      string
		self      string
		locked    *formationLock
		servers   []Peer
		advertise string
		lock      bool
		bootstrap []string
		wait      string
	}{
		{"too few", "a", nil, peers("a", "b"), "", false, nil, "seen 2 of 3"},
		{"a dead one does not count", "a", nil, peers("a", "b", "c::dead"), "", false, nil, "seen 2 of 3"},
		{"someone has raft state", "a", nil, peers("a", "b", "c", "d+"), "", false, nil, "d has raft state"},
		{"expect differs", "a", nil, func() []Peer { p := peers("a", "b", "c"); p[2].ExpectServers = 5; return p }(), "", false, nil, "c expects 5"},
		{"other cluster ignored", "a", nil, func() []Peer { p := peers("a", "b", "c"); p[2].ClusterName = "x"; return p }(), "", false, nil, "seen 2 of 3"},
		{"propose the lowest names", "a", nil, peers("d", "c", "b", "a"), hABC, false, nil, "waiting for b"},
		{"not in the set", "d", nil, peers("a:"+hABC, "b:"+hABC, "c:"+hABC, "d"), hABC, false, nil, "not in the bootstrap set"},
		{"all agree: lock", "a", nil, peers("a", "b:"+hABC, "c:"+hABC+"!"), hABC + "!", true, nil, ""},
		{"one disagrees", "a", nil, peers("a", "b:"+hABC, "c:"+hABD), hABC, false, nil, "waiting for c"},
		{"locked, all locked: bootstrap", "a", lockABC, peers("a", "b:"+hABC+"!", "c:"+hABC+"!"), hABC + "!", false, []string{"a", "b", "c"}, ""},
		{"locked, one only proposes", "a", lockABC, peers("a", "b:"+hABC+"!", "c:"+hABC), hABC + "!", false, nil, "waiting for c to lock"},
		{"locked, one dead", "a", lockABC, peers("a", "b:"+hABC+"!", "c:"+hABC+"!:dead"), hABC + "!", false, nil, "waiting for c to be alive"},
		{"locked, one has raft state", "a", lockABC, peers("a", "b:"+hABC+"!", "c+:"+hABC+"!"), hABC + "!", false, nil, "already has raft state"},
		{"locked ignores lower newcomers", "b", lockABC, peers("0", "a:"+hABC+"!", "b", "c:"+hABC+"!"), hABC + "!", false, []string{"a", "b", "c"}, ""},
		// a and b locked to {a,b,c}; 0 appeared since. c completes the locked set
		// instead of proposing {0,a,b}, which could never complete.
		{"adopt a locked set", "c", nil, peers("0:"+hABC, "a:"+hABC+"!", "b:"+hABC+"!", "c"), hABC + "!", true, nil, ""},
		{"a server locked elsewhere does not block", "b", nil, peers("a:"+hABC, "b", "c:"+hABC, "d:ffffffffffffffff!"), hABC + "!", true, nil, ""},
		{"a member locked elsewhere blocks", "b", nil, peers("a:"+hABD+"!", "b", "c:"+hABC), hABC, false, nil, "a is locked to another set"},
		{"every alive server must agree", "c", nil, peers("0", "a:"+hABC+"!", "b:"+hABC+"!", "c"), hABC, false, nil, "waiting for 0"},
		// d cannot adopt {a,b,c}: it is not a member; it proposes what it sees.
		{"adoption needs membership", "d", nil, peers("a:"+hABC+"!", "b:"+hABC+"!", "c", "d"), hABC, false, nil, "not in the bootstrap set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := formationStep(tc.self, "c", 3, tc.locked, tc.servers)
			if p.advertise != tc.advertise {
				t.Errorf("advertise %q, want %q", p.advertise, tc.advertise)
			}
			if (p.lock != nil) != tc.lock {
				t.Errorf("lock %+v, want lock=%v", p.lock, tc.lock)
			}
			if got := names(p.bootstrap); !slices.Equal(got, tc.bootstrap) && (len(got) > 0 || len(tc.bootstrap) > 0) {
				t.Errorf("bootstrap %v, want %v", got, tc.bootstrap)
			}
			if !strings.Contains(p.wait, tc.wait) {
				t.Errorf("wait %q, want it to contain %q", p.wait, tc.wait)
			}
		})
	}
}

func TestSetHash(t *testing.T) {
	base := setHash("c", 3, ms("a", "b", "c"))
	if len(base) != 16 {
		t.Fatalf("hash %q: want 16 hex digits", base)
	}
	for name, h := range map[string]string{
		"cluster": setHash("d", 3, ms("a", "b", "c")),
		"expect":  setHash("c", 5, ms("a", "b", "c")),
		"member":  setHash("c", 3, ms("a", "b", "d")),
		"address": setHash("c", 3, []member{{"a", "a:1"}, {"b", "b:9348"}, {"c", "c:9348"}}),
	} {
		if h == base {
			t.Errorf("changing the %s keeps the hash", name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	ok := func() Config {
		return Config{NodeName: "a", ClusterName: "c", ExpectServers: 3, VIP: "192.0.2.1", Token: "t",
			BindAddr: "127.0.0.1", RaftPort: port, AdvertiseAddr: "127.0.0.1", DataDir: dir,
			Membership: &staticMembership{}, Publisher: &staticMembership{}}
	}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"ok", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.NodeName = "" }, "node-name is empty"},
		{"bad name", func(c *Config) { c.NodeName = "a\nb" }, "non-printable"},
		{"no cluster", func(c *Config) { c.ClusterName = "" }, "cluster-name is empty"},
		{"expect 0", func(c *Config) { c.ExpectServers = 0 }, "expect-servers 0"},
		{"no vip", func(c *Config) { c.VIP = "" }, "vip is empty"},
		{"no token", func(c *Config) { c.Token = "" }, "token is empty"},
		{"no advertise", func(c *Config) { c.AdvertiseAddr = "" }, "advertise-address is empty"},
		{"bad port", func(c *Config) { c.RaftPort = 70000 }, "raft-port 70000"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data-dir is empty"},
		{"no membership", func(c *Config) { c.Membership = nil }, "Membership is nil"},
		{"lease above heartbeat", func(c *Config) { c.Timing = LANTiming(); c.Timing.LeaderLeaseTimeout = 2 * time.Second }, "leader lease"},
		{"zero tick", func(c *Config) { c.Timing = LANTiming(); c.Timing.Tick = 0 }, "tick 0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mod(&c)
			e, err := Open(c)
			if err == nil {
				defer e.Close()
			}
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Open: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Open error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// staticMembership is a one-node gossip: this node, alive, with what it
// published.
type staticMembership struct {
	mu    sync.Mutex
	name  string
	local Local
	ch    chan struct{}
}

func (m *staticMembership) Servers() []Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return []Peer{{Name: m.name, State: MemberAlive, ExpectServers: 1, ClusterName: "c",
		HasRaftState: m.local.HasRaftState, BootstrapSet: m.local.BootstrapSet, StartedRKE2: m.local.StartedRKE2,
		Ready: m.local.Ready, CAHash: m.local.CAHash}}
}
func (m *staticMembership) Changes() <-chan struct{} { return m.ch }
func (m *staticMembership) Publish(l Local) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.local = l
	return nil
}

// TestSingleServerOnDisk forms a one-server cluster over TLS with
// raft-boltdb, checks file modes and metrics, restarts it from disk and
// checks it resumes (no second bootstrap, the same decisions).
func TestSingleServerOnDisk(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	m := &staticMembership{name: "solo", ch: make(chan struct{})}
	newElection := func(reg prometheus.Registerer) *Election {
		e, err := Open(Config{NodeName: "solo", ClusterName: "c", ExpectServers: 1, VIP: "192.0.2.1", Token: "t",
			BindAddr: "127.0.0.1", AdvertiseAddr: "127.0.0.1", RaftPort: port, DataDir: dir,
			Membership: m, Publisher: m, Timing: simTiming(), Registerer: reg, FetchCA: serves("sha256:ca")})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	run := func(e *Election) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	reg := prometheus.NewRegistry()
	e := newElection(reg)
	stop := run(e)
	if b, err := e.WaitBootstrap(ctx); err != nil || b != "solo" {
		t.Fatalf("WaitBootstrap = %q, %v", b, err)
	}
	if err := e.MarkStarted(ctx); err != nil {
		t.Fatalf("MarkStarted: %v", err)
	}
	e.ReportReady("sha256:ca")
	if cr, err := e.WaitClusterReady(ctx); err != nil || cr != (ClusterReady{VIP: "192.0.2.1", CAHash: "sha256:ca"}) {
		t.Fatalf("WaitClusterReady = %+v, %v", cr, err)
	}
	if !waitUntil(5*time.Second, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.local.Ready && m.local.ClusterReady && m.local.CAHash == "sha256:ca"
	}) {
		m.mu.Lock()
		t.Fatalf("published %+v: want Ready, ClusterReady and the cluster CA", m.local)
	}
	if _, err := e.AcquireJoinSlot(ctx); err == nil || !strings.Contains(err.Error(), "needs no join slot") {
		t.Fatalf("AcquireJoinSlot on the bootstrap node: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for gauge(t, reg, "rke2_hanode_raft_leader", "") != 1 || gauge(t, reg, "rke2_hanode_cluster_ready", "") != 1 ||
		gauge(t, reg, "rke2_hanode_bootstrap_node", "solo") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("metrics never showed leader, bootstrap node and cluster ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()

	for path, want := range map[string]os.FileMode{filepath.Join(dir, "raft"): 0o700 | os.ModeDir, filepath.Join(dir, "raft", "raft.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode %v, want %v", path, fi.Mode(), want)
		}
	}

	e2 := newElection(nil)
	stop2 := run(e2)
	defer stop2()
	if err := e2.MarkStarted(ctx); err != nil {
		t.Fatalf("MarkStarted after restart: %v", err)
	}
	// The log replays entry by entry: "started" may be back before
	// "cluster ready" is.
	if _, err := e2.WaitClusterReady(ctx); err != nil {
		t.Fatalf("WaitClusterReady after restart: %v", err)
	}
	s := e2.State()
	if !s.HasRaftState || s.Bootstrap != "solo" || s.ClusterReady == nil || s.Reassigned != 0 {
		t.Fatalf("state after restart: %+v", s)
	}
}

// gauge reads one gauge from reg; node selects the series with that node
// label ("" for unlabelled gauges). Missing: -1.
func gauge(t *testing.T, reg *prometheus.Registry, name, node string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "node" {
					label = lp.GetValue()
				}
			}
			if label == node {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func waitUntil(d time.Duration, f func() bool) bool {
	for deadline := time.Now().Add(d); !f(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
