package upgrade

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/textcheck"

	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
)

// Role of a host in the roll.
type Role string

// Roles.
const (
	RoleServer Role = "server"
	RoleAgent  Role = "agent"
)

// HostState is where one host stands in the committed roll.
type HostState string

// Host states.
const (
	// HostDraining: an agent the leader cordons and drains through the
	// Kubernetes API before the agent may run its steps (upgrade-drain:
	// an agent holds no admin kubeconfig, so a server drains it). It is in
	// flight and unavailable; the agent does not see a begin yet.
	HostDraining HostState = "draining"
	// HostUpgrading: the host may run its steps (Steps); for a server this
	// is the join slot's permission, so no server joins meanwhile.
	HostUpgrading HostState = "upgrading"
	// HostDone: the host runs the target and is healthy.
	HostDone HostState = "done"
	// HostFailed: the host reported a failed step or missed its deadline;
	// the roll stops until `upgrade resume`.
	HostFailed HostState = "failed"
)

// Progress is the committed record of the roll, held in the replicated
// cluster state: every server reads the same Progress after the same log.
// It is changed only by Apply.
type Progress struct {
	// Target is the version being rolled out ("" before the first roll).
	Target string `json:"target,omitempty"`
	// Paused stops new hosts from beginning (upgrade pause); hosts already
	// upgrading finish.
	Paused bool `json:"paused,omitempty"`
	// Hosts holds every host that began, finished or failed in this roll,
	// sorted by name.
	Hosts []HostProgress `json:"hosts,omitempty"`
}

// HostProgress is one host in the roll.
type HostProgress struct {
	Name   string    `json:"name"`
	Role   Role      `json:"role"`
	State  HostState `json:"state"`
	Since  int64     `json:"since"` // unix nanoseconds, the leader's clock
	Reason string    `json:"reason,omitempty"`
	// Drained: an agent the leader drained before its begin; the leader
	// uncordons it before it records it done.
	Drained bool `json:"drained,omitempty"`
}

// Operations on Progress, as they appear in the replicated log.
const (
	OpStart = "upgrade-start" // Target: a new roll begins (no host in flight)
	OpDrain = "upgrade-drain" // agent Node is drained by the leader, then begins
	// OpRelease: a draining agent gone from gossip, or whose configuration
	// no longer wants the target, leaves the roll (the leader uncordoned
	// it); it begins again in its turn if it still needs the upgrade.
	OpRelease = "upgrade-release"
	OpBegin   = "upgrade-begin"  // Node (Role) may run its steps now
	OpDone    = "upgrade-done"   // Node (Role) runs Target and is healthy
	OpFailed  = "upgrade-failed" // Node failed (Reason): the roll stops
	OpPause   = "upgrade-pause"  // no host begins until resumed
	OpResume  = "upgrade-resume" // clears the pause and the failures (retried)
)

// Ops lists the operations, for codecs that dispatch on them.
var Ops = []string{OpStart, OpDrain, OpBegin, OpRelease, OpDone, OpFailed, OpPause, OpResume}

// IsOp reports whether op is one of Ops.
func IsOp(op string) bool { return slices.Contains(Ops, op) }

// Command is one change of Progress. The cluster's log carries it inside
// its own command encoding (which adds the version and the time).
type Command struct {
	Op     string
	Node   string
	Role   Role
	Target string
	Reason string
	At     int64 // unix nanoseconds, the leader's clock
}

// ErrTransition is wrapped by every refused transition.
var ErrTransition = errors.New("upgrade transition not allowed")

// Validate checks the fields each operation needs and allows.
func (c Command) Validate() error {
	type need struct{ node, role, target, reason bool }
	var n need
	switch c.Op {
	case OpStart:
		n = need{target: true}
	case OpBegin, OpDrain:
		n = need{node: true, role: true}
	case OpDone:
		n = need{node: true, role: true}
	case OpFailed:
		n = need{node: true, reason: true}
	case OpRelease:
		n = need{node: true}
	case OpPause, OpResume:
	default:
		return fmt.Errorf("upgrade: command op %q unknown", c.Op)
	}
	for _, f := range []struct {
		name      string
		want, has bool
	}{
		{"node", n.node, c.Node != ""},
		{"role", n.role, c.Role != ""},
		{"target", n.target, c.Target != ""},
		{"reason", n.reason, c.Reason != ""},
		{"at", true, c.At != 0},
	} {
		if f.want && !f.has {
			return fmt.Errorf("upgrade: command %s: field %s missing", c.Op, f.name)
		}
		if !f.want && f.has {
			return fmt.Errorf("upgrade: command %s: field %s not allowed", c.Op, f.name)
		}
	}
	if c.At < 0 {
		return fmt.Errorf("upgrade: command %s: time %d before 1970", c.Op, c.At)
	}
	if c.Role != "" && c.Role != RoleServer && c.Role != RoleAgent {
		return fmt.Errorf("upgrade: command %s: role %q: want server or agent", c.Op, c.Role)
	}
	if c.Op == OpDrain && c.Role != RoleAgent {
		return fmt.Errorf("upgrade: command %s: role %q: only agents are drained by the leader (a server drains itself)", c.Op, c.Role)
	}
	if c.Target != "" {
		if v, err := rke2version.Parse(c.Target); err != nil || v.String() != c.Target {
			return fmt.Errorf("upgrade: command %s: target %q is not a canonical RKE2 version such as v1.36.4+rke2r1", c.Op, c.Target)
		}
	}
	for field, v := range map[string]string{"node": c.Node, "reason": c.Reason} {
		if err := checkText(field, v); err != nil {
			return fmt.Errorf("upgrade: command %s: %w", c.Op, err)
		}
	}
	return nil
}

