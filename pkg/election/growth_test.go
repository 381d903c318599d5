package election

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// The growth schedules run the membership duties over real raft: a cluster
// forms, then servers arrive later (standbys until they make a pair),
// servers die for good (removed after the dead timeout by the leader, the
// executor reports its progress as the node's would), servers restart,
// and voters' etcd stops answering for a while with their daemons alive.
// The true world is checked, over every committed command of the log and
// once the cluster settles:
//
//   - never two removals at once: a removal is committed only while no
//     other is committed or executing;
//   - never a removal that loses quorum: when it was committed, the etcd
//     voters that answered (alive, etcd healthy) were a quorum before and
//     after it, and the removed server had been down for the whole dead
//     timeout;
//   - never an even voter set after settling from growth: once nothing
//     changes any more, the count is odd unless the last change was a
//     removal with no server waiting; never above max-servers.
//
// It also requires liveness: every server dead for good is removed, and
// no alive server waits when a pair could join.

// growthWorld is the truth the checks read, beside simWorld's.
type growthWorld struct {
	w   *simWorld
	cfg membership.Config

	// Guarded by w.mu.
	unhealthy map[string][]healthEvent // a voter's etcd stops answering
	gone      map[string]bool          // dead for good: never started again
	etcdOut   map[string]bool          // its etcd member was removed by an executor
	progress  map[string]membership.Progress
	execStart map[string]time.Time // executor → when it reported executing
	execOf    map[string]time.Time // executor → the removal (its Since) it works on
}

type healthEvent struct {
	at        time.Time
	unhealthy bool
}

// growthTolerance is how far the leader's reading of the etcd views may be
// from the time it stamps on its decision: a fault that starts or ends this
// close to a commit may or may not have been seen.
const growthTolerance = 200 * time.Millisecond

func newGrowthWorld(t testing.TB, seed uint64, expect int, names []string, cfg membership.Config) *growthWorld {
	g := &growthWorld{
		w: newSimWorld(t, seed, expect, names), cfg: cfg,
		unhealthy: map[string][]healthEvent{}, gone: map[string]bool{}, etcdOut: map[string]bool{},
		progress: map[string]membership.Progress{}, execStart: map[string]time.Time{}, execOf: map[string]time.Time{},
	}
	g.w.duties = func(string) *MembershipDuties {
		return &MembershipDuties{Config: cfg, Extra: g.extra}
	}
	return g
}

// extra is what gossip carries of a server's membership fields: its etcd
// answers while it is up, a member, and not made unhealthy.
func (g *growthWorld) extra(name string) (MembershipExtra, bool) {
	w := g.w
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nodes[name]
	if n == nil {
		return MembershipExtra{}, false
	}
	healthy := n.up && n.ready && !g.etcdOut[name] && !g.sick(name, time.Now())
	return MembershipExtra{EtcdHealthy: healthy, HasDatastore: n.ready, Progress: g.progress[name]}, true
}

// sick: name's etcd was made unhealthy at t; callers hold w.mu.
func (g *growthWorld) sick(name string, t time.Time) bool {
	ev := g.unhealthy[name]
	i, _ := slices.BinarySearchFunc(ev, t, func(e healthEvent, t time.Time) int { return e.at.Compare(t) })
	// i is the first event at or after t; the state at t is the last event
	// at or before it.
	if i < len(ev) && ev[i].at.Equal(t) {
		return ev[i].unhealthy
	}
	return i > 0 && ev[i-1].unhealthy
}

// upAt: name's daemon (and its RKE2) ran at t; callers hold w.mu.
func (g *growthWorld) upAt(name string, t time.Time) bool {
	n := g.w.nodes[name]
	if n == nil {
		return false
	}
	up := false
	for _, h := range n.hist {
		if h.at.After(t) {
			break
		}
		up = h.up
	}
	return up
}

