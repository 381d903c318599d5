package election

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestAdvertised: what a node advertises of its readiness, before and after
// cluster ready is committed, and of its FSM for agents.
func TestAdvertised(t *testing.T) {
	committed := ClusterState{Bootstrap: "a", Started: true, ClusterReady: &ClusterReady{VIP: "v", CAHash: "ca1"}}
	intents := Local{HasRaftState: true, BootstrapSet: "x!", WantJoinSlot: true, StartedRKE2: true}
	for _, c := range []struct {
		name string
		rep  readiness
		st   ClusterState
		want Local
	}{
		{"not ready, no cluster", readiness{}, ClusterState{}, Local{}},
		{"ready before cluster ready", readiness{true, "ca1"}, ClusterState{Bootstrap: "a"}, Local{Ready: true, CAHash: "ca1", BootstrapNode: "a"}},
		{"not ready keeps its CA", readiness{false, "ca1"}, ClusterState{}, Local{CAHash: "ca1"}},
		{"ready with the cluster's CA", readiness{true, "ca1"}, committed, Local{Ready: true, CAHash: "ca1", ClusterReady: true, BootstrapNode: "a"}},
		{"ready with another CA", readiness{true, "ca2"}, committed, Local{CAHash: "ca1", ClusterReady: true, BootstrapNode: "a"}},
		{"ready with no CA known", readiness{true, ""}, committed, Local{CAHash: "ca1", ClusterReady: true, BootstrapNode: "a"}},
		{"not ready, cluster ready", readiness{}, committed, Local{CAHash: "ca1", ClusterReady: true, BootstrapNode: "a"}},
		{"a slot held, two joined", readiness{true, "ca1"},
			ClusterState{Bootstrap: "a", Started: true, ClusterReady: committed.ClusterReady, Slot: &JoinSlot{Holder: "c"}, Joined: []string{"a", "b"}},
			Local{Ready: true, CAHash: "ca1", ClusterReady: true, BootstrapNode: "a", JoinSlot: "c", JoinedServers: 2}},
	} {
		got := advertised(intents, c.rep, c.st)
		want := c.want
		want.HasRaftState, want.BootstrapSet, want.WantJoinSlot, want.StartedRKE2 = true, "x!", true, true
		if got != want {
			t.Errorf("%s: advertised = %+v, want %+v", c.name, got, want)
		}
	}
}

// pairGossip is a two-server gossip: both alive, each with what it
// published last.
type pairGossip struct {
	mu    sync.Mutex
	local map[string]Local
	addr  map[string]string
	subs  []chan struct{}
}

type pairView struct {
	g    *pairGossip
	self string
	ch   chan struct{}
}

func (v *pairView) Servers() []Peer {
	v.g.mu.Lock()
	defer v.g.mu.Unlock()
	var out []Peer
	for _, name := range []string{"a", "b"} {
		l := v.g.local[name]
		out = append(out, Peer{Name: name, RaftAddr: v.g.addr[name], State: MemberAlive, ExpectServers: 1, ClusterName: "c",
			HasRaftState: l.HasRaftState, BootstrapSet: l.BootstrapSet, WantJoinSlot: l.WantJoinSlot,
			StartedRKE2: l.StartedRKE2, Ready: l.Ready, CAHash: l.CAHash})
	}
	return out
}

func (v *pairView) Changes() <-chan struct{} { return v.ch }

func (v *pairView) Publish(l Local) error {
	v.g.mu.Lock()
	defer v.g.mu.Unlock()
	v.g.local[v.self] = l
	for _, ch := range v.g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return nil
}

func (g *pairGossip) published(name string) Local {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.local[name]
}

