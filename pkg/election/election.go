package election

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// Errors the node phase machine acts on.
var (
	// ErrNotBootstrap: this node is not (or no longer) the bootstrap node.
	ErrNotBootstrap = errors.New("election: this node is not the bootstrap node")
	// ErrJoined: this node is already recorded as a joined server.
	ErrJoined = errors.New("election: this node has already joined")
	// ErrBootstrapRole: WaitClusterReady found that the role moved to this
	// node, which has not started: it must call MarkStarted instead.
	ErrBootstrapRole = errors.New("election: this node now holds the bootstrap role and has not started")
)

// View is what this node sees of the election, for status and metrics.
type View struct {
	RaftState    string // "none" before raft runs, else follower, candidate, leader, shutdown
	Term         uint64 // raft's current term, 0 before raft runs
	Leader       string // leader's node name, "" when unknown
	HasRaftState bool
	BootstrapSet string // what this node advertises
	ClusterState        // the replicated FSM state (Joined sorted)
	IsBootstrap  bool   // ClusterState.Bootstrap == this node
	SlotHolder   string // ClusterState.Slot.Holder or ""
}

// Election is one server's membership of the raft group.
type Election struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics
	fsm     *fsm
	// unreach: followers whose raft heartbeats fail (leader only).
	unreach *unreachable

	kick  chan struct{} // wakes the loop; buffered 1
	steps atomic.Int64  // loop iterations, for tests' diagnostics

	mu       sync.Mutex
	r        *raft.Raft
	stable   raft.StableStore
	selfAddr string
	runStart time.Time // wall clock, as raft's LastContact
	// leaderCommit: the leader's commit index learnt since start (see
	// caughtUp); commitTransport feeds it
	leaderCommit leaderCommit
	// leaderBarrier: the term whose barrier this leader passed, 0 none;
	// caughtUp holds only while it is raft's current term.
	leaderBarrier atomic.Uint64
	running       bool
	hasState      bool
	ran           bool           // Run was called
	stores        *Stores        // opened by Open
	trans         raft.Transport // bound by Open
	release       func() error   // closes trans and stores; nil once closed
	local         Local          // intents; see localNow for what is advertised
	reported      readiness      // ReportReady / ReportNotReady
	published     Local
	pubOK         bool
	watch         chan struct{} // closed and replaced on every change
}

// changed wakes the loop and every waiter.
func (e *Election) changed() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
	e.mu.Lock()
	close(e.watch)
	e.watch = make(chan struct{})
	e.mu.Unlock()
}

// RaftAddr is the address this node's raft transport advertises (bound by
// Open). Gossip should publish it.
func (e *Election) RaftAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.selfAddr
}

// State returns what this node knows, for status and metrics.
func (e *Election) State() View {
	e.mu.Lock()
	r, running, local := e.r, e.running, e.local
	e.mu.Unlock()
	s := View{RaftState: "none", HasRaftState: local.HasRaftState, BootstrapSet: local.BootstrapSet, ClusterState: e.fsm.get()}
	if r != nil && running {
		s.RaftState, s.Term = lowerState(r.State()), r.CurrentTerm()
		_, id := r.LeaderWithID()
		s.Leader = string(id)
	}
	s.IsBootstrap = s.Bootstrap == e.cfg.NodeName
	if s.Slot != nil {
		s.SlotHolder = s.Slot.Holder
	}
	return s
}

func lowerState(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	default:
		return "shutdown"
	}
}

// IsBootstrap reports whether the committed bootstrap node is this node.
// Only MarkStarted's success allows starting RKE2 as the first server.
func (e *Election) IsBootstrap() bool {
	return e.fsm.get().Bootstrap == e.cfg.NodeName
}

// Changed is closed at the next change of the replicated state (a command
// applied), raft's role or this node's intents; ask again for the change
// after that. A reader that polls State can wait on it instead of a tick.
func (e *Election) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.watch
}

// Wake makes the loop step now, as on its tick: the node calls it when
// something the leader's next decision reads outside raft and gossip
// changed (its own executor's progress).
func (e *Election) Wake() { e.changed() }

// wait calls check on every change, and every tick, until it reports
// done or ctx ends.
func (e *Election) wait(ctx context.Context, check func(ClusterState) (bool, error)) error {
	tick := time.NewTicker(e.cfg.Timing.Tick)
	defer tick.Stop()
	for {
		e.mu.Lock()
		w := e.watch
		e.mu.Unlock()
		if done, err := check(e.fsm.get()); done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("election: %w", ctx.Err())
		case <-w:
		case <-tick.C:
		}
	}
}

