package statusview

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// FuzzFetch: /status is read from whatever answers on the address.
// The client never panics on any body, returns the body it decoded, and
// the table it prints from it never panics either.
func FuzzFetch(f *testing.F) {
	seed, err := json.Marshal(status.Status{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"cluster":{"name":"rke2","bootstrap_node":"a","join_slot":"b"},"members":[{"name":"a","since":"2026-01-01T00:00:00Z"},{"name":null}]}`))
	f.Add([]byte(`{"members":[{"since":"0001-01-01T00:00:00Z"}],"node":{"error":"x"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"cluster":{"joined_servers":-1}}`))

	var mu sync.Mutex
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		b := body
		mu.Unlock()
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)

	f.Fuzz(func(t *testing.T, in []byte) {
		mu.Lock()
		body = in
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		raw, st, err := Fetch(ctx, srv.URL)
		if err != nil {
			return
		}
		if string(raw) != string(in) {
			t.Fatalf("Fetch returned %q for a body of %q", raw, in)
		}
		PrintStatus(io.Discard, st, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	})
}
