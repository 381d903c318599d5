package httpapi

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// TestLifecycle: Listen binds (an address in use fails at once, naming
// it), Run serves until its context ends, Close releases the address.
func TestLifecycle(t *testing.T) {
	cfg := Config{Address: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Status: func() status.Status {
		return status.Status{Node: status.Node{Name: "n1"}}
	}}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	busy := cfg
	busy.Address = s.Addr().String()
	if other, err := Listen(busy); err == nil {
		other.Close()
		t.Fatalf("Listen on %s, which is bound, succeeded", busy.Address)
	} else if !strings.Contains(err.Error(), "http-address "+busy.Address) {
		t.Errorf("err = %v, want the address named", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	resp, err := http.Get("http://" + s.Addr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"n1"`) {
		t.Errorf("/status = %s", body)
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
	again, err := Listen(busy)
	if err != nil {
		t.Fatalf("the address was not released: %v", err)
	}
	again.Close()
	if err := again.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
