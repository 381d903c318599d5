package node

import (
	"context"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// watchCluster keeps what this host shows of the cluster fresh: the
// cluster_nodes gauge on every gossip change, the join slot's detail while
// waiting for it, and, once ready, the VIP's reachability and holder at a
// slow, jittered pace so many hosts add little load. (What a server
// advertises from its raft FSM, election publishes.)
func (n *Node) watchCluster(ctx context.Context) {
	ch, cancel := n.members.Subscribe()
	defer cancel()
	nextProbe := n.clk.Now()
	for {
		n.countNodes()
		if phase, _, _ := n.t.get(); phase == status.PhaseWaitingJoinSlot {
			if n.coordinator() != nil {
				n.t.setDetail(n.slotDetail())
			}
		}
		if n.clk.Now().After(nextProbe) {
			if phase, _, _ := n.t.get(); phase == status.PhaseReady {
				n.probeVIP(ctx)
			}
			every := 10 * time.Second
			if !n.cfg.IsServer() {
				every = 30 * time.Second
			}
			nextProbe = n.clk.Now().Add(every/2 + time.Duration(rand.Int64N(int64(every))))
		}
		if n.waitChange(ctx, ch, time.Second) != nil {
			return
		}
	}
}

func (n *Node) countNodes() {
	counts := map[[2]string]int{}
	for _, m := range n.members.Members() {
		if m.MetaErr != nil || m.State == gossip.StateDead || m.State == gossip.StateLeft {
			continue
		}
		counts[[2]string{m.Meta.Role, m.Meta.Phase}]++
	}
	n.clusterNodes.Reset()
	if n.standbyServers != nil {
		n.standbyServers.Set(float64(counts[[2]string{gossip.RoleServer, status.PhaseStandby}]))
	}
	for _, role := range []string{gossip.RoleServer, gossip.RoleAgent} {
		for _, p := range status.Phases {
			n.clusterNodes.WithLabelValues(role, p).Set(float64(counts[[2]string{role, p}]))
		}
	}
}

func (n *Node) probeVIP(ctx context.Context) {
	ca := n.ca()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r := n.prober.Probe(pctx, n.cfg.VIP, ca)
	n.setVIPReachable(r.Reachable)
	n.vipResult(r.Err, r.Reachable)
	if c := n.coordinator(); c != nil {
		if es := c.State(); es.IsBootstrap && es.ClusterReady != nil {
			n.checkCommittedCA(es.ClusterReady.CAHash)
		}
	}
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

// memberMACs are the interface MACs the alive servers advertise, to name
// the VIP's holder from the neighbour table.
func (n *Node) memberMACs() []vip.MemberMAC {
	var macs []vip.MemberMAC
	for _, m := range n.members.Members() {
		// Only servers run kube-vip, and only a verified claim makes a
		// server: an agent's MAC (anyone may announce any) names no holder.
		if m.State == gossip.StateAlive && m.Meta.Role == gossip.RoleServer && len(m.Meta.MAC) > 0 {
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
