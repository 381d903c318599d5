package election

import (
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// TestDutiesGatedOnReaders: the duties act only while every voter gossips a
// build that reads their commands; until then decide admits every server
// that asks, as command version 1 does.
func TestDutiesGatedOnReaders(t *testing.T) {
	st := clusterOf3()
	peers := []Peer{{Name: "d", State: MemberAlive, ClusterName: "c", WantJoinSlot: true}}
	reads := map[string]int{"a": 2, "b": 2, "c": 2}
	duties := &MembershipDuties{Config: membership.Config{MaxServers: 7},
		Readers: func(name string) (int, bool) { v, ok := reads[name]; return v, ok }}
	self := leaderSelf{Name: "a", Cluster: "c", Membership: duties}
	decideNow := func() []action {
		return decide(st, peers, self, nil, time.Unix(1_800_000_000, 0), LANTiming(), newLeaderBook())
	}
	if acts := decideNow(); len(acts) != 0 {
		t.Fatalf("every voter reads version 2: the 4th server must wait, got %+v", acts)
	}
	for _, tc := range []struct {
		name string
		set  func()
	}{
		{"a voter of an older build", func() { reads["c"] = 1 }},
		{"a voter not in gossip", func() { delete(reads, "c") }},
	} {
		reads = map[string]int{"a": 2, "b": 2, "c": 2}
		tc.set()
		if duties.active(st) {
			t.Errorf("%s: duties active", tc.name)
		}
		if acts := decideNow(); len(acts) != 1 || acts[0].Cmd.Op != opGrant || acts[0].Cmd.Node != "d" {
			t.Errorf("%s: want the version-1 grant to d, got %+v", tc.name, acts)
		}
	}
	var off *MembershipDuties
	if off.active(st) {
		t.Error("nil duties active")
	}
	if !(&MembershipDuties{}).active(st) {
		t.Error("duties without Readers not active")
	}
}
