package election

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// Operator requests (command version 3). An operator runs a verb on a
// server (`rke2-hanode remove NODE`, `upgrade pause|resume`, and the
// daemon's own clear-member after a reinstall or a wipe); the server relays
// a Request in its signed claim, so a request comes from a server or from
// nobody. The leader decides each request once and commits its outcome, by
// ID, in one command that also makes the change it was accepted for:
//
//	request        who may relay it     accepted when (and what the command does)
//	remove         any server           Target is an etcd voter, no removal is active, quorum is kept
//	                                    (membership.CheckRemoval): the removal is committed
//	clear-member   the host Target      Target is removed: the mark is cleared (it wiped);
//	               itself               Target is a voter, its old self dead (membership.ReinstallAllowed)
//	                                    and quorum kept: the old member's removal is committed;
//	                                    otherwise it waits (nothing committed)
//	upgrade-pause  any server           always: upgrade-pause
//	upgrade-resume any server           always: upgrade-resume
//	anything else  -                    refused: unknown to this build
//
// A refusal is committed too (request-refused, with the words and numbers),
// so that the requester sees it wherever it looks, and the request is not
// decided again. The replicated state keeps the last maxRequestRecords
// outcomes; a requester withdraws its request once it sees the outcome.
const (
	opRequestAccepted = "request-accepted"
	opRequestRefused  = "request-refused"

	// requestCommandVersion is the command version that brought them.
	requestCommandVersion = 3

	// maxRequestRecords bounds the outcomes the state keeps.
	maxRequestRecords = 64
)

// Request kinds (claims.Request.Kind).
const (
	RequestRemove        = "remove"
	RequestRecover       = "recover"
	RequestUpgradePause  = "upgrade-pause"
	RequestUpgradeResume = "upgrade-resume"
	RequestClearMember   = "clear-member"
)

// Request is an operator's request as a server relays it in its signed
// claim (claims.Request).
type Request struct {
	ID     string // 16 hex digits, random
	Kind   string
	Target string // the node it is about ("" for pause and resume)
	At     time.Time
}

// RequestRecord is the committed outcome of one request.
type RequestRecord struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	From     string `json:"from"` // the server that relayed it
	Target   string `json:"target,omitempty"`
	Accepted bool   `json:"accepted,omitempty"`
	Reason   string `json:"reason,omitempty"` // what was done, or why it was refused
	// Wiped: a clear-member accepted while From was removed: it asserts
	// it has no datastore left, and may join in its turn. Cleared when it
	// joins.
	Wiped bool      `json:"wiped,omitempty"`
	At    time.Time `json:"at"` // when the leader decided it
}

// wiped reports whether the removed server name has asserted a wipe since
// it was last recorded as joined.
func (s ClusterState) wiped(name string) bool {
	for _, r := range s.Requests {
		if r.From == name && r.Wiped {
			return true
		}
	}
	return false
}

// Record returns the committed outcome of request id.
func (s ClusterState) Record(id string) (RequestRecord, bool) {
	for _, r := range s.Requests {
		if r.ID == id {
			return r, true
		}
	}
	return RequestRecord{}, false
}

func isRequestOp(op string) bool { return op == opRequestAccepted || op == opRequestRefused }

func knownKind(k string) bool {
	switch k {
	case RequestRemove, RequestRecover, RequestUpgradePause, RequestUpgradeResume, RequestClearMember:
		return true
	}
	return false
}

// ValidRequestID: 16 lower-case hex digits.
func ValidRequestID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, r := range id {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// NewRequestID is a random request ID.
func NewRequestID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("election: request ID: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// validateRequest checks a request operation's fields.
func (c Command) validateRequest() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("election: command %s: "+format, append([]any{c.Op}, a...)...)
	}
	switch {
	case !ValidRequestID(c.Request):
		return bad("request %q: want 16 lower-case hex digits", c.Request)
	case !knownKind(c.Kind):
		return bad("kind %q unknown", c.Kind)
	case c.Node == "":
		return bad("field node missing")
	case c.At <= 0:
		return bad("field at missing")
	case c.From != "" || c.VIP != "" || c.CAHash != "" || c.Expires != 0 || c.Role != "":
		return bad("only request, kind, node, target, executor, reason and at are allowed")
	case c.Op == opRequestRefused && c.Reason == "":
		return bad("field reason missing")
	case c.Op == opRequestRefused && c.Executor != "":
		return bad("field executor not allowed")
	case c.Executor != "" && c.Kind != RequestRemove && c.Kind != RequestClearMember:
		return bad("field executor not allowed for kind %s", c.Kind)
	case c.Op == opRequestAccepted && c.Kind == RequestRemove && (c.Target == "" || c.Executor == ""):
		return bad("an accepted remove needs target and executor")
	case (c.Kind == RequestUpgradePause || c.Kind == RequestUpgradeResume) && c.Target != "":
		return bad("field target not allowed for kind %s", c.Kind)
	case c.Kind == RequestClearMember && c.Target != c.Node:
		return bad("clear-member of %q relayed by %q: a host clears only itself", c.Target, c.Node)
	}
	for field, v := range map[string]string{"node": c.Node, "target": c.Target, "executor": c.Executor, "reason": c.Reason} {
		if err := checkText(field, v); err != nil {
			return bad("%w", err)
		}
	}
	return nil
}

