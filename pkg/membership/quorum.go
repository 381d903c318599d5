package membership

import (
	"fmt"
	"slices"
)

// Quorum is etcd's majority of n voting members: n/2+1 (learners do not
// vote and do not count).
func Quorum(n int) int { return n/2 + 1 }

// Member is one etcd member as the deciding server sees it.
type Member struct {
	Name string
	// Voter is false for a learner (a member etcd does not count in its
	// quorum until promoted).
	Voter bool
	// Answers: the member's etcd answered its last health check (or its
	// server gossips a healthy etcd view). A dead host never answers.
	Answers bool
}

// Verdict is the arithmetic behind a removal decision, kept so that a
// refusal can say it with the numbers.
type Verdict struct {
	Target string
	// Members are all etcd members, voters and learners; Voters the
	// voting ones; Answering the voters that answer.
	Members, Voters, Answering int
	// QuorumBefore is the majority needed to commit the removal itself;
	// VotersAfter, QuorumAfter and AnsweringAfter are the same numbers once
	// the target is gone.
	QuorumBefore, VotersAfter, QuorumAfter, AnsweringAfter int
	OK                                                     bool
	Reason                                                 string
}

// CheckRemoval applies etcd's rule for removing a member, and the one
// before it, to the members that answer:
//
//   - the removal is an etcd proposal, so the voters that answer now must be
//     a quorum of the voters now: Answering ≥ Voters/2+1;
//   - etcd's strict reconfiguration check (on by default) refuses to remove
//     a voter unless the voters that remain and are started (and, in the
//     server's own check, recently connected to it) are a quorum of the
//     voters that remain: AnsweringAfter ≥ VotersAfter/2+1.
//
// A learner can be removed whenever the first holds. The target must be a
// member; removing the last voter is refused.
func CheckRemoval(members []Member, target string) Verdict {
	v := Verdict{Target: target}
	var t *Member
	for i := range members {
		m := &members[i]
		v.Members++
		if m.Voter {
			v.Voters++
			if m.Answers {
				v.Answering++
			}
		}
		if m.Name == target {
			t = m
		}
	}
	v.QuorumBefore = Quorum(v.Voters)
	v.VotersAfter, v.AnsweringAfter = v.Voters, v.Answering
	if t != nil && t.Voter {
		v.VotersAfter--
		if t.Answers {
			v.AnsweringAfter--
		}
	}
	v.QuorumAfter = Quorum(v.VotersAfter)
	switch {
	case t == nil:
		v.Reason = fmt.Sprintf("%s is not an etcd member (members: %s)", target, names(members))
	case t.Voter && v.VotersAfter == 0:
		v.Reason = fmt.Sprintf("%s is the only etcd voter: removing it would leave no cluster", target)
	case v.Answering < v.QuorumBefore:
		v.Reason = fmt.Sprintf("quorum is already lost: %d of %d etcd voters answer, %d are needed to commit any change; "+
			"bring servers back, or recover with `rke2-hanode recover --from NODE --confirm`", v.Answering, v.Voters, v.QuorumBefore)
	case v.AnsweringAfter < v.QuorumAfter:
		v.Reason = fmt.Sprintf("removing %s would break quorum: %d etcd voters would remain, %d of them answer, and %d are needed; "+
			"bring a server back first", target, v.VotersAfter, v.AnsweringAfter, v.QuorumAfter)
	default:
		v.OK = true
		v.Reason = fmt.Sprintf("removing %s keeps quorum: %d etcd voters remain, %d answer, %d are needed", target, v.VotersAfter, v.AnsweringAfter, v.QuorumAfter)
	}
	return v
}

func names(ms []Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	slices.Sort(s)
	if len(s) == 0 {
		return "none"
	}
	return fmt.Sprint(s)
}

// EtcdView is what one server gossips of its local etcd: the product's
// witness for quorum, as each host sees it.
type EtcdView struct {
	// Server is the reporting host (its node name, also its etcd member
	// name as RKE2 sets it).
	Server string `json:"server"`
	// Member: this host is an etcd member (its local etcd runs and knows
	// itself in the member list).
	Member bool `json:"member"`
	// Revision is the local store's revision (the newest data it holds).
	Revision int64 `json:"revision"`
	// Healthy: the local etcd answered a linearizable read, so it is part
	// of a working quorum.
	Healthy bool `json:"healthy"`
}

// Assessment is the quorum picture status and metrics show.
type Assessment struct {
	Voters   int // etcd voters the cluster records
	Healthy  int // of them, those whose server gossips a healthy view
	Quorum   int // Voters/2+1
	Margin   int // Healthy-Quorum: how many more servers may fail (negative: lost)
	AtRisk   bool
	Majority bool // false: a majority of the voters is gone, quorum is lost
	// Survivor is the server with the newest data among the voters that
	// still report (highest revision; equal revisions: lowest name), the
	// one `recover --from` should name. "" when none reports.
	Survivor         string
	SurvivorRevision int64
}

// Assess computes the quorum margin from the voters and the etcd views
// gossiped by the servers still alive (a dead host's view is not passed:
// it does not count as healthy, whatever it last said). AtRisk holds when
// one more failure, or none, loses quorum. Recovery is never automatic:
// this only informs.
func Assess(voters []string, views []EtcdView) Assessment {
	a := Assessment{Voters: len(voters), Quorum: Quorum(len(voters))}
	byName := map[string]EtcdView{}
	for _, v := range views {
		byName[v.Server] = v
	}
	sorted := slices.Sorted(slices.Values(voters))
	for _, name := range sorted {
		v, ok := byName[name]
		if !ok {
			continue
		}
		if v.Member && v.Healthy {
			a.Healthy++
		}
		if a.Survivor == "" || v.Revision > a.SurvivorRevision {
			a.Survivor, a.SurvivorRevision = name, v.Revision
		}
	}
	a.Margin = a.Healthy - a.Quorum
	a.Majority = a.Healthy >= a.Quorum
	a.AtRisk = a.Margin <= 0
	return a
}
