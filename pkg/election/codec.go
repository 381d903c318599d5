package election

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/textcheck"

	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// Versions of the replicated encodings (see "Wire format" in doc.go). Every
// command, snapshot and formation lock carries "v", its writer's version,
// and may carry "needs", the version a reader must understand to read it
// (absent: the same as "v"). A reader refuses what needs more than it
// understands and skips fields it does not know.
const (
	// commandVersion is the newest command encoding this build reads and
	// the one it writes. A new optional field bumps it and writes "needs"
	// with the version that can skip it.
	// Version 2 brought the membership operations (membership_fsm.go), the
	// upgrade operations (upgrade.go) and the fields executor, target and
	// role; the operations of version 1 are still written as version 1
	// (opVersion).
	// Version 3 brought the request operations (requests.go) and the
	// fields request and kind.
	// Version 4 brought upgrade-drain (the leader drains an agent before
	// its begin, upgrade.go); the other operations are written as before.
	commandVersion = 4
	// snapshotVersion is the same for raft snapshots of the FSM. Version 2
	// brought removal, removed and upgrade; a snapshot without them is
	// still written as version 1, one with them needs version 2 (an older
	// reader must not skip the removed servers or a roll in progress).
	// Version 3 brought the recovery epoch: a snapshot with one needs
	// version 3 (an older reader would let an old datastore back in).
	// Version 4 brought the request records: a snapshot with them is
	// version 4; one without is written as before.
	// Version 5 brought the agents the leader drains (a roll's host
	// draining, or drained): a snapshot with one is version 5, so an older
	// reader refuses it rather than reading a state it does not know.
	snapshotVersion = 5
	// recoverySnapshotVersion and requestsSnapshotVersion are what a
	// snapshot holding a recovery, or request records, is written as.
	recoverySnapshotVersion = 3
	requestsSnapshotVersion = 4
	drainSnapshotVersion    = 5
	// lockVersion is the same for the persisted formation lock.
	lockVersion = 1
)

// maxSnapshotBytes bounds a snapshot read from a peer or the disk: the
// state is a few names and times, far below it.
const maxSnapshotBytes = 1 << 20

// Operations of the cluster FSM. A new operation is not a skippable field:
// a server that does not know it refuses to apply it, so the leader issues
// it only once every voter advertises a version that knows it (doc.go).
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
// strictly as to what this build knows: unknown operations, a version this
// build cannot read, missing or surplus known fields, values of the wrong
// type, repeated or non-canonical keys and trailing bytes are errors;
// fields of a newer writer are skipped.
type Command struct {
	V       int    `json:"v"`
	Needs   int    `json:"needs,omitempty"` // 0: the same as V
	Op      string `json:"op"`
	Node    string `json:"node,omitempty"`
	From    string `json:"from,omitempty"`
	VIP     string `json:"vip,omitempty"`
	CAHash  string `json:"ca_hash,omitempty"`
	At      int64  `json:"at,omitempty"`      // unix nanoseconds, leader's clock
	Expires int64  `json:"expires,omitempty"` // unix nanoseconds, leader's clock
	Reason  string `json:"reason,omitempty"`
	// Executor: the server that carries out a removal (removal-committed).
	Executor string `json:"executor,omitempty"`
	Target   string `json:"target,omitempty"` // upgrade-start (upgrade.go)
	Role     string `json:"role,omitempty"`   // upgrade-begin, upgrade-done
	// Request and Kind: the operator request a request-accepted or
	// request-refused decides (requests.go).
	Request string `json:"request,omitempty"`
	Kind    string `json:"kind,omitempty"`
}

// EncodeCommand validates c and returns its log form, written as this
// build's version.
func EncodeCommand(c Command) ([]byte, error) {
	c.V, c.Needs = opVersion(c.Op), 0
	if err := c.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// DecodeCommand parses and validates one log entry. The result is in this
// build's version: V is commandVersion and Needs 0, whatever the writer's.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := decodeJSON(b, &c); err != nil {
		return Command{}, fmt.Errorf("election: decode command: %w", err)
	}
	if err := readable("command", c.V, c.Needs, commandVersion); err != nil {
		return Command{}, err
	}
	c.V, c.Needs = commandVersion, 0
	if err := c.validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// readable checks a (writer version, needs) pair against what this build
