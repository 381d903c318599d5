package gossip

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// States of a member as Members reports them.
type State string

const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

var allStates = []State{StateAlive, StateSuspect, StateDead, StateLeft}

// roleUnknown labels members whose metadata could not be decoded.
const roleUnknown = "unknown"

type metrics struct {
	members         *prometheus.GaugeVec
	decryptFailures prometheus.Counter
	nameConflicts   prometheus.Counter
	joinAttempts    prometheus.Counter
	joinFailures    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rke2_hanode", Subsystem: "gossip", Name: name, Help: help})
	}
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "rke2_hanode",
			Subsystem: "gossip",
			Name:      "members",
			Help:      "Gossip members this node knows, by role and state (dead and left members are kept for a while).",
		}, []string{"role", "state"}),
		decryptFailures: counter("decrypt_failures_total",
			"Gossip messages rejected because another token or cluster name produced them."),
		nameConflicts: counter("name_conflicts_total",
			"Alive messages rejected because another host already holds the node name."),
		joinAttempts: counter("join_attempts_total",
			"Attempts to join the gossip cluster through the seeds."),
		joinFailures: counter("join_failures_total",
			"Join attempts in which no seed answered."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.members, m.decryptFailures, m.nameConflicts, m.joinAttempts, m.joinFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gossip: register metrics: %w", err)
		}
	}
	return m, nil
}

// setMembers publishes counts from a snapshot, with explicit zeros so a state
// that empties is seen as 0 rather than disappearing.
func (m *metrics) setMembers(snapshot []MemberInfo) {
	counts := map[[2]string]int{}
	for _, mi := range snapshot {
		role := mi.Meta.Role
		if mi.MetaErr != nil || role == "" {
			role = roleUnknown
		}
		counts[[2]string{role, string(mi.State)}]++
	}
	for _, role := range []string{RoleServer, RoleAgent, roleUnknown} {
		for _, st := range allStates {
			m.members.WithLabelValues(role, string(st)).Set(float64(counts[[2]string{role, string(st)}]))
		}
	}
}
