package membership

import (
	"fmt"
	"slices"
)

// Apply is the replicated transition for a removal decision (Commit or
// Advance): the FSM applies it on every server alike. On done the member
// leaves Voters and joins Removed. A Commit while another removal is active
// is refused, so even two leaders' decisions never make two at once.
func (c Cluster) Apply(d Decision) (Cluster, error) {
	next := c.clone()
	switch d.Kind {
	case Commit:
		if c.Removal.Active() {
			return c, fmt.Errorf("membership: removal of %s refused: the removal of %s is %s", d.Removal.Node, c.Removal.Node, c.Removal.State)
		}
		if !slices.Contains(c.Voters, d.Removal.Node) {
			return c, fmt.Errorf("membership: removal of %s refused: not a voter", d.Removal.Node)
		}
		r := d.Removal
		next.Removal = &r
	case Advance:
		if c.Removal == nil || c.Removal.Node != d.Removal.Node {
			return c, fmt.Errorf("membership: no removal of %s to advance", d.Removal.Node)
		}
		r, err := c.Removal.Advance(d.Removal.State, d.Removal.Since, d.Removal.Reason)
		if err != nil {
			return c, err
		}
		next.Removal = &r
		if r.State == RemovalDone {
			next.Voters = slices.DeleteFunc(next.Voters, func(v string) bool { return v == r.Node })
			delete(next.IDs, r.Node)
			if !slices.Contains(next.Removed, r.Node) {
				next.Removed = append(next.Removed, r.Node)
				slices.Sort(next.Removed)
			}
		}
	default:
		return c, fmt.Errorf("membership: decision kind %d is not a removal", d.Kind)
	}
	return next, nil
}

// Joined records a server that joined through the slot: a voter with its
// host ID, no longer removed.
func (c Cluster) Joined(name, id string) Cluster {
	next := c.clone()
	if !slices.Contains(next.Voters, name) {
		next.Voters = append(next.Voters, name)
		slices.Sort(next.Voters)
	}
	next.IDs[name] = id
	next.Removed = slices.DeleteFunc(next.Removed, func(v string) bool { return v == name })
	if next.Joining == name {
		next.Joining = ""
	}
	return next
}

func (c Cluster) clone() Cluster {
	n := Cluster{Voters: slices.Clone(c.Voters), Joining: c.Joining, Removed: slices.Clone(c.Removed), IDs: map[string]string{}}
	for k, v := range c.IDs {
		n.IDs[k] = v
	}
	if c.Removal != nil {
		r := *c.Removal
		n.Removal = &r
	}
	return n
}
