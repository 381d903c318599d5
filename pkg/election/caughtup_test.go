package election

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// raft moves its applied index when it hands entries to the FSM's
// goroutine, before the FSM applied them: a fresh server then read an
// empty state while raft said it was caught up, and a reinstalled host took
// the cluster for one it had never joined (it started RKE2 on a member etcd
// still listed). fsmHolds is what caughtUp adds: the FSM's own applied
// command against the log between it and the commit index.
func TestFSMHoldsOnlyWhatTheFSMApplied(t *testing.T) {
	logs := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	put := func(i uint64, typ raft.LogType) {
		t.Helper()
		if err := logs.StoreLog(&raft.Log{Index: i, Term: 1, Type: typ}); err != nil {
			t.Fatal(err)
		}
	}
	// 1 configuration, 2 no-op, 3..5 commands, 6 no-op, 7 configuration.
	put(1, raft.LogConfiguration)
	put(2, raft.LogNoop)
	for i := uint64(3); i <= 5; i++ {
		put(i, raft.LogCommand)
	}
	put(6, raft.LogNoop)
	put(7, raft.LogConfiguration)
	f := &fsm{}
	e := &Election{fsm: f, stores: &Stores{Log: logs, Snapshots: snaps}}

	for _, tc := range []struct {
		applied, index uint64
		want           bool
	}{
		{0, 2, true},  // no command yet: nothing to apply
		{0, 3, false}, // handed over, not applied: the race
		{0, 7, false},
		{4, 7, false}, // 5 still pending
		{5, 5, true},
		{5, 7, true}, // only a no-op and a configuration after it
	} {
		f.mu.Lock()
		f.applied = tc.applied
		f.mu.Unlock()
		if got := e.fsmHolds(tc.index); got != tc.want {
			t.Errorf("applied %d, index %d: fsmHolds = %v, want %v", tc.applied, tc.index, got, tc.want)
		}
	}

	// A restart restores the snapshot and applies nothing below it: the
	// snapshot records its last command, 5.
	restore := func(applied uint64) {
		t.Helper()
		b, err := encodeSnapshotAt(ClusterState{}, applied)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			t.Fatal(err)
		}
	}
	restore(5)
	if !e.fsmHolds(7) {
		t.Error("fsmHolds(7) restored at command 5, no command after it: false, want true")
	}
	put(8, raft.LogCommand)
	if e.fsmHolds(8) {
		t.Error("fsmHolds(8): a command after the snapshot, not applied: true, want false")
	}
	// raft restores the newest snapshot it can read: one at 5 listed, an
	// older one restored (at command 3) holds neither 4 nor 5.
	sink, err := snaps.Create(raft.SnapshotVersionMax, 5, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	restore(3)
	if e.fsmHolds(7) {
		t.Error("fsmHolds(7) restored at command 3 with 4 and 5 in the log: true, want false")
	}
	// A snapshot written before it recorded its last command: the newest
	// snapshot's index is what is known.
	restore(0)
	if !e.fsmHolds(7) {
		t.Error("fsmHolds(7) restored from a snapshot without its last command, the newest at 5: false, want true")
	}
	if e.fsmHolds(8) {
		t.Error("fsmHolds(8) restored from a snapshot without its last command, the newest at 5: true, want false")
	}

	// Entries compacted away are in a snapshot.
	if err := logs.DeleteRange(1, 7); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.applied = 0
	f.mu.Unlock()
	if !e.fsmHolds(7) {
		t.Error("fsmHolds(7) with entries 1..7 compacted: false, want true")
	}
}

// gateTransport refuses, while shut, every AppendEntries request that
// carries an entry past index limit: a fresh follower then holds the first
// batch of a long log and nothing after it, as between two batches.
type gateTransport struct {
	*raft.InmemTransport
	limit uint64
	shut  atomic.Bool
	out   chan raft.RPC
}

func newGateTransport(inner *raft.InmemTransport, limit uint64) *gateTransport {
	g := &gateTransport{InmemTransport: inner, limit: limit, out: make(chan raft.RPC)}
	g.shut.Store(true)
	go func() {
		for rpc := range inner.Consumer() {
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok && g.shut.Load() &&
				len(req.Entries) > 0 && req.Entries[len(req.Entries)-1].Index > limit {
				rpc.Respond(&raft.AppendEntriesResponse{}, errors.New("gate shut"))
				continue
			}
			g.out <- rpc
		}
	}()
	return g
}

func (g *gateTransport) Consumer() <-chan raft.RPC { return g.out }

// fastRaftConfig is raft's configuration for an in-memory test group:
// quick elections, no logs.
func fastRaftConfig(id string) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(id)
	c.HeartbeatTimeout, c.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	c.LeaderLeaseTimeout, c.CommitTimeout = 50*time.Millisecond, 5*time.Millisecond
	c.Logger = hclog.NewNullLogger()
	return c
}