// answeredNear: name's etcd answered at some moment within the tolerance
// of at, so a leader deciding at at may have counted it (the decision's
// time is taken a moment before it reads the etcd views); callers hold w.mu.
func (g *growthWorld) answeredNear(name string, at time.Time) bool {
	from, to := at.Add(-growthTolerance), at.Add(growthTolerance)
	moments := []time.Time{from}
	for _, h := range g.w.nodes[name].hist {
		if h.at.After(from) && !h.at.After(to) {
			moments = append(moments, h.at)
		}
	}
	for _, e := range g.unhealthy[name] {
		if e.at.After(from) && !e.at.After(to) {
			moments = append(moments, e.at)
		}
	}
	for _, m := range moments {
		if g.upAt(name, m) && !g.sick(name, m) {
			return true
		}
	}
	return false
}

// downThroughout: name was down during all of [from, to]; callers hold w.mu.
func (g *growthWorld) downThroughout(name string, from, to time.Time) bool {
	if g.upAt(name, from) {
		return false
	}
	for _, h := range g.w.nodes[name].hist {
		if h.at.After(from) && !h.at.After(to) && h.up {
			return false
		}
	}
	return true
}

func (g *growthWorld) setSick(name string, sick bool) {
	w := g.w
	w.mu.Lock()
	defer w.mu.Unlock()
	g.unhealthy[name] = append(g.unhealthy[name], healthEvent{at: time.Now(), unhealthy: sick})
	w.tracef("%s etcd unhealthy=%v", name, sick)
	w.notify()
}

// execute plays every executor: the server an active removal names
// reports executing, takes the member out of etcd a little later, and
// reports done, as the node's executor does through the Kubernetes API.
func (g *growthWorld) execute(stop <-chan struct{}) {
	w := g.w
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		names := slices.Clone(w.names)
		w.mu.Unlock()
		for _, name := range names {
			w.mu.Lock()
			n := w.nodes[name]
			up, el := n.up, n.el
			w.mu.Unlock()
			if !up || el == nil {
				continue
			}
			r := el.fsm.get().Removal
			if !r.Active() || r.Executor != name {
				continue
			}
			w.mu.Lock()
			switch p := g.progress[name]; {
			case !g.execOf[name].Equal(r.Since) || p.Node != r.Node:
				g.execOf[name], g.execStart[name] = r.Since, time.Now()
				g.progress[name] = membership.Progress{Node: r.Node, State: membership.RemovalExecuting}
				w.tracef("%s executes the removal of %s", name, r.Node)
			case p.State == membership.RemovalExecuting && time.Since(g.execStart[name]) > 20*time.Millisecond:
				g.etcdOut[r.Node] = true
				g.progress[name] = membership.Progress{Node: r.Node, State: membership.RemovalDone}
				w.tracef("%s removed %s from etcd", name, r.Node)
			}
			w.notify()
			w.mu.Unlock()
		}
	}
}

// raftVoters is the raft configuration as name's raft has it.
func (g *growthWorld) raftVoters(name string) []string {
	w := g.w
	w.mu.Lock()
	n := w.nodes[name]
	up, el := n.up, n.el
	w.mu.Unlock()
	if !up || el == nil {
		return nil
	}
	el.mu.Lock()
	r := el.r
	el.mu.Unlock()
	if r == nil {
		return nil
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		out = append(out, string(s.ID))
	}
	return out
}

// leaderState is the FSM and raft configuration of the server that leads.
func (g *growthWorld) leaderState() (string, ClusterState, []string, bool) {
	w := g.w
	w.mu.Lock()
	names := slices.Clone(w.names)
	w.mu.Unlock()
	for _, name := range names {
		if v, ok := w.viewOf(name); ok && v.RaftState == "leader" {
			w.mu.Lock()
			el := w.nodes[name].el
			w.mu.Unlock()
			return name, el.fsm.get(), g.raftVoters(name), true
		}
	}
	return "", ClusterState{}, nil, false
}

// mayKill: name may die (duringRemoval: also while a removal is active) (for a while or for good) without taking the
// majority of raft or of the answering etcd voters with it, so that the
// cluster can still act; a schedule that lost quorum proves nothing more.
func (g *growthWorld) mayKill(name string, duringRemoval bool) bool {
	_, st, raftVoters, ok := g.leaderState()
	if !ok || st.Removal.Active() && !duringRemoval {
		return false
	}
	w := g.w
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	count := func(voters []string, etcd bool) (alive int) {
		for _, v := range voters {
			n := w.nodes[v]
			if v == name || n == nil || !n.up || (etcd && (g.sick(v, now) || !n.ready)) {
				continue
			}
			alive++
		}
		return alive
	}
	ev := st.EtcdVoters()
	return count(raftVoters, false) > len(raftVoters)/2 && count(ev, true) > len(ev)/2 &&
		count(raftVoters, false) >= 2 // the last one standing could never be replaced
}

