package election

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// A model check of decide, the leader's pure step. The world is a few
// servers whose gossip advertisements change at random, not as the node
// phase machine would change them: they flap alive/suspect/dead/left,
// want the slot and withdraw, claim Started without being the bootstrap
// node, report ready with the cluster's CA or with another one, move their
// raft address, and some have raft state from another group. Each server's
// clock is off by less than SlotGrace/2, so any two by less than SlotGrace
// (the skew slots tolerate, doc.go).
//
// The leader (a random live server, changing now and then, each term with
// a fresh book as after a barrier) sees every other server as it was up to
// maxLag ago, each with its own lag, so views are stale and contradict
// each other. Its decision is applied to the FSM later, after time passed
// and the world changed, or lost, as raft's Apply may be; a leader decides
// again only once its previous command was applied or lost, as the loop
// does (Apply waits for the commit, and a new leader's barrier applies what
// an earlier one committed).
//
// The properties, checked against the true history:
//   - never two slot holders: a holder uses its slot from the grant until
//     it reports ready with the cluster's CA, or until its own clock passes
//     the lease; no grant may fall inside that;
//   - "started" is committed once, for the bootstrap node, which asked;
//   - cluster ready is never replaced, and carries the CA its bootstrap node
//     reported ready with;
//   - a join is recorded only after that server reported ready with the
//     committed CA, during its tenure;
//   - the slot is handed on (freed or joined) only after the holder's ready
//     or the lease expired by the holder's clock;
//   - no voter is ever added that has raft state from another group.

var leaderSeed = flag.Uint64("leader-seed", 0, "run the leader model check with this seed only")

const mcMaxLag = 5 * time.Second // gossip lag the model allows

// lmSnap is one version of what a server advertises, from at on.
type lmSnap struct {
	at time.Time
	p  Peer // State "" means absent from gossip
}

type lmServer struct {
	name    string
	hist    []lmSnap
	skew    time.Duration // its clock minus the true time
	ca      string        // the CA its RKE2 serves when it reports ready
	foreign bool          // has raft state from another group
}

func (s *lmServer) now() Peer { return s.hist[len(s.hist)-1].p }

