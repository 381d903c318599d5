package node

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// raftView is election's view of the raft group, as State returns it.
type raftView = election.View

var _ coordinator = (*election.Election)(nil)

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
