package election

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// loop is the state of Run's single goroutine: formation while this node
// has no raft state, the leader's duties while it leads.
type loop struct {
	e *Election
	r *raft.Raft

	lock       *formationLock
	lockLoaded bool
	lastWait   string
	agreeHash  string // the set every alive server proposes, since agreeSince
	agreeSince time.Time

	leaderReady bool                 // a barrier passed since this term's leadership began
	deadSince   map[string]time.Time // leader only: when a server was first seen dead
	foreign     map[string]bool      // servers with raft state outside our configuration, warned once

	lastState, lastLeader string

	tick    *time.Ticker
	settled bool // raft and tick run at the Settled* timings
}

func (l *loop) step(ctx context.Context) {
	e := l.e
	e.steps.Add(1)
	servers := e.servers()
	e.mu.Lock()
	hasState := e.hasState || l.r.LastIndex() > 0
	e.hasState = hasState
	e.local.HasRaftState = hasState
	e.mu.Unlock()

	if !hasState {
		l.formation(servers)
	}
	e.publish()

	if l.r.State() == raft.Leader {
		l.lead(ctx, servers)
	} else {
		l.leaderReady = false
		e.leaderBarrier.Store(false)
		clear(l.deadSince)
	}
	l.observe()
	l.settle()
}

// settle relaxes raft's heartbeats and the loop's tick while nothing waits
// on them (see Timing.SettledHeartbeatTimeout), and restores them as soon
// as something does. Every server decides from its own FSM, so they relax
// and return together, give or take one commit.
func (l *loop) settle() {
	t := l.e.cfg.Timing
	if t.SettledHeartbeatTimeout == 0 {
		return
	}
	s := l.e.fsm.get()
	settled := s.ClusterReady != nil && s.Slot == nil && len(s.Joined) >= l.e.cfg.ExpectServers-1
	if settled == l.settled {
		return
	}
	rc := l.r.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.HeartbeatTimeout, t.ElectionTimeout
	tick := t.Tick
	if settled {
		rc.HeartbeatTimeout, rc.ElectionTimeout = t.SettledHeartbeatTimeout, t.SettledHeartbeatTimeout
		if t.SettledTick > 0 {
			tick = t.SettledTick
		}
	}
	if err := l.r.ReloadConfig(rc); err != nil {
		l.e.log.Warn("raft timings not changed", zap.Bool("settled", settled), zap.Error(err))
		return
	}
	l.tick.Reset(tick)
	l.settled = settled
	l.e.log.Debug("raft timings", zap.Bool("settled", settled), zap.Duration("heartbeat_timeout", rc.HeartbeatTimeout), zap.Duration("tick", tick))
}

// formation runs the decision of formation.go and carries it out: persist a
// lock before advertising it, bootstrap only with a lock every member shares.
func (l *loop) formation(servers []Peer) {
	e := l.e
	if !l.lockLoaded {
		lock, err := loadLock(e.stable)
		if err != nil {
			e.log.Error("formation lock unreadable: not forming", zap.Error(err))
			return
		}
		l.lock, l.lockLoaded = lock, true
	}
	p := formationStep(e.cfg.NodeName, e.cfg.ClusterName, e.cfg.ExpectServers, l.lock, servers)
	if p.lock != nil {
		// Lock only after the agreement held for FormationSettle: views
		// that lag behind by less than that cannot lock another set.
		now := e.cfg.Now()
		if l.agreeHash != p.lock.Hash {
			l.agreeHash, l.agreeSince = p.lock.Hash, now
		}
		if now.Sub(l.agreeSince) < e.cfg.Timing.FormationSettle {
			p.lock = nil
			p.advertise = strings.TrimSuffix(p.advertise, lockedSuffix)
			p.wait = "agreement settling"
		}
	} else {
		l.agreeHash = ""
	}
	if p.lock != nil {
		if err := storeLock(e.stable, p.lock); err != nil {
			e.log.Error("formation: lock not persisted: not advertising it", zap.Error(err))
			return
		}
		l.lock = p.lock
		e.log.Info("formation: locked to the bootstrap set", zap.String("set", p.lock.Hash), zap.Any("members", names(p.lock.Members)))
	}
	e.mu.Lock()
	e.local.BootstrapSet = p.advertise
	e.mu.Unlock()
	if p.wait != l.lastWait {
		e.log.Debug("formation: waiting", zap.String("reason", p.wait))
		l.lastWait = p.wait
	}
	if p.bootstrap == nil {
		return
	}
	err := l.r.BootstrapCluster(raftConfiguration(p.bootstrap)).Error()
	switch {
	case err == nil:
		e.log.Info("formation: bootstrapped raft", zap.String("set", l.lock.Hash), zap.Any("members", names(p.bootstrap)))
	case errors.Is(err, raft.ErrCantBootstrap):
		// raft state arrived from the leader meanwhile: nothing to do.
	default:
		e.log.Warn("formation: bootstrap failed", zap.Error(err))
		return
	}
	e.mu.Lock()
	e.hasState = true
	e.local.HasRaftState = true
	e.mu.Unlock()
}

