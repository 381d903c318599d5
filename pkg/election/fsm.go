package election

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// ClusterReady is committed once the bootstrap node's RKE2 serves the VIP.
type ClusterReady struct {
	VIP    string `json:"vip"`
	CAHash string `json:"ca_hash"`
}

// JoinSlot is the one permission to start joining the cluster.
type JoinSlot struct {
	Holder  string    `json:"holder"`
	Granted time.Time `json:"granted"`
	Expires time.Time `json:"expires"`
}

// ClusterState is the replicated cluster state. Every server's FSM holds the same
// ClusterState after applying the same log prefix.
type ClusterState struct {
	Bootstrap    string        `json:"bootstrap,omitempty"`
	Reassigned   int           `json:"reassigned,omitempty"` // times the role moved before start
	Started      bool          `json:"started,omitempty"`
	ClusterReady *ClusterReady `json:"cluster_ready,omitempty"`
	Slot         *JoinSlot     `json:"slot,omitempty"`
	Joined       []string      `json:"joined,omitempty"` // sorted
	// Removal is the last member removal (membership_fsm.go); Removed the
	// servers removed since, sorted, which rejoin only wiped.
	Removal *membership.Removal `json:"removal,omitempty"`
	Removed []string            `json:"removed,omitempty"`
	// Upgrade is the rolling upgrade's progress (upgrade.go).
	Upgrade *upgrade.Progress `json:"upgrade,omitempty"`
	// Recovery is the last quorum-loss recovery (recover.go): written
	// only by the offline recovery, into the snapshot every later replica
	// starts from.
	Recovery *Recovery `json:"recovery,omitempty"`
	// Requests are the outcomes of the last operators' requests, oldest
	// first (requests.go).
	Requests []RequestRecord `json:"requests,omitempty"`
}

func (s ClusterState) clone() ClusterState {
	if s.ClusterReady != nil {
		r := *s.ClusterReady
		s.ClusterReady = &r
	}
	if s.Slot != nil {
		sl := *s.Slot
		s.Slot = &sl
	}
	s.Joined = slices.Clone(s.Joined)
	if s.Removal != nil {
		r := *s.Removal
		s.Removal = &r
	}
	s.Removed = slices.Clone(s.Removed)
	s.Requests = slices.Clone(s.Requests)
	if s.Upgrade != nil {
		u := s.Upgrade.Clone()
		s.Upgrade = &u
	}
	if s.Recovery != nil {
		r := *s.Recovery
		s.Recovery = &r
	}
	return s
}

// ErrTransition is wrapped by every rejected command: the command was valid
// but the state does not allow it. The state is left unchanged.
var ErrTransition = errors.New("transition not allowed")