// TestJoinNeedsTheClusterCA runs the protocol between two real elections:
// the bootstrap node's ReportReady commits cluster ready with its CA; a
// joiner holding the slot that reports ready with another CA is never
// recorded as joined (and does not advertise Ready), and is once it
// reports the cluster's CA.
func TestJoinNeedsTheClusterCA(t *testing.T) {
	g := &pairGossip{local: map[string]Local{}, addr: map[string]string{"a": "a", "b": "b"}}
	_, ta := raft.NewInmemTransport("a")
	_, tb := raft.NewInmemTransport("b")
	ta.Connect("b", tb)
	tb.Connect("a", ta)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(name string, trans *raft.InmemTransport) *Election {
		v := &pairView{g: g, self: name, ch: make(chan struct{}, 1)}
		g.mu.Lock()
		g.subs = append(g.subs, v.ch)
		g.mu.Unlock()
		store := raft.NewInmemStore()
		e, err := Open(Config{NodeName: name, ClusterName: "c", ExpectServers: 1, VIP: "192.0.2.1",
			Membership: v, Publisher: v, Timing: simTiming(), Transport: trans, FetchCA: serves("ca1"),
			Stores: &Stores{Log: store, Stable: store, Snapshots: raft.NewInmemSnapshotStore()}})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(runCtx) }()
		t.Cleanup(func() { stop(); <-done; e.Close() })
		return e
	}
	a, b := open("a", ta), open("b", tb)

	if boot, err := a.WaitBootstrap(ctx); err != nil || boot != "a" {
		t.Fatalf("WaitBootstrap = %q, %v; want a", boot, err)
	}
	if err := a.MarkStarted(ctx); err != nil {
		t.Fatalf("MarkStarted: %v", err)
	}
	a.ReportReady("ca1")
	if cr, err := b.WaitClusterReady(ctx); err != nil || cr.CAHash != "ca1" {
		t.Fatalf("WaitClusterReady on b = %+v, %v; want CA ca1", cr, err)
	}
	if _, err := b.AcquireJoinSlot(ctx); err != nil {
		t.Fatalf("AcquireJoinSlot: %v", err)
	}
	b.ReportReady("ca2")
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if err := b.MarkJoined(short); err == nil {
		t.Fatal("b was recorded as joined while it serves another CA")
	}
	if l := g.published("b"); l.Ready || !l.ClusterReady || l.CAHash != "ca1" {
		t.Fatalf("b, serving another CA, publishes %+v; want not Ready, ClusterReady, the cluster's CA", l)
	}
	b.ReportReady("ca1")
	if err := b.MarkJoined(ctx); err != nil {
		t.Fatalf("MarkJoined after reporting the cluster's CA: %v", err)
	}
	if !waitUntil(10*time.Second, func() bool { l := g.published("b"); return l.Ready && l.CAHash == "ca1" && !l.WantJoinSlot }) {
		t.Fatalf("b joined publishes %+v; want Ready with ca1, no longer wanting the slot", g.published("b"))
	}
	b.ReportNotReady()
	if !waitUntil(10*time.Second, func() bool { return !g.published("b").Ready }) {
		t.Fatal("ReportNotReady never withdrew Ready")
	}
	if !slices.Contains(a.State().Joined, "b") {
		t.Fatalf("joined %v: ReportNotReady must not undo the join", a.State().Joined)
	}
}

// TestMarkJoinedRemovedBootstrap: after a quorum-loss recovery on a, the
// old bootstrap node c is left behind as removed, as b is; both say they
// wiped and rejoin through the slot. c's join is recorded by taking it off
// the removed servers (it counts as the bootstrap node again, not in
// Joined): MarkJoined returns for it as for b, and not before the join.
func TestMarkJoinedRemovedBootstrap(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := ClusterState{Bootstrap: "c", Started: true, ClusterReady: &ClusterReady{VIP: "192.0.2.1", CAHash: testCAHash}, Joined: []string{"a", "b"}}
	st = st.recovered("a", at)
	if !slices.Equal(st.Removed, []string{"b", "c"}) || !slices.Equal(st.EtcdVoters(), []string{"a"}) {
		t.Fatalf("recovered on a: removed %v, etcd voters %v; want b and c removed, a alone", st.Removed, st.EtcdVoters())
	}
	ns := at.UnixNano()
	apply := func(c Command) {
		t.Helper()
		next, err := st.apply(c)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		st = next
	}
	// markJoined is MarkJoined on node's election holding st, asked once:
	// the context is done, so it returns nil only if st records the join.
	markJoined := func(node string) error {
		e := &Election{cfg: Config{NodeName: node, Timing: simTiming()}, fsm: &fsm{state: st},
			kick: make(chan struct{}, 1), watch: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return e.MarkJoined(ctx)
	}
	apply(Command{Op: opRequestAccepted, Request: "00000000000000b1", Kind: RequestClearMember, Node: "b", Target: "b", Reason: "wiped", At: ns})
	apply(Command{Op: opRequestAccepted, Request: "00000000000000c1", Kind: RequestClearMember, Node: "c", Target: "c", Reason: "wiped", At: ns})
	for _, n := range []string{"b", "c"} {
		apply(Command{Op: opGrant, Node: n, At: ns, Expires: ns + int64(time.Minute)})
		if err := markJoined(n); err == nil {
			t.Fatalf("MarkJoined for %s holding the slot, its join not recorded yet (removed %v, joined %v): returned nil", n, st.Removed, st.Joined)
		}
		apply(Command{Op: opJoined, Node: n, At: ns})
		if err := markJoined(n); err != nil {
			t.Fatalf("MarkJoined for %s after its join was recorded (removed %v, joined %v, bootstrap %s): %v", n, st.Removed, st.Joined, st.Bootstrap, err)
		}
	}
	if !slices.Equal(st.EtcdVoters(), []string{"a", "b", "c"}) || len(st.Removed) != 0 {
		t.Fatalf("after both joins: etcd voters %v, removed %v", st.EtcdVoters(), st.Removed)
	}
}
