package election

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	leader       prometheus.Gauge
	bootstrap    *prometheus.GaugeVec
	clusterReady prometheus.Gauge
	slotHolder   *prometheus.GaugeVec
	raftRefused  *prometheus.CounterVec
	lastBoot     string
	lastHolder   string
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rke2_hanode", Name: "raft_leader",
			Help: "1 if this server is the raft leader, else 0.",
		}),
		bootstrap: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "rke2_hanode", Name: "bootstrap_node",
			Help: "1 for the committed bootstrap node, as this server sees it.",
		}, []string{"node"}),
		clusterReady: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rke2_hanode", Name: "cluster_ready",
			Help: "1 once cluster ready (VIP and CA hash) is committed, else 0.",
		}),
		slotHolder: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "rke2_hanode", Name: "join_slot_holder",
			Help: "1 for the server holding the join slot, as this server sees it.",
		}, []string{"node"}),
		raftRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rke2_hanode", Name: "raft_refused_connections_total",
			Help: "Inbound raft connections refused, by reason: connection_cap, host_handshakes, tls_handshake, no_server_id, not_admitted.",
		}, []string{"reason"}),
	}
	for _, r := range refusalReasons {
		m.raftRefused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.leader, m.bootstrap, m.clusterReady, m.slotHolder, m.raftRefused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("election: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) update(s View) {
	m.leader.Set(b2f(s.RaftState == "leader"))
	m.clusterReady.Set(b2f(s.ClusterReady != nil))
	if s.Bootstrap != m.lastBoot {
		m.bootstrap.Reset()
		if s.Bootstrap != "" {
			m.bootstrap.WithLabelValues(s.Bootstrap).Set(1)
		}
		m.lastBoot = s.Bootstrap
	}
	if s.SlotHolder != m.lastHolder {
		m.slotHolder.Reset()
		if s.SlotHolder != "" {
			m.slotHolder.WithLabelValues(s.SlotHolder).Set(1)
		}
		m.lastHolder = s.SlotHolder
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
