package election

import "testing"

// TestAdvertised: what a node advertises of its readiness, before and after
// cluster ready is committed.
func TestAdvertised(t *testing.T) {
	committed := State{Bootstrap: "a", Started: true, ClusterReady: &ClusterReady{VIP: "v", CAHash: "ca1"}}
	intents := Local{HasRaftState: true, BootstrapSet: "x!", WantJoinSlot: true, StartedRKE2: true}
	for _, c := range []struct {
		name string
		rep  readiness
		st   State
		want Local
	}{
		{"not ready, no cluster", readiness{}, State{}, Local{}},
		{"ready before cluster ready", readiness{true, "ca1"}, State{Bootstrap: "a"}, Local{Ready: true, CAHash: "ca1"}},
		{"not ready keeps its CA", readiness{false, "ca1"}, State{}, Local{CAHash: "ca1"}},
		{"ready with the cluster's CA", readiness{true, "ca1"}, committed, Local{Ready: true, CAHash: "ca1", ClusterReady: true}},
		{"ready with another CA", readiness{true, "ca2"}, committed, Local{CAHash: "ca1", ClusterReady: true}},
		{"ready with no CA known", readiness{true, ""}, committed, Local{CAHash: "ca1", ClusterReady: true}},
		{"not ready, cluster ready", readiness{}, committed, Local{CAHash: "ca1", ClusterReady: true}},
	} {
		got := advertised(intents, c.rep, c.st)
		want := c.want
		want.HasRaftState, want.BootstrapSet, want.WantJoinSlot, want.StartedRKE2 = true, "x!", true, true
		if got != want {
			t.Errorf("%s: advertised = %+v, want %+v", c.name, got, want)
		}
	}
}
