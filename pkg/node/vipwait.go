package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// waitVIP waits until the VIP answers with caHash. A different CA is an
// alarm (vipResult) and retried with the caller's backoff: a squatter on
// the VIP can leave, and the probe sends it nothing secret.
func (n *Node) waitVIP(ctx context.Context, caHash string) error {
	// Every host that waits for the VIP shares the supervisor's capacity:
	// each probes in turns dealt by its rank among the members alive.
	_, err := n.prober.WaitReachableAmong(ctx, n.cfg.VIP, caHash, n.vipSlot)
	n.vipResult(err, err == nil)
	if errors.Is(err, vip.ErrCAMismatch) {
		return &hinted{err: err, hint: fmt.Sprintf("something other than this cluster answers on %s (held by %s): waiting for it to go", n.cfg.VIP, holderName(n.vipHolderNow()))}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		holder, local, herr := n.prober.Holder(n.cfg.VIP, n.memberMACs())
		return &hinted{err: err, hint: silentVIPHint(n.cfg.VIP, holder, local, herr)}
	}
	if err == nil {
		n.setVIPReachable(true)
	}
	return err
}

// silentVIPHint says where to look when the VIP does not answer on 9345
// with the cluster's CA, from what the neighbour table says of its holder.
// A stopped rke2-server can leave its kube-vip holding the VIP (the
// container keeps running until rke2-killall.sh).
func silentVIPHint(addr, holder string, local bool, holderErr error) string {
	switch {
	case holderErr == nil && local:
		return fmt.Sprintf("this host holds %s but nothing here answers on 9345 with the cluster's CA: "+
			"is rke2-server running here? (a stopped rke2-server can leave kube-vip holding the VIP; rke2-killall.sh releases it)", addr)
	case holderErr == nil:
		return fmt.Sprintf("%s holds %s (by ARP) but does not answer on 9345 with the cluster's CA: "+
			"if rke2-server is stopped on %s, its kube-vip can keep the VIP; start rke2-server there, or run rke2-killall.sh there", holder, addr, holder)
	default:
		return fmt.Sprintf("no member is known to hold %s (%v): is kube-vip running on the servers (its manifest in the bootstrap server's manifests folder)?", addr, holderErr)
	}
}

// vipSlot is this host's turn among the members gossip shows alive; a host
// that does not see itself yet counts itself last.
func (n *Node) vipSlot() vip.Slot {
	rank, of := n.members.AliveRank(n.cfg.NodeName)
	if rank < 0 {
		return vip.Slot{Rank: of, Of: of + 1}
	}
	return vip.Slot{Rank: rank, Of: of}
}