// reads.
func readable(what string, v, needs, ours int) error {
	if needs == 0 {
		needs = v
	}
	switch {
	case v < 1 || needs < 1:
		return fmt.Errorf("election: %s version %d (needs %d): want 1 or more", what, v, needs)
	case needs > v:
		return fmt.Errorf("election: %s version %d needs a reader of version %d, above its own", what, v, needs)
	case needs > ours:
		return fmt.Errorf("election: %s needs version %d, this build reads up to %d: upgrade this server", what, needs, ours)
	}
	return nil
}

// decodeJSON decodes one JSON value into v. encoding/json keeps the last of
// repeated keys and matches keys case-insensitively, so the keys are
// checked first: lower-case ASCII, digits and '_', each once per object.
// Unknown keys are left to the caller's struct: encoding/json skips them.
func decodeJSON(b []byte, v any) error {
	if err := checkKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// checkKeys walks the tokens of b and refuses a repeated or non-canonical
// object key at any depth.
func checkKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	// One entry per open container: the keys seen (nil for an array) and
	// whether the next string token is a key.
	type level struct {
		keys   map[string]bool
		expect bool
	}
	var stack []level
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].keys != nil {
			if stack[top].expect {
				key, ok := tok.(string)
				if !ok { // the closing brace
					stack = stack[:top]
					if len(stack) == 0 {
						return nil // one value only; decodeJSON reports what follows
					}
					continue
				}
				if !canonicalKey(key) {
					return fmt.Errorf("key %q: keys are lower-case letters, digits and '_'", key)
				}
				if stack[top].keys[key] {
					return fmt.Errorf("key %q repeated", key)
				}
				stack[top].keys[key] = true
				stack[top].expect = false
				continue
			}
			stack[top].expect = true // this token is the value
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, level{keys: map[string]bool{}, expect: true})
		case json.Delim('['):
			stack = append(stack, level{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			return nil
		}
	}
}

func canonicalKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

func (c Command) validate() error {
	if isRequestOp(c.Op) {
		return c.validateRequest()
	}
	if c.Request != "" || c.Kind != "" {
		return fmt.Errorf("election: command %s: fields request and kind not allowed", c.Op)
	}
	if upgrade.IsOp(c.Op) {
		return c.validateUpgrade()
	}
	if c.Target != "" || c.Role != "" {
		return fmt.Errorf("election: command %s: fields target and role not allowed", c.Op)
	}
	// Which fields each operation needs (true) or must leave empty (false).
	type need struct{ node, from, vip, ca, at, expires, executor bool }
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
	case opRemoveCommitted:
		n = need{node: true, at: true, executor: true}
	case opRemoveExecuting, opRemoveDone, opRemoveFailed:
		n = need{node: true, at: true}
	default:
		return fmt.Errorf("election: command op %q unknown to this build (command version %d): it is not applied; upgrade every server before a leader issues it", c.Op, commandVersion)
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
		check("executor", n.executor, c.Executor != ""),
	} {
		if e != nil {
			return e
		}
	}
	if c.Reason != "" && c.Op != opFree && c.Op != opReassign && c.Op != opRemoveCommitted && c.Op != opRemoveFailed {
		return fmt.Errorf("election: command %s: field reason not allowed", c.Op)
	}
	for field, v := range map[string]string{"node": c.Node, "from": c.From, "vip": c.VIP, "ca_hash": c.CAHash, "reason": c.Reason, "executor": c.Executor} {
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

// checkText bounds names and hashes (textcheck.Printable).
func checkText(field, v string) error { return textcheck.Printable(field, v) }

// snapshotFile is the encoding of an FSM snapshot.
type snapshotFile struct {
	V     int          `json:"v"`
	Needs int          `json:"needs,omitempty"`
	State ClusterState `json:"state"`
	// Applied is the raft index of the last command the state holds
	// (Election.fsmHolds reads it after a restore); 0: none, or a snapshot
	// written before it was recorded. Older readers ignore it.
	Applied uint64 `json:"applied,omitempty"`
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	st, applied := f.state.clone(), f.applied
	f.mu.Unlock()
	b, err := encodeSnapshotAt(st, applied)
	if err != nil {
		return nil, err
	}
	return fsmSnapshot(b), nil
}

func encodeSnapshot(s ClusterState) ([]byte, error) { return encodeSnapshotAt(s, 0) }

// encodeSnapshotAt is s's snapshot, applied the index of its last command.
func encodeSnapshotAt(s ClusterState, applied uint64) ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("election: snapshot: %w", err)
	}
	v := 1
	if s.hasMembership() {
		v = 2
	}
	if s.Recovery != nil {
		v = recoverySnapshotVersion
	}
	if len(s.Requests) > 0 {
		v = requestsSnapshotVersion
	}
	if s.upgradeDrains() {
		v = drainSnapshotVersion
	}
	b, err := json.Marshal(snapshotFile{V: v, State: s, Applied: applied})
	if err != nil {
		return nil, fmt.Errorf("election: snapshot: %w", err)
	}
	return b, nil
}

