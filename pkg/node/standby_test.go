package node

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

const standbyReason = "a 4th server would make the etcd voters even: waiting for a 5th server or a removal"

// waitPhase waits (20s at most) until n shows phase.
func waitPhase(t *testing.T, n *Node, w *world, phase string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, _, _ := n.t.get()
		if p == phase {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %s, want %s; steps:\n%s", p, phase, strings.Join(w.steps(), "\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

// checkNotStarted fails if RKE2 was configured or started.
func checkNotStarted(t *testing.T, w *world) {
	t.Helper()
	for _, s := range w.steps() {
		if name, _, _ := strings.Cut(s, "@"); name == "write-config" || name == "start" {
			t.Fatalf("RKE2 %s in standby; steps:\n%s", name, strings.Join(w.steps(), "\n"))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.serviceOn {
		t.Fatal("RKE2 runs in standby")
	}
}

// checkStandbyShown: status says why the host waits.
func checkStandbyShown(t *testing.T, n *Node) {
	t.Helper()
	st := n.Status()
	if st.Node.Phase != status.PhaseStandby || st.Node.Standby != standbyReason {
		t.Fatalf("status node %+v, want phase standby with the reason", st.Node)
	}
}

// TestStandbyWaitsThenJoins: a server the leader does not admit waits in
// standby, RKE2 installed and not started, for longer than any slot
// deadline; once admitted it joins through the slot to ready.
func TestStandbyWaitsThenJoins(t *testing.T) {
	w := newWorld("server", false)
	w.standby = standbyReason
	n := newTestNode(t, w, "server", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.walk(ctx) }()
	waitPhase(t, n, w, status.PhaseStandby)
	checkStandbyShown(t, n)
	// The step clock passes slotDeadline many times over meanwhile: a
	// standby has no deadline (a failure would show as failed).
	start := n.clk.Now()
	for n.clk.Now().Sub(start) < 3*slotDeadline {
		if p, _, lastErr := n.t.get(); p != status.PhaseStandby {
			t.Fatalf("left standby while not admitted: %s (%s)", p, lastErr)
		}
		time.Sleep(time.Millisecond)
	}
	checkNotStarted(t, w)
	if !slices.Contains(w.steps(), "install@installing") {
		t.Fatalf("RKE2 not installed before standby; steps:\n%s", strings.Join(w.steps(), "\n"))
	}

	w.mu.Lock()
	w.standby = ""
	w.mu.Unlock()
	waitPhase(t, n, w, status.PhaseReady)
	cancel()
	<-done
	checkWorld(t, w)
	if st := n.Status(); st.Node.Standby != "" {
		t.Errorf("ready, still shows standby %q", st.Node.Standby)
	}
	steps := w.steps()
	i := slices.Index(steps, "acquire-slot@standby")
	j := slices.Index(steps, "start@starting")
	if i < 0 || j < i {
		t.Fatalf("want the slot asked in standby, then RKE2 started; steps:\n%s", strings.Join(steps, "\n"))
	}
}

// TestStandbyRestartResumes: a daemon restarted while in standby comes back
// to standby (not to a start), and joins once admitted.
func TestStandbyRestartResumes(t *testing.T) {
	w := newWorld("server", false)
	w.standby = standbyReason
	dir := t.TempDir()
	n := newTestNode(t, w, "server", dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.walk(ctx) }()
	waitPhase(t, n, w, status.PhaseStandby)
	cancel() // the daemon stops in standby
	<-done
	checkNotStarted(t, w)

	n2 := newTestNode(t, w, "server", dir)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() { done2 <- n2.walk(ctx2) }()
	waitPhase(t, n2, w, status.PhaseStandby)
	checkStandbyShown(t, n2)
	checkNotStarted(t, w)
	w.mu.Lock()
	w.standby = ""
	w.mu.Unlock()
	waitPhase(t, n2, w, status.PhaseReady)
	cancel2()
	<-done2
	checkWorld(t, w)
}

// TestStandbyServersCounted: status lists, and the gauge counts, the
// servers gossip shows in standby.
func TestStandbyServersCounted(t *testing.T) {
	ms := []gossip.MemberInfo{
		{Name: "d", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleServer, Phase: status.PhaseStandby}},
		{Name: "c", State: gossip.StateSuspect, Meta: gossip.Meta{Role: gossip.RoleServer, Phase: status.PhaseStandby}},
		{Name: "e", State: gossip.StateDead, Meta: gossip.Meta{Role: gossip.RoleServer, Phase: status.PhaseStandby}},
		{Name: "a", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleServer, Phase: status.PhaseReady}},
		{Name: "x", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent, Phase: status.PhaseStandby}},
	}
	if got := standbyServers(ms); !slices.Equal(got, []string{"c", "d"}) {
		t.Fatalf("standby servers %v, want [c d]", got)
	}
}
