package election

import (
	"context"
	"errors"
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

	leaderReady bool        // a barrier passed since this term's leadership began
	leaderTerm  uint64      // the term leaderReady's barrier passed in
	book        *leaderBook // decide's bookkeeping
	ca          *caVerifier // fetches the bootstrap node's CA for decide

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

	if l.leading() {
		l.lead(ctx, servers)
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
		now := e.cfg.Clock.Now()
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

// leading reports whether this server leads with this term's barrier
// passed, and passes it first when it has not: everything earlier leaders
// committed is applied before anything is decided. A leader that lost its
// leadership and won it again between two steps leads in a new term, and
// another leader may have committed meanwhile: the barrier is passed again
// and the book, kept for one term's leadership, starts afresh, as after
// any lost leadership.
func (l *loop) leading() bool {
	e := l.e
	term := l.r.CurrentTerm()
	if l.r.State() != raft.Leader || (l.leaderReady && term != l.leaderTerm) {
		l.leaderReady = false
		e.leaderBarrier.Store(0)
		l.book.reset()
		e.unreach.reset()
		if l.r.State() != raft.Leader {
			return false
		}
	}
	if l.leaderReady {
		return true
	}
	if err := l.r.Barrier(e.cfg.Timing.ApplyTimeout).Error(); err != nil {
		e.log.Debug("leader barrier", zap.Error(err))
		return false
	}
	l.leaderReady, l.leaderTerm = true, term
	e.leaderBarrier.Store(term)
	e.changed()
	e.log.Info("leading the raft group", zap.Uint64("term", term))
	return true
}

// lead is the shell around decide (leader.go): it reads the inputs,
// carries out the actions, and the next step sees their results.
func (l *loop) lead(ctx context.Context, servers []Peer) {
	e := l.e
	if ctx.Err() != nil {
		return
	}
	st := e.fsm.get()
	if l.r.CurrentTerm() != l.leaderTerm {
		return // another term began since leading's barrier: the next step passes its own
	}
	if st.Started && st.ClusterReady == nil {
		for _, p := range servers {
			if p.Name == st.Bootstrap && p.Ready {
				l.ca.want(ctx, p, e.cfg.Clock.Now())
			}
		}
	}
	self := leaderSelf{Name: e.cfg.NodeName, Cluster: e.cfg.ClusterName, VIP: e.cfg.VIP, Membership: e.cfg.Duties, VerifiedCA: l.ca.snapshot(),
		Unreachable: e.unreach.snapshot(), Term: l.leaderTerm}
	var cmds []Command
	for _, a := range decide(st, servers, self, l.voters(), e.cfg.Clock.Now(), e.cfg.Timing, l.book) {
		switch a.Kind {
		case actAddVoter:
			l.addVoter(a.Name, a.Addr)
		case actForeign:
			e.log.Warn("server has raft state but is not in this raft group: not adding it", zap.String("server", a.Name))
		case actApply:
			cmds = append(cmds, a.Cmd)
		case actRemoveVoter:
			l.removeVoter(a.Name)
		}
	}
	l.apply(cmds)
}

// voters is raft's configuration, ID → address; nil if unreadable.
func (l *loop) voters() map[string]string {
	f := l.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil
	}
	out := map[string]string{}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = string(s.Address)
	}
	return out
}

func (l *loop) addVoter(name, addr string) {
	e := l.e
	if err := l.r.AddVoter(raft.ServerID(name), raft.ServerAddress(addr), 0, e.cfg.Timing.ApplyTimeout).Error(); err != nil {
		e.log.Debug("add voter", zap.String("server", name), zap.Error(err))
		return
	}
	e.log.Info("added raft voter", zap.String("server", name), zap.String("raft_addr", addr))
	l.notifyCommit()
}

// apply commits cmds in order. All are handed to raft before the first
// is waited for, so the run's entries follow each other into the log and
// to the followers without a decide pass between them: one commit's wait
// for the run, not one each.
func (l *loop) apply(cmds []Command) {
	e := l.e
	type pending struct {
		c Command
		f raft.ApplyFuture
	}
	var fs []pending
	for _, c := range cmds {
		b, err := EncodeCommand(c)
		if err != nil {
			e.log.Error("leader built an invalid command", zap.Error(err))
			break // the ones after it were decided on the state it makes
		}
		fs = append(fs, pending{c, l.r.Apply(b, e.cfg.Timing.ApplyTimeout)})
	}
	committed := false
	for _, p := range fs {
		c := p.c
		if err := p.f.Error(); err != nil {
			e.log.Debug("apply", zap.String("op", c.Op), zap.Error(err))
			continue
		}
		if res, ok := p.f.Response().(applyResult); ok && res.Err != nil {
			e.log.Debug("command rejected", zap.String("op", c.Op), zap.Error(res.Err))
			continue
		}
		committed = true
		e.log.Info("committed", zap.String("op", c.Op), zap.String("server", c.Node), zap.String("from", c.From), zap.String("reason", c.Reason))
	}
	if committed {
		l.notifyCommit()
	}
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