// replay reads the leader's log from its first entry and checks the
// invariants at every committed command; it returns the final state and
// whether the last change of the voter set was a removal.
func (g *growthWorld) replay(leader string) (ClusterState, bool, []string) {
	w := g.w
	w.mu.Lock()
	store := w.nodes[leader].stores.Log
	w.mu.Unlock()
	first, _ := store.FirstIndex()
	last, _ := store.LastIndex()
	var bad []string
	if first > 1 {
		return ClusterState{}, false, []string{fmt.Sprintf("the leader's log starts at %d: compacted, cannot replay", first)}
	}
	var st ClusterState
	lastWasRemoval := false
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			bad = append(bad, fmt.Sprintf("log %d: %v", i, err))
			continue
		}
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := DecodeCommand(l.Data)
		if err != nil {
			bad = append(bad, fmt.Sprintf("log %d: %v", i, err))
			continue
		}
		next, err := st.apply(c)
		if err != nil {
			continue // refused, as every FSM refused it
		}
		growthOps.add(c.Op)
		at := time.Unix(0, c.At)
		voters := st.EtcdVoters()
		switch c.Op {
		case opRemoveCommitted:
			if st.Removal.Active() {
				bad = append(bad, fmt.Sprintf("log %d: removal of %s committed while the removal of %s is %s: two removals at once", i, c.Node, st.Removal.Node, st.Removal.State))
			}
			w.mu.Lock()
			answer, after := 0, 0
			for _, v := range voters {
				if g.answeredNear(v, at) {
					answer++
					if v != c.Node {
						after++
					}
				}
			}
			down := g.downThroughout(c.Node, at.Add(-g.cfg.RemovalTimeout), at)
			w.mu.Unlock()
			if answer < membership.Quorum(len(voters)) || after < membership.Quorum(len(voters)-1) {
				bad = append(bad, fmt.Sprintf("log %d: removal of %s loses quorum: %d voters %v, %d answered, %d of the %d that remain", i, c.Node, len(voters), voters, answer, after, len(voters)-1))
			}
			if !down {
				bad = append(bad, fmt.Sprintf("log %d: removal of %s, which was not down for the whole %s", i, c.Node, g.cfg.RemovalTimeout))
			}
		}
		if nv := next.EtcdVoters(); !slices.Equal(nv, voters) {
			lastWasRemoval = len(nv) < len(voters)
			if len(nv) > g.cfg.MaxServers {
				bad = append(bad, fmt.Sprintf("log %d: %d etcd voters %v, above max-servers %d", i, len(nv), nv, g.cfg.MaxServers))
			}
		}
		st = next
	}
	return st, lastWasRemoval, bad
}

// waitRemoval waits a little for a removal to be active.
func (g *growthWorld) waitRemoval() bool {
	return g.w.waitFor(time.Second, func() bool {
		_, st, _, ok := g.leaderState()
		return ok && st.Removal.Active()
	})
}

// sicken makes one alive etcd voter other than except stop answering for
// a while (its daemon runs on), then heals it.
func (g *growthWorld) sicken(rng *rand.Rand, alive []string, except string) {
	_, st, _, ok := g.leaderState()
	if !ok {
		return
	}
	var up []string
	for _, v := range st.EtcdVoters() {
		if v != except && slices.Contains(alive, v) {
			up = append(up, v)
		}
	}
	if len(up) == 0 {
		return
	}
	v := up[rng.IntN(len(up))]
	g.setSick(v, true)
	time.Sleep(time.Duration(800+rng.IntN(600)) * time.Millisecond)
	g.setSick(v, false)
}

