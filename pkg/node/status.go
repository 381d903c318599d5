package node

import (
	"slices"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/timeline"
)

// Status is the /status document: this host, the cluster as it sees it,
// and every member gossip knows.
func (n *Node) Status() status.Status {
	phase, since, lastErr := n.t.get()
	n.mu.Lock()
	view := n.members // nil until Run has opened gossip
	st := status.Status{
		Node: status.Node{Name: n.cfg.NodeName, Role: n.cfg.Role, Phase: phase, Since: since, Error: lastErr, Bootstrap: n.prog.Bootstrap, Standby: n.standby, Detail: n.t.getDetail()},
		Cluster: status.Cluster{
			Name:          n.cfg.ClusterName,
			ExpectServers: n.cfg.ExpectServers,
			CAHash:        n.caHash,
			VIP:           n.cfg.VIP,
			VIPReachable:  n.vipReachable,
			VIPHolder:     n.vipHolder,
		},
	}
	n.mu.Unlock()
	n.alarmStatus(&st.Cluster)
	st.Cluster.VIPReleased = n.watchdog.status()
	if c := n.coordinator(); c != nil {
		es := c.State()
		st.Node.Bootstrap = es.IsBootstrap
		st.Cluster.BootstrapNode = es.Bootstrap
		st.Cluster.ClusterReady = es.ClusterReady != nil
		st.Cluster.Raft = status.Raft{State: es.RaftState, Leader: es.Leader}
		st.Cluster.JoinSlot = es.SlotHolder
		st.Cluster.JoinedServers = len(es.Joined)
		if es.ClusterReady != nil {
			st.Cluster.CAHash = es.ClusterReady.CAHash
		}
	} else if view != nil {
		st.Cluster.ClusterReady = n.clusterCAFromGossip() != ""
		if ad, ok := clusterAsAdvertised(view.Members()); ok {
			st.Cluster.BootstrapNode = ad.BootstrapNode
			st.Cluster.JoinSlot = ad.JoinSlot
			st.Cluster.JoinedServers = ad.JoinedServers
		}
	}
	var members []gossip.MemberInfo
	if view != nil {
		members = view.Members()
	}
	st.Members = make([]status.Member, 0, len(members))
	st.Cluster.StandbyServers = standbyServers(members)
	st.Cluster.Etcd = n.etcdStatus()
	st.Timeline = map[string][]status.Transition{n.cfg.NodeName: n.t.history.Entries()}
	st.Upgrade = n.upgradeStatus()
	for _, m := range members {
		if m.Name != n.cfg.NodeName {
			// A summary that does not decode is left out; the member row
			// still shows its phase.
			if tl, err := timeline.Decode(m.Meta.Timeline); err == nil && len(tl) > 0 {
				st.Timeline[m.Name] = tl
			}
		}
		st.Members = append(st.Members, status.Member{
			Name: m.Name, Address: m.Addr, Role: m.Meta.Role, Phase: m.Meta.Phase, State: string(m.State), Since: m.Meta.PhaseSince,
			ClaimVerified: m.Claim != nil, UnverifiedServer: m.Unverified,
		})
	}
	slices.SortFunc(st.Members, func(a, b status.Member) int {
		if a.Role != b.Role {
			if a.Role == gossip.RoleServer {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return st
}

// standbyServers are the servers gossip shows in phase standby (alive or
// suspect), sorted by name.
func standbyServers(members []gossip.MemberInfo) []string {
	out := []string{}
	for _, m := range members {
		if m.MetaErr == nil && m.Meta.Role == gossip.RoleServer && m.Meta.Phase == status.PhaseStandby &&
			m.State != gossip.StateDead && m.State != gossip.StateLeft {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}
