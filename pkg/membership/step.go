package membership

import (
	"fmt"
	"slices"
	"time"
)

// Liveness is a server's state in gossip as the leader sees it. A server
// absent from gossip is passed as Dead.
type Liveness int

const (
	Alive Liveness = iota
	Suspect
	Dead
	Left
)

// Server is one server in the leader's view: gossip, its gossiped etcd
// health and its requests.
type Server struct {
	Name   string
	Gossip Liveness
	// Answers: its etcd answered (gossiped healthy view, refreshed before a
	// removal is committed).
	Answers bool
	// WantsJoin: RKE2 installed, it asks for the join slot.
	WantsJoin bool
	// HasDatastore: it advertises an RKE2 datastore on disk (server/db).
	HasDatastore bool
	// ID is the host's identity, a random value kept in its data-dir: a
	// reinstalled host (same name, fresh disk) has a new one.
	ID string
	// Clear: a fresh host asks to clear its old member and node password.
	Clear bool
	// Remove is an operator's `rke2-hanode remove NODE` made on this server.
	Remove string
	// Progress is what this server, as a removal's executor, reports of it
	// (executing, done or failed); zero when it executes none.
	Progress Progress
	// UnreachableSince: the leader's raft has failed to reach it since then
	// (its last contact); zero while it answers. Raft sees a dead server
	// within a heartbeat, gossip within its probe round: the removal
	// timeout counts from the earlier of the two.
	UnreachableSince time.Time
}

// Progress is an executor's report on the removal of Node.
type Progress struct {
	Node   string
	State  RemovalState
	Reason string
}

// Cluster is the replicated membership state.
type Cluster struct {
	Voters  []string          // etcd voters, sorted
	IDs     map[string]string // each voter's host ID when it joined
	Joining string            // the join slot's holder, "" none
	// Upgrading is the server upgrading now (its begin committed), ""
	// none: it is about to leave the healthy voters for its restart, so
	// no removal of another server is committed meanwhile, as none while
	// a server joins. Its own removal takes no second voter out.
	Upgrading string
	Removal   *Removal // the last removal, nil none
	Removed   []string // removed names, sorted: told to rejoin --wipe
}

// Config is the membership part of the daemon's configuration.
type Config struct {
	MaxServers     int           // max-servers
	RemovalTimeout time.Duration // server-removal-timeout; 0 = never remove by itself
	ExecuteTimeout time.Duration // how long a committed removal may take before it fails
}

// Book is the leader's own bookkeeping between steps: when each server was
// first seen gone this term (a new leader starts counting afresh, and its
// raft's contacts start with its term, so a removal never happens earlier
// than the timeout after the leader itself lost the server).
type Book struct {
	DeadSince map[string]time.Time
	// Last is the last step's decision, for the shell's status: who waits
	// in standby, who is told what, which requests were refused.
	Last Decision
}

// MaxRaftLead bounds how much earlier than gossip's first doubt raft's
// last contact may start a removal clock: it is there to win the seconds
// memberlist's probe round takes, no more. Unbounded, a server whose raft
// port was blocked for a long time would be removed as soon as gossip
// doubted it (which an agent-token holder can fake for a moment), where
// the timeout must otherwise run out in gossip.
const MaxRaftLead = 10 * time.Second

func NewBook() *Book { return &Book{DeadSince: map[string]time.Time{}} }

type Kind int

const (
	None Kind = iota
	// Grant the join slot to Node.
	Grant
	// Commit is a removal to commit (Removal, in state committed).
	Commit
	// Advance the active removal to Removal.State (executing, done or
	// failed), as its executor reports or because it timed out. On done the
	// shell also drops Node's raft voter and records it as removed.
	Advance
)

// Decision is the one membership change a step asks for, plus what status
// shows: who waits in standby and which hosts are told something.
type Decision struct {
	Kind    Kind
	Node    string
	Removal Removal
	Verdict Verdict
	Standby []Waiting
	// Told: hosts that must not join as they are, with the words status
	// shows them (a removed host with its old datastore, a reinstall whose
	// old self is still alive).
	Told map[string]string
	// Refused: operators' remove requests that would break quorum, by the
	// server they were made on; the verdict says it with the numbers.
	Refused map[string]Verdict
}

// Step is the leader's membership duty, pure: one decision per step, in this
// order, so that there is never more than one membership change in flight:
//
//  1. an active removal advances as its executor reports, or fails past
//     ExecuteTimeout; while one is active nothing else is decided;
//  2. while the join slot is held, no removal is committed;
//  3. an operator's remove request, checked against quorum (refused with
//     the numbers), then a reinstalled host's clear request, then a voter
//     dead in gossip, not answering, for RemovalTimeout (0: never);
//  4. the join slot, to the next admitted server (see Admit).
func Step(c Cluster, view []Server, cfg Config, now time.Time, book *Book, self string) Decision {
	d := step(c, view, cfg, now, book, self)
	book.Last = d
	return d
}

