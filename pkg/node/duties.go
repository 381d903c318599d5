package node

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	ms "github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// duties is the leader's membership duties as this server runs them: odd
// admission through the join slot up to max-servers, and removal of a
// server dead for server-removal-timeout, executed by the leader itself
// (executeRemovals), and the rolling upgrade's plan (upgradeDuty). The duties act only while every voter gossips a
// build that reads their commands (Readers).
func (n *Node) duties(g *gossip.Member) *election.MembershipDuties {
	return &election.MembershipDuties{
		Config:       ms.Config{MaxServers: n.cfg.MaxServers, RemovalTimeout: n.cfg.ServerRemovalTimeout(), ExecuteTimeout: removalExecuteTimeout},
		Extra:        n.membershipExtra,
		Readers:      func(name string) (int, bool) { return commandReaders(g.Members(), name) },
		Upgrade:      n.upgradeDuty,
		UpgradeAhead: n.upgradeDutyAhead,
		Requests:     n.selfRequests,
	}
}

// commandReaders is the command version server name's build reads, from
// its gossiped metadata: a build from before the field reads version 1.
func commandReaders(members []gossip.MemberInfo, name string) (int, bool) {
	for _, mi := range members {
		if mi.Name != name || mi.MetaErr != nil {
			continue
		}
		if mi.Meta.Commands == 0 {
			return 1, true
		}
		return mi.Meta.Commands, true
	}
	return 0, false
}
