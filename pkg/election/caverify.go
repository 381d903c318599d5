package election

import (
	"context"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// CAFetcher returns the CA hash (pkg/cahash) of what server p's supervisor
// serves on /cacerts at p's own advertise address (the host of
// p.RaftAddr), never the VIP. The leader calls it for the bootstrap node
// before it commits cluster ready.
type CAFetcher func(ctx context.Context, p Peer) (string, error)

// Bounds of the CA fetch: each try has a deadline, failures back off.
const (
	caFetchTimeout    = 5 * time.Second
	caFetchBackoffMin = time.Second
	caFetchBackoffMax = 30 * time.Second
)

// caVerifier is the I/O half of "commit only what was verified": it fetches
// the bootstrap node's CA in the background and keeps the hashes it saw, for
// decide to read as leaderSelf.VerifiedCA. One fetch runs at a time.
type caVerifier struct {
	fetch CAFetcher
	log   *zap.Logger
	wake  func()

	mu       sync.Mutex
	verified map[string]string // server → hash it served
	busy     bool
	next     time.Time // no fetch before this (backoff)
	backoff  time.Duration
	lastBad  string // last mismatching hash logged, so each is logged once
}

func newCAVerifier(fetch CAFetcher, log *zap.Logger, wake func()) *caVerifier {
	return &caVerifier{fetch: fetch, log: log, wake: wake, verified: map[string]string{}}
}

// snapshot is the verified hashes now.
func (v *caVerifier) snapshot() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]string, len(v.verified))
	for k, h := range v.verified {
		out[k] = h
	}
	return out
}

// want asks for p's CA to be fetched when p claims one that was not seen
// served yet and no fetch runs or waits out its backoff. now is the loop's
// clock. Without a fetcher nothing is ever verified.
func (v *caVerifier) want(ctx context.Context, p Peer, now time.Time) {
	if v == nil || v.fetch == nil || p.CAHash == "" {
		return
	}
	host := p.RaftAddr
	if h, _, err := net.SplitHostPort(p.RaftAddr); err == nil {
		host = h
	}
	v.mu.Lock()
	if v.busy || v.verified[p.Name] == p.CAHash || now.Before(v.next) {
		v.mu.Unlock()
		return
	}
	v.busy = true
	v.mu.Unlock()
	go func() {
		fctx, cancel := context.WithTimeout(ctx, caFetchTimeout)
		hash, err := v.fetch(fctx, p)
		cancel()
		v.mu.Lock()
		defer v.mu.Unlock()
		v.busy = false
		if err == nil {
			v.verified[p.Name] = hash
		}
		if err == nil && hash == p.CAHash {
			v.backoff = 0
			v.log.Info("bootstrap node's CA verified at its own address", zap.String("server", p.Name), zap.String("host", host), zap.String("ca_hash", hash))
			if v.wake != nil {
				v.wake()
			}
			return
		}
		v.backoff = min(max(2*v.backoff, caFetchBackoffMin), caFetchBackoffMax)
		v.next = now.Add(v.backoff)
		switch {
		case err != nil:
			v.log.Warn("bootstrap node's CA not fetched: cluster ready waits", zap.String("server", p.Name), zap.String("host", host), zap.Duration("retry_in", v.backoff), zap.Error(err))
		case hash != v.lastBad:
			v.lastBad = hash
			v.log.Error("bootstrap node claims a CA it does not serve: cluster ready not committed",
				zap.String("server", p.Name), zap.String("host", host), zap.String("claimed_ca_hash", p.CAHash), zap.String("served_ca_hash", hash))
		}
	}()
}
