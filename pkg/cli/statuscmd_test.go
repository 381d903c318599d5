package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStatusWatchPrintsChanges: off a terminal, --watch prints the table
// when a member's phase changes, not on every poll, and stops with its
// context; a daemon that stops answering is shown, and watched on.
func TestStatusWatchPrintsChanges(t *testing.T) {
	var phase atomic.Value
	phase.Store(status.PhaseStarting)
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		p := phase.Load().(string)
		if p == "down" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(status.Status{Members: []status.Member{{Name: "ha-m1", Role: "server", Phase: p, State: "alive"}}})
	}))
	defer srv.Close()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); watchStatus(ctx, &out, srv.URL, time.Millisecond, false) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s; output:\n%s", what, out.String())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("first frame", func() bool { return strings.Contains(out.String(), "NAME") })
	n := polls.Load()
	waitFor("more polls", func() bool { return polls.Load() > n+5 })
	if c := strings.Count(out.String(), "NAME"); c != 1 {
		t.Errorf("an unchanged table was printed %d times", c)
	}
	phase.Store(status.PhaseReady)
	waitFor("the change", func() bool { return strings.Count(out.String(), "NAME") == 2 })
	phase.Store("down")
	// "answered 503", not "503": the test server's port may hold those digits.
	waitFor("the daemon's silence", func() bool { return strings.Contains(out.String(), "answered 503") })
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("--watch did not stop with its context")
	}
	if o := out.String(); strings.Count(o, "NAME") != 2 || strings.Count(o, "answered 503") != 1 || !strings.Contains(o[strings.LastIndex(o, "NAME"):], "ready") {
		t.Errorf("want the starting table, the ready table and one 503 line:\n%s", o)
	}
}
