package upgrade

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the rolling upgrade's series (docs/operations.md, "Upgrades").
// They are registered on an injected registerer, so that several nodes can
// run in one test process; nil registers nothing.
//
//	rke2_hanode_upgrade_wanted_version{node,role,version}   1 per host: what its config wants
//	rke2_hanode_upgrade_running_version{node,role,version}  1 per host: what it runs
//	rke2_hanode_upgrade_host_state{node,state}              1 per host in the roll: draining, upgrading, done or failed
//	rke2_hanode_upgrade_phase{phase}                        1 for the roll's phase (Phases)
//	rke2_hanode_upgrade_hosts{role,state}                   hosts by role and place: pending, draining, upgrading, done, failed
//	rke2_hanode_upgrade_blocked{reason}                     1 while blocked, by kind (BlockedKinds), else 0 for all
//	rke2_hanode_upgrade_paused                              1 while paused
//
// The blocked reason's full text is in /status; the label carries only its
// kind, so the series count stays fixed.
type Metrics struct {
	wanted, running *prometheus.GaugeVec
	hostState       *prometheus.GaugeVec
	phase           *prometheus.GaugeVec
	hosts           *prometheus.GaugeVec
	blocked         *prometheus.GaugeVec
	paused          prometheus.Gauge
}

// Phases lists every plan phase, one series each.
var Phases = []string{PhaseIdle, PhaseWaiting, PhaseRefused, PhaseServers, PhaseAgents, PhasePaused, PhaseFailed, PhaseDone}

// BlockedKinds are the values of the blocked metric's reason label.
var BlockedKinds = []string{"refused", "failed", "paused", "waiting"}

// NewMetrics builds the series and registers them on reg (nil: none).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	gv := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "rke2_hanode", Subsystem: "upgrade", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		wanted:    gv("wanted_version", "1 per host, labelled with the RKE2 version its configuration wants.", "node", "role", "version"),
		running:   gv("running_version", "1 per host, labelled with the RKE2 version it runs.", "node", "role", "version"),
		hostState: gv("host_state", "1 per host in the current roll, labelled with its state: draining, upgrading, done or failed.", "node", "state"),
		phase:     gv("phase", "1 for the rolling upgrade's phase.", "phase"),
		hosts:     gv("hosts", "Hosts by role and place in the roll: pending, draining, upgrading, done, failed.", "role", "state"),
		blocked:   gv("blocked", "1 for the kind of reason the roll is blocked (refused, failed, paused, waiting); all 0 when it is not.", "reason"),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "rke2_hanode", Subsystem: "upgrade", Name: "paused",
			Help: "1 while the rolling upgrade is paused."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.wanted, m.running, m.hostState, m.phase, m.hosts, m.blocked, m.paused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("upgrade: register metrics: %w", err)
		}
	}
	return m, nil
}

// Update sets every series from one plan and its input.
func (m *Metrics) Update(in Input, plan Plan) {
	m.wanted.Reset()
	m.running.Reset()
	m.hostState.Reset()
	m.hosts.Reset()
	counts := map[[2]string]int{}
	for _, role := range []Role{RoleServer, RoleAgent} {
		for _, st := range []string{"pending", string(HostDraining), string(HostUpgrading), string(HostDone), string(HostFailed)} {
			counts[[2]string{string(role), st}] = 0
		}
	}
	for _, h := range in.Hosts {
		if !h.Wanted.IsZero() {
			m.wanted.WithLabelValues(h.Name, string(h.Role), h.Wanted.String()).Set(1)
		}
		if !h.Running.IsZero() {
			m.running.WithLabelValues(h.Name, string(h.Role), h.Running.String()).Set(1)
		}
		st := "pending"
		if hp, ok := in.Progress.Host(h.Name); ok {
			st = string(hp.State)
			m.hostState.WithLabelValues(h.Name, st).Set(1)
		}
		counts[[2]string{string(h.Role), st}]++
	}
	for k, n := range counts {
		m.hosts.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
	for _, p := range Phases {
		m.phase.WithLabelValues(p).Set(b2f(plan.Phase == p))
	}
	kind := ""
	if plan.Blocked != "" {
		switch plan.Phase {
		case PhaseRefused, PhaseFailed, PhasePaused:
			kind = plan.Phase
		default:
			kind = "waiting"
		}
	}
	for _, k := range BlockedKinds {
		m.blocked.WithLabelValues(k).Set(b2f(kind == k))
	}
	m.paused.Set(b2f(in.Progress.Paused))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
