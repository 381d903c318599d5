package upgrade

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
)

// Host is what the leader knows of one host, from its gossip.
type Host struct {
	Name string
	Role Role
	// Wanted is the version its configuration asks for: rke2-version, or
	// the channel resolved to a version by the host. Zero: not known yet.
	Wanted rke2version.Version
	// Running is the version of the RKE2 running now: of the binary the
	// service was last started from, not of one installed since. Zero: not
	// known.
	Running rke2version.Version
	// Healthy: for a server, its etcd member is a healthy voter and its
	// supervisor answers; for an agent, its Node is Ready.
	Healthy bool
	// Failed is the host's own report that a step of its upgrade failed,
	// and why ("" when none); FailedBegin is the Since of the committed
	// begin it ran under, so that a report from before a resume never fails
	// the retry.
	Failed      string
	FailedBegin int64
	// Finished is the Since of the last begin whose steps the host ran to
	// the end (healthy after its restart): the leader records a begun host
	// done only on it, never on a version and health seen before the
	// restart.
	Finished int64
}

// Budget is upgrade-agents-max-unavailable: a count, or a percentage of
// the agents rounded down, at least 1 either way.
type Budget struct {
	N       int
	Percent bool
}

// DefaultBudget is the key's default, 10%.
var DefaultBudget = Budget{N: 10, Percent: true}

// ParseBudget reads "3" or "10%".
func ParseBudget(s string) (Budget, error) {
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || strconv.Itoa(n) != num || (pct && n > 100) {
		return Budget{}, fmt.Errorf("%q: want a count of agents (1 or more) or a percentage of them (1%% to 100%%), e.g. 2 or 10%%", s)
	}
	return Budget{N: n, Percent: pct}, nil
}

func (b Budget) String() string {
	if b.Percent {
		return strconv.Itoa(b.N) + "%"
	}
	return strconv.Itoa(b.N)
}

// Of is how many of agents may be unavailable at once: at least 1, at most
// MaxAgentsAtOnce.
func (b Budget) Of(agents int) int {
	n := b.N
	if b.Percent {
		n = int(math.Floor(float64(agents) * float64(b.N) / 100))
	}
	return min(max(n, 1), MaxAgentsAtOnce)
}

// MaxAgentsAtOnce caps the budget: agents learn their begins from the
// servers' signed claims, which carry at most this many (pkg/claims'
// MaxAgentBegins).
const MaxAgentsAtOnce = 16

// Input is everything one step of the plan reads.
type Input struct {
	Hosts    []Host
	Progress Progress // committed
	// Leader is the host deciding: among servers it goes last, so the
	// roll does not move the raft leadership more than once.
	Leader string
	// QuorumAtRisk: losing one more voter would lose etcd or raft quorum.
	QuorumAtRisk bool
	// ServerJoining: the join slot is held, or an etcd learner exists.
	ServerJoining bool
	// Removing: a server's removal is in flight (committed or executing):
	// no server begins until it ends, as none joins meanwhile (a removal
	// takes a voter out, as a server's restart does).
	Removing       string
	MaxUnavailable Budget
	Now            time.Time
	// HostTimeout: a host upgrading longer is failed; 0 never.
	HostTimeout time.Duration
	// DrainAgents: the leader drains each agent before its begin
	// (upgrade-drain on the leader, and every voter's build reads
	// upgrade-drain); Drains and Uncordons are the leader's jobs that
	// ended, by agent: a drain of a draining agent, an uncordon of a
	// drained one whose steps finished. A result counts only for the
	// begin it was run for (JobResult.Since).
	DrainAgents       bool
	Drains, Uncordons map[string]JobResult
}

// JobResult is how a drain or uncordon the leader ran for a host ended.
type JobResult struct {
	Since int64  // the HostProgress.Since it ran for
	Err   string // "" when it succeeded
}

// Job is work the leader does itself, outside the log, before the roll
// can go on: drain a draining agent, or uncordon a drained one whose
// steps finished. The shell runs each once per Since (again on a new
// leader: both are idempotent) and reports it in Input.Drains or
// Input.Uncordons.
type Job struct {
	Kind  JobKind
	Node  string
	Since int64
}

// JobKind is what a Job does.
type JobKind string

// Job kinds.
const (
	JobDrain    JobKind = "drain"    // cordon the agent's Node and evict its pods
	JobUncordon JobKind = "uncordon" // make the agent's Node schedulable again
)

