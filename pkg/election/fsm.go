package election

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
	"unicode"

	"github.com/hashicorp/raft"
)

// commandVersion is the only version of the command encoding this build
// understands. A leader of a newer build must not emit commands an older
// follower cannot apply; bump it only together with a compatible decoder.
const commandVersion = 1

// Operations of the cluster FSM.
const (
	opClaim    = "claim"         // Node claims the bootstrap role (first claim wins)
	opReassign = "reassign"      // From (dead, not started) hands the role to Node
	opStarted  = "started"       // Node, the bootstrap node, may start RKE2
	opReady    = "cluster-ready" // VIP and CAHash of the running cluster
	opGrant    = "grant"         // the join slot goes to Node until Expires
	opRenew    = "renew"         // Node's slot now lasts until Expires
	opFree     = "free"          // Node's slot lease ran out
	opJoined   = "joined"        // Node, the slot holder, is ready: free the slot, record it
)

// Command is one entry of the replicated log. Its JSON form is decoded
// strictly: unknown fields, unknown operations, a wrong version, missing or
// surplus fields and trailing bytes are errors.
type Command struct {
	V       int    `json:"v"`
	Op      string `json:"op"`
	Node    string `json:"node,omitempty"`
	From    string `json:"from,omitempty"`
	VIP     string `json:"vip,omitempty"`
	CAHash  string `json:"ca_hash,omitempty"`
	At      int64  `json:"at,omitempty"`      // unix nanoseconds, leader's clock
	Expires int64  `json:"expires,omitempty"` // unix nanoseconds, leader's clock
	Reason  string `json:"reason,omitempty"`
}

// EncodeCommand validates c and returns its log form.
func EncodeCommand(c Command) ([]byte, error) {
	c.V = commandVersion
	if err := c.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// DecodeCommand parses and validates one log entry.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := decodeStrict(b, &c); err != nil {
		return Command{}, fmt.Errorf("election: decode command: %w", err)
	}
	if err := c.validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func (c Command) validate() error {
	if c.V != commandVersion {
		return fmt.Errorf("election: command version %d, want %d", c.V, commandVersion)
	}
	// Which fields each operation needs (true) or must leave empty (false).
	type need struct{ node, from, vip, ca, at, expires bool }
	var n need
	switch c.Op {
	case opClaim, opStarted, opJoined:
		n = need{node: true, at: true}
	case opReassign:
		n = need{node: true, from: true, at: true}
	case opReady:
		n = need{vip: true, ca: true, at: true}
	case opGrant, opRenew:
		n = need{node: true, at: true, expires: true}
	case opFree:
		n = need{node: true, at: true}
	default:
		return fmt.Errorf("election: command op %q unknown", c.Op)
	}
	check := func(field string, want, has bool) error {
		if want && !has {
			return fmt.Errorf("election: command %s: field %s missing", c.Op, field)
		}
		if !want && has {
			return fmt.Errorf("election: command %s: field %s not allowed", c.Op, field)
		}
		return nil
	}
	for _, e := range []error{
		check("node", n.node, c.Node != ""),
		check("from", n.from, c.From != ""),
		check("vip", n.vip, c.VIP != ""),
		check("ca_hash", n.ca, c.CAHash != ""),
		check("at", n.at, c.At != 0),
		check("expires", n.expires, c.Expires != 0),
	} {
		if e != nil {
			return e
		}
	}
	if c.Reason != "" && c.Op != opFree && c.Op != opReassign {
		return fmt.Errorf("election: command %s: field reason not allowed", c.Op)
	}
	for field, v := range map[string]string{"node": c.Node, "from": c.From, "vip": c.VIP, "ca_hash": c.CAHash, "reason": c.Reason} {
		if err := checkText(field, v); err != nil {
			return fmt.Errorf("election: command %s: %w", c.Op, err)
		}
	}
	if c.At < 0 || c.Expires < 0 || (c.Expires != 0 && c.Expires <= c.At) {
		return fmt.Errorf("election: command %s: times at=%d expires=%d out of order", c.Op, c.At, c.Expires)
	}
	if c.Op == opReassign && c.From == c.Node {
		return fmt.Errorf("election: command reassign: from and node are both %q", c.Node)
	}
	return nil
}

// checkText bounds names and hashes: printable, at most 253 bytes.
func checkText(field, v string) error {
	if len(v) > 253 {
		return fmt.Errorf("field %s longer than 253 bytes", field)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("field %s holds a non-printable character", field)
		}
	}
	return nil
}

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

// State is the replicated cluster state. Every server's FSM holds the same
// State after applying the same log prefix.
type State struct {
	Bootstrap    string        `json:"bootstrap,omitempty"`
	Reassigned   int           `json:"reassigned,omitempty"` // times the role moved before start
	Started      bool          `json:"started,omitempty"`
	ClusterReady *ClusterReady `json:"cluster_ready,omitempty"`
	Slot         *JoinSlot     `json:"slot,omitempty"`
	Joined       []string      `json:"joined,omitempty"` // sorted
}

func (s State) clone() State {
	if s.ClusterReady != nil {
		r := *s.ClusterReady
		s.ClusterReady = &r
	}
	if s.Slot != nil {
		sl := *s.Slot
		s.Slot = &sl
	}
	s.Joined = slices.Clone(s.Joined)
	return s
}

// ErrTransition is wrapped by every rejected command: the command was valid
// but the state does not allow it. The state is left unchanged.
var ErrTransition = errors.New("transition not allowed")

// apply returns the next state. It is a pure function of (s, c): every
// replica computes the same result. A rejected transition returns s
// unchanged and an error wrapping ErrTransition; a repeated claim is not an
// error, it returns the state naming the existing bootstrap node.
func (s State) apply(c Command) (State, error) {
	reject := func(format string, a ...any) (State, error) {
		return s, fmt.Errorf("election: %s: %w: "+format, append([]any{c.Op, ErrTransition}, a...)...)
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
		if c.Node == s.Bootstrap || slices.Contains(s.Joined, c.Node) {
			return reject("%s already in the cluster", c.Node)
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
			next.Joined = append(next.Joined, c.Node)
			slices.Sort(next.Joined)
		}
	}
	return next, nil
}

// applyResult is what raft's ApplyFuture.Response returns.
type applyResult struct {
	State State
	Err   error
}

// fsm is the raft.FSM holding State. notify is called (outside the lock)
// after every change so waiters can re-check.
type fsm struct {
	mu     sync.Mutex
	state  State
	notify func()
}

var _ raft.FSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	if err != nil {
		return applyResult{Err: err}
	}
	f.mu.Lock()
	next, err := f.state.apply(c)
	f.state = next
	out := next.clone()
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
	return applyResult{State: out, Err: err}
}

func (f *fsm) get() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.clone()
}

// snapshotVersion versions the snapshot encoding like commandVersion.
const snapshotVersion = 1

type snapshotFile struct {
	V     int   `json:"v"`
	State State `json:"state"`
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := json.Marshal(snapshotFile{V: snapshotVersion, State: f.get()})
	if err != nil {
		return nil, fmt.Errorf("election: snapshot: %w", err)
	}
	return fsmSnapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return fmt.Errorf("election: restore: %w", err)
	}
	var sf snapshotFile
	if err := decodeStrict(b, &sf); err != nil {
		return fmt.Errorf("election: restore: %w", err)
	}
	if sf.V != snapshotVersion {
		return fmt.Errorf("election: restore: snapshot version %d, want %d", sf.V, snapshotVersion)
	}
	f.mu.Lock()
	f.state = sf.State.clone()
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("election: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}