// decodeSnapshot reads a snapshot as strictly as DecodeCommand reads a
// command: a snapshot comes from the leader over the network.
func decodeSnapshot(b []byte) (ClusterState, error) {
	s, _, err := decodeSnapshotAt(b)
	return s, err
}

// decodeSnapshotAt is decodeSnapshot with the index of the snapshot's last
// command (0: none recorded).
func decodeSnapshotAt(b []byte) (ClusterState, uint64, error) {
	if len(b) > maxSnapshotBytes {
		return ClusterState{}, 0, fmt.Errorf("election: restore: snapshot over %d bytes", maxSnapshotBytes)
	}
	var sf snapshotFile
	if err := decodeJSON(b, &sf); err != nil {
		return ClusterState{}, 0, fmt.Errorf("election: restore: %w", err)
	}
	s, err := sf.state()
	return s, sf.Applied, err
}

// state is the file's state, checked against its version.
func (sf snapshotFile) state() (ClusterState, error) {
	if err := readable("snapshot", sf.V, sf.Needs, snapshotVersion); err != nil {
		return ClusterState{}, err
	}
	s := sf.State.clone()
	if s.Slot != nil {
		s.Slot.Granted, s.Slot.Expires = s.Slot.Granted.UTC(), s.Slot.Expires.UTC()
	}
	if s.Removal != nil {
		s.Removal.Since = s.Removal.Since.UTC()
	}
	if s.Recovery != nil {
		s.Recovery.At = s.Recovery.At.UTC()
		if sf.V < recoverySnapshotVersion {
			return ClusterState{}, errors.New("election: restore: a recovery in a snapshot below version 3")
		}
	}
	if len(s.Requests) > 0 && sf.V < requestsSnapshotVersion {
		return ClusterState{}, errors.New("election: restore: request records in a snapshot below version 4")
	}
	if s.upgradeDrains() && sf.V < drainSnapshotVersion {
		return ClusterState{}, errors.New("election: restore: an agent drained by the leader in a snapshot below version 5")
	}
	for i := range s.Requests {
		s.Requests[i].At = s.Requests[i].At.UTC()
	}
	if s.hasMembership() && sf.V < 2 {
		return ClusterState{}, errors.New("election: restore: removal, removed or upgrade in a snapshot of version 1")
	}
	if err := s.validate(); err != nil {
		return ClusterState{}, fmt.Errorf("election: restore: %w", err)
	}
	return s, nil
}

