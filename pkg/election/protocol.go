package election

import (
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"
)

// The protocol: everything a server asks the leader for, one typed API.
// Every request is idempotent and carried by this node's gossip metadata
// through Publisher; the leader reads them from Membership and commits on
// the evidence listed in the table in doc.go. A caller learns the outcome
// from its own FSM.

// setLocal changes this node's advertised intents and wakes the loop.
func (e *Election) setLocal(f func(*Local)) {
	e.mu.Lock()
	f(&e.local)
	e.mu.Unlock()
	e.changed()
}

// WaitBootstrap returns the committed bootstrap node's name, once this
// node's FSM has caught up with the leader. The role may still move to
// another node until it started RKE2 (see MarkStarted).
func (e *Election) WaitBootstrap(ctx context.Context) (string, error) {
	var name string
	err := e.wait(ctx, func(s ClusterState) (bool, error) {
		name = s.Bootstrap
		return name != "" && e.caughtUp(), nil
	})
	return name, err
}

// MarkStarted asks the leader to commit that this node, the bootstrap node,
// starts RKE2, and returns nil only once that is committed: the node must
// not start RKE2 before. ErrNotBootstrap if the role is (or moves) elsewhere.
// Once committed, the role never moves again, and MarkStarted keeps
// returning nil, also after restarts.
func (e *Election) MarkStarted(ctx context.Context) error {
	self := e.cfg.NodeName
	e.setLocal(func(l *Local) { l.StartedRKE2 = true })
	err := e.wait(ctx, func(s ClusterState) (bool, error) {
		if s.Bootstrap == self && s.Started {
			return true, nil // permanent: no need to be caught up
		}
		if s.Bootstrap != self && e.caughtUp() {
			return false, ErrNotBootstrap
		}
		return false, nil
	})
	if err != nil {
		// A stale intent must not be committed if the role comes back later.
		e.setLocal(func(l *Local) { l.StartedRKE2 = false })
	}
	return err
}

// WaitClusterReady returns once cluster ready is committed: the leader does
// so when the started bootstrap node reported ready (ReportReady) with its
// CA hash. ErrBootstrapRole if, meanwhile, the role was reassigned to this node.
func (e *Election) WaitClusterReady(ctx context.Context) (ClusterReady, error) {
	var cr ClusterReady
	err := e.wait(ctx, func(s ClusterState) (bool, error) {
		if s.ClusterReady == nil {
			if s.Bootstrap == e.cfg.NodeName && !s.Started && e.caughtUp() {
				return false, ErrBootstrapRole
			}
			return false, nil
		}
		cr = *s.ClusterReady
		return true, nil
	})
	return cr, err
}

