package upgrade

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
)

// FuzzApply: any command applied to any valid progress either is refused
// and changes nothing, or yields a valid progress; and Decide on any
// progress and hosts never panics and proposes only commands that
// validate.
func FuzzApply(f *testing.F) {
	f.Add(`{"target":"v1.37.1+rke2r1","hosts":[{"name":"s1","role":"server","state":"upgrading","since":1}]}`, OpBegin, "s2", "server", "", "", int64(5), "v1.36.3+rke2r1", "v1.37.1+rke2r1")
	f.Add(`{}`, OpStart, "", "", "v1.37.1+rke2r1", "", int64(5), "v1.36.3+rke2r1", "v1.38.1+rke2r1")
	f.Add(`{"target":"v1.37.1+rke2r1","paused":true}`, OpResume, "", "", "", "", int64(1), "", "")
	f.Add(`{"target":"v1.37.1+rke2r1","hosts":[{"name":"a","role":"agent","state":"failed","since":1,"reason":"x"}]}`, OpFailed, "a", "", "", "boom", int64(9), "v1.37.1+rke2r1", "v1.36.3+rke2r1")
	f.Fuzz(func(t *testing.T, progress, op, node, role, target, reason string, at int64, running, wanted string) {
		var p Progress
		if json.Unmarshal([]byte(progress), &p) != nil || p.Validate() != nil {
			return
		}
		before, _ := json.Marshal(p)
		next, err := p.Apply(Command{Op: op, Node: node, Role: Role(role), Target: target, Reason: reason, At: at})
		after, _ := json.Marshal(p)
		if string(before) != string(after) {
			t.Fatalf("Apply changed its receiver")
		}
		if err == nil {
			if verr := next.Validate(); verr != nil {
				t.Fatalf("%s on %s gave an invalid progress: %v", op, progress, verr)
			}
		}
		h := Host{Name: node, Role: Role(role)}
		h.Running, _ = rke2version.Parse(running)
		h.Wanted, _ = rke2version.Parse(wanted)
		for _, q := range []Progress{p, next} {
			plan := Decide(Input{Hosts: []Host{h, {Name: "s9", Role: RoleServer, Running: h.Running, Wanted: h.Wanted, Healthy: true}},
				Progress: q, Now: time.Unix(0, max(at, 1)), HostTimeout: time.Minute})
			if plan.Command != nil {
				if err := plan.Command.Validate(); err != nil {
					t.Fatalf("Decide proposed %+v, which does not validate: %v", *plan.Command, err)
				}
			}
		}
	})
}
