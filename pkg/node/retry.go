package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/backoff"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

// retryPolicy spaces the tries of a failed step: equal jitter, so hosts
// that failed together do not retry in lockstep.
var retryPolicy = backoff.Policy{Base: time.Second, Max: 30 * time.Second, Jitter: 0.5}

// retry runs step until it succeeds, ctx ends, or it fails permanently. A
// failure shows as the failed phase (with the reason) until the next try;
// the try goes back to the phase the host was in when the step began, which
// is where the host really is: a step never moves the host back to a phase
// it did not enter.
func (n *Node) retry(ctx context.Context, stage string, step func(context.Context) error) error {
	phase, _, _ := n.t.get()
	if phase == status.PhaseFailed {
		// A step begun while a failure is shown resumes where that failure's
		// step would have.
		phase = n.t.lastPhase()
	}
	b := n.retryPolicy.Start()
	for {
		err := step(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, election.ErrBootstrapRole) {
			return err // the caller changes course
		}
		if isPermanent(err) {
			n.t.fail(stage, err, true)
			<-ctx.Done()
			return ctx.Err()
		}
		n.t.fail(stage, err, false)
		if err := b.Wait(ctx, n.clk); err != nil {
			return err
		}
		n.t.set(phase, "retrying after: "+statusview.Shorten(err.Error(), 120))
	}
}

// retryWithin is retry of a wait: each try of fn runs under deadline d,
// and a try that runs past it fails saying it was still what.
func (n *Node) retryWithin(ctx context.Context, stage string, d time.Duration, what string, fn func(context.Context) error) error {
	return n.retry(ctx, stage, func(ctx context.Context) error { return withDeadline(ctx, d, what, fn) })
}

// withDeadline runs fn under a deadline; running past it is an error that
// says what was awaited.
func withDeadline(ctx context.Context, d time.Duration, what string, fn func(context.Context) error) error {
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := fn(dctx)
	if err != nil && ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
		var h *hinted
		if errors.As(err, &h) {
			return fmt.Errorf("still %s after %s: %s", what, d, h.hint)
		}
		return fmt.Errorf("still %s after %s", what, d)
	}
	return err
}

// waitChange returns on the next signal of changes, after d on n's clock,
// or when ctx ends (with its error).
func (n *Node) waitChange(ctx context.Context, changes <-chan struct{}, d time.Duration) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slept := make(chan error, 1)
	go func() { slept <- n.clk.Sleep(sctx, d) }()
	select {
	case <-changes:
		return nil
	case <-slept:
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}
