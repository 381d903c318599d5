package node

import (
	"context"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// runAgent joins this agent as soon as the cluster is ready:
// a server seen → cluster ready (from the servers' gossip) and the VIP
// answers → write config → start RKE2 → ready.
func (n *Node) runAgent(ctx context.Context) error {
	n.t.set(status.PhaseDiscovering, "looking for a server")
	err := n.retryWithin(ctx, "discover", discoverDeadline, "waiting to see a server", func(ctx context.Context) error {
		return n.waitGossip(ctx, func() bool { return n.members.NumAlive(gossip.RoleServer) > 0 })
	})
	if err != nil {
		return err
	}
	n.t.set(status.PhaseWaitingCluster, "waiting for the cluster to be ready")
	var ca string
	err = n.retryWithin(ctx, "waiting-cluster", clusterDeadline, "waiting for the cluster to be ready", func(ctx context.Context) error {
		if err := n.waitGossip(ctx, func() bool { ca = n.clusterCAFromGossip(); return ca != "" }); err != nil {
			return err
		}
		n.setCA(ca)
		return n.waitVIP(ctx, ca)
	})
	if err != nil {
		return err
	}
	if n.agentReady != nil {
		n.agentReady.Set(1)
	}
	if err := n.retry(ctx, "write-config", func(context.Context) error {
		return n.host.WriteConfig(installer.Agent, ca)
	}); err != nil {
		return err
	}
	if err := n.rememberStart(false, ca); err != nil {
		return err
	}
	n.setStarting("joining through " + installer.ServerURL(n.cfg.VIP))
	if err := n.retry(ctx, "start", n.startService); err != nil {
		return err
	}
	n.markReady()
	return nil
}

// clusterCAFromGossip is the CA hash the servers advertise once raft
// committed cluster ready; servers that disagree are not trusted.
func (n *Node) clusterCAFromGossip() string {
	seen := map[string]int{}
	for _, m := range n.members.Members() {
		if m.State == gossip.StateAlive && m.MetaErr == nil && m.Meta.Role == gossip.RoleServer && m.Meta.ClusterReady && m.Meta.CAHash != "" {
			seen[m.Meta.CAHash]++
		}
	}
	if len(seen) != 1 {
		if len(seen) > 1 {
			n.log.Warn("servers advertise different cluster CAs; waiting until they agree", zap.Int("cas", len(seen)))
		}
		return ""
	}
	for ca := range seen {
		return ca
	}
	return ""
}

// waitGossip returns once cond holds, re-checking on every gossip change
// and every gossipRecheck.
func (n *Node) waitGossip(ctx context.Context, cond func() bool) error {
	ch, cancel := n.members.Subscribe()
	defer cancel()
	for !cond() {
		if err := n.waitChange(ctx, ch, gossipRecheck); err != nil {
			return err
		}
	}
	return nil
}
