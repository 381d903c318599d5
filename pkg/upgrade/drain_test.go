package upgrade

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLeaderDrainsAgents walks one agent through the leader's drain: it
// is drained before it may begin, begins only on the drain's success for
// its own Since, and is recorded done only once the leader uncordoned it.
func TestLeaderDrainsAgents(t *testing.T) {
	const v36, v37 = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	now := time.Unix(1_800_000_000, 0)
	in := Input{
		Hosts:          []Host{hostAt("s0", RoleServer, v37, v37), hostAt("a0", RoleAgent, v36, v37)},
		Progress:       Progress{Target: v37, Hosts: []HostProgress{{Name: "s0", Role: RoleServer, State: HostDone, Since: 1}}},
		Leader:         "s0",
		MaxUnavailable: Budget{N: 1},
		Now:            now,
		DrainAgents:    true,
	}
	step := func(want string) Plan {
		t.Helper()
		plan := Decide(in)
		got := "none"
		if plan.Command != nil {
			got = plan.Command.Op
			next, err := in.Progress.Apply(*plan.Command)
			if err != nil {
				t.Fatalf("apply %s: %v", got, err)
			}
			in.Progress = next
		}
		if got != want {
			t.Fatalf("decided %s, want %s (plan %+v)", got, want, plan)
		}
		in.Now = in.Now.Add(time.Second)
		return plan
	}
	step(OpDrain)
	hp, _ := in.Progress.Host("a0")
	if hp.State != HostDraining {
		t.Fatalf("a0 is %s, want draining", hp.State)
	}
	// Until the drain ends the leader runs it and commits nothing; a
	// result for another Since (an older drain) does not count.
	in.Drains = map[string]JobResult{"a0": {Since: hp.Since - 1}}
	plan := step("none")
	if len(plan.Jobs) != 1 || plan.Jobs[0] != (Job{Kind: JobDrain, Node: "a0", Since: hp.Since}) {
		t.Fatalf("jobs %+v, want a0's drain", plan.Jobs)
	}
	if len(plan.Upgrading) != 1 {
		t.Fatalf("upgrading %v: a draining agent is in flight", plan.Upgrading)
	}
	in.Drains["a0"] = JobResult{Since: hp.Since}
	step(OpBegin)
	hp, _ = in.Progress.Host("a0")
	if hp.State != HostUpgrading || !hp.Drained {
		t.Fatalf("a0 %+v, want upgrading and drained", hp)
	}
	// Its steps finished: the leader uncordons it before recording it done.
	in.Hosts[1].Running, in.Hosts[1].Finished = in.Hosts[1].Wanted, hp.Since
	plan = step("none")
	if len(plan.Jobs) != 1 || plan.Jobs[0] != (Job{Kind: JobUncordon, Node: "a0", Since: hp.Since}) {
		t.Fatalf("jobs %+v, want a0's uncordon", plan.Jobs)
	}
	in.Uncordons = map[string]JobResult{"a0": {Since: hp.Since}}
	step(OpDone)
}

// TestLeaderDrainFails: a drain's error fails the agent, naming the
// step; its resume drains it again (it may be cordoned), and an agent
// that failed after its drain is never recorded done without steps.
func TestLeaderDrainFails(t *testing.T) {
	const v36, v37 = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	in := Input{
		Hosts:    []Host{hostAt("s0", RoleServer, v37, v37), hostAt("a0", RoleAgent, v36, v37)},
		Progress: Progress{Target: v37, Hosts: []HostProgress{{Name: "a0", Role: RoleAgent, State: HostDraining, Since: 5}, {Name: "s0", Role: RoleServer, State: HostDone, Since: 1}}},
		Leader:   "s0", MaxUnavailable: Budget{N: 1}, Now: time.Unix(1_800_000_000, 0),
		Drains: map[string]JobResult{"a0": {Since: 5, Err: "pods not evicted in time: default/web-0"}},
	}
	plan := Decide(in)
	if plan.Command == nil || plan.Command.Op != OpFailed || !strings.HasPrefix(plan.Command.Reason, "drain: pods not evicted") {
		t.Fatalf("plan %+v, want a0 failed in its drain", plan.Command)
	}
	p, err := in.Progress.Apply(*plan.Command)
	if err != nil {
		t.Fatal(err)
	}
	if hp, _ := p.Host("a0"); !hp.Drained || hp.State != HostFailed {
		t.Fatalf("a0 %+v: a failed drain may have cordoned it", hp)
	}
	// Meanwhile the agent got to the target some other way: it is still
	// drained again, not recorded done while cordoned.
	in.Hosts[1].Running = in.Hosts[1].Wanted
	p, err = p.Apply(Command{Op: OpResume, At: 9})
	if err != nil {
		t.Fatal(err)
	}
	if hp, _ := p.Host("a0"); hp.State != HostDraining || hp.Since != 9 || hp.Drained {
		t.Fatalf("after resume a0 %+v, want draining again since 9", hp)
	}
	in.Progress, in.Drains = p, nil
	if plan := Decide(in); plan.Command != nil || len(plan.Jobs) != 1 || plan.Jobs[0].Kind != JobDrain {
		t.Fatalf("plan %+v jobs %+v: want the drain run again, nothing committed", plan.Command, plan.Jobs)
	}
}

