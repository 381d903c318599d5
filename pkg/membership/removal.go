package membership

import (
	"fmt"
	"time"
)

// RemovalState is where a removal stands. The order is
//
//	requested → committed → executing → done
//	                    ↘           ↘ failed
//
// requested: a server asked for it (the leader found a member dead for
// server-removal-timeout, or an operator ran `rke2-hanode remove NODE`),
// nothing is replicated yet. committed: the leader checked quorum and
// committed it, naming the executor; from here on no other removal and no
// admission is decided until it ends. executing: the executor started
// deleting the Node through the Kubernetes API. done: the Node is gone and
// the etcd member with it; the leader then drops the raft voter and records
// the name as removed. failed: the executor reported an error, or nothing
// ended it within the execute timeout; a later step may request it again.
type RemovalState string

const (
	RemovalRequested RemovalState = "requested"
	RemovalCommitted RemovalState = "committed"
	RemovalExecuting RemovalState = "executing"
	RemovalDone      RemovalState = "done"
	RemovalFailed    RemovalState = "failed"
)

// Removal is one member removal, as the replicated state holds it.
type Removal struct {
	Node     string       `json:"node"`
	State    RemovalState `json:"state"`
	Executor string       `json:"executor,omitempty"` // the leader that committed it
	Reason   string       `json:"reason,omitempty"`   // why it was requested, or why it failed
	Operator bool         `json:"operator,omitempty"` // requested by `rke2-hanode remove`
	// Clear: a reinstalled host's old member, cleared at its request; the
	// raft voter of that name (the new host) stays.
	Clear bool      `json:"clear,omitempty"`
	Since time.Time `json:"since"` // when it entered State
}

// Active: committed or executing, i.e. holding the one removal slot.
func (r *Removal) Active() bool {
	return r != nil && (r.State == RemovalCommitted || r.State == RemovalExecuting)
}

// Advance moves r to the next state, or returns an error naming the
// transition that is not allowed (r unchanged).
func (r Removal) Advance(to RemovalState, now time.Time, reason string) (Removal, error) {
	ok := false
	switch r.State {
	case RemovalRequested:
		ok = to == RemovalCommitted || to == RemovalFailed
	case RemovalCommitted:
		ok = to == RemovalExecuting || to == RemovalFailed
	case RemovalExecuting:
		ok = to == RemovalDone || to == RemovalFailed
	}
	if !ok {
		return r, fmt.Errorf("membership: removal of %s: %s → %s is not allowed", r.Node, r.State, to)
	}
	r.State, r.Since = to, now
	if reason != "" {
		r.Reason = reason
	}
	return r, nil
}