// Plan phases.
const (
	PhaseIdle    = "idle"    // every host runs what it wants
	PhaseWaiting = "waiting" // the configuration does not agree yet
	PhaseRefused = "refused" // the configuration asks for what is refused
	PhaseServers = "servers" // servers upgrading, one at a time
	PhaseAgents  = "agents"  // agents upgrading, in batches
	PhasePaused  = "paused"
	PhaseFailed  = "failed" // a host failed: the roll stopped
	PhaseDone    = "done"   // every host runs the target
)

// Plan is one step's decision and what status shows of it.
type Plan struct {
	Phase  string
	Target string
	// Blocked says why nothing proceeds now ("" when something does, or
	// nothing is to do).
	Blocked string
	// Servers still to upgrade in the order they will, the one upgrading
	// first; Agents likewise, those upgrading first.
	Servers, Agents []string
	// Upgrading are the hosts in flight now: draining or running their
	// steps.
	Upgrading []string
	// Command is the one change to commit now, nil for none. The leader
	// commits it, then decides again on the state that includes it.
	Command *Command
	// Jobs are the drains and uncordons the leader should be running now
	// (whatever Command is).
	Jobs []Job
}

// Decide is one step of the roll: it reads the committed progress and the
// hosts' reports and returns the next change, at most one, so that every
// decision is taken on state that includes the previous one. It does no
// I/O. The rules it keeps are in doc.go; plan_test.go model-checks them.
func Decide(in Input) Plan {
	p := in.Progress
	if err := p.Validate(); err != nil {
		// Apply produces none such; a replica that holds one stops here.
		return Plan{Phase: PhaseFailed, Target: p.Target, Blocked: fmt.Sprintf("the committed progress is not valid: %v", err)}
	}
	at := in.Now.UnixNano()
	byName := make(map[string]Host, len(in.Hosts))
	for _, h := range in.Hosts {
		byName[h.Name] = h
	}
	plan := Plan{Target: p.Target}
	for _, h := range p.InFlight() {
		plan.Upgrading = append(plan.Upgrading, h.Name)
	}

	// First what the hosts in flight report: done, failed, or too slow.
	// These are recorded even while paused or refused. The leader's own
	// jobs come first: a drained agent begins, an uncordoned one is done.
	var first *Command
	for _, hp := range p.InFlight() {
		h, seen := byName[hp.Name]
		target := rke2version.MustParse(p.Target)
		var c *Command
		switch {
		case hp.State == HostDraining && len(p.In(HostFailed)) > 0:
			// The roll is stopped: it begins after the resume (Apply
			// refuses the begin now); the failed phase is shown.
		case hp.State == HostDraining && (!seen || h.Wanted != target || in.Uncordons[hp.Name].Since == hp.Since):
			// Gone from gossip, or its configuration no longer wants the
			// target: once its drain ended (it may have cordoned it), the
			// leader uncordons it and it leaves the roll. Once uncordoned
			// it is released even if it wants the target again: it is
			// drained afresh in its turn, never begun uncordoned.
			d, drained := in.Drains[hp.Name]
			u, uncordoned := in.Uncordons[hp.Name]
			switch {
			case !drained || d.Since != hp.Since:
				plan.Jobs = append(plan.Jobs, Job{Kind: JobDrain, Node: hp.Name, Since: hp.Since})
			case !uncordoned || u.Since != hp.Since:
				plan.Jobs = append(plan.Jobs, Job{Kind: JobUncordon, Node: hp.Name, Since: hp.Since})
			case u.Err != "":
				c = &Command{Op: OpFailed, Node: hp.Name, Reason: StepFailed(StepUncordon, errString(u.Err)), At: at}
			default:
				c = &Command{Op: OpRelease, Node: hp.Name, At: at}
			}
		case hp.State == HostDraining:
			if r, ok := in.Drains[hp.Name]; ok && r.Since == hp.Since {
				if r.Err != "" {
					c = &Command{Op: OpFailed, Node: hp.Name, Reason: StepFailed(StepDrain, errString(r.Err)), At: at}
				} else {
					c = &Command{Op: OpBegin, Node: hp.Name, Role: hp.Role, At: at}
				}
			} else {
				plan.Jobs = append(plan.Jobs, Job{Kind: JobDrain, Node: hp.Name, Since: hp.Since})
			}
		case seen && h.Failed != "" && h.FailedBegin == hp.Since:
			c = &Command{Op: OpFailed, Node: hp.Name, Reason: clip(h.Failed), At: at}
		case seen && h.Finished == hp.Since && h.Healthy && h.Running == target:
			r, ok := in.Uncordons[hp.Name]
			switch {
			case !hp.Drained:
				c = &Command{Op: OpDone, Node: hp.Name, Role: hp.Role, At: at}
			case ok && r.Since == hp.Since && r.Err != "":
				c = &Command{Op: OpFailed, Node: hp.Name, Reason: StepFailed(StepUncordon, errString(r.Err)), At: at}
			case ok && r.Since == hp.Since:
				c = &Command{Op: OpDone, Node: hp.Name, Role: hp.Role, At: at}
			default:
				plan.Jobs = append(plan.Jobs, Job{Kind: JobUncordon, Node: hp.Name, Since: hp.Since})
			}
		}
		if c == nil && in.HostTimeout > 0 && in.Now.Sub(time.Unix(0, hp.Since)) > in.HostTimeout {
			c = &Command{Op: OpFailed, Node: hp.Name, At: at,
				Reason: fmt.Sprintf("not healthy at %s within %s of beginning", p.Target, in.HostTimeout)}
		}
		if c != nil && first == nil {
			first = c
			plan.Phase = phaseOf(hp.Role)
		}
	}
	if first != nil {
		plan.Command = first
		return plan
	}

	servers, agents := split(in.Hosts)
	if f := p.In(HostFailed); len(f) > 0 {
		plan.Phase = PhaseFailed
		plan.Blocked = fmt.Sprintf("%s %s failed: %s; fix it and run `rke2-hanode upgrade resume` to retry it", f[0].Role, f[0].Name, f[0].Reason)
		return plan
	}
	if reason := refusal(in.Hosts, servers, agents); reason != "" {
		plan.Phase, plan.Blocked = PhaseRefused, "refused, nothing touched: "+reason
		return plan
	}

	active := p.Target != "" && needed(p, in.Hosts)
	if active && len(p.InFlight()) == 0 {
		// The configuration moved on mid-roll (every server now wants
		// another version than the roll's): a new roll supersedes this one
		// rather than waiting for hosts whose configuration no longer
		// wants its target.
		if w := unanimous(servers); !w.IsZero() && w.String() != p.Target {
			active = false
		}
	}
	if !active {
		return start(in, plan, servers, agents)
	}
	target := rke2version.MustParse(p.Target)
	// Hosts already at the target and healthy are recorded without steps.
	for _, h := range in.Hosts {
		if _, ok := p.Host(h.Name); !ok && h.Running == target && h.Healthy {
			plan.Command = &Command{Op: OpDone, Node: h.Name, Role: h.Role, At: at}
			plan.Phase = phaseOf(h.Role)
			return plan
		}
	}
	plan.Servers = remaining(p, servers, in.Leader)
	plan.Agents = remaining(p, agents, in.Leader)
	if p.Paused {
		plan.Phase, plan.Blocked = PhasePaused, "paused (`rke2-hanode upgrade resume` continues)"
		return plan
	}
	if len(plan.Servers) > 0 {
		plan.Phase = PhaseServers
		if _, ok := p.ServerUpgrading(); ok {
			return plan // one at a time: it finishes first
		}
		if reason := serversBlocked(in, servers); reason != "" {
			plan.Blocked = reason
			return plan
		}
		next := plan.Servers[0]
		h := byName[next]
		if h.Wanted != target {
			plan.Blocked = fmt.Sprintf("waiting for server %s's configuration to want %s (it wants %s)", next, p.Target, show(h.Wanted))
			return plan
		}
		plan.Command = &Command{Op: OpBegin, Node: next, Role: RoleServer, At: at}
		return plan
	}
	plan.Phase = PhaseAgents
	// An agent never runs newer than the oldest server.
	for _, s := range servers {
		if s.Running.Less(target) {
			plan.Blocked = fmt.Sprintf("server %s runs %s, older than %s: no agent upgrades", s.Name, show(s.Running), p.Target)
			return plan
		}
	}
	budget := in.MaxUnavailable.Of(len(agents))
	unavailable := 0
	for _, a := range agents {
		hp, ok := p.Host(a.Name)
		if (ok && (hp.State == HostUpgrading || hp.State == HostDraining)) || !a.Healthy {
			unavailable++
		}
	}
	for _, name := range plan.Agents {
		a := byName[name]
		if _, ok := p.Host(name); ok {
			continue // upgrading
		}
		if unavailable >= budget {
			if len(plan.Upgrading) == 0 {
				plan.Blocked = fmt.Sprintf("%d agent(s) not ready, upgrade-agents-max-unavailable allows %d", unavailable, budget)
			}
			return plan
		}
		if !a.Healthy {
			continue // counted above; it begins once ready
		}
		if a.Wanted != target {
			if len(plan.Upgrading) == 0 {
				plan.Blocked = fmt.Sprintf("waiting for agent %s's configuration to want %s (it wants %s)", name, p.Target, show(a.Wanted))
			}
			continue
		}
		op := OpBegin
		if in.DrainAgents {
			op = OpDrain
		}
		plan.Command = &Command{Op: op, Node: name, Role: RoleAgent, At: at}
		plan.Blocked = ""
		return plan
	}
	return plan
}

