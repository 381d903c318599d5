package election

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkFormationLAN measures, at LAN timings over raft's in-memory
// transport with instant gossip, the time from the last expected server
// appearing to the bootstrap node being committed, and the join slot's
// hand-over latency: from one holder advertising Ready to the next holder
// being granted the slot. 3 expected servers, 5 servers in all; over the
// in-memory transport and over mutual TLS on loopback with raft-boltdb.
func BenchmarkFormationLAN(b *testing.B) {
	b.Run("inmem", func(b *testing.B) { benchFormation(b, false) })
	b.Run("tls", func(b *testing.B) { benchFormation(b, true) })
}

func benchFormation(b *testing.B, tls bool) {
	var formation, handover time.Duration
	var handovers int
	for i := range b.N {
		names := []string{"s1", "s2", "s3", "s4", "s5"}
		w := newSimWorld(b, uint64(i+1), 3, names)
		w.timing = LANTiming()
		if tls {
			w.tls, w.ports, w.dirs = true, map[string]int{}, map[string]string{}
			for _, n := range names {
				w.ports[n], w.dirs[n] = freePort(b), b.TempDir()
			}
		}
		for _, n := range names {
			w.start(n)
		}
		t0 := time.Now()
		if !w.waitFor(30*time.Second, func() bool {
			_, ok := w.anyState(func(s View) bool { return s.Bootstrap != "" })
			return ok
		}) {
			b.Fatal("no bootstrap within 30s")
		}
		formation += time.Since(t0)
		if !w.waitFor(60*time.Second, w.complete) {
			b.Fatal("servers did not all join within 60s")
		}
		w.mu.Lock()
		ivs := slices.Clone(w.intervals)
		w.mu.Unlock()
		slices.SortFunc(ivs, func(a, b *slotInterval) int { return a.start.Compare(b.start) })
		for j := 1; j < len(ivs); j++ {
			handover += ivs[j].start.Sub(ivs[j-1].end)
			handovers++
		}
		w.stopAll()
	}
	b.ReportMetric(float64(formation.Milliseconds())/float64(b.N), "ms-to-bootstrap")
	if handovers > 0 {
		b.ReportMetric(float64(handover.Microseconds())/1000/float64(handovers), "ms-slot-handover")
	}
}