// AcquireJoinSlot advertises that this node wants to join and returns the
// slot once the leader granted it to this node. The holder may start
// joining until slot.Expires by its own clock; the leader renews the lease
// while this node is alive and still wants the slot. ErrJoined if this node
// is already a joined server; an error too if it is the bootstrap node
// (unless it was removed since: then it rejoins through the slot).
func (e *Election) AcquireJoinSlot(ctx context.Context) (JoinSlot, error) {
	self := e.cfg.NodeName
	e.setLocal(func(l *Local) { l.WantJoinSlot = true })
	var slot JoinSlot
	err := e.wait(ctx, func(s ClusterState) (bool, error) {
		switch {
		case slices.Contains(s.Joined, self):
			return false, ErrJoined
		case s.Bootstrap == self && !slices.Contains(s.Removed, self) && e.caughtUp():
			// A removed bootstrap node (removed, or left behind by a
			// quorum-loss recovery) rejoins like any server, once wiped.
			return false, fmt.Errorf("election: %s is the bootstrap node and needs no join slot", self)
		case s.Slot != nil && s.Slot.Holder == self && e.cfg.Clock.Now().Before(s.Slot.Expires) && e.caughtUp():
			slot = *s.Slot
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		e.setLocal(func(l *Local) { l.WantJoinSlot = false })
	}
	return slot, err
}

// ReportReady states that this node's RKE2 is ready and serves the CA
// whose hash is caHash. It is the request that makes the leader commit
// cluster ready (from the started bootstrap node) and joined (from the slot
// holder). Once cluster ready is committed, this node advertises Ready only
// while caHash is the committed cluster CA: a server serving another CA is
// not part of this cluster and is never recorded as joined.
func (e *Election) ReportReady(caHash string) {
	e.mu.Lock()
	changed := !e.reported.ready || e.reported.caHash != caHash
	e.reported = readiness{ready: true, caHash: caHash}
	e.mu.Unlock()
	if changed {
		e.changed()
	}
}

// ReportNotReady withdraws ReportReady: this node's RKE2 stopped being
// ready. What was committed on it stays committed.
func (e *Election) ReportNotReady() {
	e.mu.Lock()
	changed := e.reported.ready
	e.reported.ready = false
	e.mu.Unlock()
	if changed {
		e.changed()
	}
}

// MarkJoined waits until the leader recorded this node as joined, which it
// does when this node holds the slot and reported ready (ReportReady) with
// the committed cluster CA. The join of a removed bootstrap node (removed,
// or left behind by a quorum-loss recovery) is recorded by taking it off
// the removed servers, not by adding it to Joined (it counts as the
// bootstrap node again, see opJoined): either makes it an etcd voter.
func (e *Election) MarkJoined(ctx context.Context) error {
	self := e.cfg.NodeName
	err := e.wait(ctx, func(s ClusterState) (bool, error) { return s.joinRecorded(self), nil })
	if err == nil {
		e.setLocal(func(l *Local) { l.WantJoinSlot = false })
	}
	return err
}

// joinRecorded: the state counts name, a server that joined through the
// slot, as an etcd voter: in Joined, or the bootstrap node no longer
// removed.
func (s ClusterState) joinRecorded(name string) bool {
	return slices.Contains(s.Joined, name) || s.Bootstrap == name && s.inCluster(name)
}

// ReleaseJoinSlot withdraws this node's request: the leader stops renewing
// its slot, which frees when the lease runs out. The slot is never taken
// back early, so that a holder's view of its lease stays true.
func (e *Election) ReleaseJoinSlot() {
	e.setLocal(func(l *Local) { l.WantJoinSlot = false })
}

// readiness is what the node last reported through ReportReady and
// ReportNotReady.
type readiness struct {
	ready  bool
	caHash string
}

// advertised is Local as this node advertises it: the intents set by the
// requests above, with Ready, CAHash and ClusterReady derived from the
// reported readiness and the FSM, and what the FSM holds for agents.
func advertised(l Local, rep readiness, st ClusterState) Local {
	l.Ready, l.CAHash, l.ClusterReady = rep.ready, rep.caHash, false
	l.BootstrapNode, l.JoinSlot, l.JoinedServers = st.Bootstrap, "", min(len(st.Joined), 255)
	if st.Slot != nil {
		l.JoinSlot = st.Slot.Holder
	}
	if cr := st.ClusterReady; cr != nil {
		l.ClusterReady, l.CAHash = true, cr.CAHash
		l.Ready = rep.ready && rep.caHash == cr.CAHash
	}
	return l
}

// localNow is what this node advertises now.
func (e *Election) localNow() Local {
	st := e.fsm.get()
	e.mu.Lock()
	defer e.mu.Unlock()
	return advertised(e.local, e.reported, st)
}

// servers is the gossip view with this node's own intents overlaid.
func (e *Election) servers() []Peer {
	ps := slices.Clone(e.cfg.Membership.Servers())
	local := e.localNow()
	e.mu.Lock()
	addr := e.selfAddr
	e.mu.Unlock()
	overlay := func(p *Peer) {
		p.State = MemberAlive
		p.HasRaftState, p.BootstrapSet = local.HasRaftState, local.BootstrapSet
		p.WantJoinSlot, p.StartedRKE2 = local.WantJoinSlot, local.StartedRKE2
		p.Ready, p.CAHash = local.Ready, local.CAHash
		if p.RaftAddr == "" {
			p.RaftAddr = addr
		}
	}
	for i := range ps {
		if ps[i].Name == e.cfg.NodeName {
			overlay(&ps[i])
			return ps
		}
	}
	self := Peer{Name: e.cfg.NodeName, ExpectServers: e.cfg.ExpectServers, ClusterName: e.cfg.ClusterName}
	overlay(&self)
	return append(ps, self)
}

// publish hands Local to gossip when it changed or the last try failed.
func (e *Election) publish() {
	local := e.localNow()
	e.mu.Lock()
	same, retry := e.pubOK && local == e.published, local == e.published
	rep := e.reported
	e.mu.Unlock()
	if same {
		return
	}
	if !retry && rep.ready && local.ClusterReady && !local.Ready {
		e.log.Warn("this node's RKE2 serves another CA than the cluster's: not advertising it as ready",
			zap.String("served_ca_hash", rep.caHash), zap.String("cluster_ca_hash", local.CAHash))
	}
	err := e.cfg.Publisher.Publish(local)
	e.mu.Lock()
	e.published, e.pubOK = local, err == nil
	e.mu.Unlock()
	if err != nil {
		e.log.Warn("publish election metadata", zap.Error(err))
	}
}