// applyRequest is apply for the request operations: the outcome is
// recorded, once per ID, with the change an accepted request makes.
func (s ClusterState) applyRequest(c Command) (ClusterState, error) {
	reject := func(format string, a ...any) (ClusterState, error) {
		return s, fmt.Errorf("election: %s %s: %w: "+format, append([]any{c.Op, c.Request, ErrTransition}, a...)...)
	}
	if _, done := s.Record(c.Request); done {
		return reject("already decided")
	}
	next := s.clone()
	at := time.Unix(0, c.At).UTC()
	wiped := false
	if c.Op == opRequestAccepted {
		switch c.Kind {
		case RequestRemove, RequestClearMember:
			switch {
			case c.Kind == RequestClearMember && slices.Contains(s.Removed, c.Target):
				// Still removed (a removed bootstrap node keeps its role
				// and is granted the slot as such), but no longer told
				// to wipe: it is a candidate like any other.
				wiped = true
			case c.Kind == RequestClearMember && c.Executor == "":
				// Nothing of it is recorded: nothing to clear.
			default:
				var err error
				next, err = s.applyRemoval(Command{Op: opRemoveCommitted, Node: c.Target, Executor: c.Executor, Reason: c.Reason, At: c.At}, next)
				if err != nil {
					return s, err
				}
				next.Removal.Operator = c.Kind == RequestRemove
				next.Removal.Clear = c.Kind == RequestClearMember
			}
		case RequestUpgradePause, RequestUpgradeResume:
			op := upgrade.OpPause
			if c.Kind == RequestUpgradeResume {
				op = upgrade.OpResume
			}
			u, err := next.applyUpgrade(Command{Op: op, At: c.At})
			if err != nil {
				return s, err
			}
			next = u
		default:
			return reject("kind %s cannot be accepted by this build", c.Kind)
		}
	}
	next.Requests = append(next.Requests, RequestRecord{
		ID: c.Request, Kind: c.Kind, From: c.Node, Target: c.Target, Accepted: c.Op == opRequestAccepted, Reason: c.Reason, At: at, Wiped: wiped,
	})
	if n := len(next.Requests) - maxRequestRecords; n > 0 {
		next.Requests = slices.Delete(next.Requests, 0, n)
	}
	return next, nil
}

// validateRequests checks the recorded outcomes of a state (snapshot).
func (s ClusterState) validateRequests() error {
	if len(s.Requests) > maxRequestRecords {
		return fmt.Errorf("state: %d request records, at most %d", len(s.Requests), maxRequestRecords)
	}
	seen := map[string]bool{}
	for _, r := range s.Requests {
		if !ValidRequestID(r.ID) || seen[r.ID] {
			return fmt.Errorf("state: request record %q: bad or repeated ID", r.ID)
		}
		seen[r.ID] = true
		if !knownKind(r.Kind) || r.From == "" || !unixNanos(r.At) {
			return fmt.Errorf("state: request record %s: kind %q, from %q, at %s", r.ID, r.Kind, r.From, r.At)
		}
		for field, v := range map[string]string{"from": r.From, "target": r.Target, "reason": r.Reason} {
			if err := checkText(field, v); err != nil {
				return fmt.Errorf("state: request record %s: %w", r.ID, err)
			}
		}
	}
	return nil
}

// requestsActive: the leader acts on requests only while every voter's
// build reads their commands (version 3); until then they wait.
func (d *MembershipDuties) requestsActive(st ClusterState) bool {
	if d == nil || d.Requests == nil {
		return false
	}
	if d.Readers == nil {
		return true
	}
	for _, v := range st.EtcdVoters() {
		if n, ok := d.Readers(v); !ok || n < requestCommandVersion {
			return false
		}
	}
	return true
}

// pendingRequest is one undecided request and the server relaying it.
type pendingRequest struct {
	From string
	Request
}

