package election

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The schedules are the proof of the package's two promises: at most one
// node ever starts RKE2 as the bootstrap node (and only reassignment before
// that start can tell a second node it is the bootstrap node), and no two
// servers ever hold the join slot at once. They also prove liveness: once
// faults heal, a bootstrap node is chosen and every server joins.
var (
	flagSchedules = flag.Int("schedules", 0, "randomized election schedules to run (default 500, or $ELECTION_SCHEDULES)")
	flagSoak      = flag.Bool("soak", false, "run 5000 schedules instead of 500")
	flagSeed      = flag.Uint64("seed", 0, "run only the schedule with this seed")
)

func simTiming() Timing {
	return Timing{
		HeartbeatTimeout:   50 * time.Millisecond,
		ElectionTimeout:    50 * time.Millisecond,
		LeaderLeaseTimeout: 40 * time.Millisecond,
		// Settled: heartbeats every 8–16 ms instead of 5–10 ms.
		SettledHeartbeatTimeout: 80 * time.Millisecond,
		SettledTick:             50 * time.Millisecond,
		CommitTimeout:           5 * time.Millisecond,
		Tick:                    10 * time.Millisecond,
		FormationSettle:         60 * time.Millisecond,
		ApplyTimeout:            500 * time.Millisecond,
		BootstrapReassignAfter:  300 * time.Millisecond,
		SlotLease:               2 * time.Second,
		SlotMaxHold:             20 * time.Second,
		SlotGrace:               50 * time.Millisecond,
	}
}

// simNode is one server across its incarnations. stores and the "RKE2"
// facts (ready, caHash) survive restarts, like a disk does.
type simNode struct {
	name   string
	stores *Stores
	trans  *raft.InmemTransport
	el     *Election
	cancel context.CancelFunc
	done   sync.WaitGroup
	up     bool
	inc    int
	meta   Local
	ready  bool
	caHash string
	hist   []simGossip // what gossip carried about this node, over time
}

// simGossip is one version of a node's gossip state.
type simGossip struct {
	at   time.Time
	up   bool
	meta Local
}

type slotInterval struct {
	node       string
	inc        int
	start, end time.Time
}

type simWorld struct {
	t      testing.TB
	seed   uint64
	expect int
	timing Timing
	// tls: raft over the mutual-TLS TCP transport on 127.0.0.1 with
	// raft-boltdb in a temporary DataDir (no raft partitions then).
	tls   bool
	ports map[string]int
	dirs  map[string]string
	// gossipDelay: each viewer sees each other node's state this late, a
	// fixed random fraction of it per (viewer, node) pair.
	gossipDelay time.Duration
	// installTime: how long a bootstrap node takes before it asks to start
	// RKE2 (the window in which it can die and lose the role).
	installTime time.Duration
	// duties, when set, gives each server the leader's membership duties
	// (growth_test.go).
	duties func(name string) *MembershipDuties

	mu        sync.Mutex
	nodes     map[string]*simNode
	names     []string
	group     map[string]int
	listeners map[chan struct{}]struct{}
	trace     []string
	t0        time.Time

	told      map[string]bool
	started   map[string]bool
	intervals []*slotInterval
}

func newSimWorld(t testing.TB, seed uint64, expect int, names []string) *simWorld {
	w := &simWorld{
		t: t, seed: seed, expect: expect, timing: simTiming(),
		nodes: map[string]*simNode{}, names: names, group: map[string]int{},
		listeners: map[chan struct{}]struct{}{}, t0: time.Now(),
		told: map[string]bool{}, started: map[string]bool{},
	}
	for _, n := range names {
		w.nodes[n] = &simNode{name: n, stores: &Stores{Log: raft.NewInmemStore(), Stable: raft.NewInmemStore(), Snapshots: raft.NewInmemSnapshotStore()}}
	}
	return w
}

// add makes a server that was not there at first boot (not started yet).
func (w *simWorld) add(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nodes[name] = &simNode{name: name, stores: &Stores{Log: raft.NewInmemStore(), Stable: raft.NewInmemStore(), Snapshots: raft.NewInmemSnapshotStore()}}
	w.names = append(slices.Clone(w.names), name)
}

