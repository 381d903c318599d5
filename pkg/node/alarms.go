package node

import (
	"errors"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// alarms are the trust alarms this host raises: the VIP answering with
// another CA, and (on the bootstrap server) a committed CA that is not the
// one on disk. Each is a metric, a status field and a log line; none stops
// the host.
type alarms struct {
	vipMismatchTotal prometheus.Counter
	vipMismatch      prometheus.Gauge
	caMismatch       prometheus.Gauge
	nameTakenGauge   prometheus.Gauge

	mu       sync.Mutex
	vip      *status.CAMismatch
	ca       *status.CAMismatch
	caUnread bool // the server CA on disk was unreadable at the last check (logged once)
}

func newAlarms(reg prometheus.Registerer) (*alarms, error) {
	a := &alarms{
		vipMismatchTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rke2_hanode_vip_ca_mismatch_total",
			Help: "Probes of the VIP that found another CA than the cluster's (a squatter or another cluster holds the VIP).",
		}),
		vipMismatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rke2_hanode_vip_ca_mismatch",
			Help: "1 while the VIP's last answer carried another CA than the cluster's, else 0.",
		}),
		caMismatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rke2_hanode_ca_mismatch",
			Help: "1 on the bootstrap server while the committed cluster CA hash differs from the server CA on its disk, else 0.",
		}),
		nameTakenGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rke2_hanode_name_taken",
			Help: "1 while another host holds this host's node name and the phase machine waits for it, else 0.",
		}),
	}
	for _, c := range []prometheus.Collector{a.vipMismatchTotal, a.vipMismatch, a.caMismatch, a.nameTakenGauge} {
		if err := register(reg, c); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// nameTaken sets the alarm of this host's node name held by another host.
func (a *alarms) nameTaken(on bool) {
	if a == nil {
		return
	}
	a.nameTakenGauge.Set(map[bool]float64{true: 1, false: 0}[on])
}

// vipResult records what a probe of the VIP found: a CA mismatch raises the
// alarm (once logged per hash and holder), an answer with the cluster's CA
// clears it. Other failures leave it as it is.
func (n *Node) vipResult(err error, reachable bool) {
	a := n.alarm
	if a == nil {
		return
	}
	var m *vip.CAMismatchError
	switch {
	case errors.As(err, &m):
		holder := n.vipHolderNow()
		a.vipMismatchTotal.Inc()
		a.vipMismatch.Set(1)
		a.mu.Lock()
		same := a.vip != nil && a.vip.Seen == m.Got && a.vip.Holder == holder
		if !same {
			a.vip = &status.CAMismatch{Seen: m.Got, Expected: m.Expected, Holder: holder, Since: n.clk.Now()}
		}
		a.mu.Unlock()
		if !same {
			n.log.Error("VIP answers with another CA than the cluster's: not joining through it, retrying with backoff",
				zap.String("vip", n.cfg.VIP), zap.String("seen_ca_hash", m.Got), zap.String("expected_ca_hash", m.Expected),
				zap.String("vip_holder", holderName(holder)))
		}
	case reachable:
		a.vipMismatch.Set(0)
		a.mu.Lock()
		was := a.vip
		a.vip = nil
		a.mu.Unlock()
		if was != nil {
			n.log.Info("VIP answers with the cluster's CA again", zap.String("vip", n.cfg.VIP))
		}
	}
}

// vipHolderNow names the VIP's holder from the neighbour table, or from the
// serving certificate on loopback; "" when unknown.
func (n *Node) vipHolderNow() string {
	holder, local, err := n.prober.Holder(n.cfg.VIP, n.memberMACs())
	if err != nil {
		holder, local, err = n.holderByCertificate(n.cfg.VIP)
	}
	switch {
	case err != nil:
		return ""
	case local:
		return n.cfg.NodeName
	}
	return holder
}

func holderName(h string) string {
	if h == "" {
		return "unknown (no member's MAC answers for the VIP: a host outside the cluster)"
	}
	return h
}

// alarmStatus fills the alarm fields of /status.
func (n *Node) alarmStatus(c *status.Cluster) {
	a := n.alarm
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.vip != nil {
		v := *a.vip
		c.VIPCAMismatch = &v
	}
	if a.ca != nil {
		v := *a.ca
		c.CAMismatch = &v
	}
}

// checkCommittedCA compares, on the bootstrap server, the CA hash raft
// committed with cluster ready against the server CA RKE2 keeps on this
// disk (<rke2-data-dir>/server/tls/server-ca.crt, what /cacerts serves). A
// difference means the cluster pinned a CA this server does not serve:
// every joiner would refuse it. It raises the alarm; it does not stop.
func (n *Node) checkCommittedCA(committed string) {
	a := n.alarm
	if a == nil || committed == "" {
		return
	}
	path := installer.ServerCAPath(n.cfg.RKE2DataDir)
	bundle, err := os.ReadFile(path)
	var onDisk string
	if err == nil {
		onDisk, err = cahash.Of(bundle)
	}
	a.mu.Lock()
	if err != nil {
		first := !a.caUnread
		a.caUnread = true
		a.mu.Unlock()
		if first {
			n.log.Warn("server CA on disk not readable: the committed cluster CA is not checked against it", zap.String("path", path), zap.Error(err))
		}
		return
	}
	a.caUnread = false
	was := a.ca
	if onDisk == committed {
		a.ca = nil
	} else if was == nil || was.Seen != onDisk || was.Expected != committed {
		a.ca = &status.CAMismatch{Seen: onDisk, Expected: committed, Since: n.clk.Now()}
	}
	now := a.ca
	a.mu.Unlock()
	switch {
	case now == nil:
		a.caMismatch.Set(0)
		if was != nil {
			n.log.Info("committed cluster CA matches the server CA on disk again", zap.String("ca_hash", committed))
		}
	default:
		a.caMismatch.Set(1)
		if now != was {
			n.log.Error("the committed cluster CA is not the server CA on this disk: joiners would pin a CA this server does not serve",
				zap.String("committed_ca_hash", committed), zap.String("disk_ca_hash", onDisk), zap.String("path", path))
		}
	}
}
