package gossip

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// roleUnknown labels members whose metadata could not be decoded.
const roleUnknown = "unknown"

type metrics struct {
	members         *prometheus.GaugeVec
	decryptFailures prometheus.Counter
	nameConflicts   prometheus.Counter
	nameImpostors   prometheus.Counter
	joinAttempts    prometheus.Counter
	joinFailures    prometheus.Counter
	claimsRejected  *prometheus.CounterVec
	aliveRefused    prometheus.Counter
	streamsRefused  *prometheus.CounterVec
}

// claimRejectReasons label rke2_hanode_gossip_claims_rejected_total.
var claimRejectReasons = []string{"bad_signature", "wrong_key", "replay", "wrong_node", "address_mismatch", "malformed"}

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
		nameImpostors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rke2_hanode", Name: "name_impostor_total",
			Help: "Alive messages of another host claiming this host's node name after this host held it: refused, this host runs on."}),
		joinAttempts: counter("join_attempts_total",
			"Attempts to join the gossip cluster through the seeds."),
		joinFailures: counter("join_failures_total",
			"Join attempts in which no seed answered."),
		claimsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rke2_hanode", Subsystem: "gossip", Name: "claims_rejected_total",
			Help: "Server claims not applied, by reason: bad_signature, wrong_key, replay, wrong_node, address_mismatch, malformed."}, []string{"reason"}),
		aliveRefused: counter("alive_refused_total",
			"Alive messages refused because they put a server's node name on another address than its verified claim names."),
		streamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rke2_hanode", Subsystem: "gossip", Name: "streams_refused_total",
			Help: "Inbound gossip TCP streams closed before memberlist read them, by reason: stream_cap, host_streams, oversized."}, []string{"reason"}),
	}
	for _, r := range claimRejectReasons {
		m.claimsRejected.WithLabelValues(r)
	}
	for _, r := range streamRefuseReasons {
		m.streamsRefused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.members, m.decryptFailures, m.nameConflicts, m.nameImpostors, m.joinAttempts, m.joinFailures, m.claimsRejected, m.aliveRefused, m.streamsRefused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gossip: register metrics: %w", err)
		}
	}
	return m, nil
}

// setMembers publishes the counts of stateCounts, with explicit zeros so a
// state that empties is seen as 0 rather than disappearing.
func (m *metrics) setMembers(counts map[roleState]int) {
	for _, role := range []string{RoleServer, RoleAgent, roleUnknown} {
		for _, st := range allStates {
			m.members.WithLabelValues(role, string(st)).Set(float64(counts[roleState{role, st}]))
		}
	}
}

type roleState struct {
	role  string
	state Liveness
}