func (w *simWorld) logf(format string, a ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tracef(format, a...)
}

func (w *simWorld) tracef(format string, a ...any) {
	w.trace = append(w.trace, fmt.Sprintf("%6dms ", time.Since(w.t0).Milliseconds())+fmt.Sprintf(format, a...))
}

// record appends n's current state to its gossip history; callers hold w.mu.
func (w *simWorld) record(n *simNode) {
	n.hist = append(n.hist, simGossip{at: time.Now(), up: n.up, meta: n.meta})
}

// delay is how late viewer sees node.
func (w *simWorld) delay(viewer, node string) time.Duration {
	if viewer == node || w.gossipDelay == 0 {
		return 0
	}
	h := w.seed
	for _, c := range viewer + "/" + node {
		h = h*1099511628211 + uint64(c)
	}
	return time.Duration(h % uint64(w.gossipDelay))
}

// notify wakes every membership view; callers hold w.mu.
func (w *simWorld) notify() {
	for ch := range w.listeners {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// simView is one node's gossip: peers are alive when up and on its side of
// any partition, dead otherwise (once they have ever published).
type simView struct {
	w    *simWorld
	self string
	ch   chan struct{}
}

func (v *simView) Changes() <-chan struct{} { return v.ch }

func (v *simView) Servers() []Peer {
	w := v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Peer
	now := time.Now()
	for _, name := range w.names {
		n := w.nodes[name]
		cut := now.Add(-w.delay(v.self, name))
		i := sort.Search(len(n.hist), func(i int) bool { return n.hist[i].at.After(cut) })
		if i == 0 {
			continue // gossip has not seen it yet
		}
		g := n.hist[i-1]
		addr := name
		if w.tls {
			addr = "127.0.0.1:" + strconv.Itoa(w.ports[name])
		}
		state := MemberDead
		if g.up && w.nodes[v.self].up && w.group[name] == w.group[v.self] {
			state = MemberAlive
		}
		out = append(out, Peer{
			Name: name, RaftAddr: addr, State: state, ExpectServers: w.expect, ClusterName: "sim",
			HasRaftState: g.meta.HasRaftState, BootstrapSet: g.meta.BootstrapSet,
			WantJoinSlot: g.meta.WantJoinSlot, StartedRKE2: g.meta.StartedRKE2,
			Ready: g.meta.Ready, CAHash: g.meta.CAHash,
		})
	}
	return out
}

// fetchCA is /cacerts at a node's own address: the CA its RKE2 serves,
// reachable while the node is up.
func (w *simWorld) fetchCA(ctx context.Context, p Peer) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nodes[p.Name]
	if n == nil || !n.up || n.caHash == "" {
		return "", fmt.Errorf("sim: %s serves no CA", p.Name)
	}
	return n.caHash, nil
}

type simPublisher struct {
	w    *simWorld
	name string
	inc  int
}

func (p *simPublisher) Publish(l Local) error {
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nodes[p.name]
	if n.inc != p.inc || !n.up {
		return errors.New("stale incarnation")
	}
	n.meta = l
	w.record(n)
	w.notify()
	return nil
}

// connect wires raft transports to match who is up and the partition.
// Callers hold w.mu.
func (w *simWorld) connect() {
	if w.tls {
		return
	}
	for _, a := range w.names {
		na := w.nodes[a]
		if !na.up {
			continue
		}
		for _, b := range w.names {
			nb := w.nodes[b]
			if a == b {
				continue
			}
			if nb.up && w.group[a] == w.group[b] {
				na.trans.Connect(raft.ServerAddress(b), nb.trans)
			} else {
				na.trans.Disconnect(raft.ServerAddress(b))
			}
		}
	}
}

func (w *simWorld) start(name string) {
	w.mu.Lock()
	n := w.nodes[name]
	if n.up {
		w.mu.Unlock()
		return
	}
	n.inc++
	inc := n.inc
	view := &simView{w: w, self: name, ch: make(chan struct{}, 1)}
	w.listeners[view.ch] = struct{}{}
	cfg := Config{
		NodeName: name, ClusterName: "sim", ExpectServers: w.expect, VIP: "192.0.2.10",
		Membership: view, Publisher: &simPublisher{w: w, name: name, inc: inc},
		Timing: w.timing, FetchCA: w.fetchCA,
	}
	if w.duties != nil {
		cfg.Duties = w.duties(name)
	}
	var trans *raft.InmemTransport
	if w.tls {
		cfg.Token, cfg.DataDir = "sim-token", w.dirs[name]
		cfg.BindAddr, cfg.AdvertiseAddr, cfg.RaftPort = "127.0.0.1", "127.0.0.1", w.ports[name]
	} else {
		_, trans = raft.NewInmemTransport(raft.ServerAddress(name))
		cfg.Transport, cfg.Stores = trans, n.stores
	}
	el, err := Open(cfg)
	if err != nil {
		w.mu.Unlock()
		w.t.Fatalf("seed=%d: Open(%s): %v", w.seed, name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.trans, n.el, n.cancel, n.up = trans, el, cancel, true
	n.meta = Local{}
	w.tracef("start %s (incarnation %d)", name, inc)
	w.record(n)
	w.connect()
	w.notify()
	w.mu.Unlock()

	n.done.Add(2)
	go func() {
		defer n.done.Done()
		if err := el.Run(ctx); err != nil {
			w.logf("%s: Run: %v", name, err)
		}
		if err := el.Close(); err != nil {
			w.logf("%s: Close: %v", name, err)
		}
	}()
	go func() {
		defer n.done.Done()
		w.agent(ctx, n, el, inc)
	}()
	go func() { // the view lives as long as the incarnation
		<-ctx.Done()
		w.mu.Lock()
		delete(w.listeners, view.ch)
		w.mu.Unlock()
	}()
}

func (w *simWorld) kill(name string) {
	w.mu.Lock()
	n := w.nodes[name]
	if !n.up {
		w.mu.Unlock()
		return
	}
	w.tracef("kill %s", name)
	cancel := n.cancel
	w.mu.Unlock()
	cancel()
	n.done.Wait()
	w.mu.Lock()
	n.up = false
	w.record(n)
	if n.trans != nil {
		_ = n.trans.Close()
	}
	w.connect()
	w.notify()
	w.mu.Unlock()
}

func (w *simWorld) partition(minority []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tls && len(minority) > 0 {
		return // the TCP transport cannot be cut here
	}
	clear(w.group)
	for _, m := range minority {
		w.group[m] = 1
	}
	w.tracef("partition %v away", minority)
	w.connect()
	w.notify()
}

func (w *simWorld) heal() {
	w.partition(nil)
}

// agent plays the node phase machine of one incarnation.
func (w *simWorld) agent(ctx context.Context, n *simNode, el *Election, inc int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(inc)<<32|uint64(len(n.name))))
	pause := func(max time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(rng.Int64N(int64(max)))):
			return true
		}
	}
	w.mu.Lock()
	ready, ca := n.ready, n.caHash
	w.mu.Unlock()
	if ready {
		// RKE2 kept running across the restart: the node reports it at once.
		el.ReportReady(ca)
	}
	for ctx.Err() == nil {
		boot, err := el.WaitBootstrap(ctx)
		if err != nil {
			return
		}
		if boot == n.name || el.IsBootstrap() {
			w.mu.Lock()
			w.told[n.name] = true
			w.tracef("%s told it is the bootstrap node", n.name)
			w.mu.Unlock()
			if w.installTime > 0 && !pause(w.installTime) {
				return
			}
			err := el.MarkStarted(ctx)
			if errors.Is(err, ErrNotBootstrap) {
				continue
			}
			if err != nil {
				return
			}
			w.mu.Lock()
			w.started[n.name] = true
			w.tracef("%s started RKE2 as the bootstrap node", n.name)
			w.mu.Unlock()
			if !pause(30 * time.Millisecond) {
				return
			}
			w.setReady(n, el)
			return
		}
		if _, err := el.WaitClusterReady(ctx); errors.Is(err, ErrBootstrapRole) {
			continue
		} else if err != nil {
			return
		}
		w.mu.Lock()
		ready := n.ready
		w.mu.Unlock()
		if ready {
			// RKE2 already runs here (joined before a restart): the node
			// adopts it and needs no slot.
			_ = el.MarkJoined(ctx)
			return
		}
		if _, err := el.AcquireJoinSlot(ctx); err != nil {
			return
		}
		iv := &slotInterval{node: n.name, inc: inc, start: time.Now()}
		w.mu.Lock()
		w.intervals = append(w.intervals, iv)
		w.tracef("%s holds the join slot", n.name)
		w.mu.Unlock()
		ok := pause(20 * time.Millisecond)
		// The join is over when the node reports ready: the interval ends
		// before the report, which lets the leader hand the slot on (with
		// commits reaching followers at once, the next holder can start
		// within a millisecond of it).
		w.mu.Lock()
		iv.end = time.Now()
		w.mu.Unlock()
		if ok {
			w.setReady(n, el)
			_ = el.MarkJoined(ctx)
		}
		return
	}
}

