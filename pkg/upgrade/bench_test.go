package upgrade

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDecide: one step of the plan for 3 servers and 20 agents in
// the agents phase, the leader's cost per loop step.
func BenchmarkDecide(b *testing.B) {
	const from, to = "v1.36.3+rke2r1", "v1.37.1+rke2r1"
	in := Input{MaxUnavailable: DefaultBudget, Now: time.Unix(1_800_000_000, 0), HostTimeout: 30 * time.Minute}
	in.Progress = Progress{Target: to}
	for i := range 3 {
		name := fmt.Sprintf("s%d", i)
		in.Hosts = append(in.Hosts, hostAt(name, RoleServer, to, to))
		in.Progress.Hosts = append(in.Progress.Hosts, HostProgress{Name: name, Role: RoleServer, State: HostDone, Since: 1})
	}
	for i := range 20 {
		in.Hosts = append(in.Hosts, hostAt(fmt.Sprintf("a%02d", i), RoleAgent, from, to))
	}
	for b.Loop() {
		if p := Decide(in); p.Command == nil {
			b.Fatalf("no command: %+v", p)
		}
	}
}
