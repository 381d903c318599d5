package election

import "github.com/rke2-hanode/rke2-hanode/pkg/membership"

// Standby reports why this server waits in standby: the leader's duties are
// active and Admission, computed from this node's FSM and gossip view as
// the leader computes it, does not admit it. ok false: it is admitted, or
// the duties are off (every server that asks joins).
func (e *Election) Standby() (reason string, ok bool) {
	a, on := e.Admission()
	if !on {
		return "", false
	}
	for _, w := range a.Standby {
		if w.Name == e.cfg.NodeName {
			return w.Reason, true
		}
	}
	return "", false
}

// Admission is who joins and who waits in standby as this node sees it;
// on false when the membership duties do not act (off, or a voter's build
// does not read their commands).
func (e *Election) Admission() (a membership.Admission, on bool) {
	d := e.cfg.Duties
	st := e.fsm.get()
	if !d.active(st) || st.ClusterReady == nil {
		return membership.Admission{}, false
	}
	return Admission(st, e.servers(), e.cfg.ClusterName, d.Config.MaxServers), true
}
