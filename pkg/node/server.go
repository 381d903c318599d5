package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

// runServer takes a server from discovery to ready: as the bootstrap node,
// or as a joiner in its turn.
func (n *Node) runServer(ctx context.Context) error {
	if err := n.announceWipe(ctx); err != nil {
		return err
	}
	if resumed, err := n.resumeOwnDatastore(ctx); resumed {
		return err // a restart (a cold start) on its own datastore (coldstart.go)
	}
	n.t.set(status.PhaseDiscovering, "")
	err := n.retryWithin(ctx, "discover", discoverDeadline, "waiting to see the expected servers", n.waitServers)
	if err != nil {
		return err
	}
	n.t.set(status.PhaseElecting, "servers are choosing the bootstrap node")
	err = n.retryWithin(ctx, "elect", electDeadline, "waiting for the bootstrap node to be chosen", func(ctx context.Context) error {
		wctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			// Removed while away: no leader will ever contact this server.
			for n.clk.Sleep(wctx, time.Second) == nil {
				if n.coord.RemovedFromRaft() {
					cancel(&permanentError{err: errRemoved})
					return
				}
			}
		}()
		_, err := n.coord.WaitBootstrap(wctx)
		if cause := context.Cause(wctx); err != nil && errors.Is(cause, errRemoved) {
			return cause
		}
		return err
	})
	if err != nil {
		return err
	}
	rejoin, err := n.rejoinAs(ctx)
	if err != nil {
		return err
	}
	for {
		if n.coord.IsBootstrap() && !rejoin {
			return n.runBootstrap(ctx)
		}
		err := n.runJoiner(ctx)
		if errors.Is(err, election.ErrBootstrapRole) {
			n.log.Warn("the bootstrap role moved to this host (its holder died before starting RKE2)")
			continue
		}
		return err
	}
}

// waitServers returns once gossip shows expect-servers alive servers, or
// raft already knows the bootstrap (a restart of a formed cluster).
func (n *Node) waitServers(ctx context.Context) error {
	return n.waitGossip(ctx, func() bool {
		alive := n.members.NumAlive(gossip.RoleServer)
		if alive >= n.cfg.ExpectServers || n.coord.State().Bootstrap != "" {
			return true
		}
		n.t.setDetail(fmt.Sprintf("%d of %d servers seen", alive, n.cfg.ExpectServers))
		return false
	})
}