// at is what it advertised at time t (absent before its first version).
func (s *lmServer) at(t time.Time) Peer {
	i, _ := slices.BinarySearchFunc(s.hist, t, func(v lmSnap, t time.Time) int {
		if v.at.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return Peer{}
	}
	return s.hist[i-1].p
}

// ever reports whether, at some time in [from, to], it advertised ok.
func (s *lmServer) ever(from, to time.Time, ok func(Peer) bool) bool {
	if ok(s.at(from)) {
		return true
	}
	for _, v := range s.hist {
		if v.at.After(from) && !v.at.After(to) && ok(v.p) {
			return true
		}
	}
	return false
}

type decideFunc func(st ClusterState, peers []Peer, self leaderSelf, voters map[string]string, now time.Time, t Timing, book *leaderBook) []action

// pending is a decided command not yet applied.
type lmPending struct {
	cmd     Command
	leader  string
	decided time.Time // true time of the decision
}

type leaderModel struct {
	rng     *rand.Rand
	t       Timing
	decide  decideFunc
	now     time.Time // true time
	start   time.Time
	servers []*lmServer
	byName  map[string]*lmServer
	leader  string
	books   map[string]*leaderBook
	voters  map[string]string
	st      ClusterState
	pending *lmPending
	trace   []string

	startedOK int
	slotGrant time.Time // true time the current holder's grant was applied
	stats     map[string]int
}

func (m *leaderModel) logf(format string, a ...any) {
	m.trace = append(m.trace, fmt.Sprintf("%8.1fs ", m.now.Sub(m.start).Seconds())+fmt.Sprintf(format, a...))
}

func newLeaderModel(seed uint64, decide decideFunc) *leaderModel {
	rng := rand.New(rand.NewPCG(seed, 0x1eade7))
	m := &leaderModel{rng: rng, t: LANTiming(), decide: decide, now: time.Unix(0, 0).Add(1000 * time.Hour),
		byName: map[string]*lmServer{}, books: map[string]*leaderBook{}, voters: map[string]string{}, stats: map[string]int{}}
	m.start = m.now
	n := 3 + rng.IntN(4)
	for i := range n {
		s := &lmServer{name: fmt.Sprintf("s%d", i), ca: "ca1",
			skew: time.Duration(rng.Int64N(int64(m.t.SlotGrace))) - m.t.SlotGrace/2}
		if rng.IntN(4) == 0 {
			s.ca = "ca2" // serves another cluster's CA
		}
		s.foreign = i > 0 && rng.IntN(8) == 0
		p := Peer{Name: s.name, RaftAddr: s.name + ":9348", State: MemberAlive, ExpectServers: 3, ClusterName: "c", HasRaftState: s.foreign}
		if i > 0 && rng.IntN(10) == 0 {
			p.ClusterName = "other"
		}
		s.hist = []lmSnap{{at: m.now, p: p}}
		m.servers = append(m.servers, s)
		m.byName[s.name] = s
	}
	// The first leader formed the group alone; the others join as voters.
	m.leader = "s0"
	m.voters["s0"] = "s0:9348"
	m.byName["s0"].set(m.now, func(p *Peer) { p.HasRaftState = true })
	return m
}

func (s *lmServer) set(at time.Time, f func(*Peer)) {
	p := s.now()
	f(&p)
	if p != s.now() {
		s.hist = append(s.hist, lmSnap{at: at, p: p})
	}
}

// churn changes one server's advertisement at random.
func (m *leaderModel) churn() {
	s := m.servers[m.rng.IntN(len(m.servers))]
	states := []string{MemberAlive, MemberAlive, MemberAlive, MemberSuspect, MemberDead, MemberLeft, ""}
	switch m.rng.IntN(9) {
	case 0, 1:
		st := states[m.rng.IntN(len(states))]
		if s.name == m.leader && st != MemberAlive {
			return // the leader is alive by definition; it changes in lead()
		}
		s.set(m.now, func(p *Peer) { p.State = st })
		m.logf("%s is %q in gossip", s.name, st)
	case 2, 3:
		w := m.rng.IntN(3) > 0
		s.set(m.now, func(p *Peer) { p.WantJoinSlot = w })
		m.logf("%s wants the slot: %v", s.name, w)
	case 4, 5:
		r := m.rng.IntN(3) > 0
		ca := s.ca
		switch m.rng.IntN(8) {
		case 0:
			ca = "" // ready, CA not known
		case 1:
			ca = "evil" // claims a CA it does not serve (a forged advertisement)
		}
		s.set(m.now, func(p *Peer) { p.Ready, p.CAHash = r, ca })
		m.logf("%s reports ready=%v ca=%q", s.name, r, ca)
	case 6:
		v := m.rng.IntN(3) > 0
		s.set(m.now, func(p *Peer) { p.StartedRKE2 = v })
		m.logf("%s reports started=%v", s.name, v)
	case 7:
		addr := fmt.Sprintf("%s-%d:9348", s.name, m.rng.IntN(3))
		s.set(m.now, func(p *Peer) { p.RaftAddr = addr })
		m.logf("%s moves to %s", s.name, addr)
	case 8:
		if s.name != m.leader {
			return
		}
		// The leader loses its term; the next is a live server of the group.
		var cands []string
		for _, o := range m.servers {
			if _, in := m.voters[o.name]; in && o.now().State == MemberAlive {
				cands = append(cands, o.name)
			}
		}
		if len(cands) > 0 {
			if b := m.books[m.leader]; b != nil {
				b.reset()
			}
			m.leader = cands[m.rng.IntN(len(cands))]
			m.logf("%s leads", m.leader)
		}
	}
}

// view is what the leader's gossip shows now: itself fresh, the others
// each up to mcMaxLag old.
func (m *leaderModel) view() []Peer {
	var out []Peer
	for _, s := range m.servers {
		var p Peer
		if s.name == m.leader {
			p = s.now()
		} else {
			p = s.at(m.now.Add(-time.Duration(m.rng.Int64N(int64(mcMaxLag)))))
		}
		if p.State != "" {
			out = append(out, p)
		}
	}
	m.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func (m *leaderModel) lead() error {
	l := m.byName[m.leader]
	if m.books[m.leader] == nil {
		m.books[m.leader] = newLeaderBook()
	}
	// The shell's fetches: the CA each server really serves at its own
	// address, for those fetched so far (a fetch may not have finished).
	verified := map[string]string{}
	for _, s := range m.servers {
		if m.rng.IntN(4) > 0 {
			verified[s.name] = s.ca
		}
	}
	self := leaderSelf{Name: m.leader, Cluster: "c", VIP: "192.0.2.1", VerifiedCA: verified}
	peers := m.view()
	acts := m.decide(m.st.clone(), peers, self, m.voters, m.now.Add(l.skew), m.t, m.books[m.leader])
	for _, a := range acts {
		switch a.Kind {
		case actAddVoter:
			var seen Peer
			for _, p := range peers {
				if p.Name == a.Name {
					seen = p
				}
			}
			if _, in := m.voters[a.Name]; !in && (seen.HasRaftState || m.byName[a.Name].foreign) {
				return fmt.Errorf("%s added as a voter with raft state from another group", a.Name)
			}
			m.voters[a.Name] = a.Addr
			m.byName[a.Name].set(m.now, func(p *Peer) { p.HasRaftState = true })
			m.logf("%s adds voter %s at %s", m.leader, a.Name, a.Addr)
		case actApply:
			if m.pending != nil {
				return fmt.Errorf("decide returned two commands")
			}
			m.pending = &lmPending{cmd: a.Cmd, leader: m.leader, decided: m.now}
			m.logf("%s decides %s %s", m.leader, a.Cmd.Op, a.Cmd.Node)
		}
	}
	return nil
}

// commit applies or loses the pending command and checks the properties.
func (m *leaderModel) commit() error {
	pc := m.pending
	m.pending = nil
	if m.rng.IntN(8) == 0 {
		m.logf("%s %s lost", pc.cmd.Op, pc.cmd.Node)
		return nil
	}
	c := pc.cmd
	prev := m.st
	next, err := prev.apply(c)
	if err != nil {
		m.logf("%s %s rejected: %v", c.Op, c.Node, err)
		return nil
	}
	m.st = next
	m.stats[c.Op]++
	m.logf("%s %s applied", c.Op, c.Node)
	asked := func(name string, ok func(Peer) bool) bool {
		return m.byName[name].ever(pc.decided.Add(-mcMaxLag), pc.decided, ok)
	}
	if prev.Started && next.Bootstrap != prev.Bootstrap {
		return fmt.Errorf("bootstrap node moved from %s to %s after started", prev.Bootstrap, next.Bootstrap)
	}
	if prev.ClusterReady != nil && (next.ClusterReady == nil || *next.ClusterReady != *prev.ClusterReady) {
		return fmt.Errorf("cluster ready %+v replaced by %+v", *prev.ClusterReady, next.ClusterReady)
	}
	switch c.Op {
	case opStarted:
		m.startedOK++
		if m.startedOK > 1 {
			return fmt.Errorf("started committed %d times", m.startedOK)
		}
		if !asked(c.Node, func(p Peer) bool { return p.StartedRKE2 }) {
			return fmt.Errorf("started committed for %s, which never reported started", c.Node)
		}
	case opReady:
		if !asked(prev.Bootstrap, func(p Peer) bool { return p.Ready && p.CAHash == c.CAHash }) {
			return fmt.Errorf("cluster ready with CA %q: bootstrap node %s never reported ready with it", c.CAHash, prev.Bootstrap)
		}
		if served := m.byName[prev.Bootstrap].ca; c.CAHash != served {
			return fmt.Errorf("cluster ready with CA %q, which bootstrap node %s claimed but does not serve (it serves %q)", c.CAHash, prev.Bootstrap, served)
		}
	case opGrant:
		// The FSM holds one slot: a second holder could only come from
		// handing the slot on while its holder still uses it, checked below.
		m.slotGrant = m.now
	case opFree, opJoined:
		h := m.byName[c.Node]
		ca := prev.ClusterReady.CAHash
		done := h.ever(m.slotGrant.Add(-mcMaxLag), m.now, func(p Peer) bool { return p.Ready && p.CAHash == ca })
		// The holder uses its slot until its own clock passes the lease.
		until := prev.Slot.Expires.Add(-h.skew)
		if c.Op == opJoined && !done {
			return fmt.Errorf("%s recorded as joined, but it never reported ready with the cluster's CA %s during its tenure", c.Node, ca)
		}
		if !done && m.now.Before(until) {
			return fmt.Errorf("slot of %s handed on at %v, before its lease ends at %v by its clock, and it never reported ready: two holders", c.Node, m.now, until)
		}
	}
	return nil
}

// runLeaderModel runs one schedule; it returns the property violated, if
// any, with the trace leading to it.
func runLeaderModel(seed uint64, steps int, decide decideFunc) (*leaderModel, error) {
	m := newLeaderModel(seed, decide)
	for range steps {
		switch r := m.rng.IntN(10); {
		case r < 4:
			m.churn()
		case r < 7:
			// Time passes: a tick, a while, or past a lease.
			ds := []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second, 20 * time.Second, 45 * time.Second, 75 * time.Second}
			m.now = m.now.Add(ds[m.rng.IntN(len(ds))])
		default:
			var err error
			if m.pending != nil {
				err = m.commit()
			} else {
				err = m.lead()
			}
			if err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

// leaderModelCheck runs seeds 1..runs and returns the first that fails.
func leaderModelCheck(decide decideFunc, runs, steps int) (failed uint64, err error) {
	seeds := make([]uint64, 0, runs)
	if *leaderSeed != 0 {
		seeds = append(seeds, *leaderSeed)
	} else {
		for i := range runs {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, seed := range seeds {
		if _, err := runLeaderModel(seed, steps, decide); err != nil {
			return seed, err
		}
	}
	return 0, nil
}

func TestLeaderModelCheck(t *testing.T) {
	runs, steps := 2000, 400
	if testing.Short() {
		runs = 300
	}
	total := map[string]int{}
	for seed := uint64(1); seed <= uint64(runs); seed++ {
		if *leaderSeed != 0 {
			seed = *leaderSeed
		}
		m, err := runLeaderModel(seed, steps, decide)
		if err != nil {
			tail := m.trace[max(0, len(m.trace)-40):]
			t.Fatalf("seed=%d (rerun: go test -run TestLeaderModelCheck -leader-seed=%d ./pkg/election/): %v\n%s",
				seed, seed, err, strings.Join(tail, "\n"))
		}
		for op, n := range m.stats {
			total[op] += n
		}
		if *leaderSeed != 0 {
			break
		}
	}
	// The model must reach every decision, or it proves little.
	for _, op := range []string{opClaim, opReassign, opStarted, opReady, opGrant, opRenew, opFree, opJoined} {
		if total[op] == 0 {
			t.Errorf("no %s was ever applied in %d runs: the model explores too little", op, runs)
		}
	}
	t.Logf("%d runs of %d steps; applied: %v", runs, steps, total)
}

// Mutants: decide with one guard taken away. The model check must find
// each unsafe, or it is not exploring the states that matter.

// decideFreesDeadHolder takes the slot back from a holder gossip calls
// dead, before its lease ran out.
func decideFreesDeadHolder(st ClusterState, peers []Peer, self leaderSelf, voters map[string]string, now time.Time, t Timing, book *leaderBook) []action {
	acts := decide(st, peers, self, voters, now, t, book)
	if st.Slot == nil {
		return acts
	}
	for _, p := range peers {
		if p.Name == st.Slot.Holder && p.State == MemberDead {
			acts = slices.DeleteFunc(acts, func(a action) bool { return a.Kind == actApply })
			return append(acts, action{Kind: actApply, Cmd: Command{Op: opFree, Node: p.Name, At: now.UnixNano(), Reason: "dead"}})
		}
	}
	return acts
}

// decideAnyCA records a holder as joined on Ready alone, whatever CA it serves.
func decideAnyCA(st ClusterState, peers []Peer, self leaderSelf, voters map[string]string, now time.Time, t Timing, book *leaderBook) []action {
	if st.ClusterReady != nil {
		peers = slices.Clone(peers)
		for i := range peers {
			if peers[i].Ready {
				peers[i].CAHash = st.ClusterReady.CAHash
			}
		}
	}
	return decide(st, peers, self, voters, now, t, book)
}

// decideTrustsClaim commits the CA hash the bootstrap node claims in
// gossip, without the fetch from its own address confirming it.
func decideTrustsClaim(st ClusterState, peers []Peer, self leaderSelf, voters map[string]string, now time.Time, t Timing, book *leaderBook) []action {
	self.VerifiedCA = map[string]string{}
	for _, p := range peers {
		self.VerifiedCA[p.Name] = p.CAHash
	}
	return decide(st, peers, self, voters, now, t, book)
}

// decideNoGrace frees an expired slot at once, not SlotGrace later: a holder
// whose clock is behind the leader's still uses it.
func decideNoGrace(st ClusterState, peers []Peer, self leaderSelf, voters map[string]string, now time.Time, t Timing, book *leaderBook) []action {
	t.SlotGrace = 0
	return decide(st, peers, self, voters, now, t, book)
}

func TestLeaderModelCheckFindsMutants(t *testing.T) {
	for name, d := range map[string]decideFunc{
		"frees a dead holder's slot early": decideFreesDeadHolder,
		"joins on any CA":                  decideAnyCA,
		"frees without grace":              decideNoGrace,
		"commits a claimed CA unverified":  decideTrustsClaim,
	} {
		seed, err := leaderModelCheck(d, 2000, 400)
		if err == nil {
			t.Errorf("%s: the model check never failed", name)
			continue
		}
		t.Logf("%s: seed %d: %v", name, seed, err)
	}
}

// TestVoterChangesMovesOnlyVerifiedPeers: a voter whose gossip raft address
// changed is moved there only when its word is signed; a server of an
// older build, trusted as a listed voter, keeps the address raft has.
func TestVoterChangesMovesOnlyVerifiedPeers(t *testing.T) {
	self := leaderSelf{Name: "a", Cluster: "c"}
	voters := map[string]string{"a": "10.0.0.1:9348", "b": "10.0.0.2:9348"}
	moved := Peer{Name: "b", RaftAddr: "10.0.0.66:9348", State: MemberAlive, ClusterName: "c", HasRaftState: true}
	acts := voterChanges(ClusterState{}, []Peer{moved}, self, voters, newLeaderBook())
	if len(acts) != 1 || acts[0].Kind != actAddVoter || acts[0].Addr != "10.0.0.66:9348" {
		t.Fatalf("a verified voter's new raft address: %+v, want it moved", acts)
	}
	moved.Vouched = true
	if acts := voterChanges(ClusterState{}, []Peer{moved}, self, voters, newLeaderBook()); len(acts) != 0 {
		t.Fatalf("a vouched voter of an older build moved to its unsigned raft address: %+v", acts)
	}
	fresh := Peer{Name: "d", RaftAddr: "10.0.0.4:9348", State: MemberAlive, ClusterName: "c", Vouched: true}
	if acts := voterChanges(ClusterState{}, []Peer{fresh}, self, voters, newLeaderBook()); len(acts) != 1 || acts[0].Name != "d" {
		t.Fatalf("a new server without raft state: %+v, want it added", acts)
	}
}