// pendingRequests are the requests the alive servers of this cluster relay
// that the state has not decided, oldest first. Only servers in peers are
// asked: a host that is not a verified server relays nothing.
func pendingRequests(st ClusterState, peers []Peer, alive func(string) (Peer, bool), self leaderSelf) []pendingRequest {
	var out []pendingRequest
	for _, p := range peers {
		if q, ok := alive(p.Name); !ok || q.ClusterName != self.Cluster {
			continue
		}
		for _, r := range self.Membership.Requests(p.Name) {
			if _, done := st.Record(r.ID); done || !ValidRequestID(r.ID) {
				continue
			}
			out = append(out, pendingRequest{From: p.Name, Request: r})
		}
	}
	slices.SortStableFunc(out, func(a, b pendingRequest) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if a.From != b.From {
			if a.From < b.From {
				return -1
			}
			return 1
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// requestNext decides the oldest request that can be decided now: at most
// one command. A clear-member whose old self still answers waits.
func requestNext(st ClusterState, peers []Peer, alive func(string) (Peer, bool), self leaderSelf, now time.Time) (Command, bool) {
	pend := pendingRequests(st, peers, alive, self)
	if len(pend) == 0 {
		return Command{}, false
	}
	c, view := membershipView(st, peers, alive, self)
	members := membershipMembers(c, view)
	at := now.UnixNano()
	// A removal takes a voter out, as a server's upgrade restarts one:
	// never two at once (the roll's side: upgrade.Input.Removing). The
	// upgrading server's own removal takes out no second one.
	upgrading, _ := st.upgradingServer()
	held := func(target string) bool { return upgrading != "" && target != upgrading }
	for _, r := range pend {
		cmd := Command{Request: r.ID, Kind: r.Kind, Node: r.From, Target: r.Target, At: at}
		refuse := func(format string, a ...any) (Command, bool) {
			cmd.Op, cmd.Reason = opRequestRefused, clip(fmt.Sprintf(format, a...))
			return cmd, true
		}
		if err := checkText("target", r.Target); err != nil {
			cmd.Target = ""
			return refuse("target: %v", err)
		}
		switch r.Kind {
		case RequestUpgradePause, RequestUpgradeResume:
			if r.Target != "" {
				cmd.Target = ""
				return refuse("%s takes no node", r.Kind)
			}
			cmd.Op = opRequestAccepted
			return cmd, true
		case RequestRemove:
			switch {
			case r.Target == "":
				return refuse("remove: no node named")
			case st.Removal.Active():
				return refuse("the removal of %s is %s: one removal at a time; wait for it to end", st.Removal.Node, st.Removal.State)
			case !st.inCluster(r.Target):
				return refuse("%s is not an etcd voter (voters: %s)", r.Target, listOrNone(st.EtcdVoters()))
			case st.Slot != nil:
				continue // a join in flight: decided once it ends
			case held(r.Target):
				continue // another server's upgrade in flight: decided once it ends
			}
			v := membership.CheckRemoval(members, r.Target)
			if !v.OK {
				return refuse("%s", v.Reason)
			}
			cmd.Op, cmd.Executor, cmd.Reason = opRequestAccepted, membership.Executor(members, self.Name, r.Target), clip("requested by the operator on "+r.From+": "+v.Reason)
			return cmd, true
		case RequestClearMember:
			if r.Target != r.From {
				cmd.Target = r.From
				return refuse("clear-member of %q relayed by %s: a host clears only itself", r.Target, r.From)
			}
			switch {
			case slices.Contains(st.Removed, r.Target):
				cmd.Op, cmd.Reason = opRequestAccepted, "it has wiped its datastore: it joins in its turn"
				return cmd, true
			case !st.inCluster(r.Target):
				cmd.Op, cmd.Reason = opRequestAccepted, "nothing recorded under this name: it joins in its turn"
				return cmd, true
			case st.Removal.Active() || st.Slot != nil || held(r.Target):
				continue
			}
			s := membership.Server{Name: r.Target}
			if ok, _ := membership.ReinstallAllowed(s, c, members); !ok {
				continue // its old self still answers: wait
			}
			v := membership.CheckRemoval(members, r.Target)
			if !v.OK {
				continue
			}
			cmd.Op, cmd.Executor, cmd.Reason = opRequestAccepted, membership.Executor(members, self.Name, r.Target), clip("reinstalled host asked to clear its old member: "+v.Reason)
			return cmd, true
		default:
			return refuse("%s is not handled by this build", r.Kind)
		}
	}
	return Command{}, false
}

// membershipMembers are the etcd voters with whether each answers, as
// membership.Step counts them.
func membershipMembers(c membership.Cluster, view []membership.Server) []membership.Member {
	by := map[string]membership.Server{}
	for _, s := range view {
		by[s.Name] = s
	}
	out := make([]membership.Member, 0, len(c.Voters))
	for _, v := range c.Voters {
		s, ok := by[v]
		out = append(out, membership.Member{Name: v, Voter: true, Answers: ok && s.Answers && s.Gossip != membership.Dead && s.Gossip != membership.Left})
	}
	return out
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return fmt.Sprint(s)
}

// clip keeps a reason within what a command's text may carry.
func clip(s string) string {
	const max = 240
	for len(s) > max || !utf8.ValidString(s) {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// RemovedFromRaft reports whether this server has raft state whose latest
// configuration no longer lists it: the leader dropped its voter after its
// removal was done. Such a server hears from no leader (it is not part of
// the group), so its FSM may never learn the removal; this is its own
// evidence. A server without raft state, or not running yet, reports false.
func (e *Election) RemovedFromRaft() bool {
	e.mu.Lock()
	r, running, hasState := e.r, e.running, e.hasState
	e.mu.Unlock()
	if r == nil || !running || !hasState {
		return false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == e.cfg.NodeName {
			return false
		}
	}
	return true
}
