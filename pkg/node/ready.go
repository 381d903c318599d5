package node

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// serviceWatch is how often keepReady asks whether RKE2 is still active.
const serviceWatch = 5 * time.Second

// markReady enters ready, reports it to the leader and remembers it.
func (n *Node) markReady() {
	n.mu.Lock()
	n.prog.Role = n.cfg.Role
	if !n.prog.Ready {
		n.prog.Ready, n.prog.ReadyAt = true, n.clk.Now().UTC()
	}
	p := n.prog
	n.mu.Unlock()
	if err := saveProgress(n.cfg.DataDir, p, n.clk.Now()); err != nil {
		n.log.Warn("could not save progress", zap.Error(err))
	}
	n.reportReady()
	n.t.set(status.PhaseReady, n.readyDetail())
}

// reportReady tells the leader this server's RKE2 is active for the CA it
// knows: the evidence on which the leader commits cluster ready or the join.
// election advertises it. An agent, which is not in raft, advertises its
// own readiness, for status only: no leader acts on it.
func (n *Node) reportReady() {
	if c := n.coordinator(); c != nil {
		c.ReportReady(n.ca())
		return
	}
	n.publishAgentReady(true)
}

func (n *Node) reportNotReady() {
	if c := n.coordinator(); c != nil {
		c.ReportNotReady()
		return
	}
	n.publishAgentReady(false)
}

func (n *Node) publishAgentReady(ready bool) {
	if n.cfg.IsServer() || n.members == nil {
		return
	}
	if err := n.members.UpdateMeta(func(m *gossip.Meta) { m.Ready = ready }); err != nil {
		n.log.Debug("publish readiness", zap.Error(err))
	}
}

func (n *Node) coordinator() coordinator {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.coord
}

func (n *Node) readyDetail() string {
	return fmt.Sprintf("%s is active", installer.UnitName(n.role))
}

// keepReady watches the RKE2 service once ready: if it stops being active
// (under systemd or exec it is restarted), the phase says so until it is back.
func (n *Node) keepReady(ctx context.Context) error {
	for n.clk.Sleep(ctx, serviceWatch) == nil {
		if n.cfg.IsServer() && n.removedWhileRunning(ctx) {
			return nil
		}
		if n.upgradeRestarting() {
			continue // the upgrade restarts the service and watches it (upgrade.go)
		}
		active, err := n.svc.Active(ctx, n.role)
		phase, _, _ := n.t.get()
		switch {
		case err == nil && active && phase != status.PhaseReady:
			n.reportReady()
			n.t.set(status.PhaseReady, n.readyDetail())
		case (err != nil || !active) && phase == status.PhaseReady:
			reason := "not active"
			if err != nil {
				reason = err.Error()
			}
			n.reportNotReady()
			n.t.fail("service", fmt.Errorf("%s: %s; waiting for it to be restarted", installer.UnitName(n.role), reason), false)
		}
	}
	return nil
}

// setCA records the cluster's CA hash as this host learned it.
func (n *Node) setCA(ca string) {
	if ca == "" {
		return
	}
	n.mu.Lock()
	n.caHash = ca
	n.prog.CAHash = ca
	n.mu.Unlock()
}

func (n *Node) ca() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.caHash
}
