package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/backoff"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/kubeapi"
	ms "github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// removalExecuteTimeout is how long a committed removal may take before
// the leader counts it failed (membership.Config.ExecuteTimeout); the
// executor gives up a little before it.
const removalExecuteTimeout = 10 * time.Minute

// executorState is this server's progress on the removal it executes:
// the commit it works on (the removal's Since when committed) and how far
// it got.
type executorState struct {
	mu       sync.Mutex
	commit   time.Time
	progress ms.Progress
}

// report is the progress to show the leader for removal r: only progress
// on r's own commit, so a report on an earlier, failed try never ends a
// new one.
func (x *executorState) report(r *ms.Removal) ms.Progress {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !r.Active() || r.Node != x.progress.Node || r.Since.Before(x.commit) ||
		(r.State == ms.RemovalCommitted && !r.Since.Equal(x.commit)) {
		return ms.Progress{}
	}
	return x.progress
}

// begin starts work on removal r, committed; false if it was begun already.
func (x *executorState) begin(r *ms.Removal) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r.State != ms.RemovalCommitted || (x.progress.Node == r.Node && r.Since.Equal(x.commit)) {
		return false
	}
	x.commit, x.progress = r.Since, ms.Progress{Node: r.Node, State: ms.RemovalExecuting}
	return true
}

func (x *executorState) set(p ms.Progress) {
	x.mu.Lock()
	x.progress = p
	x.mu.Unlock()
}

// selfExtra is the membership fields of this server for its own leader
// step: whether its etcd answers (its own etcd view; before it has one,
// whether it is ready), and its progress on the removal it executes. The
// executor is the leader that committed the removal (membership's rule),
// so the leader reads its own progress here; other servers' fields come
// from their published etcd view, else from gossip (membershipExtra).
func (n *Node) selfExtra(name string) (election.MembershipExtra, bool) {
	if name != n.cfg.NodeName {
		return election.MembershipExtra{}, false
	}
	phase, _, _ := n.t.get()
	x := election.MembershipExtra{EtcdHealthy: n.selfEtcdHealthy(phase), HasDatastore: true}
	if c := n.coordinator(); c != nil {
		x.Progress = n.exec.report(c.State().Removal)
	}
	return x, true
}

// executeRemovals carries out the removals the leader committed naming this
// server the executor, until ctx ends: RKE2's way, by deleting the Node
// through the Kubernetes API (RKE2's etcd controller removes the member
// before the Node goes).
func (n *Node) executeRemovals(ctx context.Context) {
	for {
		// Taken before reading the state: a removal committed meanwhile
		// ends the wait below at once.
		changed := n.coordChanges()
		if r := n.coord.State().Removal; r.Active() && r.Executor == n.cfg.NodeName {
			if n.exec.begin(r) {
				err := n.removeServer(ctx, r.Node)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					n.log.Warn("removal failed", zap.String("server", r.Node), zap.Error(err))
					n.exec.set(ms.Progress{Node: r.Node, State: ms.RemovalFailed, Reason: err.Error()})
				} else {
					n.log.Info("removed: its Node and etcd member are gone", zap.String("server", r.Node))
					n.exec.set(ms.Progress{Node: r.Node, State: ms.RemovalDone})
				}
				// The leader (this server) reads the progress in its next
				// step: let it step now rather than at its tick.
				n.wakeCoordinator()
			}
		}
		if n.waitTickOrChange(ctx, changed, time.Second) != nil {
			return
		}
	}
}

// nodeGonePoll paces the reads of a deleted Node until it is gone: RKE2
// removes the etcd member and the Node within a second or two, and the
// next server's join waits for it, so the first reads come quickly. They go
// to this server's own apiserver.
var nodeGonePoll = backoff.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.5}

// removeServer deletes name's Node and waits until it is gone (RKE2 holds
// it in Terminating until its etcd member is removed), then its node
// password.
func (n *Node) removeServer(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, removalExecuteTimeout-time.Minute)
	defer cancel()
	path := filepath.Join(n.cfg.RKE2ConfigDir, "rke2.yaml")
	k, err := kubeapi.LoadKubeconfig(path)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	// RKE2's apiserver listens on every address and its certificate names
	// the node IP: the advertise address reaches it where 127.0.0.1 is
	// another host's (several hosts on one machine).
	if u, err := url.Parse(k.Server); err == nil && u.Hostname() == "127.0.0.1" && n.advertise != "" {
		u.Host = net.JoinHostPort(n.advertise, u.Port())
		k.Server = u.String()
	}
	c, err := kubeapi.New(k)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	defer c.Close()
	if err := c.DeleteNode(ctx, name); err != nil {
		return fmt.Errorf("remove %s: delete its Node: %w", name, err)
	}
	b := nodeGonePoll.Start()
	for {
		_, err := c.GetNode(ctx, name)
		if errors.Is(err, kubeapi.ErrNotFound) {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("remove %s: its Node is still there (RKE2's etcd controller has not removed the member): %w", name, ctx.Err())
		}
		if err := b.Wait(ctx, n.clk); err != nil {
			return fmt.Errorf("remove %s: its Node is still there: %w", name, err)
		}
	}
	if err := c.DeleteNodePassword(ctx, name); err != nil {
		return fmt.Errorf("remove %s: delete its node password: %w", name, err)
	}
	return nil
}
