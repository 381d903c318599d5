package node

import (
	"strings"
	"testing"
	"time"
)

// TestDecideVIPRelease walks the watchdog through a server's life: nothing
// while rke2-server is active or before the server was ever ready; a
// release only after the grace period, only while the VIP is held here and
// silent, and at most once per grace period.
func TestDecideVIPRelease(t *testing.T) {
	grace := 30 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down := func(at time.Duration, held, answers bool) vipWatchFacts {
		return vipWatchFacts{Now: t0.Add(at), WasReady: true, HeldHere: held, Answers: answers}
	}
	steps := []struct {
		name    string
		f       vipWatchFacts
		release bool
	}{
		{"active", vipWatchFacts{Now: t0, WasReady: true, Active: true, HeldHere: true}, false},
		{"down, held, silent: the grace starts", down(0, true, false), false},
		{"still within the grace", down(29*time.Second, true, false), false},
		{"grace over, but the VIP answers with the CA", down(31*time.Second, true, true), false},
		{"grace over, held elsewhere", down(32*time.Second, false, false), false},
		{"grace over, held here, silent: release", down(33*time.Second, true, false), true},
		{"released a moment ago", down(40*time.Second, true, false), false},
		{"a grace after the release, still held: again", down(64*time.Second, true, false), true},
		{"active again: the watch ends", vipWatchFacts{Now: t0.Add(70 * time.Second), WasReady: true, Active: true, HeldHere: true}, false},
		{"down again: a new grace", down(71*time.Second, true, false), false},
		{"within the new grace", down(100*time.Second, true, false), false},
		{"the new grace over", down(101*time.Second, true, false), true},
	}
	var w vipWatch
	for _, s := range steps {
		var reason string
		w, reason = decideVIPRelease(w, s.f, grace)
		if (reason != "") != s.release {
			t.Fatalf("%s: release reason %q, want release %v (memory %+v)", s.name, reason, s.release, w)
		}
		if s.release && !strings.Contains(reason, "rke2-server has been down for") {
			t.Errorf("%s: reason %q does not say why", s.name, reason)
		}
	}
	if w.ReleaseCount != 3 {
		t.Errorf("%d releases, want 3", w.ReleaseCount)
	}
	// A server that was never ready is the phase machine's business.
	var fresh vipWatch
	for _, at := range []time.Duration{0, time.Minute, time.Hour} {
		f := down(at, true, false)
		f.WasReady = false
		var reason string
		if fresh, reason = decideVIPRelease(fresh, f, grace); reason != "" {
			t.Fatalf("a server never ready released the VIP at %s: %q", at, reason)
		}
	}
}
