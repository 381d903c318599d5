package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

func newTestTracker(t *testing.T) (*tracker, *prometheus.Registry, *[]string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	tr, err := newTracker(zap.NewNop(), time.Now, reg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	lines := &[]string{}
	tr.notify = func(s string) { mu.Lock(); *lines = append(*lines, s); mu.Unlock() }
	return tr, reg, lines
}

func TestTrackerPhaseMetricsAndStatusLines(t *testing.T) {
	tr, reg, lines := newTestTracker(t)
	var hooked []string
	tr.setHook(func(p string, _ time.Time) { hooked = append(hooked, p) })
	tr.set(status.PhaseDiscovering, "1 of 3 servers seen")
	tr.setDetail("2 of 3 servers seen")
	tr.set(status.PhaseWaitingJoinSlot, "1 of 2 servers joined, slot held by ha-m2")
	if got := testutil.ToFloat64(tr.phaseGauge.WithLabelValues(status.PhaseWaitingJoinSlot)); got != 1 {
		t.Errorf("current phase gauge = %v", got)
	}
	if got := testutil.ToFloat64(tr.phaseGauge.WithLabelValues(status.PhaseDiscovering)); got != 0 {
		t.Errorf("old phase gauge = %v", got)
	}
	if got := testutil.ToFloat64(tr.enteredGauge.WithLabelValues(status.PhaseDiscovering)); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("entered timestamp = %v", got)
	}
	want := []string{
		"STATUS=discovering: 1 of 3 servers seen",
		"STATUS=discovering: 2 of 3 servers seen",
		"STATUS=waiting-join-slot: 1 of 2 servers joined, slot held by ha-m2",
	}
	if strings.Join(*lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("STATUS lines:\n%s\nwant:\n%s", strings.Join(*lines, "\n"), strings.Join(want, "\n"))
	}
	if strings.Join(hooked, ",") != ",discovering,waiting-join-slot" {
		t.Errorf("hook saw %q", hooked)
	}
	tr.fail("start", errors.New("unit failed"), false)
	phase, _, lastErr := tr.get()
	if phase != status.PhaseFailed || lastErr != "unit failed" {
		t.Errorf("after fail: %s %q", phase, lastErr)
	}
	if got := testutil.ToFloat64(tr.errorsTotal.WithLabelValues("start")); got != 1 {
		t.Errorf("errors_total{start} = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "rke2_hanode_phase"); err != nil || n != len(status.Phases) {
		t.Errorf("rke2_hanode_phase has %d series (%v), want one per phase", n, err)
	}
}

func TestRetryBacksOffAndStopsOnPermanent(t *testing.T) {
	tr, _, _ := newTestTracker(t)
	n := &Node{t: tr, log: zap.NewNop(), clk: newStepClock(), retryPolicy: retryPolicy}
	tr.set(status.PhaseStarting, "")
	calls := 0
	err := n.retry(context.Background(), "test", func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("transient")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("retry: %v after %d calls", err, calls)
	}
	if phase, _, _ := tr.get(); phase != status.PhaseStarting {
		t.Errorf("phase after recovery = %s, want starting", phase)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	calls = 0
	conflict := &vip.ConflictError{VIP: "10.0.0.200", Interface: "eth0"}
	err = n.retry(ctx, "bootstrap-checks", func(context.Context) error { calls++; return conflict })
	if calls != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("permanent error retried: %d calls, %v", calls, err)
	}
	if phase, _, lastErr := tr.get(); phase != status.PhaseFailed || !strings.Contains(lastErr, "10.0.0.200") {
		t.Errorf("permanent failure shows %s %q", phase, lastErr)
	}
}

func TestWithDeadlineNamesTheWait(t *testing.T) {
	err := withDeadline(context.Background(), 10*time.Millisecond, "waiting for a join slot", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err == nil || err.Error() != "still waiting for a join slot after 10ms" {
		t.Errorf("err = %v", err)
	}
}

func TestProgressRoundTripAndDamage(t *testing.T) {
	dir := t.TempDir()
	p, err := loadProgress(dir)
	if err != nil || p.StartedRKE2 {
		t.Fatalf("fresh progress: %+v %v", p, err)
	}
	want := progress{Role: "server", StartedRKE2: true, CAHash: strings.Repeat("a", 64)}
	if err := saveProgress(dir, want, time.Now()); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(progressPath(dir))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	got, err := loadProgress(dir)
	if err != nil || got.Role != want.Role || !got.StartedRKE2 || got.CAHash != want.CAHash {
		t.Errorf("loaded %+v %v", got, err)
	}
	os.WriteFile(progressPath(dir), []byte("{"), 0o600)
	if _, err := loadProgress(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged progress: %v", err)
	}
}

func TestRoleChangeRefused(t *testing.T) {
	dir := t.TempDir()
	saveProgress(dir, progress{Role: "agent", StartedRKE2: true}, time.Now())
	c := config.Defaults()
	c.Role, c.NodeName, c.DataDir, c.AdvertiseAddress, c.Interface, c.VIP = "server", "n1", dir, "127.0.0.1", "lo", "127.0.0.200"
	_, err := New(Options{Config: c})
	if err == nil || !strings.Contains(err.Error(), "joined as role agent") {
		t.Errorf("role change: %v", err)
	}
}

// TestWithDeadlineKeepsTheHint: a wait that ends at its deadline with a
// hint says what to look at, not only what it waited for.
func TestWithDeadlineKeepsTheHint(t *testing.T) {
	err := withDeadline(context.Background(), 10*time.Millisecond, "waiting for the VIP", func(ctx context.Context) error {
		<-ctx.Done()
		return &hinted{err: fmt.Errorf("vip: wait: %w", ctx.Err()), hint: "h1 holds it"}
	})
	if err == nil || err.Error() != "still waiting for the VIP after 10ms: h1 holds it" {
		t.Errorf("err = %v", err)
	}
}

// TestSilentVIPHint: the hint names the holder the neighbour table shows
// and what can keep a VIP without its supervisor.
func TestSilentVIPHint(t *testing.T) {
	for _, c := range []struct {
		holder   string
		local    bool
		err      error
		want     []string
		dontWant string
	}{
		{holder: "h2", want: []string{"h2 holds 10.0.0.200 (by ARP)", "rke2-server is stopped on h2", "rke2-killall.sh there"}},
		{holder: "h1", local: true, want: []string{"this host holds 10.0.0.200", "is rke2-server running here"}},
		{err: fmt.Errorf("%w: no neighbour entry for it yet", vip.ErrHolderUnknown), want: []string{"no member is known to hold 10.0.0.200", "no neighbour entry", "is kube-vip running"}, dontWant: "rke2-killall"},
	} {
		got := silentVIPHint("10.0.0.200", c.holder, c.local, c.err)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("hint %q lacks %q", got, w)
			}
		}
		if c.dontWant != "" && strings.Contains(got, c.dontWant) {
			t.Errorf("hint %q should not mention %q", got, c.dontWant)
		}
	}
}