// TestDrainTransitions: what Apply refuses of the drain.
func TestDrainTransitions(t *testing.T) {
	const v37 = "v1.37.1+rke2r1"
	p := Progress{Target: v37}
	if _, err := p.Apply(Command{Op: OpDrain, Node: "s0", Role: RoleServer, At: 1}); err == nil {
		t.Fatal("a server drained by the leader")
	}
	p, err := p.Apply(Command{Op: OpDrain, Node: "a0", Role: RoleAgent, At: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Command{
		{Op: OpDone, Node: "a0", Role: RoleAgent, At: 2},  // not begun
		{Op: OpDrain, Node: "a0", Role: RoleAgent, At: 2}, // twice
		{Op: OpStart, Target: "v1.38.0+rke2r1", At: 2},    // in flight
		{Op: OpBegin, Node: "a0", Role: RoleServer, At: 2},
	} {
		if _, err := p.Apply(c); err == nil || (c.Op != OpBegin && !errors.Is(err, ErrTransition)) {
			t.Errorf("%s %s %s applied on a draining agent", c.Op, c.Node, c.Role)
		}
	}
	// Paused: a drained agent still begins (it is in flight), a new one
	// is not drained.
	p, _ = p.Apply(Command{Op: OpPause, At: 3})
	if _, err := p.Apply(Command{Op: OpDrain, Node: "a1", Role: RoleAgent, At: 4}); err == nil {
		t.Fatal("drained while paused")
	}
	if p, err = p.Apply(Command{Op: OpBegin, Node: "a0", Role: RoleAgent, At: 4}); err != nil {
		t.Fatalf("a drained agent did not begin while paused: %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Progress{Target: v37, Hosts: []HostProgress{{Name: "s0", Role: RoleServer, State: HostDraining, Since: 1}}}
	if bad.Validate() == nil {
		t.Fatal("a draining server validated")
	}
}

// TestDrainingAgentReleased: a draining agent whose configuration no
// longer wants the target (or that left gossip) is not drained and begun
// for ever, nor failed again at every resume: once its drain ended the
// leader uncordons it and it leaves the roll, which can then end.
func TestDrainingAgentReleased(t *testing.T) {
	const v36, v37 = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	for _, gone := range []bool{false, true} {
		hosts := []Host{hostAt("s0", RoleServer, v37, v37), hostAt("a0", RoleAgent, v36, v36)}
		if gone {
			hosts = hosts[:1]
		}
		in := Input{
			Hosts:    hosts,
			Progress: Progress{Target: v37, Hosts: []HostProgress{{Name: "a0", Role: RoleAgent, State: HostDraining, Since: 5}, {Name: "s0", Role: RoleServer, State: HostDone, Since: 1}}},
			Leader:   "s0", MaxUnavailable: Budget{N: 1}, Now: time.Unix(1_800_000_000, 0), DrainAgents: true,
		}
		want := []JobKind{JobDrain, JobUncordon}
		for _, kind := range want {
			plan := Decide(in)
			if plan.Command != nil || len(plan.Jobs) != 1 || plan.Jobs[0].Kind != kind {
				t.Fatalf("gone %v: plan %+v jobs %+v, want only the %s job", gone, plan.Command, plan.Jobs, kind)
			}
			r := map[string]JobResult{"a0": {Since: 5}}
			if kind == JobDrain {
				in.Drains = r
			} else {
				in.Uncordons = r
			}
		}
		plan := Decide(in)
		if plan.Command == nil || plan.Command.Op != OpRelease {
			t.Fatalf("gone %v: plan %+v, want a0 released", gone, plan.Command)
		}
		p, err := in.Progress.Apply(*plan.Command)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Host("a0"); ok || len(p.InFlight()) != 0 {
			t.Fatalf("gone %v: a0 still in the roll: %+v", gone, p)
		}
	}
	if _, err := (Progress{Target: v37}).Apply(Command{Op: OpRelease, Node: "a0", At: 1}); err == nil {
		t.Fatal("released a host that was not draining")
	}
}

// TestDrainedAgentWaitsForTheResume: while another host's failure stops
// the roll, a drained agent's begin is not proposed (the FSM would refuse
// it every step) and the failed phase is shown.
func TestDrainedAgentWaitsForTheResume(t *testing.T) {
	const v36, v37 = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	in := Input{
		Hosts: []Host{hostAt("s0", RoleServer, v37, v37), hostAt("a1", RoleAgent, v36, v37), hostAt("a2", RoleAgent, v36, v37)},
		Progress: Progress{Target: v37, Hosts: []HostProgress{
			{Name: "a1", Role: RoleAgent, State: HostDraining, Since: 5},
			{Name: "a2", Role: RoleAgent, State: HostFailed, Since: 6, Reason: "drain: pods not evicted in time", Drained: true},
			{Name: "s0", Role: RoleServer, State: HostDone, Since: 1}}},
		Leader: "s0", MaxUnavailable: Budget{N: 2}, Now: time.Unix(1_800_000_000, 0), DrainAgents: true,
		Drains: map[string]JobResult{"a1": {Since: 5}},
	}
	plan := Decide(in)
	if plan.Command != nil || plan.Phase != PhaseFailed || !strings.Contains(plan.Blocked, "a2 failed") {
		t.Fatalf("plan %+v (%s: %s): want nothing committed and the failure shown", plan.Command, plan.Phase, plan.Blocked)
	}
}
