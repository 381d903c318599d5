package election

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The leader's view of followers raft cannot reach: the first failure's
// last contact, carried over to the election's clock; a resumed heartbeat
// or a reset forgets it.
func TestUnreachableFollowers(t *testing.T) {
	clk := &stepClock{t: time.Unix(5000, 0)}
	u := newUnreachable(clk)
	wall := time.Now()
	u.observe(raft.FailedHeartbeatObservation{PeerID: "b", LastContact: wall.Add(-2 * time.Second)}, wall)
	u.observe(raft.FailedHeartbeatObservation{PeerID: "b", LastContact: wall.Add(-2 * time.Second)}, wall.Add(5*time.Second))
	got := u.snapshot()
	if want := clk.t.Add(-2 * time.Second); !got["b"].Equal(want) {
		t.Fatalf("b unreachable since %s, want %s (two seconds before the first failure)", got["b"], want)
	}
	u.observe(raft.FailedHeartbeatObservation{PeerID: "c"}, wall) // no contact known: now
	if !u.snapshot()["c"].Equal(clk.t) {
		t.Fatalf("c: %s, want %s", u.snapshot()["c"], clk.t)
	}
	// A failure with a newer last contact (its "resumed" was missed)
	// replaces the old one: a contact happened in between.
	u.observe(raft.FailedHeartbeatObservation{PeerID: "d", LastContact: wall.Add(-5 * time.Second)}, wall)
	u.observe(raft.FailedHeartbeatObservation{PeerID: "d", LastContact: wall.Add(time.Second)}, wall.Add(time.Second))
	if got := u.snapshot()["d"]; !got.Equal(clk.t) {
		t.Fatalf("d after a newer contact: %s, want %s (not the older %s)", got, clk.t, clk.t.Add(-5*time.Second))
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

type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time { return c.t }
func (c *stepClock) Sleep(ctx context.Context, d time.Duration) error {
	c.t = c.t.Add(d)
	return ctx.Err()
}
