package upgrade

import (
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
)

func hostAt(name string, role Role, running, wanted string) Host {
	return Host{Name: name, Role: role, Running: rke2version.MustParse(running), Wanted: rke2version.MustParse(wanted), Healthy: true}
}

// TestDecideRefuses: each refused configuration is named, and no command
// comes with it.
func TestDecideRefuses(t *testing.T) {
	const v35, v36, v37 = "v1.35.5+rke2r1", "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	three := func(want string) []Host {
		return []Host{hostAt("s0", RoleServer, v36, want), hostAt("s1", RoleServer, v36, want), hostAt("s2", RoleServer, v36, want)}
	}
	tests := []struct {
		name   string
		in     Input
		phase  string
		reason string
	}{
		{"downgrade", Input{Hosts: three(v35)}, PhaseRefused, "server s0 runs v1.36.3+rke2r1 and its configuration wants v1.35.5+rke2r1: RKE2 is not downgraded in place"},
		{"skipped minor", Input{Hosts: []Host{hostAt("s0", RoleServer, v35, v37)}}, PhaseRefused, "2 minor versions ahead: upgrade to v1.36 first"},
		{"agent wants newer", Input{Hosts: append(three(v36), hostAt("a0", RoleAgent, v36, v37))}, PhaseRefused, "agent a0's configuration wants v1.37.1+rke2r1, newer than any server will run"},
		{"agent runs newer", Input{Hosts: append(three(v36), hostAt("a0", RoleAgent, v37, v37))}, PhaseRefused, "agent a0 runs v1.37.1+rke2r1, newer than server"},
		{"quorum at risk", Input{Hosts: three(v37), QuorumAtRisk: true}, PhaseWaiting, "not started while quorum is at risk"},
		{"server joining", Input{Hosts: three(v37), ServerJoining: true}, PhaseWaiting, "not started while a server is joining"},
		{"server being removed", Input{Hosts: three(v37), Removing: "s3"}, PhaseWaiting, "not started while server s3 is being removed"},
		{"servers disagree", Input{Hosts: append(three(v37)[:2], hostAt("s2", RoleServer, v36, v36))}, PhaseWaiting, "waiting for the configuration to agree"},
	}
	for _, tc := range tests {
		tc.in.Now = time.Unix(1_800_000_000, 0)
		p := Decide(tc.in)
		if p.Command != nil {
			t.Errorf("%s: command %+v, want none", tc.name, *p.Command)
		}
		if p.Phase != tc.phase || !strings.Contains(p.Blocked, tc.reason) {
			t.Errorf("%s: phase %q blocked %q, want %q containing %q", tc.name, p.Phase, p.Blocked, tc.phase, tc.reason)
		}
	}
}

// TestDecideRoll walks a roll of two servers and three agents (batches of
// two) to the end, the leader last.
func TestDecideRoll(t *testing.T) {
	const from, to = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	hosts := map[string]*Host{}
	var order []string
	for _, n := range []string{"s0", "s1", "a0", "a1", "a2"} {
		role := RoleServer
		if n[0] == 'a' {
			role = RoleAgent
		}
		h := hostAt(n, role, from, to)
		hosts[n] = &h
		order = append(order, n)
	}
	var prog Progress
	now := time.Unix(1_800_000_000, 0)
	var begun []string
	maxAgents := 0
	for range 100 {
		var in Input
		for _, n := range order {
			in.Hosts = append(in.Hosts, *hosts[n])
		}
		in.Progress, in.Leader, in.MaxUnavailable, in.Now = prog, "s0", Budget{N: 2}, now
		p := Decide(in)
		if p.Command == nil {
			if p.Phase != PhaseDone {
				t.Fatalf("stuck in %s: %s", p.Phase, p.Blocked)
			}
			break
		}
		next, err := prog.Apply(*p.Command)
		if err != nil {
			t.Fatal(err)
		}
		prog = next
		now = now.Add(time.Second)
		if p.Command.Op == OpBegin {
			begun = append(begun, p.Command.Node)
			if p.Command.Role == RoleServer {
				// A server finishes before anything else begins.
				h := hosts[p.Command.Node]
				h.Running, h.Finished = rke2version.MustParse(to), p.Command.At
			}
		}
		up := 0
		for _, h := range prog.In(HostUpgrading) {
			if h.Role == RoleAgent {
				up++
			}
		}
		maxAgents = max(maxAgents, up)
		if up == 2 || (up > 0 && len(begun) == 5) {
			// The batch finishes.
			for _, h := range prog.In(HostUpgrading) {
				hosts[h.Name].Running, hosts[h.Name].Finished = rke2version.MustParse(to), h.Since
			}
		}
	}
	if got := strings.Join(begun, " "); got != "s1 s0 a0 a1 a2" {
		t.Errorf("order %q, want servers first, the leader last, then agents", got)
	}
	if maxAgents != 2 {
		t.Errorf("at most %d agents upgrading at once, want batches of 2", maxAgents)
	}
}

func TestParseBudget(t *testing.T) {
	for s, want := range map[string]int{"1": 1, "3": 3, "10%": 1, "50%": 10} {
		b, err := ParseBudget(s)
		if err != nil || b.Of(20) != want && s != "10%" || b.String() != s {
			t.Errorf("ParseBudget(%q) = %v (%d of 20), %v", s, b, b.Of(20), err)
		}
	}
	if DefaultBudget.Of(5) != 1 || DefaultBudget.Of(20) != 2 || DefaultBudget.Of(0) != 1 {
		t.Error("10% of 5, 20, 0 agents: want 1, 2, 1")
	}
	for _, s := range []string{"0", "-1", "0%", "101%", "x", "", "1.5", "01", "%"} {
		if _, err := ParseBudget(s); err == nil || !strings.Contains(err.Error(), "want a count of agents") {
			t.Errorf("ParseBudget(%q) err = %v", s, err)
		}
	}
}