// apply returns the next state. It is a pure function of (s, c): every
// replica computes the same result. A rejected transition returns s
// unchanged and an error wrapping ErrTransition; a repeated claim is not an
// error, it returns the state naming the existing bootstrap node.
func (s ClusterState) apply(c Command) (ClusterState, error) {
	reject := func(format string, a ...any) (ClusterState, error) {
		return s, fmt.Errorf("election: %s: %w: "+format, append([]any{c.Op, ErrTransition}, a...)...)
	}
	if upgrade.IsOp(c.Op) {
		return s.applyUpgrade(c)
	}
	if isRequestOp(c.Op) {
		return s.applyRequest(c)
	}
	next := s.clone()
	switch c.Op {
	case opClaim:
		if s.Bootstrap != "" {
			return s, nil
		}
		next.Bootstrap = c.Node
	case opReassign:
		if s.Started {
			return reject("bootstrap node %s already started RKE2", s.Bootstrap)
		}
		if s.Bootstrap != c.From {
			return reject("bootstrap node is %q, not %q", s.Bootstrap, c.From)
		}
		next.Bootstrap = c.Node
		next.Reassigned++
	case opStarted:
		if s.Bootstrap != c.Node {
			return reject("bootstrap node is %q, not %q", s.Bootstrap, c.Node)
		}
		next.Started = true
	case opReady:
		if !s.Started {
			return reject("bootstrap node has not started")
		}
		if s.ClusterReady != nil {
			if *s.ClusterReady == (ClusterReady{VIP: c.VIP, CAHash: c.CAHash}) {
				return s, nil
			}
			return reject("cluster ready already committed with another CA hash or VIP")
		}
		next.ClusterReady = &ClusterReady{VIP: c.VIP, CAHash: c.CAHash}
	case opGrant:
		if s.ClusterReady == nil {
			return reject("cluster is not ready")
		}
		if s.Slot != nil {
			return reject("slot held by %s", s.Slot.Holder)
		}
		if u, ok := s.upgradingServer(); ok {
			return reject("server %s is upgrading", u)
		}
		if (c.Node == s.Bootstrap && !slices.Contains(s.Removed, c.Node)) || slices.Contains(s.Joined, c.Node) {
			return reject("%s already in the cluster", c.Node)
		}
		if s.Removal.Active() {
			return reject("the removal of %s is %s", s.Removal.Node, s.Removal.State)
		}
		next.Slot = &JoinSlot{Holder: c.Node, Granted: time.Unix(0, c.At).UTC(), Expires: time.Unix(0, c.Expires).UTC()}
	case opRenew:
		if s.Slot == nil || s.Slot.Holder != c.Node {
			return reject("slot not held by %s", c.Node)
		}
		exp := time.Unix(0, c.Expires).UTC()
		if !exp.After(s.Slot.Expires) {
			return reject("renewal to %s does not extend the lease to %s", exp, s.Slot.Expires)
		}
		next.Slot.Expires = exp
	case opFree, opJoined:
		if s.Slot == nil || s.Slot.Holder != c.Node {
			return reject("slot not held by %s", c.Node)
		}
		next.Slot = nil
		if c.Op == opJoined {
			// A removed bootstrap node that joined again counts as the
			// bootstrap node (EtcdVoters), not in Joined.
			if c.Node != s.Bootstrap {
				next.Joined = append(next.Joined, c.Node)
				slices.Sort(next.Joined)
			}
			next.Removed = slices.DeleteFunc(next.Removed, func(r string) bool { return r == c.Node })
			for i := range next.Requests {
				if next.Requests[i].From == c.Node {
					next.Requests[i].Wiped = false
				}
			}
		}
	case opRemoveCommitted, opRemoveExecuting, opRemoveDone, opRemoveFailed:
		return s.applyRemoval(c, next)
	}
	return next, nil
}

// applyResult is what raft's ApplyFuture.Response returns.
type applyResult struct {
	State ClusterState
	Err   error
}

// fsm is the raft.FSM holding the ClusterState. notify is called (outside the lock)
// after every change so waiters can re-check.
type fsm struct {
	mu     sync.Mutex
	state  ClusterState
	notify func()
	// applied is the index of the last command the state holds: the last
	// one Apply took, or the restored snapshot's; see Election.fsmHolds.
	// appliedUnknown: restored from a snapshot that does not record it,
	// and no command applied since.
	applied        uint64
	appliedUnknown bool
}

var _ raft.FSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	if err != nil {
		f.mu.Lock()
		f.applied, f.appliedUnknown = max(f.applied, l.Index), false
		f.mu.Unlock()
		return applyResult{Err: err}
	}
	f.mu.Lock()
	next, err := f.state.apply(c)
	f.state = next
	f.applied, f.appliedUnknown = max(f.applied, l.Index), false
	out := next.clone()
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
	return applyResult{State: out, Err: err}
}

// appliedIndex is the index of the last command the state holds; known is
// false after a restore from a snapshot that does not record it.
func (f *fsm) appliedIndex() (index uint64, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, !f.appliedUnknown
}

func (f *fsm) get() ClusterState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.clone()
}
