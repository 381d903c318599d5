package node

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// membership shows election the servers gossip knows, and publishes
// election's intents in this host's gossip metadata.
type membership struct {
	g *gossip.Member
	// changes is a subscription of this adapter's own, so that election's
	// reads never steal a signal meant for another reader.
	changes <-chan struct{}
}

var (
	_ election.Membership = (*membership)(nil)
	_ election.Publisher  = (*membership)(nil)
)

func newMembership(g *gossip.Member) (*membership, func()) {
	ch, cancel := g.Subscribe()
	return &membership{g: g, changes: ch}, cancel
}

func (m *membership) Servers() []election.Peer {
	var out []election.Peer
	for _, mi := range m.g.Members() {
		if mi.MetaErr != nil || mi.Meta.Role != gossip.RoleServer {
			continue
		}
		out = append(out, election.Peer{
			Name:          mi.Name,
			RaftAddr:      mi.Meta.RaftAddr,
			State:         string(mi.State),
			ExpectServers: mi.Meta.ExpectServers,
			ClusterName:   mi.Meta.ClusterName,
			HasRaftState:  mi.Meta.RaftState == gossip.RaftMember,
			BootstrapSet:  mi.Meta.BootstrapSet,
			WantJoinSlot:  mi.Meta.WantJoinSlot,
			StartedRKE2:   mi.Meta.StartedRKE2,
			Ready:         mi.Meta.Ready,
			CAHash:        mi.Meta.CAHash,
			Vouched:       mi.Claim == nil && m.g.Verifying(),
		})
	}
	return out
}

func (m *membership) Changes() <-chan struct{} { return m.changes }

func (m *membership) Publish(l election.Local) error {
	return m.g.UpdateMeta(func(meta *gossip.Meta) {
		meta.RaftState = gossip.RaftNone
		if l.HasRaftState {
			meta.RaftState = gossip.RaftMember
		}
		meta.BootstrapSet = l.BootstrapSet
		meta.WantJoinSlot = l.WantJoinSlot
		meta.StartedRKE2 = l.StartedRKE2
		meta.Ready = l.Ready
		meta.CAHash = l.CAHash
		meta.ClusterReady = l.ClusterReady
		meta.BootstrapNode = l.BootstrapNode
		meta.JoinSlot = l.JoinSlot
		meta.JoinedServers = l.JoinedServers
	})
}
