package node

import (
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

func TestMostAdvancedAdvertisement(t *testing.T) {
	for _, tc := range []struct {
		name string
		ads  []advertisedCluster
		want string // the server whose advertisement is shown
	}{
		{"none", nil, ""},
		{"cluster ready wins", []advertisedCluster{
			{Server: "a", JoinedServers: 2},
			{Server: "b", ClusterReady: true, BootstrapNode: "b"},
		}, "b"},
		{"most joined is the newest", []advertisedCluster{
			{Server: "a", ClusterReady: true, BootstrapNode: "a", JoinedServers: 1, JoinSlot: "c"},
			{Server: "b", ClusterReady: true, BootstrapNode: "a", JoinedServers: 2},
			{Server: "c", ClusterReady: true, BootstrapNode: "a", JoinedServers: 1, JoinSlot: "c"},
		}, "b"},
		{"one that names the bootstrap", []advertisedCluster{
			{Server: "a"},
			{Server: "b", BootstrapNode: "c"},
		}, "b"},
		{"lowest name breaks ties", []advertisedCluster{
			{Server: "c", ClusterReady: true, BootstrapNode: "a"},
			{Server: "b", ClusterReady: true, BootstrapNode: "a"},
		}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := mostAdvanced(tc.ads)
			if ok != (tc.want != "") || got.Server != tc.want {
				t.Errorf("picked %q (%v), want %q", got.Server, ok, tc.want)
			}
		})
	}
}

// TestAgentStatusFromGossip: an agent's /status shows the cluster as the
// alive servers advertise it; dead servers and agents are not asked.
func TestAgentStatusFromGossip(t *testing.T) {
	w := newWorld("agent", false)
	w.members = append(w.members,
		gossip.MemberInfo{Name: "dead", State: gossip.StateDead, Meta: gossip.Meta{Role: gossip.RoleServer, ClusterReady: true}},
		gossip.MemberInfo{Name: "a2", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent, ClusterReady: true}},
	)
	n := newTestNode(t, w, "agent", t.TempDir())
	st := n.Status()
	if !st.Cluster.ClusterReady {
		t.Errorf("cluster ready not shown: %+v", st.Cluster)
	}
	ad, ok := clusterAsAdvertised(w.members)
	if !ok || ad.Server != "other" {
		t.Errorf("advertisement taken from %q (%v), want the alive server", ad.Server, ok)
	}
	if len(st.Members) != 3 || st.Members[0].Role != gossip.RoleServer {
		t.Errorf("members = %+v", st.Members)
	}
}

// TestAgentStatusShowsWhatServersAdvertise: an agent's /status shows the
// bootstrap node, the joined servers and the join slot's holder as the
// most advanced server advertises them in gossip.
func TestAgentStatusShowsWhatServersAdvertise(t *testing.T) {
	w := newWorld("agent", false)
	w.members = []gossip.MemberInfo{
		{Name: "s1", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleServer, ClusterReady: true, CAHash: testCA,
			BootstrapNode: "s1", JoinSlot: "s3", JoinedServers: 2}},
		{Name: "s2", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleServer, ClusterReady: true, CAHash: testCA,
			BootstrapNode: "s1", JoinSlot: "s2", JoinedServers: 1}}, // a view that lags
	}
	n := newTestNode(t, w, "agent", t.TempDir())
	c := n.Status().Cluster
	if c.BootstrapNode != "s1" || c.JoinedServers != 2 || c.JoinSlot != "s3" {
		t.Errorf("agent shows bootstrap node %q, %d joined, slot %q; want s1, 2, s3", c.BootstrapNode, c.JoinedServers, c.JoinSlot)
	}
}

// TestStatusShowsClaimVerification: /status says per member whether a
// verified server claim backs it, and marks one that only says it is a
// server.
func TestStatusShowsClaimVerification(t *testing.T) {
	w := newWorld("agent", false)
	w.members = []gossip.MemberInfo{
		{Name: "server-1", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleServer}, Claim: &claims.Claim{Node: "server-1", Seq: 1}},
		{Name: "intruder", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent}, Unverified: true},
	}
	n := newTestNode(t, w, "agent", t.TempDir())
	got := map[string]status.Member{}
	for _, m := range n.Status().Members {
		got[m.Name] = m
	}
	if m := got["server-1"]; !m.ClaimVerified || m.UnverifiedServer {
		t.Errorf("verified server: %+v", m)
	}
	if m := got["intruder"]; m.ClaimVerified || !m.UnverifiedServer || m.Role != gossip.RoleAgent {
		t.Errorf("unverified server: %+v", m)
	}
}