// A fresh server receives a long log in batches of 64 entries, and after
// the first its commit index is the end of that batch (raft's follower
// takes min(leader's commit, its last entry)): applied up to it, raft's
// own indexes said caught up while the FSM held only the first batch's
// state. A reinstalled bootstrap node read then "bootstrap node is me,
// started, not ready" and could run cluster-init a second time. caughtUp
// waits for the commit index the leader sent.
func TestCaughtUpWaitsForTheLeadersCommitIndex(t *testing.T) {
	rc := fastRaftConfig
	cmd := func(op, node string) []byte {
		t.Helper()
		b, err := EncodeCommand(Command{Op: op, Node: node, At: 1})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The leader: a bootstrap node claimed, 200 entries that change
	// nothing (claims after the first), then its start.
	aAddr, aTrans := raft.NewInmemTransport("a")
	aStore := raft.NewInmemStore()
	a, err := raft.NewRaft(rc("a"), &fsm{}, aStore, aStore, raft.NewInmemSnapshotStore(), aTrans)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Shutdown().Error() }()
	if err := a.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "a", Address: aAddr}}}).Error(); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(30*time.Second, func() bool { return a.State() == raft.Leader }) {
		t.Fatal("a never led")
	}
	if err := a.Apply(cmd(opClaim, "a"), time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		a.Apply(cmd(opClaim, "b"), time.Second)
	}
	if err := a.Apply(cmd(opStarted, "a"), time.Second).Error(); err != nil {
		t.Fatal(err)
	}

	// The fresh follower, its transport shut past the first batch.
	bAddr, bInner := raft.NewInmemTransport("b")
	gate := newGateTransport(bInner, 64)
	bStore := raft.NewInmemStore()
	e := &Election{fsm: &fsm{}, stores: &Stores{Log: bStore, Stable: bStore, Snapshots: raft.NewInmemSnapshotStore()}}
	ct := newCommitTransport(gate, &e.leaderCommit)
	defer ct.stop()
	aTrans.Connect(bAddr, bInner)
	bInner.Connect(aAddr, aTrans)
	e.runStart = time.Now()
	b, err := raft.NewRaft(rc("b"), e.fsm, bStore, bStore, e.stores.Snapshots, ct)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Shutdown().Error() }()
	e.r, e.running = b, true
	if err := a.AddVoter("b", bAddr, 0, time.Second).Error(); err != nil {
		t.Fatal(err)
	}

	// Between the batches: what raft's indexes and the FSM's own applied
	// command said before (the window), and caughtUp now.
	if !waitUntil(30*time.Second, func() bool {
		return b.CommitIndex() >= 60 && b.AppliedIndex() >= b.CommitIndex() && e.fsmHolds(b.CommitIndex()) &&
			b.LastContact().After(e.runStart)
	}) {
		t.Fatalf("b never applied the first batch: commit %d, applied %d", b.CommitIndex(), b.AppliedIndex())
	}
	if st := e.fsm.get(); st.Bootstrap != "a" || st.Started {
		t.Fatalf("b's state after the first batch: %+v, want bootstrap a, not started", st)
	}
	if e.caughtUp() {
		t.Fatalf("b caught up at commit %d with the leader at %d: its FSM lacks the start", b.CommitIndex(), a.CommitIndex())
	}

	gate.shut.Store(false)
	if !waitUntil(30*time.Second, e.caughtUp) {
		t.Fatalf("b never caught up: commit %d, leader's %d", b.CommitIndex(), a.CommitIndex())
	}
	if st := e.fsm.get(); !st.Started {
		t.Fatalf("b caught up without the start: %+v", st)
	}
}

// chanTransport is a transport whose requests are what the test sends.
type chanTransport struct {
	raft.Transport
	in chan raft.RPC
}

func (c chanTransport) Consumer() <-chan raft.RPC { return c.in }

// Only a request raft accepted teaches the leader's commit index: a
// deposed leader's, or one refused for a log mismatch, says nothing of the
// cluster's. Once the node's commit index reached it, requests pass
// untouched.
func TestCommitTransportLearnsOnlyFromAcceptedRequests(t *testing.T) {
	var lc leaderCommit
	in := make(chan raft.RPC)
	ct := newCommitTransport(chanTransport{in: in}, &lc)
	defer ct.stop()
	send := func(commit uint64, success bool) {
		t.Helper()
		resp := make(chan raft.RPCResponse, 1)
		in <- raft.RPC{Command: &raft.AppendEntriesRequest{LeaderCommitIndex: commit}, RespChan: resp}
		rpc := <-ct.Consumer()
		rpc.Respond(&raft.AppendEntriesResponse{Success: success}, nil)
		r := <-resp
		if a, ok := r.Response.(*raft.AppendEntriesResponse); !ok || a.Success != success || r.Error != nil {
			t.Fatalf("the sender got %+v, want success %v", r, success)
		}
	}
	send(900, false)
	if lc.covers(0) || lc.covers(1000) {
		t.Fatal("a refused request counted")
	}
	send(40, true)
	send(50, true)
	if lc.covers(49) {
		t.Fatal("commit 49 covers a leader's commit of 50")
	}
	if !lc.covers(50) {
		t.Fatal("commit 50 does not cover a leader's commit of 50")
	}
	send(70, true)
	if !lc.covers(50) {
		t.Fatal("caught up once, then not: a later leader commit counted")
	}
	if lc.learning() {
		t.Fatal("still learning after the commit index was reached")
	}
}

// A snapshot carries the index of its last command, and a restore takes
// it: a server restarted from its snapshot knows what its state holds.
func TestSnapshotRecordsItsLastCommand(t *testing.T) {
	f := &fsm{}
	b, err := EncodeCommand(Command{Op: opClaim, Node: "a", At: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(&raft.Log{Index: 9, Term: 1, Type: raft.LogCommand, Data: b})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 12, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	g := &fsm{}
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if idx, known := g.appliedIndex(); idx != 9 || !known || g.get().Bootstrap != "a" {
		t.Fatalf("restored: last command %d (known %v), state %+v; want 9, known, bootstrap a", idx, known, g.get())
	}
}
