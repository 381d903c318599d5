package election

import (
	"testing"

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

	// A snapshot at 5 (made by this FSM, or restored before raft's applied
	// index passed it) covers the commands up to 5, whatever this run's
	// Apply saw: a restart restores it and applies nothing below it.
	f.mu.Lock()
	f.applied = 0
	f.mu.Unlock()
	sink, err := snaps.Create(raft.SnapshotVersionMax, 5, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if !e.fsmHolds(7) {
		t.Error("fsmHolds(7) with a snapshot at 5 and no command after it: false, want true")
	}
	put(8, raft.LogCommand)
	if e.fsmHolds(8) {
		t.Error("fsmHolds(8): a command after the snapshot, not applied: true, want false")
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
