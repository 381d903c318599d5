package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
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

// The bootstrap server raises an alarm when the committed cluster CA is not
// the server CA on its disk, and clears it when they agree.
func TestCommittedCAComparedWithTheServerCAOnDisk(t *testing.T) {
	dataDir := t.TempDir()
	path := installer.ServerCAPath(dataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := []byte(testCAPEM(t))
	if err := os.WriteFile(path, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	onDisk, err := cahash.Of(bundle)
	if err != nil {
		t.Fatal(err)
	}
	al, err := newAlarms(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	tr, _, _ := newTestTracker(t)
	n := &Node{cfg: &config.Config{NodeName: "boot", VIP: "192.0.2.10", RKE2DataDir: dataDir}, t: tr, log: zap.New(core), clk: newStepClock(), alarm: al}
	forged := strings.Repeat("ab", 32)

	n.checkCommittedCA(forged)
	n.checkCommittedCA(forged)
	if got := testutil.ToFloat64(al.caMismatch); got != 1 {
		t.Errorf("rke2_hanode_ca_mismatch = %v with a committed CA not on disk, want 1", got)
	}
	a := n.Status().Cluster.CAMismatch
	if a == nil || a.Seen != onDisk || a.Expected != forged {
		t.Errorf("status ca_mismatch = %+v, want disk %s against committed %s", a, onDisk, forged)
	}
	if l := logs.FilterMessageSnippet("not the server CA on this disk").Len(); l != 1 {
		t.Errorf("%d alarm log lines, want 1", l)
	}

	n.checkCommittedCA(onDisk)
	if got := testutil.ToFloat64(al.caMismatch); got != 0 {
		t.Errorf("rke2_hanode_ca_mismatch = %v with the committed CA on disk, want 0", got)
	}
	if a := n.Status().Cluster.CAMismatch; a != nil {
		t.Errorf("status ca_mismatch = %+v once they agree", a)
	}
}

// testCAPEM is a fresh self-signed CA in PEM, as server-ca.crt holds one.
func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rke2-server-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// A host whose node name another host holds stops its phase machine with
// an alarm (metric, status, log), asks again with backoff, and walks to
// ready once the name is free: it does not stop for good.
func TestNameTakenIsRetriedWithAnAlarm(t *testing.T) {
	w := newWorld("agent", false)
	w.nameTaken = errors.New(`gossip: node name "self" is claimed by this host and by 10.0.0.66`)
	n := newTestNode(t, w, "agent", t.TempDir())
	reg := prometheus.NewRegistry()
	al, err := newAlarms(reg)
	if err != nil {
		t.Fatal(err)
	}
	n.alarm = al
	core, logs := observer.New(zap.InfoLevel)
	n.log = zap.New(core)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.walkUnderOwnName(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "the alarm while the name is held and retried", func() (bool, string) {
		w.mu.Lock()
		retries := w.nameRetries
		w.mu.Unlock()
		phase, _, lastErr := n.t.get()
		on := testutil.ToFloat64(al.nameTakenGauge)
		return on == 1 && retries >= 3 && phase == status.PhaseFailed && strings.Contains(lastErr, "node-name"),
			fmt.Sprintf("gauge %v, retries %d, phase %s (%s)", on, retries, phase, lastErr)
	})
	if logs.FilterMessageSnippet("another host holds this host's node name").Len() == 0 {
		t.Error("no log line names the held name")
	}
	n.t.mu.Lock()
	frozen := n.t.frozen
	n.t.mu.Unlock()
	if frozen {
		t.Fatal("the held name froze the host for good")
	}

	w.mu.Lock()
	w.nameTaken = nil
	w.mu.Unlock()
	waitFor(t, "ready once the name is free", func() (bool, string) {
		phase, _, lastErr := n.t.get()
		return phase == status.PhaseReady && testutil.ToFloat64(al.nameTakenGauge) == 0,
			fmt.Sprintf("phase %s (%s), gauge %v", phase, lastErr, testutil.ToFloat64(al.nameTakenGauge))
	})
}

// waitFor polls cond until it holds; it fails the test only after minutes,
// with cond's last detail.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 5m: %s", what, detail)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
