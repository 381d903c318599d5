package node

import (
	"context"
	"sync"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// raftView is election's view of the raft group, as State returns it.
type raftView = election.Snapshot

// startCoordinator opens this server's raft membership over gossip g and
// runs it under ctx in a goroutine counted by wg; stop releases what it
// holds. A raft port in use is returned as the error.
//
// TEMPORARY as written: election binds inside Run, so a bind failure is
// told from a running raft by how fast Run returns. With election.Open
// (binds now) → Run → Close this becomes: Open (its error returned), Run
// in the goroutine, stop = Close, and no timer.
func (n *Node) startCoordinator(ctx context.Context, g *gossip.Member, wg *sync.WaitGroup) (coordinator, func(), error) {
	c := n.cfg
	ms, unsubscribe := newMembership(g)
	el, err := election.New(election.Config{
		NodeName:      c.NodeName,
		BindAddr:      c.BindAddress,
		RaftPort:      c.RaftPort,
		AdvertiseAddr: n.advertise,
		DataDir:       c.DataDir,
		Token:         c.Secret(),
		ClusterName:   c.ClusterName,
		ExpectServers: c.ExpectServers,
		VIP:           c.VIP,
		Membership:    ms,
		Publisher:     ms,
		Logger:        n.log,
		Registerer:    n.reg,
	})
	if err != nil {
		unsubscribe()
		return nil, nil, err
	}
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- el.Run(ctx)
	}()
	select {
	case err := <-errc:
		if err != nil && ctx.Err() == nil {
			unsubscribe()
			return nil, nil, err
		}
	case <-time.After(200 * time.Millisecond):
	}
	return newCoordinator(el, g), unsubscribe, nil
}

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
