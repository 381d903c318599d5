package election

import (
	"slices"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// The leader's duties as a pure step: decide reads the committed state,
// the gossip view of the servers, the raft configuration and the time, and
// returns what to do; it performs no I/O and calls no raft method. The
// raft loop (loop.go) is the shell that reads the inputs, calls decide,
// carries out the actions and feeds the results back through the next
// step's inputs. leader_test.go model-checks it.

// leaderSelf is what the leader knows of itself.
type leaderSelf struct {
	Name    string // this node: the leader claims and takes over the role for itself
	Cluster string // servers of another cluster are ignored
	VIP     string // committed with cluster ready
	// Membership: the membership duties (membership_leader.go); nil: off.
	Membership *MembershipDuties
	// VerifiedCA: the CA hash each server was seen serving on /cacerts at
	// its own advertise address, as the shell last fetched it (server →
	// hash). Cluster ready commits a CA hash only when it is here for the
	// bootstrap node: what gossip claims alone is never committed.
	VerifiedCA map[string]string
	// Unreachable: the followers whose raft heartbeats fail, each with its
	// last contact (unreachable.go); nil when every follower answers.
	Unreachable map[string]time.Time
	// Term: the raft term this step decides in, the one its barrier
	// passed in.
	Term uint64
}

// leaderBook is the leader's bookkeeping between steps, passed in and out
// explicitly. A new term starts with a fresh deadSince (see reset).
type leaderBook struct {
	// deadSince: when each server was first seen dead (or absent) this term.
	deadSince map[string]time.Time
	// foreign: servers already reported as having raft state outside this
	// group; kept across terms so each is reported once.
	foreign map[string]bool
	// dropped: standbys this node dropped from raft as dead for good
	// (deadStandbyChanges); kept across terms. One that comes back after
	// all holds this group's raft state and is added again; another
	// leader, not knowing it, reports it as foreign.
	dropped map[string]bool
	// members: the membership duties' bookkeeping (deaths seen this term).
	members *membership.Book
}

func newLeaderBook() *leaderBook {
	return &leaderBook{deadSince: map[string]time.Time{}, foreign: map[string]bool{}, dropped: map[string]bool{}, members: membership.NewBook()}
}

// reset forgets this term's observations when the node stops leading.
func (b *leaderBook) reset() {
	clear(b.deadSince)
	b.members = membership.NewBook()
}

type actionKind int

const (
	// actAddVoter: add Name at Addr as a raft voter, or move it to Addr.
	actAddVoter actionKind = iota + 1
	// actForeign: Name has raft state but is not in this raft group: it is
	// never added (merging logs would be unsafe); report it.
	actForeign
	// actApply: commit Cmd.
	actApply
)

// action is one thing decide asks the shell to do.
type action struct {
	Kind actionKind
	Name string  // actAddVoter, actForeign
	Addr string  // actAddVoter
	Cmd  Command // actApply
}

// decide is one step of the leader's duties. voters is the raft
// configuration (ID → address), nil when unknown: no voter changes then.
// It returns the voter changes first, then the FSM commands: at most one,
// or a run of the rolling upgrade's (see upgradeRun). Every decision is
// taken on state that includes the previous one.
func decide(st ClusterState, peers []Peer, self leaderSelf, voters map[string]string, now time.Time, t Timing, book *leaderBook) []action {
	var out []action
	if voters != nil {
		out = voterChanges(st, peers, self, voters, book)
		out = append(out, membershipVoterChanges(st, self, voters)...)
	}
	alive := aliveIndex(peers)
	// Track how long each server has been dead, for reassignment and for
	// dead standbys.
	for _, p := range peers {
		if _, ok := alive(p.Name); ok {
			delete(book.deadSince, p.Name)
		} else if _, seen := book.deadSince[p.Name]; !seen {
			book.deadSince[p.Name] = now
		}
	}
	if voters != nil && len(out) == 0 {
		out = deadStandbyChanges(st, alive, self, voters, now, book)
	}
	if c, ok := nextCommand(st, peers, alive, self, now, t, book); ok {
		out = append(out, action{Kind: actApply, Cmd: c})
	} else {
		for _, c := range upgradeRun(st, peers, alive, self, now, t, book) {
			out = append(out, action{Kind: actApply, Cmd: c})
		}
	}
	return out
}

// maxUpgradeRun bounds the commands of one upgradeRun.
const maxUpgradeRun = 8

// upgradeRun is the rolling upgrade's commands for this step: the duty's
// command, then each one the duty decides on the state that includes the
// one before (applied to a copy), as the next steps would decide them if
// they ran at once on the same view, while the cluster's own duties have
// nothing on that state. A host's done and the next host's begin are then
// written and replicated in one raft batch, where one commit each made
// every hand-over of the roll wait for two. Raft commits a prefix of the
// run: a later command is never applied without the ones before it. The
// leader is the only writer of the log and each command's effect is a pure
// function of the state, so each is applied to the state it was decided
// on. The commands after the first are decided by the duty's
// UpgradeAhead: a copy may never commit, so nothing outside the decision
// may follow from it (a leader job started, a job's result dropped).
func upgradeRun(st ClusterState, peers []Peer, alive func(string) (Peer, bool), self leaderSelf, now time.Time, t Timing, book *leaderBook) []Command {
	var run []Command
	for len(run) < maxUpgradeRun {
		if len(run) > 0 {
			if _, ok := nextCommand(st, peers, alive, self, now, t, book); ok {
				break // the next step does that first
			}
		}
		c, ok := upgradeNext(st, self, now, len(run) > 0)
		if !ok {
			break
		}
		run = append(run, c)
		next, err := st.apply(c)
		if err != nil {
			break // the FSM will refuse it too; nothing is decided on it
		}
		st = next
	}
	return run
}

// aliveIndex looks a server up in the view: present and neither dead nor
// left (suspect counts as alive: gossip may be wrong about it).
func aliveIndex(peers []Peer) func(string) (Peer, bool) {
	byName := make(map[string]Peer, len(peers))
	for _, p := range peers {
		byName[p.Name] = p
	}
	return func(name string) (Peer, bool) {
		p, ok := byName[name]
		return p, ok && p.State != MemberDead && p.State != MemberLeft
	}
}

// voterChanges adds alive servers without raft state that are not yet in
// the configuration, and moves members whose raft address changed (only
// on a verified claim: never a vouched server of an older build). It never
// adds a server with raft state from elsewhere, and never removes one here:
// see doc.go (dead standbys: deadStandbyChanges).
func voterChanges(st ClusterState, peers []Peer, self leaderSelf, voters map[string]string, book *leaderBook) []action {
	var out []action
	for _, p := range peers {
		if p.Name == self.Name || p.State != MemberAlive || p.ClusterName != self.Cluster || p.RaftAddr == "" {
			continue
		}
		// A removed server comes back as a voter only once it said it
		// was wiped (clear-member): else its raft voter is dropped again.
		if _, in := voters[p.Name]; !in && slices.Contains(st.Removed, p.Name) && !st.wiped(p.Name) {
			continue
		}
		addr, ok := voters[p.Name]
		if ok && (addr == p.RaftAddr || p.Vouched) {
			continue
		}
		if !ok && p.HasRaftState && !book.dropped[p.Name] {
			if !book.foreign[p.Name] {
				book.foreign[p.Name] = true
				out = append(out, action{Kind: actForeign, Name: p.Name})
			}
			continue
		}
		delete(book.dropped, p.Name)
		out = append(out, action{Kind: actAddVoter, Name: p.Name, Addr: p.RaftAddr})
	}
	return out
}

// nextCommand is the one FSM change the state and the requests call for,
// in the order of a cluster's life: claim, started (or reassign), cluster
// ready, then the join slot. The evidence each needs is the protocol table
// in doc.go. No grant is decided while a server upgrades: the FSM refuses
// it then, and deciding it anyway would keep the upgrade's own commands
// (the server's done, or its failure at the host timeout) from ever being
// decided for as long as a server asks for the slot. What the cluster's
// duties would decide after a grant (an operator's request, a removal
// step) is still decided.
func nextCommand(st ClusterState, peers []Peer, alive func(string) (Peer, bool), self leaderSelf, now time.Time, t Timing, book *leaderBook) (Command, bool) {
	_, upgrading := st.upgradingServer()
	return clusterCommand(st, peers, alive, self, now, t, book, !upgrading)
}

// clusterCommand is nextCommand without the upgrade's precedence; grant
// false: it decides no grant.
func clusterCommand(st ClusterState, peers []Peer, alive func(string) (Peer, bool), self leaderSelf, now time.Time, t Timing, book *leaderBook, grant bool) (Command, bool) {
	at := now.UnixNano()
	switch {
	case st.Bootstrap == "":
		return Command{Op: opClaim, Node: self.Name, At: at}, true
	case !st.Started:
		p, ok := alive(st.Bootstrap)
		if ok && p.StartedRKE2 {
			return Command{Op: opStarted, Node: st.Bootstrap, At: at}, true
		}
		if !ok && st.Bootstrap != self.Name {
			since, seen := book.deadSince[st.Bootstrap]
			if !seen {
				// Absent from gossip altogether: count from now.
				book.deadSince[st.Bootstrap] = now
			} else if now.Sub(since) >= t.BootstrapReassignAfter {
				return Command{Op: opReassign, From: st.Bootstrap, Node: self.Name, At: at, Reason: "dead before starting RKE2"}, true
			}
		}
		return Command{}, false
	case st.ClusterReady == nil:
		if p, ok := alive(st.Bootstrap); ok && p.Ready && p.CAHash != "" && self.VerifiedCA[p.Name] == p.CAHash {
			return Command{Op: opReady, VIP: self.VIP, CAHash: p.CAHash, At: at}, true
		}
		return Command{}, false
	}
	ca := st.ClusterReady.CAHash
	// readyHere: the server reports its RKE2 ready and serving this
	// cluster's CA. A server serving another CA is not part of this cluster.
	readyHere := func(p Peer) bool { return p.Ready && p.CAHash == ca }

	if s := st.Slot; s != nil {
		// A slot is never taken back early: only Ready (joined) or the
		// lease running out ends it, so a holder's own view of its lease
		// is never contradicted (see doc.go).
		p, ok := alive(s.Holder)
		switch {
		case ok && readyHere(p):
			return Command{Op: opJoined, Node: s.Holder, At: at}, true
		case now.After(s.Expires.Add(t.SlotGrace)):
			return Command{Op: opFree, Node: s.Holder, At: at, Reason: "lease expired"}, true
		case ok && p.State == MemberAlive && p.WantJoinSlot && s.Expires.Sub(now) < t.SlotLease/2 &&
			now.Sub(s.Granted) < t.SlotMaxHold:
			return Command{Op: opRenew, Node: s.Holder, At: at, Expires: now.Add(t.SlotLease).UnixNano()}, true
		}
		return Command{}, false
	}
	if self.Membership.active(st) {
		return membershipNext(st, peers, alive, self, now, t, book, grant)
	}
	if !grant {
		return Command{}, false
	}
	var want []string
	for _, p := range peers {
		// A server already ready (it adopted a running RKE2) gets the slot
		// only to be recorded as joined at once.
		if _, ok := alive(p.Name); ok && (p.WantJoinSlot || readyHere(p)) && p.ClusterName == self.Cluster &&
			p.Name != st.Bootstrap && !slices.Contains(st.Joined, p.Name) {
			want = append(want, p.Name)
		}
	}
	if len(want) == 0 {
		return Command{}, false
	}
	slices.Sort(want)
	return Command{Op: opGrant, Node: want[0], At: at, Expires: now.Add(t.SlotLease).UnixNano()}, true
}