// start decides whether a new roll begins: every server wants the same
// version, newer than what some host runs.
func start(in Input, plan Plan, servers, agents []Host) Plan {
	if in.Progress.Target != "" && complete(in.Progress, append(slices.Clone(servers), agents...)) {
		plan.Phase = PhaseDone
	} else {
		plan.Phase = PhaseIdle
	}
	var want rke2version.Version
	for _, s := range servers {
		if s.Wanted.IsZero() {
			return plan // not known yet: nothing to roll
		}
		if !want.IsZero() && s.Wanted != want {
			plan.Phase = PhaseWaiting
			plan.Blocked = fmt.Sprintf("servers want different versions (%s wants %s, %s wants %s): waiting for the configuration to agree",
				servers[0].Name, servers[0].Wanted, s.Name, s.Wanted)
			return plan
		}
		want = s.Wanted
	}
	if want.IsZero() {
		return plan
	}
	behind := false
	for _, h := range append(slices.Clone(servers), agents...) {
		if h.Wanted == want && h.Running.Less(want) {
			behind = true
		}
	}
	if !behind {
		return plan
	}
	plan.Target = want.String()
	plan.Phase = PhaseServers
	if in.Progress.Paused {
		plan.Phase, plan.Blocked = PhasePaused, fmt.Sprintf("a roll to %s waits: paused (`rke2-hanode upgrade resume` continues)", want)
		return plan
	}
	if in.QuorumAtRisk {
		plan.Phase, plan.Blocked = PhaseWaiting, fmt.Sprintf("a roll to %s is not started while quorum is at risk", want)
		return plan
	}
	if in.ServerJoining {
		plan.Phase, plan.Blocked = PhaseWaiting, fmt.Sprintf("a roll to %s is not started while a server is joining", want)
		return plan
	}
	if in.Removing != "" {
		plan.Phase, plan.Blocked = PhaseWaiting, fmt.Sprintf("a roll to %s is not started while server %s is being removed", want, in.Removing)
		return plan
	}
	plan.Command = &Command{Op: OpStart, Target: want.String(), At: in.Now.UnixNano()}
	return plan
}

