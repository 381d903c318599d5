package election

import (
	"slices"

	"github.com/hashicorp/raft"
)

// RaftVoters are the voter IDs of raft's configuration as this server sees
// it, sorted, and ok only while raft runs and knows a leader (a server
// without a leader may hold a configuration the cluster has left behind,
// after a quorum-loss recovery for example).
func (e *Election) RaftVoters() (voters []string, ok bool) {
	e.mu.Lock()
	r, running := e.r, e.running
	e.mu.Unlock()
	if r == nil || !running {
		return nil, false
	}
	if addr, _ := r.LeaderWithID(); addr == "" {
		return nil, false
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, false
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		}
	}
	slices.Sort(voters)
	return voters, len(voters) > 0
}
