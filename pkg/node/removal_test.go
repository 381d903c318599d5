package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"

	ms "github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// TestExecutorReportsOnlyItsCommit: the executor's report on a failed try
// never ends the next commit of the same removal (the loopback run saw a
// removal committed and failed again within milliseconds, for ever).
func TestExecutorReportsOnlyItsCommit(t *testing.T) {
	var x executorState
	t0 := time.Unix(1_800_000_000, 0)
	first := &ms.Removal{Node: "c", State: ms.RemovalCommitted, Since: t0}
	if !x.begin(first) || x.begin(first) {
		t.Fatal("begin: want true once per commit")
	}
	if p := x.report(first); p.State != ms.RemovalExecuting {
		t.Fatalf("report on its commit: %+v", p)
	}
	executing := &ms.Removal{Node: "c", State: ms.RemovalExecuting, Since: t0.Add(time.Second)}
	x.set(ms.Progress{Node: "c", State: ms.RemovalFailed, Reason: "API down"})
	if p := x.report(executing); p.State != ms.RemovalFailed {
		t.Fatalf("report while executing: %+v", p)
	}
	again := &ms.Removal{Node: "c", State: ms.RemovalCommitted, Since: t0.Add(time.Minute)}
	if p := x.report(again); p != (ms.Progress{}) {
		t.Fatalf("a new commit got the last try's report: %+v", p)
	}
	if !x.begin(again) {
		t.Fatal("a new commit is not begun")
	}
	if p := x.report(nil); p != (ms.Progress{}) {
		t.Fatalf("no removal: %+v", p)
	}
}

// wakeCoord is watchCoord that counts the node's Wake calls.
type wakeCoord struct {
	*watchCoord
	wakes atomic.Int32
}

func (c *wakeCoord) Wake() { c.wakes.Add(1) }

// The removal executor starts at the commit of its removal, not at its
// loop's next tick (its clock stands still here), and once its progress
// changes asks the leader's loop to step at once rather than at its tick.
func TestExecutorWakesOnCommitAndWakesTheLeader(t *testing.T) {
	c := config.Defaults()
	c.Role, c.NodeName, c.DataDir, c.RKE2ConfigDir = "server", "a", t.TempDir(), t.TempDir() // no kubeconfig: the removal fails at once
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	wc := &wakeCoord{watchCoord: &watchCoord{ch: make(chan struct{})}}
	n := &Node{cfg: c, log: zap.NewNop(), clk: clk, coord: wc}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.executeRemovals(ctx)
	}()
	defer func() { cancel(); <-done }()
	if err := clk.WaitSleepers(ctx, 1); err != nil {
		t.Fatal("the executor never waited for its tick")
	}
	r := &ms.Removal{Node: "b", State: ms.RemovalCommitted, Executor: "a", Since: clk.Now()}
	wc.commit(election.ClusterState{Removal: r})
	for n.exec.report(r).State != ms.RemovalFailed || wc.wakes.Load() == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("progress %+v, %d wakes: the committed removal did not wake the executor, or the executor did not wake the leader", n.exec.report(r), wc.wakes.Load())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