func (w *simWorld) setReady(n *simNode, el *Election) {
	w.mu.Lock()
	n.ready = true
	n.caHash = "sha256:cafe"
	w.record(n)
	w.tracef("%s ready", n.name)
	w.mu.Unlock()
	el.ReportReady(n.caHash)
}

// viewOf reads one node's view (nil if down).
func (w *simWorld) viewOf(name string) (View, bool) {
	w.mu.Lock()
	n := w.nodes[name]
	up, el := n.up, n.el
	w.mu.Unlock()
	if !up {
		return View{}, false
	}
	return el.State(), true
}

// waitFor polls cond until it holds or d passes.
func (w *simWorld) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// anyState returns the first up node's state satisfying pred.
func (w *simWorld) anyState(pred func(View) bool) (View, bool) {
	for _, name := range w.names {
		if s, ok := w.viewOf(name); ok && pred(s) {
			return s, true
		}
	}
	return View{}, false
}

func (w *simWorld) leader() string {
	s, ok := w.anyState(func(s View) bool { return s.RaftState == "leader" })
	if !ok {
		return ""
	}
	return s.Leader
}

// complete: every node's FSM shows the whole cluster formed and joined.
func (w *simWorld) complete() bool {
	for _, name := range w.names {
		s, ok := w.viewOf(name)
		if !ok || !s.Started || s.ClusterReady == nil {
			return false
		}
		for _, m := range w.names {
			if m != s.Bootstrap && !slices.Contains(s.Joined, m) {
				return false
			}
		}
	}
	return true
}

