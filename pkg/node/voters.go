package node

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
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
