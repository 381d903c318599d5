package election

import (
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// MembershipDuties switches the leader's membership duties on: odd
// admission through the join slot, and quorum-checked removals
// (pkg/membership). nil keeps the duties of command version 1: every
// server that asks joins, nothing is ever removed. The node switches them
// on once every server runs a build that knows the membership commands.
type MembershipDuties struct {
	Config membership.Config
	// Extra returns what gossip carries for membership beyond Peer (etcd
	// health, host ID, datastore, requests, an executor's progress); nil,
	// or ok false for a server: derived from Peer (see membershipView).
	Extra func(name string) (MembershipExtra, bool)
	// Readers reports the newest command version server name's build
	// reads, as gossip carries it (ok false: not known). nil: every server
	// is taken to read this build's commands. The duties act only while
	// every voter reads CommandVersion: their commands are version 2, and
	// an older voter would refuse to apply them.
	Readers func(name string) (version int, ok bool)
	// Upgrade is the rolling upgrade's next command (pkg/upgrade.Decide
	// over the committed state and the hosts' gossip), ok false for none;
	// nil: no upgrade duties. decide asks only once cluster ready is
	// committed, while the duties are active (the upgrade commands are
	// version 2 too) and when the cluster's own duties commit nothing this
	// step: a join, a grant or a removal step goes first. term is the
	// raft term the leader decides in (the term its barrier passed in):
	// the leader's jobs a decision starts belong to that term, and stop
	// once the node leads in another.
	Upgrade func(st ClusterState, now time.Time, term uint64) (upgrade.Command, bool)
	// UpgradeAhead is Upgrade on a state not committed yet (upgradeRun's
	// copies): the same decision with no effect outside it (no job
	// started, no job result dropped, nothing shown). nil: a run holds
	// the first command only.
	UpgradeAhead func(st ClusterState, now time.Time, term uint64) (upgrade.Command, bool)
	// Requests returns the operators' requests server name relays in its
	// verified claim (requests.go); nil: none are taken. Only servers of
	// the gossip view are asked.
	Requests func(name string) []Request
}

// CommandVersion is the newest raft command version this build reads and
// writes; the node gossips it for the duties' gate.
const CommandVersion = commandVersion

// active reports whether the duties act on st: they are on and every
// voter's build reads their commands.
func (d *MembershipDuties) active(st ClusterState) bool {
	if d == nil {
		return false
	}
	if d.Readers == nil {
		return true
	}
	for _, v := range st.EtcdVoters() {
		if n, ok := d.Readers(v); !ok || n < membershipCommandVersion {
			return false
		}
	}
	return true
}

// MembershipExtra is a server's gossiped membership fields.
type MembershipExtra struct {
	EtcdHealthy  bool   // its local etcd answered
	HostID       string // random, kept in data-dir; new after a reinstall
	HasDatastore bool   // RKE2's server/db exists
	Clear        bool   // a reinstalled host asks to clear its old member
	Remove       string // an operator's remove request made on it
	Progress     membership.Progress
}

// Admission is who joins and who waits in standby by the replicated state
// and the gossip view, as the leader decides it: a server that asks for the
// slot and is among Standby shows phase standby with its reason. Every
// server computes the same from the same inputs.
func Admission(st ClusterState, peers []Peer, cluster string, maxServers int) membership.Admission {
	in := membership.AdmitInput{Voters: st.EtcdVoters(), MaxServers: maxServers}
	if st.Slot != nil {
		in.Joining = st.Slot.Holder
	}
	alive := aliveIndex(peers)
	for _, p := range peers {
		if _, ok := alive(p.Name); ok && p.State == MemberAlive && p.WantJoinSlot && p.ClusterName == cluster {
			in.Candidates = append(in.Candidates, p.Name)
		}
	}
	return membership.Admit(in)
}

// Quorum is the quorum picture by the replicated voters and the etcd views
// the servers alive in gossip advertise (status and metrics).
func Quorum(st ClusterState, views []membership.EtcdView) membership.Assessment {
	return membership.Assess(st.EtcdVoters(), views)
}

// membershipNotes is the leader's last membership decision: standby
// servers, hosts told to wipe or waiting to be cleared, refused removal
// requests with their numbers. The shell publishes it in status.
func (b *leaderBook) membershipNotes() membership.Decision {
	if b.members == nil {
		return membership.Decision{}
	}
	return b.members.Last
}

// actRemoveVoter: remove Name from the raft configuration; its removal is
// done (membership). The shell calls loop.removeVoter.
const actRemoveVoter actionKind = 100

// upgradeNext is the rolling upgrade's command for this step, when the
// duties hold one (see MembershipDuties.Upgrade).
func upgradeNext(st ClusterState, self leaderSelf, now time.Time, ahead bool) (Command, bool) {
	d := self.Membership
	if st.ClusterReady == nil || d == nil || d.Upgrade == nil || !d.active(st) {
		return Command{}, false
	}
	duty := d.Upgrade
	if ahead {
		if duty = d.UpgradeAhead; duty == nil {
			return Command{}, false
		}
	}
	u, ok := duty(st, now, self.Term)
	if !ok {
		return Command{}, false
	}
	return UpgradeCommand(u), true
}

// membershipVoterChanges drops from raft the voter whose removal is done.
func membershipVoterChanges(st ClusterState, self leaderSelf, voters map[string]string) []action {
	// A reinstalled host's old member is cleared (Clear): the raft voter
	// under its name is the new host already, which joins in its turn.
	if self.Membership == nil || st.Removal == nil || st.Removal.State != membership.RemovalDone || st.Removal.Clear {
		return nil
	}
	n := st.Removal.Node
	// Only while it stands removed: once wiped (clear-member) it is added
	// back as a fresh voter, and once it joined again it is a member.
	if !slices.Contains(st.Removed, n) || st.wiped(n) {
		return nil
	}
	// Raft lets a leader remove itself: it steps down once that commits.
	if _, ok := voters[n]; ok {
		return []action{{Kind: actRemoveVoter, Name: n}}
	}
	return nil
}

// deadStandbyChanges drops from raft one voter that is not an etcd voter
// (a standby: never admitted, so no etcd or Kubernetes step is owed) once
// it has been dead, or absent from gossip, for server-removal-timeout this
// term. Without it a standby that dies for good stays a raft voter for
// ever, and raft could lose its quorum while etcd keeps its own. Only with
// the membership duties on and a removal timeout set, after cluster ready,
// never the bootstrap node, the slot holder, this server or a server a
// removal names, and only while the alive voters left are a quorum of the
// configuration without it (raft itself commits the change only with a
// quorum of the current one).
func deadStandbyChanges(st ClusterState, alive func(string) (Peer, bool), self leaderSelf, voters map[string]string, now time.Time, book *leaderBook) []action {
	d := self.Membership
	if d == nil || d.Config.RemovalTimeout <= 0 || st.ClusterReady == nil || !d.active(st) {
		return nil
	}
	etcd := st.EtcdVoters()
	aliveVoters := 0
	var dead []string
	for v := range voters {
		if _, ok := alive(v); ok || v == self.Name {
			aliveVoters++
			delete(book.deadSince, v)
			continue
		}
		since, seen := book.deadSince[v]
		if !seen {
			// Absent from gossip altogether: count from now.
			book.deadSince[v] = now
			continue
		}
		switch {
		case slices.Contains(etcd, v), v == st.Bootstrap,
			st.Slot != nil && st.Slot.Holder == v,
			st.Removal != nil && st.Removal.Node == v,
			now.Sub(since) < d.Config.RemovalTimeout:
			continue
		}
		dead = append(dead, v)
	}
	if len(dead) == 0 || aliveVoters < (len(voters)-1)/2+1 {
		return nil
	}
	slices.Sort(dead)
	if book.dropped != nil {
		book.dropped[dead[0]] = true
	}
	return []action{{Kind: actRemoveVoter, Name: dead[0]}}
}

// membershipView builds membership's inputs from the replicated state and
// the gossip view.
func membershipView(st ClusterState, peers []Peer, alive func(string) (Peer, bool), self leaderSelf) (membership.Cluster, []membership.Server) {
	c := membership.Cluster{Voters: st.EtcdVoters(), IDs: map[string]string{}, Removal: st.Removal, Removed: st.Removed}
	if st.Slot != nil {
		c.Joining = st.Slot.Holder
	}
	c.Upgrading, _ = st.upgradingServer()
	ca := ""
	if st.ClusterReady != nil {
		ca = st.ClusterReady.CAHash
	}
	var view []membership.Server
	for _, p := range peers {
		if p.ClusterName != self.Cluster {
			continue
		}
		s := membership.Server{Name: p.Name, UnreachableSince: self.Unreachable[p.Name]}
		switch p.State {
		case MemberAlive:
			s.Gossip = membership.Alive
		case MemberSuspect:
			s.Gossip = membership.Suspect
		case MemberLeft:
			s.Gossip = membership.Left
		default:
			s.Gossip = membership.Dead
		}
		_, isAlive := alive(p.Name)
		readyHere := p.Ready && p.CAHash == ca
		// Without the gossiped fields: a server answers when it is alive
		// and its RKE2 is ready with the cluster CA; a removed server is
		// taken to keep its datastore (it is told to wipe).
		s.Answers = isAlive && readyHere
		s.WantsJoin = p.WantJoinSlot || readyHere
		s.HasDatastore = true
		if self.Membership.Extra != nil {
			if x, ok := self.Membership.Extra(p.Name); ok {
				s.Answers = isAlive && x.EtcdHealthy
				s.ID, s.HasDatastore, s.Clear, s.Remove, s.Progress = x.HostID, x.HasDatastore, x.Clear, x.Remove, x.Progress
			}
		}
		if slices.Contains(st.Removed, p.Name) && st.wiped(p.Name) {
			s.HasDatastore = false
		}
		view = append(view, s)
	}
	return c, view
}

// membershipNext is nextCommand's part once cluster ready is committed and
// the slot is free, with the membership duties on: one removal step or one
// grant, as membership.Step decides (grant false: no grant).
func membershipNext(st ClusterState, peers []Peer, alive func(string) (Peer, bool), self leaderSelf, now time.Time, t Timing, book *leaderBook, grant bool) (Command, bool) {
	// A server already running RKE2 with the cluster's CA (it adopted a
	// running RKE2) is a member in fact: it is recorded through the slot
	// whatever the count, as before; admission only decides who starts.
	if grant && !st.Removal.Active() && st.ClusterReady != nil {
		for _, p := range peers {
			if q, ok := alive(p.Name); ok && q.ClusterName == self.Cluster && q.Ready && q.CAHash == st.ClusterReady.CAHash &&
				!st.inCluster(q.Name) && !slices.Contains(st.Removed, q.Name) {
				return Command{Op: opGrant, Node: q.Name, At: now.UnixNano(), Expires: now.Add(t.SlotLease).UnixNano()}, true
			}
		}
	}
	if self.Membership.requestsActive(st) {
		if cmd, ok := requestNext(st, peers, alive, self, now); ok {
			return cmd, true
		}
	}
	c, view := membershipView(st, peers, alive, self)
	if book.members == nil {
		book.members = membership.NewBook()
	}
	d := membership.Step(c, view, self.Membership.Config, now, book.members, self.Name)
	at := now.UnixNano()
	switch d.Kind {
	case membership.Grant:
		if !grant {
			return Command{}, false
		}
		return Command{Op: opGrant, Node: d.Node, At: at, Expires: now.Add(t.SlotLease).UnixNano()}, true
	case membership.Commit:
		return Command{Op: opRemoveCommitted, Node: d.Node, Executor: d.Removal.Executor, Reason: d.Removal.Reason, At: at}, true
	case membership.Advance:
		op := map[membership.RemovalState]string{
			membership.RemovalExecuting: opRemoveExecuting,
			membership.RemovalDone:      opRemoveDone,
			membership.RemovalFailed:    opRemoveFailed,
		}[d.Removal.State]
		cmd := Command{Op: op, Node: d.Node, At: at}
		if op == opRemoveFailed {
			cmd.Reason = d.Removal.Reason
		}
		return cmd, op != ""
	}
	return Command{}, false
}

// removeVoter drops a removed server from the raft configuration.
func (l *loop) removeVoter(name string) {
	e := l.e
	if err := l.r.RemoveServer(raft.ServerID(name), 0, e.cfg.Timing.ApplyTimeout).Error(); err != nil {
		e.log.Debug("remove voter", zap.String("server", name), zap.Error(err))
		return
	}
	e.log.Info("removed raft voter: its etcd member was removed, or it was a standby dead for server-removal-timeout", zap.String("server", name))
	l.notifyCommit()
}