// relaxed: every node's raft runs at the settled heartbeat timeout.
func (w *simWorld) relaxed() bool {
	for _, name := range w.names {
		w.mu.Lock()
		n := w.nodes[name]
		up, el := n.up, n.el
		w.mu.Unlock()
		if !up {
			return false
		}
		el.mu.Lock()
		r := el.r
		el.mu.Unlock()
		if r == nil || r.ReloadableConfig().HeartbeatTimeout != w.timing.SettledHeartbeatTimeout {
			return false
		}
	}
	return true
}

func (w *simWorld) stopAll() {
	for _, name := range w.names {
		w.kill(name)
	}
}

// check asserts the safety properties over the whole recorded history.
func (w *simWorld) check() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var bad []string
	if len(w.started) > 1 {
		bad = append(bad, fmt.Sprintf("%d nodes started RKE2 as the bootstrap node: %v", len(w.started), keysOf(w.started)))
	}
	reassigned := 0
	for _, name := range w.names {
		if n := w.nodes[name]; n.el != nil {
			s := n.el.fsm.get()
			reassigned = max(reassigned, s.Reassigned)
			for st := range w.started {
				if s.Bootstrap != "" && s.Bootstrap != st {
					bad = append(bad, fmt.Sprintf("%s started but %s's FSM names %s", st, name, s.Bootstrap))
				}
			}
		}
	}
	if reassigned > 0 {
		simReassigned.Add(1)
	}
	if len(w.told) > 1+reassigned {
		bad = append(bad, fmt.Sprintf("%d nodes told they are the bootstrap node with %d reassignments: %v", len(w.told), reassigned, keysOf(w.told)))
	}
	ivs := slices.Clone(w.intervals)
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].start.Before(ivs[j].start) })
	for i, a := range ivs {
		for _, b := range ivs[i+1:] {
			aEnd := a.end
			if aEnd.IsZero() {
				aEnd = time.Now()
			}
			if a.node != b.node && b.start.Before(aEnd) {
				bad = append(bad, fmt.Sprintf("join slot held by %s and %s at once", a.node, b.node))
			}
		}
	}
	return bad
}

