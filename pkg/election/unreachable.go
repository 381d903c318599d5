package election

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// unreachable is what the leader's raft knows before gossip does: the
// followers whose heartbeats fail, each with its last contact. A killed
// server's raft connection fails within a heartbeat, while memberlist
// first suspects it only after its probe round reaches it (seconds), so the
// removal timeout counts from the earlier of the two (see
// membership.Server.UnreachableSince); gossip must still call it dead and
// its etcd must not answer before it is removed.
type unreachable struct {
	clk clock.Clock

	mu    sync.Mutex
	since map[string]time.Time // follower → last contact, on the election's clock
	wall  map[string]time.Time // follower → raft's last contact as raft reported it
}

func newUnreachable(clk clock.Clock) *unreachable {
	return &unreachable{clk: clk, since: map[string]time.Time{}, wall: map[string]time.Time{}}
}

// observe records one of raft's heartbeat observations. raft's last contact
// is wall-clock time; it is carried over to the election's clock as "that
// long ago", so that a test clock reads it right.
func (u *unreachable) observe(o any, wallNow time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch o := o.(type) {
	case raft.FailedHeartbeatObservation:
		id := string(o.PeerID)
		// The first failure's last contact stands while the failures go
		// on; a failure reporting a newer contact proves one in between
		// (its "resumed" was missed, or raft replicates to it afresh after
		// it was removed and added again), so it replaces the old one.
		if _, ok := u.since[id]; ok && !o.LastContact.After(u.wall[id]) {
			return
		}
		ago := time.Duration(0)
		if !o.LastContact.IsZero() {
			ago = max(wallNow.Sub(o.LastContact), 0)
		}
		u.since[id], u.wall[id] = u.clk.Now().Add(-ago), o.LastContact
	case raft.ResumedHeartbeatObservation:
		delete(u.since, string(o.PeerID))
		delete(u.wall, string(o.PeerID))
	}
}

// snapshot is a copy of the followers unreachable now.
func (u *unreachable) snapshot() map[string]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.since) == 0 {
		return nil
	}
	out := make(map[string]time.Time, len(u.since))
	for k, v := range u.since {
		out[k] = v
	}
	return out
}

// reset forgets every follower: this node is not the leader (a new term's
// replication starts counting afresh).
func (u *unreachable) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	clear(u.since)
	clear(u.wall)
}

// watch feeds raft's heartbeat observations to u until ctx ends. The
// observer does not block raft: when raft dropped an observation (the
// channel full), a lost "resumed" could leave a follower counted as
// unreachable from long ago, so u forgets everything and counts again
// from the next failures (which raft reports on every failed heartbeat).
func (u *unreachable) watch(ctx context.Context, r *raft.Raft) {
	ch := make(chan raft.Observation, 256)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(obs)
	defer r.DeregisterObserver(obs)
	var dropped uint64
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			if d := obs.GetNumDropped(); d != dropped {
				dropped = d
				u.reset()
			}
			u.observe(o.Data, time.Now())
		}
	}
}