func names(ms []member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// lead carries out the leader's duties once per step, at most one FSM
// change per step so that every decision is taken on fresh state.
func (l *loop) lead(ctx context.Context, servers []Peer) {
	e := l.e
	t := e.cfg.Timing
	if !l.leaderReady {
		// Apply everything earlier leaders committed before deciding.
		if err := l.r.Barrier(t.ApplyTimeout).Error(); err != nil {
			e.log.Debug("leader barrier", zap.Error(err))
			return
		}
		l.leaderReady = true
		e.leaderBarrier.Store(true)
		e.changed()
		e.log.Info("leading the raft group")
	}
	if ctx.Err() != nil {
		return
	}
	self := e.cfg.NodeName
	now := e.cfg.Now()
	byName := make(map[string]Peer, len(servers))
	for _, p := range servers {
		byName[p.Name] = p
	}
	l.addVoters(servers)

	st := e.fsm.get()
	alive := func(name string) (Peer, bool) {
		p, ok := byName[name]
		return p, ok && p.State != MemberDead && p.State != MemberLeft
	}
	// Track how long each server has been dead, for reassignment.
	for _, p := range servers {
		if _, ok := alive(p.Name); ok {
			delete(l.deadSince, p.Name)
		} else if _, seen := l.deadSince[p.Name]; !seen {
			l.deadSince[p.Name] = now
		}
	}

	switch {
	case st.Bootstrap == "":
		l.apply(Command{Op: opClaim, Node: self, At: now.UnixNano()})
		return
	case !st.Started:
		p, ok := alive(st.Bootstrap)
		if ok && p.StartedRKE2 {
			l.apply(Command{Op: opStarted, Node: st.Bootstrap, At: now.UnixNano()})
			return
		}
		if !ok && st.Bootstrap != self {
			since, seen := l.deadSince[st.Bootstrap]
			if !seen {
				// Absent from gossip altogether: count from now.
				l.deadSince[st.Bootstrap] = now
			} else if now.Sub(since) >= t.BootstrapReassignAfter {
				l.apply(Command{Op: opReassign, From: st.Bootstrap, Node: self, At: now.UnixNano(), Reason: "dead before starting RKE2"})
			}
		}
		return
	case st.ClusterReady == nil:
		if p, ok := alive(st.Bootstrap); ok && p.Ready && p.CAHash != "" {
			l.apply(Command{Op: opReady, VIP: e.cfg.VIP, CAHash: p.CAHash, At: now.UnixNano()})
		}
		return
	}

	if st.Slot != nil {
		// A slot is never taken back early: only Ready (joined) or the
		// lease running out ends it, so a holder's own view of its lease
		// is never contradicted (see doc.go).
		h := st.Slot.Holder
		p, ok := alive(h)
		switch {
		case ok && p.Ready:
			l.apply(Command{Op: opJoined, Node: h, At: now.UnixNano()})
		case now.After(st.Slot.Expires.Add(t.SlotGrace)):
			l.apply(Command{Op: opFree, Node: h, At: now.UnixNano(), Reason: "lease expired"})
		case ok && p.State == MemberAlive && p.WantJoinSlot && st.Slot.Expires.Sub(now) < t.SlotLease/2 &&
			now.Sub(st.Slot.Granted) < t.SlotMaxHold:
			l.apply(Command{Op: opRenew, Node: h, At: now.UnixNano(), Expires: now.Add(t.SlotLease).UnixNano()})
		}
		return
	}
	var want []string
	for _, p := range servers {
		// A server already Ready (it adopted a running RKE2) gets the slot
		// only to be recorded as joined at once.
		if _, ok := alive(p.Name); ok && (p.WantJoinSlot || p.Ready) && p.ClusterName == e.cfg.ClusterName &&
			p.Name != st.Bootstrap && !slices.Contains(st.Joined, p.Name) {
			want = append(want, p.Name)
		}
	}
	if len(want) > 0 {
		slices.Sort(want)
		l.apply(Command{Op: opGrant, Node: want[0], At: now.UnixNano(), Expires: now.Add(t.SlotLease).UnixNano()})
	}
}

// addVoters adds alive servers without raft state that are not yet in the
// configuration, and updates the address of members whose address moved.
// Servers are never removed automatically: see doc.go.
func (l *loop) addVoters(servers []Peer) {
	e := l.e
	f := l.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	inCfg := map[string]string{}
	for _, s := range f.Configuration().Servers {
		inCfg[string(s.ID)] = string(s.Address)
	}
	for _, p := range servers {
		if p.Name == e.cfg.NodeName || p.State != MemberAlive || p.ClusterName != e.cfg.ClusterName || p.RaftAddr == "" {
			continue
		}
		addr, ok := inCfg[p.Name]
		if ok && addr == p.RaftAddr {
			continue
		}
		if !ok && p.HasRaftState {
			// Raft state from another group: merging logs would be unsafe.
			if l.foreign == nil {
				l.foreign = map[string]bool{}
			}
			if !l.foreign[p.Name] {
				e.log.Warn("server has raft state but is not in this raft group: not adding it", zap.String("server", p.Name))
				l.foreign[p.Name] = true
			}
			continue
		}
		if err := l.r.AddVoter(raft.ServerID(p.Name), raft.ServerAddress(p.RaftAddr), 0, e.cfg.Timing.ApplyTimeout).Error(); err != nil {
			e.log.Debug("add voter", zap.String("server", p.Name), zap.Error(err))
			continue
		}
		e.log.Info("added raft voter", zap.String("server", p.Name), zap.String("raft_addr", p.RaftAddr))
		l.notifyCommit()
	}
}

func (l *loop) apply(c Command) {
	e := l.e
	b, err := EncodeCommand(c)
	if err != nil {
		e.log.Error("leader built an invalid command", zap.Error(err))
		return
	}
	f := l.r.Apply(b, e.cfg.Timing.ApplyTimeout)
	if err := f.Error(); err != nil {
		e.log.Debug("apply", zap.String("op", c.Op), zap.Error(err))
		return
	}
	if res, ok := f.Response().(applyResult); ok && res.Err != nil {
		e.log.Debug("command rejected", zap.String("op", c.Op), zap.Error(res.Err))
		return
	}
	e.log.Info("committed", zap.String("op", c.Op), zap.String("server", c.Node), zap.String("from", c.From), zap.String("reason", c.Reason))
	l.notifyCommit()
}

// notifyCommit tells the followers now that the last entry is committed.
// A follower learns the commit index only from the leader's next
// AppendEntries, which an idle leader sends every CommitTimeout; appending
// a barrier (a no-op entry) sends one at once, carrying the new index.
// Nobody waits for the barrier itself.
func (l *loop) notifyCommit() {
	l.r.Barrier(l.e.cfg.Timing.ApplyTimeout)
}

// observe refreshes metrics and wakes waiters when raft's role or leader
// changed (status readers poll State; waiters care about the FSM only, but
// a fresh leader may change what they see soon).
func (l *loop) observe() {
	s := l.e.State()
	l.e.metrics.update(s)
	if s.RaftState != l.lastState || s.Leader != l.lastLeader {
		l.e.log.Debug("raft role", zap.String("state", s.RaftState), zap.String("leader", s.Leader))
		l.lastState, l.lastLeader = s.RaftState, s.Leader
	}
}
