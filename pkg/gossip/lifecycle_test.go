package gossip

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOpenFailsNowOnAPortInUse: Open binds, so a port in use is an error
// at once, naming the address, with no timer guessing.
func TestOpenFailsNowOnAPortInUse(t *testing.T) {
	a := startMember(t, "a")
	cfg := validConfig()
	cfg.NodeName = "b"
	host := a.addr[:strings.LastIndex(a.addr, ":")]
	cfg.BindAddr, cfg.AdvertiseAddr, cfg.BindPort = host, host, a.port
	cfg.Timings = testTimings()
	if m, err := Open(cfg); err == nil {
		m.Close()
		t.Fatalf("Open on %s, which a holds, succeeded", a.addr)
	} else if !strings.Contains(err.Error(), "listen on "+host) {
		t.Errorf("err = %v, want the address named", err)
	}
}

// TestRunCloseLifecycle: Run returns when its context ends and the member
// stays open (it can run again); Close ends a running member, Run after
// Close is refused, and Close twice is fine.
func TestRunCloseLifecycle(t *testing.T) {
	cfg := validConfig()
	ip := nextTestIP()
	cfg.BindAddr, cfg.AdvertiseAddr, cfg.Timings = ip, ip, testTimings()
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	cancel()
	if err := waitErr(t, ran); err != nil {
		t.Fatalf("Run after its context ended: %v", err)
	}
	go func() { ran <- m.Run(context.Background()) }()
	time.Sleep(50 * time.Millisecond) // let it start; Close must end it either way
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := waitErr(t, ran); err != nil {
		t.Fatalf("Run ended by Close: %v", err)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("Run after Close succeeded")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}