// refusal is why the hosts' configurations ask for an upgrade the product
// refuses, "" when none: a downgrade, a skipped minor, an agent that
// would run newer than the oldest server.
func refusal(all, servers, agents []Host) string {
	for _, h := range all {
		if h.Wanted.IsZero() || h.Running.IsZero() {
			continue
		}
		if h.Wanted.Less(h.Running) {
			return fmt.Sprintf("%s %s runs %s and its configuration wants %s: RKE2 is not downgraded in place; set rke2-version back to %s",
				h.Role, h.Name, h.Running, h.Wanted, h.Running)
		}
		if d := h.Running.MinorDistance(h.Wanted); d > 1 {
			return fmt.Sprintf("%s %s runs %s and its configuration wants %s, %d minor versions ahead: upgrade to %s first",
				h.Role, h.Name, h.Running, h.Wanted, d, next(h.Running))
		}
	}
	var oldest rke2version.Version
	var oldestName string
	for _, s := range servers {
		v := s.Running
		if v.IsZero() {
			continue
		}
		if oldest.IsZero() || v.Less(oldest) {
			oldest, oldestName = v, s.Name
		}
	}
	var newestWant rke2version.Version
	for _, s := range servers {
		if newestWant.Less(s.Wanted) {
			newestWant = s.Wanted
		}
	}
	for _, a := range agents {
		if !oldest.IsZero() && oldest.Less(a.Running) {
			return fmt.Sprintf("agent %s runs %s, newer than server %s (%s): upgrade the servers first", a.Name, a.Running, oldestName, oldest)
		}
		if !a.Wanted.IsZero() && !newestWant.IsZero() && newestWant.Less(a.Wanted) {
			return fmt.Sprintf("agent %s's configuration wants %s, newer than any server will run (%s): an agent never runs newer than the oldest server",
				a.Name, a.Wanted, newestWant)
		}
	}
	return ""
}

