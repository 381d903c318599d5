package upgrade

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
)

// A model check of Decide over random schedules. The world is a few
// servers and agents. Config management pushes wanted versions to any
// host in any order at any time, including downgrades and skipped minors;
// hosts crash and come back; a host's steps fail now and then; the
// operator pauses and resumes. The leader decides on the true state of
// the hosts and the committed progress; its command is applied later,
// after the world moved, or lost. Hosts run their steps only once they
// see their begin committed, as the node does.
//
// The properties, checked against the true history:
//   - never two servers upgrading at once, and a server begins only when
//     every other server is healthy (so the roll never takes a second one down);
//   - no agent begins before every server runs the target;
//   - never an agent running newer than a server;
//   - never a refused upgrade acted upon: no host installs a version older
//     than it runs, or more than one minor ahead;
//   - a failure stops the roll: after a failure is committed no host
//     begins until a resume is;
//   - never more agents draining or upgrading than
//     upgrade-agents-max-unavailable allows, runs of commands included;
//   - with the leader draining agents (a run in two): no agent restarts
//     unless its Node is cordoned, the leader uncordons only an agent whose
//     steps finished, and none is left cordoned once the roll settles. The
//     leader's jobs end at random moments, now and then with an error, and
//     a new leader forgets the results of the old one's.

var modelSeed = flag.Uint64("upgrade-seed", 0, "run the upgrade model check with this seed only")

var ladder = []string{"v1.35.2+rke2r1", "v1.35.5+rke2r1", "v1.36.0+rke2r1", "v1.36.3+rke2r2", "v1.37.1+rke2r1", "v1.38.0+rke2r1"}

// mHost is one host of the world.
type mHost struct {
	Host
	step     int                 // 0 idle; 1 snapshot, 2 install, 3 restart, 4 wait healthy
	begin    int64               // the Since of the begin it runs under
	down     bool                // crashed (not because of the upgrade)
	willFail bool                // this attempt fails
	disk     rke2version.Version // the binary installed; it runs after a restart
	ran      rke2version.Version // the newest it ever ran
}

type model struct {
	rng   *rand.Rand
	now   time.Time
	hosts []*mHost
	prog  Progress
	// pending are the commands decided and not yet committed, in log
	// order: a leader may decide a run of them, each on the progress the
	// one before makes (as the raft shell does, pkg/election upgradeRun).
	pending []Command
	decide  func(Input) Plan
	budget  Budget
	stopped bool // a failure is committed and no resume since
	// drain: the leader drains agents; cordoned is each Node's state in the
	// Kubernetes API; drains and uncordons the leader's jobs that ended.
	drain             bool
	cordoned          map[string]bool
	drains, uncordons map[string]JobResult
	trace             []string
	stats             map[string]int
}

func (m *model) logf(format string, a ...any) {
	m.trace = append(m.trace, fmt.Sprintf("%6ds ", m.now.Unix()%1_000_000)+fmt.Sprintf(format, a...))
}

func newModel(seed uint64, decide func(Input) Plan) *model {
	rng := rand.New(rand.NewPCG(seed, 0x0b9ade))
	m := &model{rng: rng, now: time.Unix(1_800_000_000, 0), decide: decide, stats: map[string]int{},
		budget: Budget{N: 1 + rng.IntN(2), Percent: false}, drain: rng.IntN(2) == 0,
		cordoned: map[string]bool{}, drains: map[string]JobResult{}, uncordons: map[string]JobResult{}}
	base := rng.IntN(3)
	servers := []int{1, 3, 3, 5}[rng.IntN(4)]
	agents := rng.IntN(5)
	for i := range servers + agents {
		h := &mHost{Host: Host{Name: fmt.Sprintf("s%d", i), Role: RoleServer, Healthy: true}}
		if i >= servers {
			h.Name, h.Role = fmt.Sprintf("a%d", i-servers), RoleAgent
		}
		v := rke2version.MustParse(ladder[base])
		if h.Role == RoleAgent && base > 0 && rng.IntN(3) == 0 {
			v = rke2version.MustParse(ladder[base-1]) // agents may lag
		}
		h.Running, h.Wanted, h.disk, h.ran = v, v, v, v
		m.hosts = append(m.hosts, h)
	}
	return m
}

