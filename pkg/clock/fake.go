package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told to. Sleepers wake when Advance
// passes their deadline. It is safe for concurrent use.
type Fake struct {
	mu       sync.Mutex
	now      time.Time
	sleepers []*sleeper
	waiting  chan struct{} // closed and replaced whenever a sleeper is added
}

type sleeper struct {
	until time.Time
	done  chan struct{}
}

// NewFake starts a Fake at t.
func NewFake(t time.Time) *Fake { return &Fake{now: t, waiting: make(chan struct{})} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Sleep blocks until Advance moves the clock d past the time of the call,
// or ctx ends.
func (f *Fake) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	if d <= 0 {
		f.mu.Unlock()
		return ctx.Err()
	}
	s := &sleeper{until: f.now.Add(d), done: make(chan struct{})}
	f.sleepers = append(f.sleepers, s)
	close(f.waiting)
	f.waiting = make(chan struct{})
	f.mu.Unlock()
	select {
	case <-ctx.Done():
		f.mu.Lock()
		for i, o := range f.sleepers {
			if o == s {
				f.sleepers = append(f.sleepers[:i], f.sleepers[i+1:]...)
				break
			}
		}
		f.mu.Unlock()
		return ctx.Err()
	case <-s.done:
		return nil
	}
}

// Advance moves the clock by d and wakes every sleeper whose time has come,
// earliest first.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	sort.SliceStable(f.sleepers, func(i, j int) bool { return f.sleepers[i].until.Before(f.sleepers[j].until) })
	kept := f.sleepers[:0]
	for _, s := range f.sleepers {
		if !s.until.After(f.now) {
			close(s.done)
			continue
		}
		kept = append(kept, s)
	}
	f.sleepers = kept
	f.mu.Unlock()
}

// Sleepers returns how many goroutines are sleeping now.
func (f *Fake) Sleepers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sleepers)
}

// WaitSleepers blocks until at least n goroutines sleep, or ctx ends: a test
// advances the clock only once the code under test is waiting on it.
func (f *Fake) WaitSleepers(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		have, ch := len(f.sleepers), f.waiting
		f.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
