package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
)

// Each server publishes, in its signed claim, the raft voters it sees
// while its raft knows a leader. A server that comes back with its own
// datastore reads them before it starts RKE2 on it: when the servers that
// run the cluster now no longer count it (it was removed, or the cluster was
// recovered from a lost quorum while it was off), its datastore is from
// before and RKE2 must not resume it (two servers doing so could revive the
// old etcd beside the recovered one). It stops with what to do instead.

// peerClaimsWait is how long a restarting server waits for gossip to show
// another server's claim before it decides alone (a cold start: it may be
// the first server up).
const peerClaimsWait = 10 * time.Second

// leftBehind returns, from the verified claims of the alive servers, the
// first one whose published voters do not include self, and those voters.
func leftBehind(self string, members []gossip.MemberInfo) (by string, voters []string) {
	for _, m := range members {
		if m.Name == self || m.State != gossip.StateAlive || m.Claim == nil || len(m.Claim.Voters) == 0 {
			continue
		}
		if !slices.Contains(m.Claim.Voters, self) {
			return m.Name, m.Claim.Voters
		}
	}
	return "", nil
}

// checkNotLeftBehind waits (peerClaimsWait at most) for another server's
// claim and refuses, as a permanent failure, when the cluster's voters no
// longer count this server.
func (n *Node) checkNotLeftBehind(ctx context.Context, datastore string) error {
	if n.gossipCfg.Signer == nil {
		// Servers sign no claims in this build's gossip yet: there is no
		// verified evidence to wait for.
		return nil
	}
	deadline := n.clk.Now().Add(peerClaimsWait)
	for {
		members := n.members.Members()
		if by, voters := leftBehind(n.cfg.NodeName, members); by != "" {
			return permanent("the servers running the cluster now (raft voters %s, as %s publishes them) no longer count this server: "+
				"it was removed, or the cluster was recovered from a lost quorum, while it was off; its datastore %s is from before and must not be resumed: "+
				"stop rke2-hanode, run `rke2-hanode rejoin --wipe` (it moves %s and this daemon's raft store aside: RKE2's words, backup and delete server/db), "+
				"then start rke2-hanode again to rejoin through the join slot",
				strings.Join(voters, ", "), by, datastore, filepath.Dir(datastore))
		}
		for _, m := range members {
			if m.Name != n.cfg.NodeName && m.State == gossip.StateAlive && m.Claim != nil && len(m.Claim.Voters) > 0 {
				return nil // a server that counts this one
			}
		}
		if !n.clk.Now().Before(deadline) {
			return nil
		}
		if err := n.clk.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// After a quorum-loss recovery (recover.go) every other server is recorded
// as removed, and its datastore is from before the reset. The operator
// confirmed the recovery, so a server that comes back with such a
// datastore wipes it itself, as RKE2's cluster-reset message asks (delete
// server/db) and exactly as `rejoin --wipe` does, before its raft opens
// (its old raft state would count the old voters), and then joins in its
// turn through the slot. The evidence is the recovery epoch the servers
// publish in their claims with their voters: one newer than the epoch of
// this server's own raft store, from a server whose voters do not count
// this one. A server merely removed (no newer epoch) is left to
// checkNotLeftBehind: it stops and asks for `rejoin --wipe`.

// recoveredWithout returns, from the verified claims of the alive servers,
// the server publishing the highest recovery epoch among those whose
// voters do not include self, with that epoch; counted is true when some
// alive server's voters include self.
func recoveredWithout(self string, members []gossip.MemberInfo) (by string, epoch uint64, counted bool) {
	for _, m := range members {
		if m.Name == self || m.State != gossip.StateAlive || m.Claim == nil || len(m.Claim.Voters) == 0 {
			continue
		}
		if slices.Contains(m.Claim.Voters, self) {
			counted = true
			continue
		}
		if m.Claim.RecoveryEpoch > epoch {
			by, epoch = m.Name, m.Claim.RecoveryEpoch
		}
	}
	return by, epoch, counted
}

// raftEpochOf reads the recovery epoch of this server's raft store (0:
// never recovered); ok false when there is no readable store.
var raftEpochOf = func(dataDir, node string) (uint64, bool) {
	disk, err := election.ReadRaftOffline(dataDir, node)
	if err != nil {
		return 0, false
	}
	if r := disk.State.Recovery; r != nil && r.Epoch > 0 {
		return uint64(r.Epoch), true
	}
	return 0, true
}

// wipeIfRecovered is a server's step between joining gossip and opening
// raft (see above). It waits peerClaimsWait at most for the claims.
func (n *Node) wipeIfRecovered(ctx context.Context) error {
	if n.gossipCfg.Signer == nil || !n.cfg.IsServer() {
		return nil
	}
	ds := installer.DatastorePath(n.cfg.RKE2DataDir)
	if fi, err := os.Stat(ds); err != nil || !fi.IsDir() {
		return nil // nothing from before to resume
	}
	deadline := n.clk.Now().Add(peerClaimsWait)
	var by string
	var epoch uint64
	for {
		var counted bool
		by, epoch, counted = recoveredWithout(n.cfg.NodeName, n.members.Members())
		if counted {
			return nil
		}
		if by != "" || !n.clk.Now().Before(deadline) {
			break
		}
		if err := n.clk.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	if by == "" {
		return nil
	}
	own, ok := raftEpochOf(n.cfg.DataDir, n.cfg.NodeName)
	if !ok || own >= epoch {
		return nil // not from before that recovery: checkNotLeftBehind decides
	}
	n.log.Warn("the cluster was recovered from a lost quorum while this server was off: wiping its datastore from before "+
		"(RKE2's words: backup and delete server/db) and its raft store, as rejoin --wipe does; it rejoins through the join slot",
		zap.String("recovered", by), zap.Uint64("recovery_epoch", epoch), zap.Uint64("own_epoch", own), zap.String("datastore", ds))
	did, err := wipeHost(ctx, n.cfg, n.log, n.clk.Now())
	for _, d := range did {
		n.log.Info("wipe after the recovery", zap.String("step", d))
	}
	if err != nil {
		return err
	}
	p, err := loadProgress(n.cfg.DataDir)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.prog = p
	n.mu.Unlock()
	n.t.setDetail(fmt.Sprintf("the cluster was recovered (epoch %d, %s) while this server was off: its datastore from before was moved aside; it rejoins through the join slot", epoch, by))
	return nil
}
