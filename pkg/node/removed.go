package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// A server the cluster removed, or a host reinstalled under a member's
// name, must not start RKE2 as it is:
//
//   - removed, datastore on disk: RKE2 would resume the old datastore of a
//     member etcd removed. The host stops in failed, saying to run
//     `rke2-hanode rejoin --wipe` (with the daemon stopped: it stops RKE2,
//     moves <rke2-data-dir>/server/db and the raft store aside and resets
//     the progress file). A live server that sees itself removed stops
//     RKE2 and does the same (keepReady).
//   - removed, no datastore (wiped): it says so to the leader
//     (clear-member) and joins in its turn through the slot.
//   - a voter by the state, but a fresh disk (no progress of a start, no
//     datastore): a reinstalled host. It asks the leader to clear its old
//     member (clear-member: the old Node, etcd member and node password,
//     granted only while its old self is dead), then, removed, says it is
//     wiped, and joins in its turn.
//
// errRemoved is the removed host's permanent failure.
var errRemoved = errors.New("this server was removed from the cluster and its RKE2 datastore is stale: " +
	"run `rke2-hanode rejoin --wipe` (stop the daemon first), then start the daemon: it joins again in its turn")

// rejoinAs reports what the state says of this server before it takes a
// path: rejoin true when it must join through the slot as a fresh member,
// whatever its role was (a removed or reinstalled bootstrap node too).
func (n *Node) rejoinAs(ctx context.Context) (rejoin bool, err error) {
	self := n.cfg.NodeName
	st := n.coord.State().ClusterState
	if st.ClusterReady == nil {
		return false, nil
	}
	ds, err := n.host.Datastore()
	if err != nil {
		return false, err
	}
	n.mu.Lock()
	started := n.prog.StartedRKE2
	n.mu.Unlock()
	switch {
	case slices.Contains(st.Removed, self) && ds.Present:
		return false, &permanentError{err: errRemoved}
	case slices.Contains(st.Removed, self):
		n.log.Info("this server was removed and holds no datastore: asking the leader to let it join again")
		return true, n.clearMember(ctx, "telling the raft leader this removed server was wiped")
	case slices.Contains(st.EtcdVoters(), self) && !started && !ds.Present:
		n.log.Warn("this host has the name of a cluster member but a fresh disk: a reinstall; asking the leader to clear its old member")
		if err := n.clearMember(ctx, "reinstalled host: asking the raft leader to clear its old etcd member and node password (granted once the old host is dead)"); err != nil {
			return false, err
		}
		err := n.retryWithin(ctx, "clear-member", removalExecuteTimeout+time.Minute, "waiting for the old member's removal", func(ctx context.Context) error {
			for {
				st := n.coord.State().ClusterState
				if slices.Contains(st.Removed, self) {
					return nil
				}
				if r := st.Removal; r != nil && r.Node == self && r.Clear && r.State == "failed" {
					return fmt.Errorf("clearing the old member failed: %s", r.Reason)
				}
				if err := n.clk.Sleep(ctx, time.Second); err != nil {
					return err
				}
			}
		})
		if err != nil {
			return false, err
		}
		return true, n.clearMember(ctx, "old member cleared: telling the raft leader this host holds no datastore")
	}
	return false, nil
}

// clearMember asks the leader, until it answers, to clear this host's old
// self; detail is what status shows meanwhile.
func (n *Node) clearMember(ctx context.Context, detail string) error {
	n.t.set(status.PhaseWaitingJoinSlot, detail)
	return n.retry(ctx, "clear-member", func(ctx context.Context) error {
		rec, err := n.ask(ctx, election.RequestClearMember, n.cfg.NodeName, func(line string) { n.t.setDetail(line) })
		if err != nil {
			return err
		}
		if !rec.Accepted {
			return fmt.Errorf("the raft leader refused to clear this host's old member: %s", rec.Reason)
		}
		n.log.Info("the raft leader cleared this host's old self", zap.String("outcome", rec.Reason))
		return nil
	})
}

// removedWhileRunning is keepReady's check: the cluster removed this live
// server. It stops RKE2 (never wiping by itself) and fails for good with
// what to do.
func (n *Node) removedWhileRunning(ctx context.Context) bool {
	c := n.coordinator()
	if c == nil || !slices.Contains(c.State().Removed, n.cfg.NodeName) {
		return false
	}
	n.log.Warn("this server was removed from the cluster: stopping RKE2 (its datastore is kept; `rke2-hanode rejoin --wipe` clears it)")
	n.reportNotReady()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := n.svc.Stop(sctx, n.role); err != nil {
		n.log.Warn("could not stop RKE2", zap.Error(err))
	}
	n.t.fail("removed", errRemoved, true)
	return true
}

// announceWipe is a wiped server's first step: it tells the leader, in its
// claim, that it holds no datastore (clear-member), which lets a removed
// server back into raft; then it forgets the mark.
func (n *Node) announceWipe(ctx context.Context) error {
	n.mu.Lock()
	wiped := n.prog.Wiped
	n.mu.Unlock()
	if !wiped {
		return nil
	}
	n.log.Info("this server was wiped (rejoin --wipe): telling the raft leader before it joins again")
	if err := n.clearMember(ctx, "wiped (rejoin --wipe): telling the raft leader this server holds no datastore"); err != nil {
		return err
	}
	n.mu.Lock()
	n.prog.Wiped = false
	p := n.prog
	n.mu.Unlock()
	return saveProgress(n.cfg.DataDir, p, n.clk.Now())
}
