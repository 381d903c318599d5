package vip

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// TestWaitReachableSpreadsManyWaiters runs 200 hosts waiting for a VIP that
// answers only after ten minutes, each on its own fake clock and jitter
// source, and counts the probes the supervisor would see per 10 s window.
// With full jitter each waiter settles at one probe per BackoffMax/2 on
// average, so the aggregate rate stays bounded whatever the number of
// waiters' start times; without jitter they would probe in lockstep.
func TestWaitReachableSpreadsManyWaiters(t *testing.T) {
	const (
		waiters      = 200
		horizon      = 10 * time.Minute
		window       = 10 * time.Second
		probeLatency = 50 * time.Millisecond
	)
	start := time.Unix(1_700_000_000, 0)
	// The last probe may come up to BackoffMax after the horizon.
	windows := make([]int, int((horizon+DefaultBackoffMax)/window)+1)
	probes := 0
	for i := range waiters {
		clock := &fakeClock{now: start}
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		p := newTestProber(t, ProberConfig{Clock: clock, Jitter: rng.Int64N})
		p.probe = func(context.Context, string, string) Result {
			probes++
			windows[int(clock.now.Sub(start)/window)]++
			clock.now = clock.now.Add(probeLatency)
			if clock.now.Sub(start) >= horizon {
				return Result{Reachable: true, CAHash: "abc"}
			}
			return Result{Err: errNotYet}
		}
		if hash, err := p.WaitReachable(context.Background(), "10.0.0.1", "abc"); err != nil || hash != "abc" {
			t.Fatalf("waiter %d: %s, %v", i, hash, err)
		}
	}

	// Steady state: each waiter probes about every BackoffMax/2 = 15 s, so
	// 200 waiters make about 133 probes per 10 s; allow 1.5×.
	steadyLimit := waiters * int(window) / int(DefaultBackoffMax/2) * 3 / 2
	worst := 0
	for w, n := range windows[6:int(horizon/window)] { // from the first minute to the horizon
		if n > steadyLimit {
			t.Errorf("window %d (t=%v): %d probes, want at most %d", w+6, time.Duration(w+6)*window, n, steadyLimit)
		}
		worst = max(worst, n)
	}
	// The ramp: the first 10 s hold the initial probe and the short early
	// waits (expected 1 + about 4 more per waiter).
	if limit := waiters * 7; windows[0] > limit {
		t.Errorf("first 10 s: %d probes, want at most %d", windows[0], limit)
	}
	perSecond := float64(probes) / horizon.Seconds()
	t.Logf("%d waiters over %v: %d probes (%.1f/s on average), first 10 s: %d, worst steady 10 s window: %d (limit %d)",
		waiters, horizon, probes, perSecond, windows[0], worst, steadyLimit)
	if perSecond > float64(waiters)/10 {
		t.Errorf("average %.1f probes/s, want at most %.1f", perSecond, float64(waiters)/10)
	}
}

var errNotYet = errors.New("vip: GET https://10.0.0.1:9345/ping: 503 Service Unavailable")

func TestBackoffCeiling(t *testing.T) {
	p := newTestProber(t, ProberConfig{Jitter: func(n int64) int64 { return n - 1 }})
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for attempt, w := range want {
		if got := p.backoff(attempt) + 1; got != w {
			t.Errorf("backoff(%d) ceiling = %v, want %v", attempt, got, w)
		}
	}
	if got := p.backoff(1 << 20); got != 30*time.Second-1 {
		t.Errorf("backoff after very many attempts = %v, want capped at 30s", got)
	}
}

// TestWaitReachableAmongBoundsAggregateRate: 200 waiters that know their
// rank among 200 send at most MaxAggregateProbeRate probes together in
// every second after their first probe, however long the VIP stays down,
// and no two probe at the same instant; once the VIP answers, every waiter
// is through within one round of the schedule plus its backoff.
func TestWaitReachableAmongBoundsAggregateRate(t *testing.T) {
	const (
		waiters = 200
		horizon = 5 * time.Minute
	)
	start := time.Unix(1_700_000_000, 123_456_789)
	perSecond := map[int]int{}
	instants := map[time.Time]int{}
	first := 0
	var lastThrough time.Duration
	for i := range waiters {
		clock := &fakeClock{now: start}
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		p := newTestProber(t, ProberConfig{Clock: clock, Jitter: rng.Int64N})
		n := 0
		p.probe = func(context.Context, string, string) Result {
			n++
			if n == 1 {
				first++ // every waiter's first probe comes at once
			} else {
				perSecond[int(clock.now.Sub(start)/time.Second)]++
				instants[clock.now]++
			}
			if clock.now.Sub(start) >= horizon {
				return Result{Reachable: true, CAHash: "abc"}
			}
			return Result{Err: errNotYet}
		}
		asked := 0
		slot := func() Slot { asked++; return Slot{Rank: i, Of: waiters} }
		if _, err := p.WaitReachableAmong(context.Background(), "10.0.0.1", "abc", slot); err != nil {
			t.Fatal(err)
		}
		if asked != n-1 {
			t.Fatalf("waiter %d: slot asked %d times for %d waits; want once before each", i, asked, n-1)
		}
		lastThrough = max(lastThrough, clock.now.Sub(start)-horizon)
	}
	worst := 0
	for s, n := range perSecond {
		worst = max(worst, n)
		if n > MaxAggregateProbeRate {
			t.Errorf("second %d: %d retries, want at most %d", s, n, MaxAggregateProbeRate)
		}
	}
	for at, n := range instants {
		if n > 1 {
			t.Errorf("%d waiters probed at the same instant %v", n, at.Sub(start))
		}
	}
	// One round is 200/20 = 10 s; the backoff adds at most BackoffMax.
	if limit := 10*time.Second + DefaultBackoffMax; lastThrough > limit {
		t.Errorf("last waiter through %v after the VIP answered, want within %v", lastThrough, limit)
	}
	t.Logf("%d waiters: first probes %d at once, then at most %d retries in any second; last through %v after the VIP answered",
		waiters, first, worst, lastThrough)
}

// TestSlotNext: a slot's instants are rank·50 ms into each round of
// of·50 ms, counted from the Unix epoch, and a rank outside the count (a
// view that is a member behind) still lands on a valid instant.
func TestSlotNext(t *testing.T) {
	round := time.Unix(1_700_000_000, 0) // a whole second, so a round of 4 starts here
	for _, c := range []struct {
		slot Slot
		at   time.Duration
		want time.Duration
	}{
		{Slot{0, 4}, 0, 0},
		{Slot{0, 4}, time.Nanosecond, 200 * time.Millisecond},
		{Slot{3, 4}, 0, 150 * time.Millisecond},
		{Slot{3, 4}, 150 * time.Millisecond, 150 * time.Millisecond},
		{Slot{3, 4}, 151 * time.Millisecond, 350 * time.Millisecond},
		{Slot{5, 4}, 0, 50 * time.Millisecond},                     // rank 5 of 4 acts as 1
		{Slot{-1, 4}, 0, 150 * time.Millisecond},                   // and -1 as 3
		{Slot{0, 0}, 10 * time.Millisecond, 10 * time.Millisecond}, // alone: no wait
		{Slot{1, 2}, 60 * time.Millisecond, 150 * time.Millisecond},
	} {
		got := c.slot.normalize().next(round.Add(c.at)).Sub(round)
		if got != c.want {
			t.Errorf("%+v.next(+%v) = +%v, want +%v", c.slot, c.at, got, c.want)
		}
	}
}