// checkText bounds names and reasons (textcheck.Printable).
func checkText(field, v string) error { return textcheck.Printable(field, v) }

// Clone returns a deep copy.
func (p Progress) Clone() Progress {
	p.Hosts = slices.Clone(p.Hosts)
	return p
}

// Host returns name's record in the roll.
func (p Progress) Host(name string) (HostProgress, bool) {
	i, ok := p.find(name)
	if !ok {
		return HostProgress{}, false
	}
	return p.Hosts[i], true
}

func (p Progress) find(name string) (int, bool) {
	return slices.BinarySearchFunc(p.Hosts, name, func(h HostProgress, n string) int { return strings.Compare(h.Name, n) })
}

// In returns the hosts in state s, in name order.
func (p Progress) In(s HostState) []HostProgress {
	var out []HostProgress
	for _, h := range p.Hosts {
		if h.State == s {
			out = append(out, h)
		}
	}
	return out
}

// InFlight returns the hosts draining or upgrading, in name order: begun
// and not yet done or failed.
func (p Progress) InFlight() []HostProgress {
	var out []HostProgress
	for _, h := range p.Hosts {
		if h.State == HostDraining || h.State == HostUpgrading {
			out = append(out, h)
		}
	}
	return out
}

// ServerUpgrading is the server holding the roll's slot, if any.
func (p Progress) ServerUpgrading() (string, bool) {
	for _, h := range p.Hosts {
		if h.Role == RoleServer && h.State == HostUpgrading {
			return h.Name, true
		}
	}
	return "", false
}

