package upgrade

import (
	"slices"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// Report is the status model of one plan: what /status serves under
// "upgrade" and `rke2-hanode upgrade status` prints.
func Report(in Input, plan Plan) status.Upgrade {
	target := plan.Target
	if target == "" {
		target = in.Progress.Target
	}
	out := status.Upgrade{
		Phase: plan.Phase, Target: target, Paused: in.Progress.Paused, Blocked: plan.Blocked,
		Servers: nonNil(plan.Servers), Agents: nonNil(plan.Agents), Hosts: []status.UpgradeHost{},
	}
	agents := 0
	for _, h := range in.Hosts {
		if h.Role == RoleAgent {
			agents++
		}
		uh := status.UpgradeHost{Name: h.Name, Role: string(h.Role), Wanted: h.Wanted.String(), Running: h.Running.String()}
		if hp, ok := in.Progress.Host(h.Name); ok {
			uh.State, uh.Reason = string(hp.State), hp.Reason
			uh.Since = time.Unix(0, hp.Since).UTC()
		}
		out.Hosts = append(out.Hosts, uh)
	}
	out.MaxUnavailable = in.MaxUnavailable.Of(agents)
	slices.SortFunc(out.Hosts, func(a, b status.UpgradeHost) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