// TestDecideSupersedes: config management moves on mid-roll (every server
// now wants v1.37.2 while the roll to v1.37.1 has done one server): a new
// roll starts once no host is in flight, instead of waiting for ever for
// the others to want v1.37.1.
func TestDecideSupersedes(t *testing.T) {
	const v36, v371, v372 = "v1.36.3+rke2r1", "v1.37.1+rke2r1", "v1.37.2+rke2r1"
	in := Input{Hosts: []Host{hostAt("s0", RoleServer, v371, v372), hostAt("s1", RoleServer, v36, v372), hostAt("s2", RoleServer, v36, v372)},
		Now: time.Unix(1_800_000_000, 0)}
	in.Progress = Progress{Target: v371, Hosts: []HostProgress{{Name: "s0", Role: RoleServer, State: HostDone, Since: 1}}}
	p := Decide(in)
	if p.Command == nil || p.Command.Op != OpStart || p.Command.Target != v372 {
		t.Fatalf("plan %+v, want a start to %s", p, v372)
	}
	next, err := in.Progress.Apply(*p.Command)
	if err != nil || next.Target != v372 || len(next.Hosts) != 0 {
		t.Fatalf("apply start: %+v, %v", next, err)
	}
	// While a host is in flight the roll is not superseded.
	in.Progress.Hosts = append(in.Progress.Hosts, HostProgress{Name: "s1", Role: RoleServer, State: HostUpgrading, Since: 2})
	in.Hosts[1].Healthy = false
	if p := Decide(in); p.Command != nil {
		t.Fatalf("superseded with s1 in flight: %+v", *p.Command)
	}
}

// TestAgentsBudgetCountsEveryUnavailableAgent: an agent already upgraded
// but not Ready still counts against upgrade-agents-max-unavailable.
func TestAgentsBudgetCountsEveryUnavailableAgent(t *testing.T) {
	const v36, v37 = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	in := Input{Hosts: []Host{hostAt("s0", RoleServer, v37, v37), hostAt("a0", RoleAgent, v37, v37), hostAt("a1", RoleAgent, v36, v37)},
		MaxUnavailable: Budget{N: 1}, Now: time.Unix(1_800_000_000, 0)}
	in.Hosts[1].Healthy = false
	in.Progress = Progress{Target: v37, Hosts: []HostProgress{{Name: "a0", Role: RoleAgent, State: HostDone, Since: 1}, {Name: "s0", Role: RoleServer, State: HostDone, Since: 1}}}
	p := Decide(in)
	if p.Command != nil || !strings.Contains(p.Blocked, "1 agent(s) not ready, upgrade-agents-max-unavailable allows 1") {
		t.Fatalf("plan %+v, want blocked by the budget", p)
	}
	in.Hosts[1].Healthy = true
	if p := Decide(in); p.Command == nil || p.Command.Op != OpBegin || p.Command.Node != "a1" {
		t.Fatalf("plan %+v, want a1 to begin", p)
	}
}

// TestDoneOnlyAfterTheHostsSteps: a begun host seen at the target and
// healthy is recorded done only once it reports this begin's steps
// finished: a version read from the disk right after the install, before
// the restart, is not evidence.
func TestDoneOnlyAfterTheHostsSteps(t *testing.T) {
	const v36, v37 = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	in := Input{Hosts: []Host{hostAt("s0", RoleServer, v37, v37), hostAt("s1", RoleServer, v36, v37), hostAt("s2", RoleServer, v36, v37)},
		Now: time.Unix(1_800_000_000, 0)}
	in.Progress = Progress{Target: v37, Hosts: []HostProgress{{Name: "s0", Role: RoleServer, State: HostUpgrading, Since: 7}}}
	in.Hosts[0].Finished = 6 // an earlier begin's
	if p := Decide(in); p.Command != nil {
		t.Fatalf("recorded on version and health alone: %+v", *p.Command)
	}
	in.Hosts[0].Finished = 7
	if p := Decide(in); p.Command == nil || p.Command.Op != OpDone || p.Command.Node != "s0" {
		t.Fatalf("plan %+v, want s0 done", p)
	}
}

// TestServerBeginWaitsForARemoval: a removal in flight takes a voter out,
// as a server's restart does: no server begins until it ends (agents are
// no etcd voters and go on).
func TestServerBeginWaitsForARemoval(t *testing.T) {
	const from, to = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	in := Input{Hosts: []Host{hostAt("s0", RoleServer, from, to), hostAt("s1", RoleServer, from, to), hostAt("s2", RoleServer, from, to)},
		Progress: Progress{Target: to}, Leader: "s0", Now: time.Unix(1_800_000_000, 0), Removing: "s3"}
	p := Decide(in)
	if p.Command != nil || !strings.Contains(p.Blocked, "server s3 is being removed: no server upgrades until its removal ends") {
		t.Fatalf("while s3 is removed: command %+v, blocked %q", p.Command, p.Blocked)
	}
	in.Removing = ""
	if p := Decide(in); p.Command == nil || p.Command.Op != OpBegin || p.Command.Role != RoleServer {
		t.Fatalf("once the removal ended: command %+v, blocked %q", p.Command, p.Blocked)
	}
}
