package node

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/timeline"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// watchCluster keeps what this host shows of the cluster fresh: the
// cluster_nodes gauge on every gossip change, the servers' cluster-ready
// advertisement from the raft FSM, and, once ready, the VIP's reachability
// and holder at a slow, jittered pace so many hosts add little load.
func (n *Node) watchCluster(ctx context.Context) {
	ch, cancel := n.g.Subscribe()
	defer cancel()
	nextProbe := time.Now()
	for {
		n.countNodes()
		n.advertiseClusterReady()
		if phase, _, _ := n.t.get(); phase == status.PhaseWaitingJoinSlot {
			n.t.setDetail(n.slotDetail())
		}
		if time.Now().After(nextProbe) {
			if phase, _, _ := n.t.get(); phase == status.PhaseReady {
				n.probeVIP(ctx)
			}
			every := 10 * time.Second
			if !n.cfg.IsServer() {
				every = 30 * time.Second
			}
			nextProbe = time.Now().Add(every/2 + time.Duration(rand.Int64N(int64(every))))
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

func (n *Node) countNodes() {
	counts := map[[2]string]int{}
	for _, m := range n.g.Members() {
		if m.MetaErr != nil || m.State == gossip.StateDead || m.State == gossip.StateLeft {
			continue
		}
		counts[[2]string{m.Meta.Role, m.Meta.Phase}]++
	}
	n.clusterNodes.Reset()
	for _, role := range []string{gossip.RoleServer, gossip.RoleAgent} {
		for _, p := range status.Phases {
			n.clusterNodes.WithLabelValues(role, p).Set(float64(counts[[2]string{role, p}]))
		}
	}
}

// advertiseClusterReady lets agents, which are not in raft, learn cluster
// ready and its CA hash from any server's gossip metadata.
func (n *Node) advertiseClusterReady() {
	if n.el == nil {
		return
	}
	st := n.el.State()
	if st.ClusterReady == nil {
		return
	}
	local := n.g.Local()
	if local.ClusterReady && local.CAHash == st.ClusterReady.CAHash {
		return
	}
	n.setCA(st.ClusterReady.CAHash)
	n.publish(func(m *gossip.Meta) { m.ClusterReady, m.CAHash = true, st.ClusterReady.CAHash })
}

func (n *Node) probeVIP(ctx context.Context) {
	n.mu.Lock()
	ca := n.caHash
	n.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r := n.prober.Probe(pctx, n.cfg.VIP, ca)
	n.setVIPReachable(r.Reachable)
	if !r.Reachable {
		n.log.Debug("VIP probe", zap.Error(r.Err))
		return
	}
	holder, _, err := n.prober.Holder(n.cfg.VIP, n.memberMACs())
	if err != nil {
		// Off loopback, the serving certificate names the holder too.
		holder, _, err = n.holderByCertificate(n.cfg.VIP)
	}
	if err != nil {
		n.log.Debug("VIP holder unknown", zap.Error(err))
		holder = ""
	}
	n.mu.Lock()
	n.vipHolder = holder
	n.mu.Unlock()
}

// memberMACs are the interface MACs the alive members advertise, to name
// the VIP's holder from the neighbour table.
func (n *Node) memberMACs() []vip.MemberMAC {
	var macs []vip.MemberMAC
	for _, m := range n.g.Members() {
		if m.State == gossip.StateAlive && len(m.Meta.MAC) > 0 {
			macs = append(macs, vip.MemberMAC{Name: m.Name, MAC: m.Meta.MAC})
		}
	}
	return macs
}

func (n *Node) setVIPReachable(ok bool) {
	n.mu.Lock()
	n.vipReachable = ok
	n.mu.Unlock()
}

// Status is the /status document: this host, the cluster as it sees it,
// and every member gossip knows.
func (n *Node) Status() status.Status {
	phase, since, lastErr := n.t.get()
	n.mu.Lock()
	st := status.Status{
		Node: status.Node{Name: n.cfg.NodeName, Role: n.cfg.Role, Phase: phase, Since: since, Error: lastErr, Bootstrap: n.prog.Bootstrap},
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
	if n.el != nil {
		es := n.el.State()
		st.Node.Bootstrap = es.IsBootstrap
		st.Cluster.BootstrapNode = es.Bootstrap
		st.Cluster.ClusterReady = es.ClusterReady != nil
		st.Cluster.Raft = status.Raft{State: es.RaftState, Leader: es.Leader}
		st.Cluster.JoinSlot = es.SlotHolder
		st.Cluster.JoinedServers = len(es.Joined)
		if es.ClusterReady != nil {
			st.Cluster.CAHash = es.ClusterReady.CAHash
		}
	} else {
		st.Cluster.ClusterReady = n.clusterCAFromGossip() != ""
	}
	members := n.g.Members()
	st.Members = make([]status.Member, 0, len(members))
	st.Timeline = map[string][]status.Transition{n.cfg.NodeName: n.t.history.Entries()}
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
