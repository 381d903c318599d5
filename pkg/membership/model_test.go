package membership

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The model checker drives Step over random schedules of joins, deaths,
// revivals, reinstalls (wipes), operator removals and clock advances,
// against a true world it keeps itself, and checks every decision against
// that world, not against Step's own reasoning:
//
//   - a grant that makes the voter count even happens only while at least
//     two eligible servers are alive (a pair is coming), and never past
//     max-servers;
//   - a removal is committed only while the true answering voters are a
//     quorum before, and the remaining answering voters a quorum after;
//   - never two removals at once;
//   - a removal nobody asked for targets a server truly dead for the
//     removal timeout: a healthy member is never demoted;
//   - a step with nothing in flight, an even voter count and an eligible
//     server waiting grants (or removes): the standby is used;
//   - growth-only schedules settle at an odd count.

type host struct {
	alive     bool
	deadAt    time.Time
	id        string
	datastore bool // RKE2's server/db on disk
	wants     bool
	clear     bool
	remove    string
}

type world struct {
	t        *testing.T
	rng      *rand.Rand
	now      time.Time
	cfg      Config
	hosts    map[string]*host
	c        Cluster
	book     *Book
	leader   string
	joinDone time.Time // when the slot holder's join completes
	lease    time.Time // the slot's lease end
	exec     int       // executor's progress: 0 none, 1 committed, 2 executing
	execAt   time.Time
	nextID   int
	log      []string
	stats    map[string]int
}

func (w *world) failf(format string, a ...any) {
	w.t.Helper()
	w.t.Fatalf("%s\nschedule:\n  %s", fmt.Sprintf(format, a...), joinLines(w.log))
}

func joinLines(l []string) string {
	if len(l) > 60 {
		l = l[len(l)-60:]
	}
	s := ""
	for i, x := range l {
		if i > 0 {
			s += "\n  "
		}
		s += x
	}
	return s
}

func (w *world) newID() string { w.nextID++; return fmt.Sprintf("id%d", w.nextID) }

func (w *world) view() []Server {
	var v []Server
	for _, n := range sortedKeys(w.hosts) {
		h := w.hosts[n]
		s := Server{Name: n, ID: h.id, HasDatastore: h.datastore}
		if !h.alive {
			s.Gossip = Dead
			v = append(v, s)
			continue
		}
		s.WantsJoin, s.Clear, s.Remove = h.wants, h.clear, h.remove
		// A voter answers when its own etcd runs: alive with its datastore
		// and the ID that joined.
		s.Answers = slices.Contains(w.c.Voters, n) && h.datastore && w.c.IDs[n] == h.id
		if n == w.leader && w.c.Removal.Active() {
			switch w.exec {
			case 2:
				s.Progress = Progress{Node: w.c.Removal.Node, State: RemovalExecuting}
			case 3:
				s.Progress = Progress{Node: w.c.Removal.Node, State: RemovalDone}
			}
		}
		v = append(v, s)
	}
	return v
}

func sortedKeys(m map[string]*host) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

// answering counts the voters whose etcd truly answers.
func (w *world) answering(except string) int {
	n := 0
	for _, v := range w.c.Voters {
		h := w.hosts[v]
		if v != except && h != nil && h.alive && h.datastore && w.c.IDs[v] == h.id {
			n++
		}
	}
	return n
}

// eligible: alive servers that want to join and may (not voters, not
// removed with a stale datastore, not the slot holder).
func (w *world) eligible() []string {
	var e []string
	for _, n := range sortedKeys(w.hosts) {
		h := w.hosts[n]
		if h.alive && h.wants && !slices.Contains(w.c.Voters, n) && n != w.c.Joining &&
			!(slices.Contains(w.c.Removed, n) && h.datastore) {
			e = append(e, n)
		}
	}
	return e
}

func (w *world) pickLeader() {
	if h := w.hosts[w.leader]; h != nil && h.alive && slices.Contains(w.c.Voters, w.leader) {
		return
	}
	w.leader = ""
	for _, v := range w.c.Voters {
		if h := w.hosts[v]; h.alive && h.datastore {
			w.leader = v
			w.book = NewBook() // a new term counts deaths afresh
			return
		}
	}
}

