package node

import (
	"testing"
	"time"

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
