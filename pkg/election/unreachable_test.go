package election

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// The leader's view of followers raft cannot reach: the first failure's
// last contact, carried over to the election's clock; a resumed heartbeat
// or a reset forgets it.
func TestUnreachableFollowers(t *testing.T) {
	now := time.Unix(5000, 0)
	clk := clock.NewFake(now)
	u := newUnreachable(clk)
	wall := time.Now()
	u.observe(raft.FailedHeartbeatObservation{PeerID: "b", LastContact: wall.Add(-2 * time.Second)}, wall)
	u.observe(raft.FailedHeartbeatObservation{PeerID: "b", LastContact: wall.Add(-2 * time.Second)}, wall.Add(5*time.Second))
	got := u.snapshot()
	if want := now.Add(-2 * time.Second); !got["b"].Equal(want) {
		t.Fatalf("b unreachable since %s, want %s (two seconds before the first failure)", got["b"], want)
	}
	u.observe(raft.FailedHeartbeatObservation{PeerID: "c"}, wall) // no contact known: now
	if !u.snapshot()["c"].Equal(now) {
		t.Fatalf("c: %s, want %s", u.snapshot()["c"], now)
	}
	// A failure with a newer last contact (its "resumed" was missed)
	// replaces the old one: a contact happened in between.
	u.observe(raft.FailedHeartbeatObservation{PeerID: "d", LastContact: wall.Add(-5 * time.Second)}, wall)
	u.observe(raft.FailedHeartbeatObservation{PeerID: "d", LastContact: wall.Add(time.Second)}, wall.Add(time.Second))
	if got := u.snapshot()["d"]; !got.Equal(now) {
		t.Fatalf("d after a newer contact: %s, want %s (not the older %s)", got, now, now.Add(-5*time.Second))
	}
	u.observe(raft.ResumedHeartbeatObservation{PeerID: "b"}, wall)
	if _, ok := u.snapshot()["b"]; ok {
		t.Fatal("b still unreachable after its heartbeat resumed")
	}
	u.reset()
	if s := u.snapshot(); s != nil {
		t.Fatalf("after reset: %v", s)
	}
}
