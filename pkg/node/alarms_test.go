package node

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// squatProber is a VIP held by a squatter serving another CA for the first
// squats probes, then by the cluster.
type squatProber struct {
	fakeProber
	mu     sync.Mutex
	squats int
	seen   []*status.CAMismatch // the status alarm at each probe
	n      *Node
}

func (p *squatProber) WaitReachableAmong(_ context.Context, addr, ca string, _ func() vip.Slot) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, p.n.Status().Cluster.VIPCAMismatch)
	if p.squats > 0 {
		p.squats--
		return "evil", &vip.CAMismatchError{URL: "https://" + addr + ":9345/cacerts", Expected: ca, Got: "evil"}
	}
	return ca, nil
}

func (p *squatProber) Holder(string, []vip.MemberMAC) (string, bool, error) {
	return "squatter-host", false, nil
}

// A VIP answering with another CA is not a permanent stop: the joiner
// alarms (metric, status naming the CA seen and the holder, a log line),
// retries with backoff, and joins once the cluster holds the VIP.
func TestVIPSquatterIsRetriedWithAnAlarm(t *testing.T) {
	tr, _, _ := newTestTracker(t)
	reg := prometheus.NewRegistry()
	al, err := newAlarms(reg)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	w := newWorld("agent", false)
	n := &Node{cfg: &config.Config{NodeName: "j1", VIP: "192.0.2.10"}, t: tr, log: zap.New(core), clk: newStepClock(),
		retryPolicy: retryPolicy, members: fakeMembers{w}, alarm: al}
	p := &squatProber{fakeProber: fakeProber{w}, squats: 3, n: n}
	n.prober = p
	tr.set(status.PhaseWaitingVIP, "")

	err = n.retry(context.Background(), "wait-vip", func(ctx context.Context) error { return n.waitVIP(ctx, "cluster-ca") })
	if err != nil {
		t.Fatalf("waitVIP after the squatter left: %v", err)
	}
	if len(p.seen) != 4 {
		t.Fatalf("probed %d times, want 4 (3 squatted, then the cluster)", len(p.seen))
	}
	if a := p.seen[3]; a == nil || a.Seen != "evil" || a.Expected != "cluster-ca" || a.Holder != "squatter-host" {
		t.Errorf("status during the squat = %+v, want the seen CA evil and holder squatter-host", a)
	}
	if got := testutil.ToFloat64(al.vipMismatchTotal); got != 3 {
		t.Errorf("rke2_hanode_vip_ca_mismatch_total = %v, want 3", got)
	}
	if got := testutil.ToFloat64(al.vipMismatch); got != 0 {
		t.Errorf("rke2_hanode_vip_ca_mismatch = %v after the cluster answered, want 0", got)
	}
	if a := n.Status().Cluster.VIPCAMismatch; a != nil {
		t.Errorf("status still shows the squat after the cluster answered: %+v", a)
	}
	if phase, _, _ := tr.get(); phase == status.PhaseFailed {
		t.Errorf("phase %s after the squatter left", phase)
	}
	alarmsLogged := logs.FilterMessageSnippet("VIP answers with another CA").All()
	if len(alarmsLogged) != 1 || !strings.Contains(alarmsLogged[0].ContextMap()["vip_holder"].(string), "squatter-host") {
		t.Errorf("alarm log lines = %v, want one naming the holder", alarmsLogged)
	}
}
