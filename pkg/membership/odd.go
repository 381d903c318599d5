package membership

import (
	"fmt"
	"slices"
)

// AdmitInput is what the leader knows when it hands out the join slot.
type AdmitInput struct {
	// Voters are the etcd voting members as the replicated state records
	// them (the bootstrap node and the servers that joined, less removals).
	Voters []string
	// Joining is the holder of the join slot, "" when none: it counts as a
	// voter to be, so a pair is admitted one at a time.
	Joining string
	// Candidates are the alive servers of this cluster, RKE2 installed,
	// that ask to join and are neither voters nor joining.
	Candidates []string
	// MaxServers caps the voting set (the max-servers key); 0 means no cap
	// beyond etcd's own sense (never used by the daemon: config defaults it).
	MaxServers int
}

// Waiting is a server kept in standby, and why, in words for status.
type Waiting struct {
	Name   string
	Reason string
}

// Admission is the outcome: who joins and who waits.
type Admission struct {
	// Target is the voter count the admissions lead to: odd, never below
	// the current count (no healthy member is demoted to make it odd).
	Target int
	// Admit are the candidates that join, in order: Admit[0] gets the slot
	// next when it is free.
	Admit []string
	// Standby are the others, each with the reason status shows.
	Standby []Waiting
}

// Next is the server to grant the slot to, "" when none (the slot is held
// or nobody is admitted).
func (a Admission) Next(in AdmitInput) string {
	if in.Joining != "" || len(a.Admit) == 0 {
		return ""
	}
	return a.Admit[0]
}

// Admit decides who joins through the slot and who waits in standby so
// that the voting set only ever settles at an odd count (1, 3, 5, 7, ...):
//
//   - n is the current voters plus the slot holder, c the other candidates;
//   - the target is the largest odd number at most min(n+c, MaxServers),
//     and never below n;
//   - the first target-n candidates by name are admitted, the rest wait.
//
// So with 3 voters a 4th server waits until a 5th arrives (then both are
// admitted and join one at a time), a removal that leaves 2 or 4 is filled
// by one standby at once, and a cluster at max-servers admits nobody. A
// count that is already even with nobody waiting stays as it is: members
// are never demoted.
func Admit(in AdmitInput) Admission {
	inSet := map[string]bool{}
	for _, v := range in.Voters {
		inSet[v] = true
	}
	n := len(inSet)
	if in.Joining != "" && !inSet[in.Joining] {
		inSet[in.Joining] = true
		n++
	}
	var cands []string
	for _, c := range in.Candidates {
		if !inSet[c] && !slices.Contains(cands, c) {
			cands = append(cands, c)
		}
	}
	slices.Sort(cands)
	limit := n + len(cands)
	if in.MaxServers > 0 && limit > in.MaxServers {
		limit = in.MaxServers
	}
	target := limit
	if target%2 == 0 {
		target--
	}
	if target < n {
		target = n
	}
	a := Admission{Target: target}
	k := target - n
	a.Admit = slices.Clone(cands[:k])
	for _, c := range cands[k:] {
		a.Standby = append(a.Standby, Waiting{Name: c, Reason: standbyReason(n, in.MaxServers)})
	}
	return a
}

func standbyReason(n, max int) string {
	if max > 0 && n >= max {
		return fmt.Sprintf("the cluster has %d etcd voters, max-servers is %d: waits for a member to be removed", n, max)
	}
	if max > 0 && n+1 >= max {
		return fmt.Sprintf("the cluster has %d etcd voters and max-servers %d leaves no room for a pair: waits for a member to be removed", n, max)
	}
	return fmt.Sprintf("the cluster has %d etcd voters; one more would make an even count: waits for another server to join with it, or for a member to be removed", n)
}