// validate checks what apply guarantees of every state it returns, so a
// snapshot can hold no state the log could not have produced.
func (s ClusterState) validate() error {
	for field, v := range map[string]string{"bootstrap": s.Bootstrap} {
		if err := checkText(field, v); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	if s.Reassigned < 0 {
		return fmt.Errorf("state: reassigned %d is negative", s.Reassigned)
	}
	if s.Reassigned > 0 && s.Bootstrap == "" {
		return errors.New("state: reassigned without a bootstrap node")
	}
	if s.Started && s.Bootstrap == "" {
		return errors.New("state: started without a bootstrap node")
	}
	if r := s.ClusterReady; r != nil {
		if !s.Started {
			return errors.New("state: cluster ready before started")
		}
		if r.VIP == "" || r.CAHash == "" {
			return errors.New("state: cluster ready without its VIP or CA hash")
		}
		for field, v := range map[string]string{"vip": r.VIP, "ca_hash": r.CAHash} {
			if err := checkText(field, v); err != nil {
				return fmt.Errorf("state: cluster ready: %w", err)
			}
		}
	}
	if sl := s.Slot; sl != nil {
		if s.ClusterReady == nil {
			return errors.New("state: join slot before cluster ready")
		}
		if sl.Holder == "" {
			return errors.New("state: join slot without a holder")
		}
		if err := checkText("holder", sl.Holder); err != nil {
			return fmt.Errorf("state: join slot: %w", err)
		}
		if (sl.Holder == s.Bootstrap && !slices.Contains(s.Removed, sl.Holder)) || slices.Contains(s.Joined, sl.Holder) {
			return fmt.Errorf("state: join slot held by %q, already in the cluster", sl.Holder)
		}
		if !unixNanos(sl.Granted) || !unixNanos(sl.Expires) || !sl.Expires.After(sl.Granted) {
			return fmt.Errorf("state: join slot granted %s, expires %s: out of range or order", sl.Granted, sl.Expires)
		}
	}
	if s.Upgrade != nil {
		if err := s.Upgrade.Validate(); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	if r := s.Recovery; r != nil {
		if r.Epoch < 1 || r.Node == "" || !unixNanos(r.At) || s.ClusterReady == nil {
			return fmt.Errorf("state: recovery %+v: epoch below 1, no survivor, time out of range, or before cluster ready", *r)
		}
		if err := checkText("recovery node", r.Node); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	if len(s.Joined) > 0 && s.ClusterReady == nil {
		return errors.New("state: joined servers before cluster ready")
	}
	if err := s.validateMembership(); err != nil {
		return err
	}
	if err := s.validateRequests(); err != nil {
		return err
	}
	for i, name := range s.Joined {
		if name == "" || name == s.Bootstrap {
			return fmt.Errorf("state: joined server %q", name)
		}
		if err := checkText("joined", name); err != nil {
			return fmt.Errorf("state: %w", err)
		}
		if i > 0 && s.Joined[i-1] >= name {
			return errors.New("state: joined servers not sorted or repeated")
		}
	}
	return nil
}

// unixNanos: t is after 1970 and within what a command's int64 nanoseconds
// can carry, as every time apply records is.
func unixNanos(t time.Time) bool {
	n := t.UnixNano()
	return n > 0 && time.Unix(0, n).Equal(t) && t.Location() == time.UTC
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSnapshotBytes+1))
	if err != nil {
		return fmt.Errorf("election: restore: %w", err)
	}
	s, applied, err := decodeSnapshotAt(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = s
	// What the FSM now holds is the snapshot's: its last command, or,
	// for a snapshot that does not record it, unknown (fsmHolds then
	// falls back to the newest snapshot's index).
	f.applied, f.appliedUnknown = applied, applied == 0
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

// lockFile is the persisted encoding of a formationLock. Locks written
// before it carried a version have no "v" and read as version 1.
type lockFile struct {
	V       int      `json:"v,omitempty"`
	Needs   int      `json:"needs,omitempty"`
	Hash    string   `json:"hash"`
	Members []member `json:"members"`
}

func encodeLock(l *formationLock) ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(lockFile{V: lockVersion, Hash: l.Hash, Members: l.Members})
}

func decodeLock(b []byte) (*formationLock, error) {
	var lf lockFile
	if err := decodeJSON(b, &lf); err != nil {
		return nil, fmt.Errorf("election: formation lock: %w", err)
	}
	if lf.V == 0 && lf.Needs == 0 {
		lf.V = 1
	}
	if err := readable("formation lock", lf.V, lf.Needs, lockVersion); err != nil {
		return nil, err
	}
	l := &formationLock{Hash: lf.Hash, Members: lf.Members}
	if err := l.validate(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *formationLock) validate() error {
	if raw, err := hex.DecodeString(l.Hash); err != nil || len(l.Hash) != 16 || hex.EncodeToString(raw) != l.Hash {
		return fmt.Errorf("election: formation lock: hash %q: want 16 lower-case hex digits", l.Hash)
	}
	if len(l.Members) == 0 {
		return errors.New("election: formation lock: no members")
	}
	seen := make(map[string]bool, len(l.Members))
	for i, m := range l.Members {
		if m.Name == "" || m.Addr == "" {
			return fmt.Errorf("election: formation lock: member %d has no name or no address", i)
		}
		for field, v := range map[string]string{"name": m.Name, "addr": m.Addr} {
			if err := checkText(field, v); err != nil {
				return fmt.Errorf("election: formation lock: member %d: %w", i, err)
			}
		}
		if seen[m.Name] {
			return fmt.Errorf("election: formation lock: member %s repeated", m.Name)
		}
		seen[m.Name] = true
	}
	return nil
}