func (w *world) event(growthOnly bool) {
	r := w.rng.IntN(100)
	if growthOnly && r >= 12 {
		r = 90
	}
	switch {
	case r < 12: // a new server arrives
		n := fmt.Sprintf("s%02d", len(w.hosts))
		w.hosts[n] = &host{alive: true, id: w.newID(), wants: true}
		w.log = append(w.log, "arrive "+n)
	case r < 22: // a server dies
		if alive := w.pick(func(h *host) bool { return h.alive }); alive != "" {
			h := w.hosts[alive]
			h.alive, h.deadAt = false, w.now
			w.log = append(w.log, "die "+alive)
		}
	case r < 27: // a dead server comes back as it was
		if dead := w.pick(func(h *host) bool { return !h.alive }); dead != "" {
			w.hosts[dead].alive = true
			w.log = append(w.log, "revive "+dead)
		}
	case r < 31: // a dead server's host is reinstalled: same name, fresh disk
		if dead := w.pick(func(h *host) bool { return !h.alive }); dead != "" {
			isVoter := slices.Contains(w.c.Voters, dead)
			w.hosts[dead] = &host{alive: true, id: w.newID(), wants: true, clear: isVoter}
			w.log = append(w.log, "reinstall "+dead)
		}
	case r < 35: // a removed host that came back wipes (rejoin --wipe)
		if n := w.pick(func(h *host) bool { return h.alive && h.datastore }); n != "" && slices.Contains(w.c.Removed, n) {
			h := w.hosts[n]
			h.datastore, h.wants, h.id = false, true, w.newID()
			w.log = append(w.log, "rejoin --wipe "+n)
		}
	case r < 40: // an operator asks to remove a voter
		if on := w.pick(func(h *host) bool { return h.alive }); on != "" && len(w.c.Voters) > 0 {
			w.hosts[on].remove = w.c.Voters[w.rng.IntN(len(w.c.Voters))]
			w.log = append(w.log, fmt.Sprintf("remove %s (on %s)", w.hosts[on].remove, on))
		}
	default: // time passes
		d := []time.Duration{time.Second, 10 * time.Second, time.Minute, 7 * time.Minute}[w.rng.IntN(4)]
		w.now = w.now.Add(d)
		w.log = append(w.log, "advance "+d.String())
	}
}

func (w *world) pick(f func(*host) bool) string {
	var c []string
	for _, n := range sortedKeys(w.hosts) {
		if f(w.hosts[n]) {
			c = append(c, n)
		}
	}
	if len(c) == 0 {
		return ""
	}
	return c[w.rng.IntN(len(c))]
}

// progress moves the slot holder's join and the executor's removal on.
func (w *world) progress() {
	if j := w.c.Joining; j != "" {
		h := w.hosts[j]
		switch {
		case h.alive && !w.now.Before(w.joinDone):
			h.datastore, h.wants, h.clear = true, false, false
			w.c = w.c.Joined(j, h.id)
			w.log = append(w.log, "joined "+j)
		case !w.now.Before(w.lease):
			w.c.Joining = ""
			w.log = append(w.log, "slot freed, lease of "+j+" ended")
		}
	}
	if w.c.Removal.Active() && w.exec > 0 && w.exec < 3 && w.now.After(w.execAt) {
		if h := w.hosts[w.leader]; h != nil && h.alive && w.leader == w.c.Removal.Executor {
			w.exec++
			w.execAt = w.now
		}
	}
}