func (m *model) host(name string) *mHost {
	for _, h := range m.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

func (m *model) quorumAtRisk() bool {
	n, healthy := 0, 0
	for _, h := range m.hosts {
		if h.Role == RoleServer {
			n++
			if h.Healthy {
				healthy++
			}
		}
	}
	return healthy-1 < n/2+1 && n > 1
}

func (m *model) input() Input {
	var hosts []Host
	for _, h := range m.hosts {
		hosts = append(hosts, h.Host)
	}
	m.rng.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	return Input{Hosts: hosts, Progress: m.prog.Clone(), Leader: "s0", QuorumAtRisk: m.quorumAtRisk(),
		MaxUnavailable: m.budget, Now: m.now, HostTimeout: 30 * time.Minute,
		DrainAgents: m.drain, Drains: maps.Clone(m.drains), Uncordons: maps.Clone(m.uncordons)}
}

// jobs runs the leader's jobs the plan lists: each ends now or later, now
// and then with an error, as a drain behind a PodDisruptionBudget does.
func (m *model) jobs(plan Plan) error {
	for _, j := range plan.Jobs {
		if m.rng.IntN(3) == 0 {
			continue // still running
		}
		h := m.host(j.Node)
		r := JobResult{Since: j.Since}
		if m.rng.IntN(8) == 0 {
			r.Err = "a PodDisruptionBudget refused the eviction"
		}
		switch j.Kind {
		case JobDrain:
			m.cordoned[j.Node] = true // cordoned, whether or not the evictions end
			m.drains[j.Node] = r
		case JobUncordon:
			if hp, _ := m.prog.Host(j.Node); hp.State == HostUpgrading && h.step != 0 && h.Finished != j.Since {
				return fmt.Errorf("the leader uncordons %s before its steps finished", j.Node)
			}
			if r.Err == "" {
				m.cordoned[j.Node] = false
			}
			m.uncordons[j.Node] = r
		}
		m.logf("job %s %s ended (%q)", j.Kind, j.Node, r.Err)
	}
	return nil
}

// lead decides once, checking the decision against the world now; half
// the time it goes on deciding, each time on the progress the commands
// before make, as the raft shell does (pkg/election upgradeRun), with the
// same view of the hosts.
func (m *model) lead() error {
	in := m.input()
	if m.rng.IntN(20) == 0 {
		// A new leader: the old one's job results are gone.
		clear(m.drains)
		clear(m.uncordons)
	}
	run := m.rng.IntN(2) == 0
	for {
		plan := m.decide(in)
		if err := m.jobs(plan); err != nil {
			return err
		}
		if plan.Command == nil {
			return nil
		}
		c := *plan.Command
		m.logf("decide %s %s %s (%s)", c.Op, c.Node, c.Target, plan.Phase)
		// The FSM refuses it too; the plan must not rely on that.
		if (c.Op == OpBegin || c.Op == OpStart) && m.stopped {
			return fmt.Errorf("decided %s %s while the roll is stopped by a failure", c.Op, c.Node)
		}
		if c.Op == OpBegin && c.Role == RoleServer {
			for _, h := range m.hosts {
				if h.Role == RoleServer && h.Name != c.Node && !h.Healthy {
					return fmt.Errorf("server %s begins while server %s is down", c.Node, h.Name)
				}
			}
		}
		m.pending = append(m.pending, c)
		if len(m.pending) == 2 {
			m.stats["decided in a run"]++
		}
		if !run || len(m.pending) >= 8 {
			return nil
		}
		next, err := in.Progress.Apply(c)
		if err != nil {
			return nil
		}
		in.Progress = next
	}
}

// commit commits the first pending command, or loses it: raft then loses
// the commands decided after it too (it commits a prefix of the log).
func (m *model) commit() error {
	c := m.pending[0]
	m.pending = m.pending[1:]
	if m.rng.IntN(8) == 0 {
		m.logf("%s %s lost (and %d after it)", c.Op, c.Node, len(m.pending))
		m.pending = nil
		return nil
	}
	next, err := m.prog.Apply(c)
	if err != nil {
		m.logf("%s %s refused: %v", c.Op, c.Node, err)
		return nil
	}
	if err := next.Validate(); err != nil {
		return fmt.Errorf("apply %s %s: invalid progress: %v", c.Op, c.Node, err)
	}
	m.prog = next
	m.stats[c.Op]++
	m.logf("%s %s %s applied", c.Op, c.Node, c.Target)
	if hp, ok := m.prog.Host(c.Node); ok && c.Op == OpDone && hp.Drained && m.cordoned[c.Node] {
		return fmt.Errorf("drained agent %s recorded done while still cordoned", c.Node)
	}
	switch c.Op {
	case OpFailed:
		m.stopped = true
	case OpResume:
		m.stopped = false
	case OpBegin:
		if m.stopped {
			return fmt.Errorf("%s began while the roll is stopped by a failure", c.Node)
		}
		if c.Role == RoleAgent {
			target := rke2version.MustParse(m.prog.Target)
			for _, h := range m.hosts {
				if h.Role == RoleServer && h.Running.Less(target) {
					return fmt.Errorf("agent %s began while server %s runs %s, before the target %s", c.Node, h.Name, h.Running, target)
				}
			}
		}
	}
	servers := 0
	for _, h := range m.prog.In(HostUpgrading) {
		if h.Role == RoleServer {
			servers++
		}
	}
	if servers > 1 {
		return fmt.Errorf("two servers upgrading at once")
	}
	agents, out := 0, 0
	for _, h := range m.hosts {
		if h.Role == RoleAgent {
			agents++
		}
	}
	for _, h := range m.prog.InFlight() {
		if h.Role == RoleAgent {
			out++
		}
	}
	if budget := m.budget.Of(agents); out > budget {
		return fmt.Errorf("%d agents draining or upgrading at once, upgrade-agents-max-unavailable allows %d", out, budget)
	}
	return nil
}

// work advances one host through its steps, as the node would.
func (m *model) work() error {
	h := m.hosts[m.rng.IntN(len(m.hosts))]
	hp, ok := m.prog.Host(h.Name)
	if !ok || hp.State != HostUpgrading {
		if h.step != 0 && (!ok || hp.State != HostFailed) {
			// Resumed or superseded: start over when begun again. A host
			// stopped mid-restart comes back by itself (Restart=always).
			h.step, h.Healthy = 0, !h.down
		}
		if !ok && h.Failed != "" {
			h.Failed = ""
		}
		return nil
	}
	if h.begin != hp.Since {
		h.step, h.begin, h.Failed = 1, hp.Since, ""
		h.willFail = m.rng.IntN(6) == 0
	}
	if h.Failed != "" || h.step == 0 {
		return nil
	}
	target := rke2version.MustParse(m.prog.Target)
	fail := h.willFail && m.rng.IntN(3) == 0
	switch h.step {
	case 1, 2:
		if fail {
			h.Failed, h.FailedBegin = []string{"", "etcd-snapshot save exited 1", "install script exited 1"}[h.step], hp.Since
			m.logf("%s step %d failed", h.Name, h.step)
			return nil
		}
		if h.step == 2 {
			// install: the one moment a version changes.
			// Against what has run (and may have migrated its data), not a
			// binary a failed attempt left on disk without running it.
			if target.Less(h.ran) {
				return fmt.Errorf("%s installs %s, having run %s: a downgrade acted upon", h.Name, target, h.ran)
			}
			if d := h.ran.MinorDistance(target); d > 1 {
				return fmt.Errorf("%s installs %s, having run %s: a minor skipped", h.Name, target, h.ran)
			}
			h.disk = target
		}
	case 3:
		h.Healthy = false // restart: the new binary runs from now on
		h.Running = h.disk
		if h.ran.Less(h.Running) {
			h.ran = h.Running
		}
	case 4:
		if fail {
			h.Failed, h.FailedBegin = "not healthy after restart", hp.Since
			m.logf("%s never became healthy", h.Name)
			return nil
		}
		if !h.down {
			h.Healthy = true
		}
		h.step, h.Finished = 0, hp.Since
		m.logf("%s healthy at %s", h.Name, h.Running)
		return nil
	}
	h.step++
	return nil
}

func (m *model) churn() {
	h := m.hosts[m.rng.IntN(len(m.hosts))]
	if d := m.prog.In(HostDraining); len(d) > 0 && m.rng.IntN(2) == 0 {
		// A host the leader drains now: its configuration moving on, or
		// its crash, is what releases it from the roll.
		h = m.host(d[m.rng.IntN(len(d))].Name)
		if m.rng.IntN(2) == 0 {
			h.Wanted = h.Running // its configuration goes back to what it runs
			m.logf("config: draining %s wants %s", h.Name, h.Wanted)
			return
		}
	}
	switch r := m.rng.IntN(10); {
	case r < 5:
		// Config management pushes a version, mostly the next one up.
		i := slices.Index(ladder, h.Running.String())
		j := min(i+1+m.rng.IntN(2), len(ladder)-1)
		if m.rng.IntN(6) == 0 {
			j = m.rng.IntN(len(ladder)) // anything: downgrades, skips
		}
		if m.rng.IntN(2) == 0 {
			// Push the same version to every host, one at a time: the
			// others follow in later steps.
			for _, o := range m.hosts {
				if m.rng.IntN(2) == 0 {
					o.Wanted = rke2version.MustParse(ladder[j])
				}
			}
		}
		h.Wanted = rke2version.MustParse(ladder[j])
		m.logf("config: %s wants %s", h.Name, h.Wanted)
	case r < 7:
		h.down = !h.down
		if h.down {
			h.Healthy = false
		} else if h.step == 0 || h.step == 4 {
			h.Healthy = h.Failed == "" || h.step == 0
		}
		m.logf("%s down=%v", h.Name, h.down)
	case r < 8:
		// A failed host is repaired by the operator.
		if h.Failed != "" && !h.down {
			h.Healthy = true
		}
	case r < 9:
		if len(m.pending) == 0 && m.rng.IntN(4) == 0 {
			op := OpPause
			if m.rng.IntN(2) == 0 {
				op = OpResume
			}
			m.pending = []Command{{Op: op, At: m.now.UnixNano()}}
			m.logf("operator: %s", op)
		}
	default:
		m.now = m.now.Add(time.Duration(m.rng.IntN(40)) * time.Minute)
	}
}

func (m *model) check() error {
	// Servers past their snapshot and install, restarting or waiting to be
	// healthy: never two.
	var out []string
	for _, h := range m.hosts {
		if h.Role == RoleServer && h.step >= 3 && h.Failed == "" {
			out = append(out, h.Name)
		}
	}
	if len(out) > 1 {
		return fmt.Errorf("servers %v restarting for their upgrade at once", out)
	}
	if m.drain {
		for _, h := range m.hosts {
			if hp, _ := m.prog.Host(h.Name); h.Role == RoleAgent && hp.State == HostUpgrading && h.step >= 3 && !m.cordoned[h.Name] {
				return fmt.Errorf("agent %s restarts for its upgrade while not cordoned", h.Name)
			}
		}
	}
	var oldest rke2version.Version
	for _, h := range m.hosts {
		if h.Role == RoleServer && (oldest.IsZero() || h.Running.Less(oldest)) {
			oldest = h.Running
		}
	}
	for _, h := range m.hosts {
		if h.Role == RoleAgent && oldest.Less(h.Running) {
			return fmt.Errorf("agent %s runs %s, newer than the oldest server (%s)", h.Name, h.Running, oldest)
		}
	}
	return nil
}

func runModel(seed uint64, steps int, decide func(Input) Plan) (*model, error) {
	m := newModel(seed, decide)
	for range steps {
		var err error
		switch r := m.rng.IntN(10); {
		case r < 3:
			m.churn()
		case r < 6:
			err = m.work()
		default:
			m.now = m.now.Add(time.Duration(1+m.rng.IntN(60)) * time.Second)
			if len(m.pending) > 0 {
				err = m.commit()
			} else {
				err = m.lead()
			}
		}
		if err == nil {
			err = m.check()
		}
		if err != nil {
			return m, err
		}
	}
	return m, m.settle()
}

// settle ends a schedule and checks the roll's liveness: no more pushes,
// crashes or failed steps; the operator repairs every host and resumes
// (again, if a host that was in flight too long is failed); every host's
// configuration then wants the newest version any host runs, when that
// is refused for none. The roll must bring every host to it.
func (m *model) settle() error {
	// A command decided before the settling lands first.
	for len(m.pending) > 0 {
		if err := m.commit(); err != nil {
			return err
		}
	}
	var want rke2version.Version
	if len(m.prog.InFlight()) > 0 {
		want = rke2version.MustParse(m.prog.Target)
	}
	for _, h := range m.hosts {
		h.down, h.willFail = false, false
		if h.Failed != "" || h.step == 0 {
			h.Healthy = true
		}
		// What it runs, or will once a restart under way ends.
		if want.Less(h.Running) {
			want = h.Running
		}
		if want.Less(h.disk) {
			want = h.disk
		}
	}
	for _, h := range m.hosts {
		if h.Running.MinorDistance(want) > 1 || h.disk.MinorDistance(want) > 1 {
			m.stats["settle-skipped"]++
			return nil // refused: a host is two minors behind
		}
	}
	for _, h := range m.hosts {
		h.Wanted = want
	}
	m.logf("settle: every host wants %s", want)
	for range 3000 {
		if len(m.pending) == 0 && m.settled(want) {
			break
		}
		for _, h := range m.hosts {
			if err := m.work(); err != nil {
				return err
			}
			_ = h
		}
		m.now = m.now.Add(time.Duration(1+m.rng.IntN(60)) * time.Second)
		if len(m.pending) == 0 && (m.prog.Paused || len(m.prog.In(HostFailed)) > 0) {
			m.pending = []Command{{Op: OpResume, At: m.now.UnixNano()}}
			m.logf("operator: resume")
		}
		var err error
		if len(m.pending) > 0 {
			err = m.commit()
		} else {
			err = m.lead()
		}
		if err == nil {
			err = m.check()
		}
		if err != nil {
			return err
		}
	}
	for _, h := range m.hosts {
		if !m.settled(want) {
			plan := m.decide(m.input())
			return fmt.Errorf("liveness: after settling, %s runs %s (healthy %v), every host wants %s; the plan is %s: %s",
				h.Name, h.Running, h.Healthy, want, plan.Phase, plan.Blocked)
		}
		if m.cordoned[h.Name] {
			return fmt.Errorf("liveness: after settling, %s is still cordoned", h.Name)
		}
	}
	m.stats["settled"]++
	return nil
}

// settled: every host runs want, healthy, and nothing is in flight.
func (m *model) settled(want rke2version.Version) bool {
	for _, h := range m.hosts {
		if h.Running != want || !h.Healthy || h.step != 0 || m.cordoned[h.Name] {
			return false
		}
	}
	return len(m.prog.InFlight()) == 0
}

func modelCheck(decide func(Input) Plan, runs, steps int) (uint64, error) {
	for seed := uint64(1); seed <= uint64(runs); seed++ {
		if *modelSeed != 0 {
			seed = *modelSeed
		}
		if _, err := runModel(seed, steps, decide); err != nil {
			return seed, err
		}
		if *modelSeed != 0 {
			break
		}
	}
	return 0, nil
}

func TestModelCheck(t *testing.T) {
	runs, steps := 2000, 600
	if testing.Short() {
		runs = 300
	}
	total := map[string]int{}
	for seed := uint64(1); seed <= uint64(runs); seed++ {
		if *modelSeed != 0 {
			seed = *modelSeed
		}
		m, err := runModel(seed, steps, Decide)
		if err != nil {
			t.Fatalf("seed=%d (rerun: go test -run TestModelCheck -upgrade-seed=%d ./pkg/upgrade/): %v\n%s",
				seed, seed, err, strings.Join(m.trace[max(0, len(m.trace)-40):], "\n"))
		}
		for op, n := range m.stats {
			total[op] += n
		}
		if *modelSeed != 0 {
			break
		}
	}
	for _, op := range Ops {
		if total[op] == 0 && !(testing.Short() && op == OpRelease) { // rare: about 1 in 100 runs releases an agent
			t.Errorf("no %s was ever applied in %d runs: the model explores too little", op, runs)
		}
	}
	if total["decided in a run"] == 0 {
		t.Errorf("no leader decided a run of commands in %d runs: the model explores too little", runs)
	}
	t.Logf("%d runs of %d steps; applied: %v", runs, steps, total)
}

// Mutants: Decide with one rule taken away. The model check must find
// each unsafe.

func decideIgnoresHealth(in Input) Plan {
	if p := Decide(in); p.Command != nil && p.Command.Op != OpBegin {
		return p // done and failed still on the true view
	}
	in.Hosts = slices.Clone(in.Hosts)
	for i := range in.Hosts {
		in.Hosts[i].Healthy = true
	}
	in.QuorumAtRisk = false
	return Decide(in)
}

func decideAgentsEarly(in Input) Plan {
	p := Decide(in)
	if p.Command != nil || in.Progress.Target == "" || in.Progress.Paused || len(in.Progress.In(HostFailed)) > 0 {
		return p
	}
	for _, h := range in.Hosts {
		if _, ok := in.Progress.Host(h.Name); !ok && h.Role == RoleAgent && h.Healthy {
			return Plan{Command: &Command{Op: OpBegin, Node: h.Name, Role: RoleAgent, At: in.Now.UnixNano()}}
		}
	}
	return p
}

func decideAllowsSkips(in Input) Plan {
	// Pretend every host runs one minor below what it wants.
	for i, h := range in.Hosts {
		if !h.Wanted.IsZero() && h.Running.MinorDistance(h.Wanted) > 1 {
			in.Hosts[i].Running.Minor = h.Wanted.Minor - 1
		}
	}
	return Decide(in)
}

func decideIgnoresFailures(in Input) Plan {
	in.Progress.Hosts = slices.DeleteFunc(in.Progress.Clone().Hosts, func(h HostProgress) bool { return h.State == HostFailed })
	return Decide(in)
}

// decideIgnoresBudget takes every agent at once.
func decideIgnoresBudget(in Input) Plan {
	in.MaxUnavailable = Budget{N: MaxAgentsAtOnce}
	return Decide(in)
}

// decideBeginsUndrained begins agents without their drain.
func decideBeginsUndrained(in Input) Plan {
	p := Decide(in)
	if p.Command != nil && p.Command.Op == OpDrain {
		p.Command.Op = OpBegin
	}
	return p
}

// decideDoneCordoned records a drained agent done without its uncordon.
func decideDoneCordoned(in Input) Plan {
	un := map[string]JobResult{}
	for _, h := range in.Progress.InFlight() {
		un[h.Name] = JobResult{Since: h.Since}
	}
	in.Uncordons = un
	return Decide(in)
}

func TestModelCheckFindsMutants(t *testing.T) {
	for name, d := range map[string]func(Input) Plan{
		"begins an agent before its drain":      decideBeginsUndrained,
		"records an agent done cordoned":        decideDoneCordoned,
		"begins a server while another is down": decideIgnoresHealth,
		"begins agents before the servers":      decideAgentsEarly,
		"lets a minor be skipped":               decideAllowsSkips,
		"goes on after a failure":               decideIgnoresFailures,
		"ignores the agents' budget":            decideIgnoresBudget,
	} {
		seed, err := modelCheck(d, 3000, 600)
		if err == nil {
			t.Errorf("%s: the model check never failed", name)
			continue
		}
		t.Logf("%s: seed %d: %v", name, seed, err)
	}
}
