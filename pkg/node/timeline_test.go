package node

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// The tracker records every phase it enters, once per change, for the
// timeline in /status and gossip.
func TestTrackerRecordsTimeline(t *testing.T) {
	now := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	tr, err := newTracker(zap.NewNop(), func() time.Time { now = now.Add(time.Second); return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.notify = func(string) {}
	tr.set(status.PhasePreflight, "a")
	tr.set(status.PhasePreflight, "same phase, new detail")
	tr.set(status.PhaseInstalling, "")
	tr.fail("install", errTest, false)
	tr.set(status.PhaseInstalling, "retry")
	got := tr.history.Entries()
	want := []string{status.PhasePreflight, status.PhaseInstalling, status.PhaseFailed, status.PhaseInstalling}
	if len(got) != len(want) {
		t.Fatalf("history %v, want phases %v", got, want)
	}
	for i, p := range want {
		if got[i].Phase != p {
			t.Errorf("entry %d is %s, want %s", i, got[i].Phase, p)
		}
		if i > 0 && !got[i].At.After(got[i-1].At) {
			t.Errorf("entry %d at %v is not after the one before", i, got[i].At)
		}
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("script exited 1")
