package backoff

import (
	"context"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

func TestCeilingDoublesUpToMax(t *testing.T) {
	p := Policy{Base: time.Second, Max: 5 * time.Second}
	want := []time.Duration{1, 2, 4, 5, 5, 5}
	for i, w := range want {
		if got := p.Ceiling(i); got != w*time.Second {
			t.Errorf("Ceiling(%d) = %v, want %v", i, got, w*time.Second)
		}
	}
	if got := p.Ceiling(10000); got != 5*time.Second {
		t.Errorf("Ceiling(10000) = %v: a long outage must not overflow", got)
	}
}

func TestDelaySpreadsWithinJitter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		jitter float64
		lo, hi time.Duration // of the delay after the 2nd failure (ceiling 4s)
	}{
		{"none", 0, 4 * time.Second, 4 * time.Second},
		{"equal", 0.5, 2 * time.Second, 4 * time.Second},
		{"full", 1, 0, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			low := Policy{Base: time.Second, Max: time.Minute, Jitter: tc.jitter, Rand: func(int64) int64 { return 0 }}
			high := low
			high.Rand = func(n int64) int64 { return n - 1 }
			if got := low.Delay(2); got != tc.lo {
				t.Errorf("lowest delay = %v, want %v", got, tc.lo)
			}
			if got := high.Delay(2); got < tc.hi-time.Nanosecond || got > tc.hi {
				t.Errorf("highest delay = %v, want %v", got, tc.hi)
			}
			real := Policy{Base: time.Second, Max: time.Minute, Jitter: tc.jitter}
			for range 200 {
				if d := real.Delay(2); d < tc.lo || d > tc.hi {
					t.Fatalf("delay %v outside [%v, %v]", d, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestBackoffNextResetAndWait(t *testing.T) {
	b := Policy{Base: time.Second, Max: 4 * time.Second}.Start()
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after Reset: %v, want 1s", d)
	}

	fake := clock.NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx, fake) }() // the 2nd failure: 2s
	if err := fake.WaitSleepers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	fake.Advance(time.Second)
	select {
	case <-done:
		t.Fatal("Wait returned before its delay")
	default:
	}
	fake.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := b.Wait(cctx, fake); err == nil {
		t.Fatal("Wait on an ended context returned nil")
	}
}