// serversBlocked is why no server may begin now, "" when one may.
func serversBlocked(in Input, servers []Host) string {
	switch {
	case in.QuorumAtRisk:
		return "quorum at risk: no server upgrades until every voter is healthy"
	case in.ServerJoining:
		return "a server is joining: no server upgrades until it is a voter"
	case in.Removing != "":
		return fmt.Sprintf("server %s is being removed: no server upgrades until its removal ends", in.Removing)
	}
	for _, s := range servers {
		if !s.Healthy {
			return fmt.Sprintf("server %s is not a healthy voter with its supervisor answering: no server upgrades until it is", s.Name)
		}
	}
	return ""
}

// needed: the roll has work left: a host in flight, or one not yet done
// whose configuration wants the target and runs older. A roll nobody's
// configuration wants any more is over.
func needed(p Progress, hosts []Host) bool {
	if len(p.InFlight()) > 0 {
		return true
	}
	target := rke2version.MustParse(p.Target)
	for _, h := range hosts {
		hp, ok := p.Host(h.Name)
		if !(ok && hp.State == HostDone) && h.Wanted == target && h.Running.Less(target) {
			return true
		}
	}
	return false
}

// complete: every host runs the target (or was recorded done).
func complete(p Progress, hosts []Host) bool {
	target := rke2version.MustParse(p.Target)
	for _, h := range hosts {
		hp, ok := p.Host(h.Name)
		if !(ok && hp.State == HostDone) && h.Running.Less(target) {
			return false
		}
	}
	return len(p.InFlight()) == 0
}

// remaining lists hosts not yet done, those upgrading first, then by name
// with the leader last.
func remaining(p Progress, hosts []Host, leader string) []string {
	var up, rest []string
	for _, h := range hosts {
		hp, ok := p.Host(h.Name)
		switch {
		case ok && (hp.State == HostUpgrading || hp.State == HostDraining):
			up = append(up, h.Name)
		case ok && hp.State == HostDone:
		default:
			rest = append(rest, h.Name)
		}
	}
	slices.Sort(up)
	slices.SortFunc(rest, func(a, b string) int {
		if (a == leader) != (b == leader) {
			if a == leader {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	return append(up, rest...)
}

// unanimous is the version every server wants, zero when one's is not
// known or they differ.
func unanimous(servers []Host) rke2version.Version {
	var want rke2version.Version
	for i, s := range servers {
		if s.Wanted.IsZero() || (i > 0 && s.Wanted != want) {
			return rke2version.Version{}
		}
		want = s.Wanted
	}
	return want
}

func split(hosts []Host) (servers, agents []Host) {
	for _, h := range hosts {
		if h.Role == RoleServer {
			servers = append(servers, h)
		} else {
			agents = append(agents, h)
		}
	}
	return servers, agents
}

func phaseOf(r Role) string {
	if r == RoleServer {
		return PhaseServers
	}
	return PhaseAgents
}

// next is the first release of the next minor, as a hint.
func next(v rke2version.Version) string {
	return fmt.Sprintf("v%d.%d", v.Major, v.Minor+1)
}

func show(v rke2version.Version) string {
	if v.IsZero() {
		return "nothing known yet"
	}
	return v.String()
}

// errString is a job's error text as an error, for StepFailed.
type errString string

func (e errString) Error() string { return string(e) }

// clip bounds a host's reported reason to what a command carries.
func clip(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 200 {
			break
		}
		if checkText("reason", string(r)) == nil {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "failed (no reason given)"
	}
	return b.String()
}
