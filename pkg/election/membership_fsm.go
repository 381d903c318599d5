package election

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"

	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// Membership commands (command version 2). They are new operations, so a
// build that does not know them refuses them: the leader issues them only
// when its membership duties are switched on, which the node does once
// every server runs a build that knows them (see doc.go, Wire format).
const (
	opRemoveCommitted = "removal-committed" // Node is to be removed; Executor carries it out
	opRemoveExecuting = "removal-executing" // the executor started on Node's removal
	opRemoveDone      = "removal-done"      // Node's Node and etcd member are gone: record it as removed
	opRemoveFailed    = "removal-failed"    // Node's removal failed (Reason); it may be requested again

	// membershipCommandVersion is the command version that brought them.
	membershipCommandVersion = 2
)

func isMembershipOp(op string) bool {
	switch op {
	case opRemoveCommitted, opRemoveExecuting, opRemoveDone, opRemoveFailed:
		return true
	}
	return false
}

// opVersion is the command version an operation is written as: the
// operations of version 1 are still written as version 1, so that builds
// that read only version 1 keep reading them during a rolling upgrade.
func opVersion(op string) int {
	if op == upgrade.OpDrain || op == upgrade.OpRelease {
		return drainCommandVersion
	}
	if isRequestOp(op) {
		return requestCommandVersion
	}
	if isMembershipOp(op) || upgrade.IsOp(op) {
		return membershipCommandVersion
	}
	return 1
}

// removalState maps a removal command to the state it moves to.
func removalState(op string) membership.RemovalState {
	switch op {
	case opRemoveCommitted:
		return membership.RemovalCommitted
	case opRemoveExecuting:
		return membership.RemovalExecuting
	case opRemoveDone:
		return membership.RemovalDone
	}
	return membership.RemovalFailed
}

// EtcdVoters are the servers the replicated state counts as etcd voters:
// the bootstrap node once started, and the servers that joined, less those
// removed. Sorted.
func (s ClusterState) EtcdVoters() []string {
	var v []string
	if s.Started && s.Bootstrap != "" && !slices.Contains(s.Removed, s.Bootstrap) {
		v = append(v, s.Bootstrap)
	}
	for _, j := range s.Joined {
		if !slices.Contains(s.Removed, j) && !slices.Contains(v, j) {
			v = append(v, j)
		}
	}
	slices.Sort(v)
	return v
}

// inCluster: name is an etcd voter by the replicated state (a removed
// bootstrap node is not, and may be granted the slot again).
func (s ClusterState) inCluster(name string) bool {
	return slices.Contains(s.EtcdVoters(), name)
}

// applyRemoval is apply for the removal commands: one removal at a time,
// through membership's states; on done the server leaves the voters and is
// recorded as removed.
func (s ClusterState) applyRemoval(c Command, next ClusterState) (ClusterState, error) {
	reject := func(format string, a ...any) (ClusterState, error) {
		return s, fmt.Errorf("election: %s: %w: "+format, append([]any{c.Op, ErrTransition}, a...)...)
	}
	at := time.Unix(0, c.At).UTC()
	if c.Op == opRemoveCommitted {
		if s.Removal.Active() {
			return reject("the removal of %s is %s", s.Removal.Node, s.Removal.State)
		}
		if s.Slot != nil {
			return reject("the join slot is held by %s", s.Slot.Holder)
		}
		if !s.inCluster(c.Node) {
			return reject("%s is not an etcd voter", c.Node)
		}
		next.Removal = &membership.Removal{Node: c.Node, State: membership.RemovalCommitted, Executor: c.Executor, Reason: c.Reason, Since: at}
		return next, nil
	}
	if s.Removal == nil || s.Removal.Node != c.Node {
		return reject("no removal of %s", c.Node)
	}
	r, err := s.Removal.Advance(removalState(c.Op), at, c.Reason)
	if err != nil {
		return reject("%v", err)
	}
	next.Removal = &r
	if r.State == membership.RemovalDone {
		next.Joined = slices.DeleteFunc(next.Joined, func(j string) bool { return j == c.Node })
		if !slices.Contains(next.Removed, c.Node) {
			next.Removed = append(next.Removed, c.Node)
			slices.Sort(next.Removed)
		}
	}
	return next, nil
}

// validateMembership checks the membership part of a state (snapshot).
func (s ClusterState) validateMembership() error {
	if r := s.Removal; r != nil {
		if r.Node == "" {
			return errors.New("state: removal without a node")
		}
		for field, v := range map[string]string{"removal node": r.Node, "removal executor": r.Executor, "removal reason": r.Reason} {
			if err := checkText(field, v); err != nil {
				return fmt.Errorf("state: %w", err)
			}
		}
		switch r.State {
		case membership.RemovalCommitted, membership.RemovalExecuting, membership.RemovalDone, membership.RemovalFailed:
		default:
			return fmt.Errorf("state: removal of %s in state %q", r.Node, r.State)
		}
		if r.Executor == "" {
			return fmt.Errorf("state: removal of %s without an executor", r.Node)
		}
		if !unixNanos(r.Since) {
			return fmt.Errorf("state: removal of %s since %s: out of range", r.Node, r.Since)
		}
		if r.Active() && !s.inCluster(r.Node) {
			return fmt.Errorf("state: active removal of %s, not an etcd voter", r.Node)
		}
		if r.Active() && s.Slot != nil {
			return fmt.Errorf("state: removal of %s active while the join slot is held", r.Node)
		}
	}
	if len(s.Removed) > 0 && s.ClusterReady == nil {
		return errors.New("state: removed servers before cluster ready")
	}
	for i, name := range s.Removed {
		if err := checkText("removed", name); err != nil || name == "" {
			return fmt.Errorf("state: removed server %q", name)
		}
		if i > 0 && s.Removed[i-1] >= name {
			return errors.New("state: removed servers not sorted or repeated")
		}
		if slices.Contains(s.Joined, name) {
			return fmt.Errorf("state: %s both joined and removed", name)
		}
	}
	return nil
}

func (s ClusterState) hasMembership() bool {
	return s.Removal != nil || len(s.Removed) > 0 || s.Upgrade != nil
}