// simReassigned counts schedules in which the bootstrap role moved.
var simReassigned atomic.Int64

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// runSchedule plays one seeded schedule and returns what went wrong.
func runSchedule(t testing.TB, seed uint64, tls bool) (problems []string, trace []string) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	expect := []int{1, 3, 3, 3, 5}[rng.IntN(5)]
	n := expect + rng.IntN(expect) // fewer than 2*expect: see doc.go
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d", rng.IntN(100)) + strconv.Itoa(i)
	}
	w := newSimWorld(t, seed, expect, names)
	w.gossipDelay = []time.Duration{0, 10 * time.Millisecond, 40 * time.Millisecond}[rng.IntN(3)]
	w.installTime = []time.Duration{0, 200 * time.Millisecond}[rng.IntN(2)]
	if tls {
		// TLS handshakes under -race on a loaded machine take tens of ms.
		w.timing.HeartbeatTimeout, w.timing.ElectionTimeout = 400*time.Millisecond, 400*time.Millisecond
		w.timing.LeaderLeaseTimeout, w.timing.CommitTimeout = 400*time.Millisecond, 20*time.Millisecond
		w.timing.SettledHeartbeatTimeout = 800 * time.Millisecond
		w.timing.BootstrapReassignAfter = time.Second
		w.tls, w.ports, w.dirs = true, map[string]int{}, map[string]string{}
		for _, name := range names {
			w.ports[name] = freePort(t)
			w.dirs[name] = t.TempDir()
		}
	}
	defer w.stopAll()
	order := slices.Clone(names)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	if rng.IntN(4) == 0 {
		// Lowest names last: every arrival changes the lowest set, the
		// hardest case for agreeing on one.
		slices.Sort(order)
		slices.Reverse(order)
	}
	w.logf("schedule seed=%d expect=%d servers=%v start order=%v gossip delay<%v install time<%v", seed, expect, names, order, w.gossipDelay, w.installTime)

	staggered := rng.IntN(2) == 0
	fault := rng.IntN(7)
	if tls && fault == 1 {
		fault = 0
	}
	// A minority (fewer than expect) that is cut off while the rest forms.
	minority := order[:rng.IntN(min(expect, n))]
	if fault == 1 && len(minority) > 0 {
		w.partition(minority)
	}
	for _, name := range order {
		w.start(name)
		if staggered {
			time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond / time.Duration(1+rng.IntN(3)))
		}
	}
	bootstrapped := func() (View, bool) {
		return w.anyState(func(s View) bool { return s.Bootstrap != "" })
	}
	switch fault {
	case 1: // minority partitioned during formation: it must not bootstrap
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		for _, m := range minority {
			if s, ok := w.viewOf(m); ok && s.HasRaftState && len(minority) < expect && n-len(minority) >= 0 {
				// It may have been added by the majority's leader only if it
				// could reach it, which the partition forbids.
				w.mu.Lock()
				w.tracef("minority member %s has raft state", m)
				w.mu.Unlock()
				problems = append(problems, fmt.Sprintf("partitioned minority member %s formed or joined raft", m))
			}
		}
		w.heal()
	case 2: // leader killed right after it claimed
		if w.waitFor(10*time.Second, func() bool { _, ok := bootstrapped(); return ok }) {
			if l := w.leader(); l != "" {
				w.kill(l)
				time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
				w.start(l)
			}
		}
	case 3: // bootstrap node dies before it started RKE2, long enough to be reassigned
		if w.waitFor(10*time.Second, func() bool { _, ok := bootstrapped(); return ok }) {
			s, _ := bootstrapped()
			w.kill(s.Bootstrap)
			time.Sleep(w.timing.BootstrapReassignAfter + time.Duration(rng.IntN(400))*time.Millisecond)
			w.start(s.Bootstrap)
		}
	case 4: // bootstrap node dies after it started RKE2: never reassigned
		if w.waitFor(10*time.Second, func() bool {
			_, ok := w.anyState(func(s View) bool { return s.Started })
			return ok
		}) {
			s, _ := bootstrapped()
			w.kill(s.Bootstrap)
			time.Sleep(w.timing.BootstrapReassignAfter + time.Duration(rng.IntN(300))*time.Millisecond)
			w.start(s.Bootstrap)
		}
	case 5, 6: // random restarts and partitions at random points
		for range 1 + rng.IntN(4) {
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
			victim := names[rng.IntN(n)]
			if rng.IntN(3) == 0 && n > 1 {
				w.partition([]string{victim})
				time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
				w.heal()
				continue
			}
			w.kill(victim)
			time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
			w.start(victim)
		}
	}
	// Heal everything and require liveness.
	w.heal()
	for _, name := range names {
		w.start(name)
	}
	if !w.waitFor(5*time.Minute, w.complete) {
		var states []string
		for _, name := range names {
			s, _ := w.viewOf(name)
			w.mu.Lock()
			nd := w.nodes[name]
			steps, meta := nd.el.steps.Load(), nd.meta
			w.mu.Unlock()
			states = append(states, fmt.Sprintf("%s: steps=%d meta=%+v raft=%s leader=%s boot=%q started=%v ready=%v slot=%q joined=%v set=%q",
				name, steps, meta, s.RaftState, s.Leader, s.Bootstrap, s.Started, s.ClusterReady != nil, s.SlotHolder, s.Joined, s.BootstrapSet))
		}
		problems = append(problems, "no liveness after faults healed:\n    "+strings.Join(states, "\n    "))
	} else if !w.waitFor(2*time.Minute, w.relaxed) {
		problems = append(problems, "the cluster is complete but raft's heartbeats never relaxed to the settled timings")
	}
	problems = append(problems, w.check()...)
	w.mu.Lock()
	trace = slices.Clone(w.trace)
	w.mu.Unlock()
	return problems, trace
}

