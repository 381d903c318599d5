package node

import (
	"context"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// raftView is election's view of the raft group, as State returns it.
type raftView = election.View

var _ coordinator = (*election.Election)(nil)

var (
	_ changeWatcher = (*election.Election)(nil)
	_ waker         = (*election.Election)(nil)
)

// changeWatcher is the part of the coordinator that tells of a change of
// the replicated state (election.Election.Changed).
type changeWatcher interface {
	Changed() <-chan struct{}
}

// waker is the part of the coordinator whose loop can be asked to step
// now (election.Election.Wake): the leader then reads what this host just
// changed (its executor's progress) at once instead of at its next tick.
type waker interface {
	Wake()
}

// coordChanges is the channel closed at the coordinator's next change,
// nil without one (an agent, or a server before raft opens).
func (n *Node) coordChanges() <-chan struct{} {
	if w, ok := n.coordinator().(changeWatcher); ok {
		return w.Changed()
	}
	return nil
}

// wakeCoordinator asks the coordinator's loop to step now, if it can.
func (n *Node) wakeCoordinator() {
	if w, ok := n.coordinator().(waker); ok {
		w.Wake()
	}
}

// waitTickOrChange waits d, or less when changed (from coordChanges) is
// closed meanwhile; nil changed: d. It fails only when ctx ends.
func (n *Node) waitTickOrChange(ctx context.Context, changed <-chan struct{}, d time.Duration) error {
	if changed == nil {
		return n.clk.Sleep(ctx, d)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-sctx.Done():
		}
	}()
	if err := n.clk.Sleep(sctx, d); err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// openElection opens this server's raft membership over gossip g: a raft
// port in use is returned as the error. The caller runs it (Run), closes it
// after Run returns, and then calls unsubscribe.
func (n *Node) openElection(g *gossip.Member) (*election.Election, func(), error) {
	c := n.cfg
	ms, unsubscribe := newMembership(g)
	el, err := election.Open(election.Config{
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
		FetchCA:       n.bootstrapCAFetcher(),
		Logger:        n.log,
		Registerer:    n.reg,
		Duties:        n.duties(g),
	})
	if err != nil {
		unsubscribe()
		return nil, nil, err
	}
	return el, unsubscribe, nil
}
