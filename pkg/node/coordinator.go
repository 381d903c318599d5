package node

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// TEMPORARY, the one place in pkg/node that writes gossip fields the
// leader acts on. election.Election does not report readiness yet; until it
// does (ReportReady/ReportNotReady, and publishing Ready, CAHash and
// ClusterReady through its Publisher), coordinatorAdapter adds those
// reports by writing this host's metadata as the daemon always has. When
// election has them, newCoordinator returns the *election.Election itself
// and this file goes.
type coordinatorAdapter struct {
	*election.Election
	g *gossip.Member
}

// clusterReadyAdvertiser is implemented by the temporary adapter only: it
// shows agents, which are not in raft, the committed cluster ready.
type clusterReadyAdvertiser interface{ advertiseClusterReady() }

func newCoordinator(el *election.Election, g *gossip.Member) coordinator {
	return &coordinatorAdapter{Election: el, g: g}
}

func (a *coordinatorAdapter) ReportReady(caHash string) {
	_ = a.g.UpdateMeta(func(m *gossip.Meta) {
		m.Ready = true
		if caHash != "" {
			m.CAHash = caHash
		}
	})
}

func (a *coordinatorAdapter) ReportNotReady() {
	_ = a.g.UpdateMeta(func(m *gossip.Meta) { m.Ready = false })
}

func (a *coordinatorAdapter) advertiseClusterReady() {
	st := a.State()
	if st.ClusterReady == nil {
		return
	}
	local := a.g.Local()
	if local.ClusterReady && local.CAHash == st.ClusterReady.CAHash {
		return
	}
	ca := st.ClusterReady.CAHash
	_ = a.g.UpdateMeta(func(m *gossip.Meta) { m.ClusterReady, m.CAHash = true, ca })
}