func step(c Cluster, view []Server, cfg Config, now time.Time, book *Book, self string) Decision {
	d := Decision{Told: map[string]string{}, Refused: map[string]Verdict{}}
	byName := map[string]Server{}
	for _, s := range view {
		byName[s.Name] = s
		// The clock starts at the first sign: a suspect that answers again
		// becomes alive and starts afresh; only a dead one is removed. The
		// first sign is the earlier of gossip's doubt and the last raft
		// contact, if raft has failed to reach it since, by at most
		// MaxRaftLead.
		if s.Gossip == Dead || s.Gossip == Left || s.Gossip == Suspect {
			if _, ok := book.DeadSince[s.Name]; !ok {
				since := now
				if u := s.UnreachableSince; !u.IsZero() && u.Before(now) && now.Sub(u) <= MaxRaftLead {
					since = u
				}
				book.DeadSince[s.Name] = since
			}
		} else {
			delete(book.DeadSince, s.Name)
		}
	}
	for _, v := range c.Voters {
		if _, ok := byName[v]; !ok {
			if _, seen := book.DeadSince[v]; !seen {
				book.DeadSince[v] = now
			}
		}
	}
	isVoter := func(n string) bool { return slices.Contains(c.Voters, n) }
	members := make([]Member, 0, len(c.Voters))
	for _, v := range c.Voters {
		s, ok := byName[v]
		members = append(members, Member{Name: v, Voter: true, Answers: ok && s.Answers && s.Gossip != Dead && s.Gossip != Left})
	}

	// Who may join at all: alive, wants it, not a voter, not removed with
	// its old datastore, not a reinstall whose old member is still there.
	var cands []string
	for _, s := range view {
		if s.Gossip != Alive || !s.WantsJoin || isVoter(s.Name) || s.Name == c.Joining {
			if s.Gossip == Alive && isVoter(s.Name) && c.IDs[s.Name] != "" && s.ID != c.IDs[s.Name] {
				d.Told[s.Name] = reinstallWords(s, c)
			}
			continue
		}
		if slices.Contains(c.Removed, s.Name) && s.HasDatastore {
			d.Told[s.Name] = fmt.Sprintf("%s was removed from the cluster; its RKE2 datastore is stale: run `rke2-hanode rejoin --wipe` to clear it and join again", s.Name)
			continue
		}
		cands = append(cands, s.Name)
	}
	adm := Admit(AdmitInput{Voters: c.Voters, Joining: c.Joining, Candidates: cands, MaxServers: cfg.MaxServers})
	d.Standby = adm.Standby

	if r := c.Removal; r.Active() {
		if p := byName[r.Executor].Progress; p.Node == r.Node && p.State != r.State {
			// An executor quicker than the leader's steps reports done
			// while the removal is still committed: it goes through
			// executing first, one state per step.
			to := p.State
			if r.State == RemovalCommitted && to == RemovalDone {
				to = RemovalExecuting
			}
			if next, err := r.Advance(to, now, p.Reason); err == nil {
				d.Kind, d.Node, d.Removal = Advance, r.Node, next
				return d
			}
		}
		if cfg.ExecuteTimeout > 0 && now.Sub(r.Since) >= cfg.ExecuteTimeout {
			next, _ := r.Advance(RemovalFailed, now, fmt.Sprintf("not done within %s", cfg.ExecuteTimeout))
			d.Kind, d.Node, d.Removal = Advance, r.Node, next
		}
		return d
	}
	commit := func(target, reason string, operator bool) Decision {
		d.Kind, d.Node = Commit, target
		d.Removal = Removal{Node: target, State: RemovalCommitted, Executor: Executor(members, self, target), Reason: reason, Operator: operator, Since: now}
		return d
	}
	// held: removing target now would take a second voter out.
	held := func(target string) bool { return c.Upgrading != "" && target != c.Upgrading }
	if c.Joining == "" {
		// 3a: operator requests, lowest requester first.
		for _, s := range sortedByName(view) {
			if s.Remove == "" || s.Gossip != Alive || held(s.Remove) {
				continue
			}
			v := CheckRemoval(members, s.Remove)
			if !v.OK {
				d.Refused[s.Name] = v
				continue
			}
			d.Verdict = v
			return commit(s.Remove, fmt.Sprintf("requested by the operator on %s", s.Name), true)
		}
		// 3b: a reinstalled host asks to clear its old self.
		for _, s := range sortedByName(view) {
			if !s.Clear || s.Gossip != Alive || !isVoter(s.Name) || held(s.Name) {
				continue
			}
			if ok, why := ReinstallAllowed(s, c, members); !ok {
				d.Told[s.Name] = why
				continue
			}
			v := CheckRemoval(members, s.Name)
			if !v.OK {
				d.Told[s.Name] = v.Reason
				continue
			}
			d.Verdict = v
			return commit(s.Name, "reinstalled host asked to clear its old member", false)
		}
		// 3c: dead for the removal timeout.
		if cfg.RemovalTimeout > 0 {
			for _, v := range c.Voters {
				since, dead := book.DeadSince[v]
				if !dead || held(v) || now.Sub(since) < cfg.RemovalTimeout || byName[v].Gossip == Suspect || byName[v].Answers && byName[v].Gossip != Dead && byName[v].Gossip != Left {
					continue
				}
				if vd := CheckRemoval(members, v); vd.OK {
					d.Verdict = vd
					return commit(v, fmt.Sprintf("dead in gossip for %s", now.Sub(since).Round(time.Second)), false)
				}
			}
		}
	}
	if next := adm.Next(AdmitInput{Joining: c.Joining}); next != "" {
		d.Kind, d.Node = Grant, next
	}
	return d
}

func sortedByName(view []Server) []Server {
	s := slices.Clone(view)
	slices.SortFunc(s, func(a, b Server) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return s
}

// Executor is the leader itself, unless it is the one removed: then the
// lowest-named answering voter besides it.
func Executor(members []Member, self, target string) string {
	if self != target {
		return self
	}
	for _, m := range members { // sorted: Cluster.Voters is
		if m.Name != target && m.Answers {
			return m.Name
		}
	}
	return self
}
