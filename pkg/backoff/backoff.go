// Package backoff is the project's one exponential backoff: every loop that
// retries something the network or a process can fail (node's phase
// retries, the exec manager's restarts, gossip's join, the VIP probe) takes
// its delays from a Policy, so that they grow, cap and spread the same way
// and tests fix the randomness.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// Policy shapes the delays: the ceiling after the n-th failure is
// min(Max, Base·2^n), and the delay is uniform in
// [ceiling·(1−Jitter), ceiling) (the ceiling itself when Jitter is 0). Jitter 0 waits the ceiling exactly, 0.5
// is "equal jitter" (half fixed, half random), 1 is "full jitter".
type Policy struct {
	Base, Max time.Duration
	Jitter    float64
	// Rand returns a uniform number in [0, n); nil: math/rand/v2.
	Rand func(n int64) int64
}

// Ceiling is the largest delay after the attempt-th failure (0-based).
func (p Policy) Ceiling(attempt int) time.Duration {
	d := p.Base
	for i := 0; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	return max(d, 0)
}

// Delay is the wait after the attempt-th failure (0-based).
func (p Policy) Delay(attempt int) time.Duration {
	c := p.Ceiling(attempt)
	j := min(max(p.Jitter, 0), 1)
	spread := time.Duration(float64(c) * j)
	if spread <= 0 {
		return c
	}
	r := p.Rand
	if r == nil {
		r = rand.Int64N
	}
	return c - spread + time.Duration(r(int64(spread)))
}

// Backoff counts failures against a Policy. The zero value of a Backoff
// made by Start is at attempt 0; it is not safe for concurrent use.
type Backoff struct {
	p       Policy
	attempt int
}

// Start begins counting failures at zero.
func (p Policy) Start() *Backoff { return &Backoff{p: p} }

// Next returns the delay after one more failure.
func (b *Backoff) Next() time.Duration {
	d := b.p.Delay(b.attempt)
	if b.p.Ceiling(b.attempt) < b.p.Max || b.p.Max <= 0 {
		b.attempt++
	}
	return d
}

// Attempts is how many failures Next has counted since Start or Reset
// (it stops counting once the ceiling reaches Max).
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts over at Base, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps Next on clk, or returns ctx's error when ctx ends first.
func (b *Backoff) Wait(ctx context.Context, clk clock.Clock) error {
	return clock.Or(clk).Sleep(ctx, b.Next())
}
