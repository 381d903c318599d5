package node

import (
	"cmp"
	"slices"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// An agent is not in raft: what it shows of the cluster (DESIGN.md's
// status contract: bootstrap node, join slot, joined servers) is what the
// servers advertise in gossip from their raft state.

// advertisedCluster is one server's advertisement of the cluster.
type advertisedCluster struct {
	Server        string
	ClusterReady  bool
	BootstrapNode string
	JoinSlot      string
	JoinedServers int
}

// advertisedBy reads a server's advertisement from its metadata, written
// by its election from its raft FSM.
func advertisedBy(name string, m gossip.Meta) advertisedCluster {
	return advertisedCluster{Server: name, ClusterReady: m.ClusterReady,
		BootstrapNode: m.BootstrapNode, JoinSlot: m.JoinSlot, JoinedServers: m.JoinedServers}
}

// clusterAsAdvertised is the cluster as the alive servers advertise it.
func clusterAsAdvertised(members []gossip.MemberInfo) (advertisedCluster, bool) {
	var ads []advertisedCluster
	for _, m := range members {
		if m.State != gossip.StateAlive || m.MetaErr != nil || m.Meta.Role != gossip.RoleServer {
			continue
		}
		ads = append(ads, advertisedBy(m.Name, m.Meta))
	}
	return mostAdvanced(ads)
}

// mostAdvanced picks, of the servers' advertisements, the most advanced:
// cluster ready first, then the most joined servers (raft's joined list
// only grows, so the longest is the most recent), then one that names the
// bootstrap node, then the lowest name so that every agent picks the same.
func mostAdvanced(ads []advertisedCluster) (advertisedCluster, bool) {
	if len(ads) == 0 {
		return advertisedCluster{}, false
	}
	best := slices.MinFunc(ads, func(a, b advertisedCluster) int {
		if a.ClusterReady != b.ClusterReady {
			if a.ClusterReady {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.JoinedServers, a.JoinedServers); c != 0 {
			return c
		}
		if (a.BootstrapNode == "") != (b.BootstrapNode == "") {
			if a.BootstrapNode != "" {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Server, b.Server)
	})
	return best, true
}
