package node

import (
	"strings"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// TestPublishWritesTheProtocolFields: everything election advertises for
// this host lands in its gossip metadata, Ready, CAHash and ClusterReady
// included, and withdrawing them clears them.
func TestPublishWritesTheProtocolFields(t *testing.T) {
	g, err := gossip.Open(gossip.Config{NodeName: "s1", BindAddr: "127.0.0.1", BindPort: 0, AdvertiseAddr: "127.0.0.1",
		Token: "t", ClusterName: "c", Meta: gossip.Meta{Role: gossip.RoleServer, ExpectServers: 3, ClusterName: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ms, cancel := newMembership(g)
	defer cancel()
	ca := strings.Repeat("ab", 32)
	l := election.Local{HasRaftState: true, BootstrapSet: "0123456789abcdef!", WantJoinSlot: true, StartedRKE2: true,
		Ready: true, CAHash: ca, ClusterReady: true, BootstrapNode: "s1", JoinSlot: "s3", JoinedServers: 2}
	if err := ms.Publish(l); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	m := g.Local()
	if m.RaftState != gossip.RaftMember || m.BootstrapSet != l.BootstrapSet || !m.WantJoinSlot || !m.StartedRKE2 ||
		!m.Ready || m.CAHash != ca || !m.ClusterReady || m.BootstrapNode != "s1" || m.JoinSlot != "s3" || m.JoinedServers != 2 {
		t.Fatalf("after Publish(%+v) the metadata is %+v", l, m)
	}
	if err := ms.Publish(election.Local{}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	m = g.Local()
	if m.RaftState != gossip.RaftNone || m.BootstrapSet != "" || m.WantJoinSlot || m.StartedRKE2 || m.Ready || m.CAHash != "" || m.ClusterReady ||
		m.BootstrapNode != "" || m.JoinSlot != "" || m.JoinedServers != 0 {
		t.Fatalf("after Publish of nothing the metadata is %+v", m)
	}
}