func (w *world) step() {
	w.pickLeader()
	if w.leader == "" {
		return
	}
	eligible := w.eligible()
	d := Step(w.c, w.view(), w.cfg, w.now, w.book, w.leader)
	n := len(w.c.Voters)
	if len(w.c.Voters) > w.cfg.MaxServers && w.cfg.MaxServers > 0 {
		w.failf("%d voters, above max-servers %d", n, w.cfg.MaxServers)
	}
	idle := !w.c.Removal.Active() && w.c.Joining == ""
	if idle && n%2 == 0 && len(eligible) > 0 && n < w.cfg.MaxServers && d.Kind != Grant && d.Kind != Commit {
		w.failf("even voter set %v with %v waiting and nothing in flight, but the step decided %d", w.c.Voters, eligible, d.Kind)
	}
	if len(d.Refused) > 0 {
		w.stats["refused"]++
	}
	if len(d.Standby) > 0 {
		w.stats["standby"]++
	}
	if d.Kind == Commit {
		w.stats[fmt.Sprintf("commit operator=%v", d.Removal.Operator)]++
	}
	if d.Kind == Advance {
		w.stats[string(d.Removal.State)]++
	}
	if d.Kind == Grant {
		w.stats["grant"]++
	}
	for on := range d.Refused {
		w.hosts[on].remove = ""
	}
	switch d.Kind {
	case Grant:
		if !slices.Contains(eligible, d.Node) {
			w.failf("granted the slot to %s, not eligible (%v)", d.Node, eligible)
		}
		if n%2 == 1 && len(eligible) < 2 {
			w.failf("granted %s with %d voters and only %v eligible: an even count with no pair coming", d.Node, n, eligible)
		}
		if n+1 > w.cfg.MaxServers {
			w.failf("granted %s past max-servers %d", d.Node, w.cfg.MaxServers)
		}
		w.c.Joining = d.Node
		w.joinDone = w.now.Add(time.Duration(1+w.rng.IntN(30)) * time.Second)
		w.lease = w.now.Add(time.Minute)
		w.log = append(w.log, "grant "+d.Node)
	case Commit:
		target := d.Removal.Node
		if w.c.Removal.Active() {
			w.failf("committed the removal of %s while the removal of %s is %s", target, w.c.Removal.Node, w.c.Removal.State)
		}
		if a, q := w.answering(""), Quorum(n); a < q {
			w.failf("committed the removal of %s with %d of %d voters answering (quorum %d)", target, a, n, q)
		}
		if a, q := w.answering(target), Quorum(n-1); a < q {
			w.failf("committed the removal of %s: %d voters remain, %d answer, quorum %d: quorum lost", target, n-1, a, q)
		}
		h := w.hosts[target]
		if !d.Removal.Operator {
			oldDead := !h.alive || h.id != w.c.IDs[target]
			if !oldDead {
				w.failf("removed %s, a healthy member nobody asked to remove", target)
			}
			if h.id == w.c.IDs[target] && w.now.Sub(h.deadAt) < w.cfg.RemovalTimeout {
				w.failf("removed %s dead for %s, less than the timeout %s", target, w.now.Sub(h.deadAt), w.cfg.RemovalTimeout)
			}
		}
		var err error
		if w.c, err = w.c.Apply(d); err != nil {
			w.failf("apply commit: %v", err)
		}
		for _, hh := range w.hosts {
			if hh.remove == target {
				hh.remove = ""
			}
		}
		w.exec, w.execAt = 1, w.now
		w.log = append(w.log, "commit removal of "+target+": "+d.Removal.Reason)
	case Advance:
		var err error
		if w.c, err = w.c.Apply(d); err != nil {
			w.failf("apply advance: %v", err)
		}
		w.log = append(w.log, fmt.Sprintf("removal of %s %s", d.Removal.Node, d.Removal.State))
		if d.Removal.State == RemovalDone {
			w.exec = 0
			// The removed host, if alive, learns it and stops its etcd.
			if h := w.hosts[d.Removal.Node]; h != nil && h.id != "" {
				h.wants = true
			}
		} else if d.Removal.State == RemovalFailed {
			w.exec = 0
		}
	}
}

func runModel(t *testing.T, seed uint64, growthOnly bool, stats map[string]int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := &world{t: t, rng: rng, now: time.Unix(1_800_000_000, 0), hosts: map[string]*host{}, book: NewBook(), stats: stats,
		cfg: Config{MaxServers: []int{3, 5, 7}[rng.IntN(3)], RemovalTimeout: 10 * time.Minute, ExecuteTimeout: 5 * time.Minute}}
	// A formed cluster of 1 or 3.
	start := []int{1, 3}[rng.IntN(2)]
	for i := range start {
		n := fmt.Sprintf("s%02d", i)
		w.hosts[n] = &host{alive: true, id: w.newID(), datastore: true}
		w.c = w.c.Joined(n, w.hosts[n].id)
	}
	w.log = append(w.log, fmt.Sprintf("seed %d: %d voters, max-servers %d", seed, start, w.cfg.MaxServers))
	for range 300 {
		w.event(growthOnly)
		w.progress()
		w.step()
	}
	// Settle: time passes, nothing else happens.
	for range 200 {
		w.now = w.now.Add(10 * time.Second)
		w.progress()
		w.step()
	}
	if growthOnly && len(w.c.Voters)%2 == 0 {
		w.failf("growth settled at an even voter set %v", w.c.Voters)
	}
}

func TestModelMembership(t *testing.T) {
	runs := 600
	if testing.Short() {
		runs = 200
	}
	stats := map[string]int{}
	for seed := range uint64(runs) {
		runModel(t, seed, seed%4 == 0, stats)
	}
	t.Logf("decisions over %d schedules: %v", runs, stats)
	// The schedules must reach every kind of decision, or they prove little.
	for _, k := range []string{"grant", "standby", "refused", "commit operator=true", "commit operator=false", "executing", "done", "failed"} {
		if stats[k] == 0 {
			t.Errorf("no schedule reached %q", k)
		}
	}
}
