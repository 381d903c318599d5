package gossip

import (
	"fmt"
	"testing"
	"time"
)

// TestRateLimiterSpoofedFlood is the log-flood attack: undecryptable
// packets from 100k distinct (spoofed) sources. The old limiter forgot
// every key at 1024 and so let one warning through per source; now the
// log gets a bounded number of lines and every suppressed packet is
// counted in a later line's summary.
func TestRateLimiterSpoofedFlood(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const interval = time.Minute
	r := newRateLimiter(interval, func() time.Time { return now })
	const sources = 100_000
	lines, reported := 0, 0
	event := func(key string) {
		if ok, suppressed := r.allow(key); ok {
			lines++
			reported += suppressed
		}
	}
	// The flood: spread over ten seconds, every packet from a new source.
	for i := range sources {
		now = now.Add(10 * time.Second / sources)
		event(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	if max := rateLimiterBurst + rateLimiterBurst/6 + 1; lines > max {
		t.Fatalf("%d log lines for %d spoofed sources, want at most %d", lines, sources, max)
	}
	if len(r.keys) > rateLimiterKeys || r.lru.Len() > rateLimiterKeys {
		t.Fatalf("limiter keeps %d keys", len(r.keys))
	}
	// The next line after the flood carries the summary.
	now = now.Add(interval)
	event("192.0.2.1")
	if lines+reported != sources+1 {
		t.Fatalf("%d lines + %d reported as suppressed = %d, want every one of %d events accounted for",
			lines, reported, lines+reported, sources+1)
	}
	// A real peer that keeps failing still gets its line once per interval.
	now = now.Add(interval)
	if ok, _ := r.allow("10.0.0.9"); !ok {
		t.Fatal("a new source after the flood is not logged")
	}
	if ok, _ := r.allow("10.0.0.9"); ok {
		t.Fatal("a source is logged twice in one interval")
	}
}