// runGrowthSchedule plays one seeded growth schedule.
func runGrowthSchedule(t testing.TB, seed uint64) (problems []string, trace []string) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	expect := []int{1, 3, 3}[rng.IntN(3)]
	var names []string
	for i := range expect {
		names = append(names, fmt.Sprintf("s%d", i+1))
	}
	cfg := membership.Config{MaxServers: []int{3, 5, 5, 7}[rng.IntN(4)], RemovalTimeout: 500 * time.Millisecond, ExecuteTimeout: time.Second}
	g := newGrowthWorld(t, seed, expect, names, cfg)
	w := g.w
	stop := make(chan struct{})
	var execDone sync.WaitGroup
	execDone.Add(1)
	go func() { defer execDone.Done(); g.execute(stop) }()
	defer func() {
		close(stop)
		execDone.Wait()
		w.stopAll()
	}()
	w.logf("growth schedule seed=%d expect=%d max-servers=%d", seed, expect, cfg.MaxServers)
	for _, n := range names {
		w.start(n)
	}
	snapshot := func() []string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return slices.Clone(w.trace)
	}
	if !w.waitFor(2*time.Minute, w.complete) {
		return []string{"the first servers never formed"}, snapshot()
	}
	// Growth: arrivals, deaths for good, restarts, etcd faults.
	added := 0
	for range 8 + rng.IntN(12) {
		time.Sleep(time.Duration(50+rng.IntN(300)) * time.Millisecond)
		w.mu.Lock()
		all := slices.Clone(w.names)
		var alive []string
		for _, n := range all {
			if w.nodes[n].up {
				alive = append(alive, n)
			}
		}
		w.mu.Unlock()
		switch r := rng.IntN(100); {
		case r < 35 && len(all) < 12:
			added++
			name := fmt.Sprintf("t%02d", added)
			w.add(name)
			w.start(name)
		case r < 45 && g.waitRemoval():
			// The executor of a removal dies for good mid-way: the removal
			// fails by its deadline and the next leader decides again.
			_, st, _, _ := g.leaderState()
			if victim := st.Removal.Executor; st.Removal.Active() && slices.Contains(alive, victim) && g.mayKill(victim, true) {
				w.mu.Lock()
				g.gone[victim] = true
				w.mu.Unlock()
				w.logf("%s, executing the removal of %s, dies for good", victim, st.Removal.Node)
				w.kill(victim)
			}
		case r < 60:
			victim := alive[rng.IntN(len(alive))]
			if g.mayKill(victim, false) {
				w.mu.Lock()
				g.gone[victim] = true
				w.mu.Unlock()
				w.logf("%s dies for good", victim)
				w.kill(victim)
				if rng.IntN(2) == 0 {
					// Another voter's etcd fails while the dead one's
					// timeout runs: removing it now would lose quorum.
					time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
					g.sicken(rng, alive, victim)
				}
			}
		case r < 75:
			victim := alive[rng.IntN(len(alive))]
			if g.mayKill(victim, false) {
				w.kill(victim)
				time.Sleep(time.Duration(50+rng.IntN(150)) * time.Millisecond)
				w.start(victim)
				// Up long enough for the leader to see it back: a leader
				// that missed the return would count its death from the
				// first one, which the dead-timeout check would blame.
				time.Sleep(500 * time.Millisecond)
			}
		default:
			g.sicken(rng, alive, "")
		}
	}
	// Settle: nothing changes for a while, no slot, no removal in flight,
	// every server dead for good removed, no pair left waiting.
	var (
		leader   string
		st       ClusterState
		stableAt time.Time
		lastSeen string
	)
	settled := w.waitFor(3*time.Minute, func() bool {
		var ok bool
		leader, st, _, ok = g.leaderState()
		if !ok || st.Slot != nil || st.Removal.Active() {
			stableAt = time.Time{}
			return false
		}
		key := fmt.Sprint(st.EtcdVoters(), st.Removed)
		if key != lastSeen || stableAt.IsZero() {
			lastSeen, stableAt = key, time.Now()
			return false
		}
		return time.Since(stableAt) > 2*time.Second
	})
	w.mu.Lock()
	var waiting, deadVoters []string
	for _, n := range w.names {
		if w.nodes[n].up && !slices.Contains(st.EtcdVoters(), n) {
			waiting = append(waiting, n)
		}
	}
	for _, v := range st.EtcdVoters() {
		if g.gone[v] {
			deadVoters = append(deadVoters, v)
		}
	}
	w.mu.Unlock()
	if !settled {
		problems = append(problems, fmt.Sprintf("never settled: leader %q, state %+v", leader, st))
	} else {
		final, lastWasRemoval, bad := g.replay(leader)
		problems = append(problems, bad...)
		voters := final.EtcdVoters()
		switch {
		case len(deadVoters) > 0:
			problems = append(problems, fmt.Sprintf("settled with servers dead for good still etcd voters: %v of %v", deadVoters, voters))
		case len(voters)%2 == 0 && len(waiting) > 0 && len(voters) < cfg.MaxServers:
			problems = append(problems, fmt.Sprintf("settled at an even count %v while %v wait", voters, waiting))
		case len(voters)%2 == 0 && !lastWasRemoval:
			problems = append(problems, fmt.Sprintf("settled at an even count %v after growth", voters))
		case len(waiting) > 1 && len(voters)+2 <= cfg.MaxServers:
			problems = append(problems, fmt.Sprintf("settled at %v while a pair %v waits", voters, waiting))
		}
		// A server that died for good while in standby (a raft voter,
		// never an etcd voter) is dropped from raft's configuration after
		// the removal timeout (deadStandbyChanges): raft must not keep
		// counting it towards its quorum for ever.
		var raftGone []string
		dropped := w.waitFor(time.Minute, func() bool {
			raftGone = raftGone[:0]
			l, st, _, ok := g.leaderState()
			if !ok {
				return false
			}
			for _, v := range g.raftVoters(l) {
				w.mu.Lock()
				if g.gone[v] && !slices.Contains(st.EtcdVoters(), v) {
					raftGone = append(raftGone, v)
				}
				w.mu.Unlock()
			}
			return len(raftGone) == 0
		})
		if !dropped {
			problems = append(problems, fmt.Sprintf("settled with standbys dead for good still raft voters: %v", raftGone))
		}
		w.logf("settled: voters %v, waiting %v, removed %v, raft voters dead for good %v", voters, waiting, final.Removed, raftGone)
	}
	problems = append(problems, w.check()...)
	return problems, snapshot()
}