func scheduleCount() int {
	switch {
	case *flagSchedules > 0:
		return *flagSchedules
	case *flagSoak:
		return 5000
	}
	if v, err := strconv.Atoi(os.Getenv("ELECTION_SCHEDULES")); err == nil && v > 0 {
		return v
	}
	return 500
}

// TestSchedules runs the randomized schedules, several at a time.
func TestSchedules(t *testing.T) {
	seeds := make([]uint64, 0, scheduleCount())
	if *flagSeed != 0 {
		seeds = append(seeds, *flagSeed)
	} else {
		base := uint64(time.Now().UnixNano())
		for i := range cap(seeds) {
			seeds = append(seeds, base+uint64(i)*7919)
		}
	}
	workers := max(4, 3*runtime.GOMAXPROCS(0))
	var (
		mu     sync.Mutex
		failed int
		wg     sync.WaitGroup
		next   = make(chan uint64)
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range next {
				problems, trace := runSchedule(t, seed, false)
				if len(problems) > 0 {
					mu.Lock()
					failed++
					t.Errorf("schedule seed=%d failed (replay: go test -run TestSchedules -seed=%d ./pkg/election/):\n  %s\n  trace:\n    %s",
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
	t.Logf("%d schedules, %d failed, %d with a bootstrap reassignment, %v", len(seeds), failed, simReassigned.Load(), time.Since(start).Round(time.Millisecond))
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestSchedulesTLS runs a few schedules over the real transport and store:
// mutual TLS on loopback, raft-boltdb, restarts from disk.
func TestSchedulesTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	base := uint64(time.Now().UnixNano())
	for i := range uint64(6) {
		seed := base + i*104729
		problems, trace := runSchedule(t, seed, true)
		if len(problems) > 0 {
			t.Errorf("TLS schedule seed=%d failed:\n  %s\n  trace:\n    %s", seed, strings.Join(problems, "\n  "), strings.Join(trace, "\n    "))
		}
	}
}