// Apply returns the next Progress. It is a pure function of (p, c): every
// replica computes the same. It enforces what holds whatever the leader
// saw: at most one server upgrading, no agent while a server upgrades, no
// host beginning while the roll is paused or stopped by a failure (an
// agent drained before the pause may still begin: it is in flight), no
// new roll while a host is in flight or failed. A refused transition returns p
// unchanged and an error wrapping ErrTransition.
func (p Progress) Apply(c Command) (Progress, error) {
	if err := c.Validate(); err != nil {
		return p, err
	}
	reject := func(format string, a ...any) (Progress, error) {
		return p, fmt.Errorf("upgrade: %s: %w: "+format, append([]any{c.Op, ErrTransition}, a...)...)
	}
	next := p.Clone()
	switch c.Op {
	case OpStart:
		if n := len(p.InFlight()); n > 0 {
			return reject("%d host(s) still upgrading to %s", n, p.Target)
		}
		if f := p.In(HostFailed); len(f) > 0 {
			return reject("%s failed: resume first", f[0].Name)
		}
		if c.Target == p.Target {
			return reject("the roll to %s is under way", c.Target)
		}
		// No ordering of targets: a roll abandoned by the configuration may
		// be followed by one to an older version. Downgrades are refused per
		// host, from what each runs (Decide).
		next.Target, next.Hosts = c.Target, nil
	case OpBegin, OpDrain:
		h, ok := p.Host(c.Node)
		drained := ok && h.State == HostDraining && c.Op == OpBegin
		switch {
		case p.Target == "":
			return reject("no roll started")
		case p.Paused && !drained:
			return reject("the roll is paused")
		}
		if f := p.In(HostFailed); len(f) > 0 {
			return reject("the roll is stopped: %s failed", f[0].Name)
		}
		if drained {
			if h.Role != c.Role {
				return reject("%s is draining as %s, not %s", c.Node, h.Role, c.Role)
			}
			next.put(HostProgress{Name: c.Node, Role: c.Role, State: HostUpgrading, Since: c.At, Drained: true})
			break
		}
		if ok {
			return reject("%s already %s", c.Node, h.State)
		}
		if s, ok := p.ServerUpgrading(); ok {
			return reject("server %s is upgrading", s)
		}
		state := HostUpgrading
		if c.Op == OpDrain {
			state = HostDraining
		}
		next.put(HostProgress{Name: c.Node, Role: c.Role, State: state, Since: c.At})
	case OpDone:
		if p.Target == "" {
			return reject("no roll started")
		}
		h, ok := p.Host(c.Node)
		if ok && h.State != HostUpgrading {
			return reject("%s is %s, not upgrading", c.Node, h.State)
		}
		if !ok {
			// A host found already running the target: recorded without steps.
			h = HostProgress{Name: c.Node, Role: c.Role}
		}
		h.State, h.Since, h.Reason = HostDone, c.At, ""
		next.put(h)
	case OpRelease:
		h, ok := p.Host(c.Node)
		if !ok || h.State != HostDraining {
			return reject("%s is not draining", c.Node)
		}
		i, _ := next.find(c.Node)
		next.Hosts = slices.Delete(next.Hosts, i, i+1)
	case OpFailed:
		h, ok := p.Host(c.Node)
		if !ok || (h.State != HostUpgrading && h.State != HostDraining) {
			return reject("%s is not upgrading", c.Node)
		}
		// An agent that failed while draining may be cordoned already:
		// Drained says so, and its retry uncordons it in the end.
		h.Drained = h.Drained || h.State == HostDraining
		h.State, h.Since, h.Reason = HostFailed, c.At, c.Reason
		next.put(h)
	case OpPause:
		next.Paused = true
	case OpResume:
		next.Paused = false
		next.Hosts = slices.DeleteFunc(next.Hosts, func(h HostProgress) bool { return h.State == HostFailed && !h.Drained })
		// A failed agent the leader drained (or began to) is retried
		// through a drain again, never recorded done without steps while
		// it is cordoned: its drain is the leader's to undo.
		for i, h := range next.Hosts {
			if h.State == HostFailed {
				next.Hosts[i] = HostProgress{Name: h.Name, Role: h.Role, State: HostDraining, Since: c.At}
			}
		}
	}
	return next, nil
}

func (p *Progress) put(h HostProgress) {
	i, ok := p.find(h.Name)
	if ok {
		p.Hosts[i] = h
		return
	}
	p.Hosts = slices.Insert(p.Hosts, i, h)
}

// Validate checks what Apply guarantees of every Progress, so a snapshot
// can hold none the log could not have produced.
func (p Progress) Validate() error {
	if p.Target != "" {
		if v, err := rke2version.Parse(p.Target); err != nil || v.String() != p.Target {
			return fmt.Errorf("upgrade: target %q is not a canonical RKE2 version", p.Target)
		}
	} else if len(p.Hosts) > 0 {
		return errors.New("upgrade: hosts in a roll without a target")
	}
	servers := 0
	for i, h := range p.Hosts {
		if err := checkText("name", h.Name); err != nil || h.Name == "" {
			return fmt.Errorf("upgrade: host %d: name %q", i, h.Name)
		}
		if err := checkText("reason", h.Reason); err != nil {
			return fmt.Errorf("upgrade: host %s: %w", h.Name, err)
		}
		if i > 0 && p.Hosts[i-1].Name >= h.Name {
			return errors.New("upgrade: hosts not sorted or repeated")
		}
		switch h.Role {
		case RoleServer, RoleAgent:
		default:
			return fmt.Errorf("upgrade: host %s: role %q", h.Name, h.Role)
		}
		switch h.State {
		case HostUpgrading:
			if h.Role == RoleServer {
				servers++
			}
		case HostDraining:
			if h.Role != RoleAgent || h.Drained {
				return fmt.Errorf("upgrade: host %s: only an agent not yet drained is draining", h.Name)
			}
		case HostDone, HostFailed:
		default:
			return fmt.Errorf("upgrade: host %s: state %q", h.Name, h.State)
		}
		if (h.State == HostFailed) != (h.Reason != "") {
			return fmt.Errorf("upgrade: host %s: a reason goes with a failure, and only with one", h.Name)
		}
		if h.Drained && h.Role != RoleAgent {
			return fmt.Errorf("upgrade: host %s: only agents are drained by the leader", h.Name)
		}
		if h.Since <= 0 {
			return fmt.Errorf("upgrade: host %s: time %d", h.Name, h.Since)
		}
	}
	if servers > 1 {
		return errors.New("upgrade: two servers upgrading at once")
	}
	return nil
}