// growthOps counts the commands the growth schedules committed, so the
// test can say that they removed, failed a removal and admitted standbys.
var growthOps = &opCounter{n: map[string]int{}}

type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *opCounter) add(op string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[op]++
}

func (o *opCounter) get() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.n)
}

func growthScheduleCount() int {
	n := scheduleCount() / 25
	if testing.Short() {
		n = 4
	}
	return max(n, 1)
}

// TestGrowthSchedules runs the growth schedules, a few at a time.
func TestGrowthSchedules(t *testing.T) {
	seeds := make([]uint64, 0, growthScheduleCount())
	if *flagSeed != 0 {
		seeds = append(seeds, *flagSeed)
	} else {
		base := uint64(time.Now().UnixNano())
		for i := range cap(seeds) {
			seeds = append(seeds, base+uint64(i)*7907)
		}
	}
	var (
		mu     sync.Mutex
		failed int
		wg     sync.WaitGroup
		next   = make(chan uint64)
	)
	start := time.Now()
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range next {
				problems, trace := runGrowthSchedule(t, seed)
				if len(problems) > 0 {
					mu.Lock()
					failed++
					t.Errorf("growth schedule seed=%d failed (replay: go test -run TestGrowthSchedules -seed=%d ./pkg/election/):\n  %s\n  trace:\n    %s",
						seed, seed, strings.Join(problems, "\n  "), strings.Join(trace, "\n    "))
					mu.Unlock()
				}
			}
		}()
	}
	for _, s := range seeds {
		next <- s
	}
	close(next)
	wg.Wait()
	ops := growthOps.get()
	t.Logf("%d growth schedules, %d failed, %v; commands committed: %v", len(seeds), failed, time.Since(start).Round(time.Millisecond), ops)
	if len(seeds) >= 10 && !t.Failed() {
		for _, op := range []string{opGrant, opJoined, opRemoveCommitted, opRemoveExecuting, opRemoveDone} {
			if ops[op] == 0 {
				t.Errorf("no growth schedule committed %s: the schedules no longer exercise it", op)
			}
		}
	}
}