// caughtUp reports whether this node's FSM holds every entry committed
// before this incarnation started, so that its answers are not read from a
// log being replayed. A leader is caught up once its term's barrier passed;
// a follower once it heard from the leader since start, its commit index
// reached the one the leader sent in the first AppendEntries it accepted
// since start (see leaderCommit), and its FSM applied up to it.
func (e *Election) caughtUp() bool {
	e.mu.Lock()
	r, since, running := e.r, e.runStart, e.running
	e.mu.Unlock()
	if r == nil || !running {
		return false
	}
	if r.State() == raft.Leader {
		term := e.leaderBarrier.Load()
		return term != 0 && term == r.CurrentTerm()
	}
	commit := commitIndex(r)
	return r.LastContact().After(since) && e.leaderCommit.covers(commit) &&
		r.AppliedIndex() >= commit && e.fsmHolds(commit)
}

// fsmHolds reports whether the FSM's state reflects every command up to
// index. raft moves its applied index when it hands a batch of entries to
// the FSM's goroutine, not when the FSM has applied them, so right after a
// fresh server receives the log AppliedIndex can be the commit index while
// the state read here is still the empty one (a reinstalled host then took
// the cluster for one it had not joined yet). The entries between the
// FSM's last command and index are read from the log store: no command
// among them (no-ops, configuration changes and barriers change no state)
// means the FSM holds them all; an entry no longer in the store is in a
// snapshot, which the FSM either made itself or restored before raft moved
// its applied index past it. A restored snapshot records its last command;
// one written before it did leaves the FSM's unknown, and then a command
// at or below the newest snapshot counts as held (raft restores the newest
// it can read, so an older one restored after a failed read is missed).
func (e *Election) fsmHolds(index uint64) bool {
	applied, known := e.fsm.appliedIndex()
	if applied >= index {
		return true
	}
	logs := e.logStore()
	if logs == nil {
		return true
	}
	snap := uint64(0)
	snapRead := false
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return errors.Is(err, raft.ErrLogNotFound)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		if known {
			return false
		}
		if !snapRead {
			snap, snapRead = e.newestSnapshot(), true
		}
		return i <= snap
	}
	return true
}

// logStore is raft's log store, nil before Open.
func (e *Election) logStore() raft.LogStore {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stores == nil {
		return nil
	}
	return e.stores.Log
}

// newestSnapshot is the index of the newest snapshot in the store (0:
// none, or unreadable).
func (e *Election) newestSnapshot() uint64 {
	e.mu.Lock()
	st := e.stores
	e.mu.Unlock()
	if st == nil || st.Snapshots == nil {
		return 0
	}
	metas, err := st.Snapshots.List()
	if err != nil || len(metas) == 0 {
		return 0
	}
	return metas[0].Index
}

func commitIndex(r *raft.Raft) uint64 { return r.CommitIndex() }

// Voters are the IDs of the voters in raft's latest configuration, sorted:
// what this server vouches for in its signed claim, so that members of a
// build without claims are still seen as servers during a rolling upgrade
// (pkg/gossip, "Signed claims"). nil before raft runs and while it
// knows no leader.
func (e *Election) Voters() ([]string, error) {
	ids, _, err := e.VoterAddrs()
	return ids, err
}

// VoterAddrs are Voters with, for each, its raft address in the same
// configuration (addrs[i] is ids[i]'s): a claim vouches for a voter at
// that address only.
func (e *Election) VoterAddrs() (ids, addrs []string, err error) {
	e.mu.Lock()
	r, running := e.r, e.running
	e.mu.Unlock()
	if r == nil || !running {
		return nil, nil, nil
	}
	// Only while raft knows a leader: a server without one may hold a
	// configuration the cluster has left behind (after a quorum-loss
	// recovery, say), which others must not take as vouched for.
	if addr, _ := r.LeaderWithID(); addr == "" {
		return nil, nil, nil
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, nil, fmt.Errorf("election: read raft configuration: %w", err)
	}
	servers := slices.Clone(f.Configuration().Servers)
	slices.SortFunc(servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
			addrs = append(addrs, string(s.Address))
		}
	}
	return ids, addrs, nil
}