// runBootstrap makes this host the cluster's first server:
// checks → write config → commit "started" → start RKE2 → the VIP answers
// with the CA it made → report ready → cluster ready committed → ready.
func (n *Node) runBootstrap(ctx context.Context) error {
	c := n.cfg
	n.setBootstrap()
	var plan resumePlan
	err := n.retry(ctx, "bootstrap-checks", func(ctx context.Context) error {
		f, err := n.gatherFacts(ctx, pathBootstrap, n.raftFacts())
		if err != nil {
			return err
		}
		plan = planResume(f)
		if plan.Adopt {
			return nil
		}
		if plan.Refuse != nil {
			return &permanentError{err: plan.Refuse}
		}
		if plan.CheckVIPFree {
			return n.host.CheckVIPFree(ctx)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if plan.Adopt { // RKE2 was started meanwhile (by hand?): never restart it
		n.adopt(ctx, plan)
		return nil
	}
	if err := n.retry(ctx, "write-config", func(context.Context) error {
		return n.host.WriteConfig(installer.Bootstrap, "")
	}); err != nil {
		return err
	}
	n.t.setDetail("committing that this host starts RKE2")
	if err := n.retryWithin(ctx, "mark-started", markDeadline, "waiting for raft to commit that the bootstrap starts", n.coord.MarkStarted); err != nil {
		return err
	}
	if err := n.rememberStart(true, ""); err != nil {
		return err
	}
	n.setStarting("starting " + installer.UnitName(n.role) + " with cluster-init")
	if err := n.retry(ctx, "start", n.startService); err != nil {
		return err
	}
	n.t.set(status.PhaseWaitingVIP, "waiting for the VIP to answer on 9345 with this cluster's CA")
	err = n.retryWithin(ctx, "waiting-vip", vipDeadline, "waiting for "+c.VIP+":9345 to answer with this cluster's CA", func(ctx context.Context) error {
		local := n.prober.Probe(ctx, n.advertise, "")
		if !local.Reachable {
			return fmt.Errorf("the local supervisor %s:9345 does not answer: %v", n.advertise, local.Err)
		}
		n.setCA(local.CAHash)
		_, err := n.prober.WaitReachable(ctx, c.VIP, local.CAHash)
		n.vipResult(err, err == nil)
		if err == nil {
			n.setVIPReachable(true)
		}
		return err
	})
	if err != nil {
		return err
	}
	n.reportReady()
	n.t.setDetail("committing cluster ready")
	err = n.retryWithin(ctx, "cluster-ready", markDeadline, "waiting for raft to commit cluster ready", func(ctx context.Context) error {
		cr, err := n.coord.WaitClusterReady(ctx)
		if err == nil {
			n.checkCommittedCA(cr.CAHash)
		}
		return err
	})
	if err != nil {
		return err
	}
	n.markReady()
	return nil
}

func (n *Node) setBootstrap() {
	n.mu.Lock()
	n.prog.Bootstrap = true
	n.mu.Unlock()
}

// runJoiner joins this server through the VIP when its slot comes:
// cluster ready and the VIP answers → datastore guard → join slot → write
// config → start RKE2 → report ready → join recorded → ready.
func (n *Node) runJoiner(ctx context.Context) error {
	c := n.cfg
	n.t.set(status.PhaseWaitingCluster, "waiting for the bootstrap node's cluster to be ready")
	var cr election.ClusterReady
	err := n.retryWithin(ctx, "waiting-cluster", clusterDeadline, "waiting for the cluster to be ready", func(ctx context.Context) error {
		var err error
		if cr, err = n.coord.WaitClusterReady(ctx); err != nil {
			return err
		}
		n.setCA(cr.CAHash)
		return n.waitVIP(ctx, cr.CAHash)
	})
	if err != nil {
		return err
	}
	var plan resumePlan
	err = n.retry(ctx, "datastore", func(ctx context.Context) error {
		raft := n.raftFacts()
		raft.ClusterCA = cr.CAHash
		f, err := n.gatherFacts(ctx, pathJoiner, raft)
		if err != nil {
			return err
		}
		if plan = planResume(f); plan.Refuse != nil {
			return &permanentError{err: plan.Refuse}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if plan.Adopt { // RKE2 was started meanwhile (by hand?): never restart it
		n.adopt(ctx, plan)
		return nil
	}
	if plan.AcquireSlot {
		joined, err := n.waitJoinSlot(ctx)
		if err != nil {
			return err
		}
		if joined {
			// Raft recorded this join after all: the view the plan was
			// made from had not caught up yet.
			plan.MarkJoined = false
		}
	}
	if err := n.retry(ctx, "write-config", func(context.Context) error {
		return n.host.WriteConfig(installer.JoinServer, cr.CAHash)
	}); err != nil {
		return err
	}
	if err := n.rememberStart(false, cr.CAHash); err != nil {
		return err
	}
	n.setStarting("joining through " + installer.ServerURL(c.VIP))
	err = n.retry(ctx, "start", func(ctx context.Context) error {
		if err := n.startService(ctx); err != nil {
			return err
		}
		if r := n.prober.Probe(ctx, n.advertise, cr.CAHash); !r.Reachable {
			return fmt.Errorf("the local supervisor %s:9345 does not answer with the cluster's CA: %v", n.advertise, r.Err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.reportReady()
	if plan.MarkJoined {
		n.t.setDetail("waiting for the leader to record the join")
		err = n.retryWithin(ctx, "mark-joined", markDeadline, "waiting for raft to record the join", n.coord.MarkJoined)
		if err != nil {
			return err
		}
	}
	n.markReady()
	return nil
}

// slotDetail is the words of waiting-join-slot, e.g.
// "1 of 2 servers joined, slot held by ha-m2".
func (n *Node) slotDetail() string {
	st := n.coord.State()
	holder := "nobody"
	if st.SlotHolder != "" {
		holder = st.SlotHolder
	}
	return fmt.Sprintf("%d of %s joined, slot held by %s", len(st.Joined), statusview.Plural(n.cfg.ExpectServers-1, "server"), holder)
}
