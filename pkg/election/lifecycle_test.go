package election

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestOpenBindsNow: a raft port in use is Open's error, at once; Run runs
// once, never after Close; Close releases the port and the store.
func TestOpenBindsNow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	cfg := func(port int) Config {
		m := &staticMembership{name: "solo", ch: make(chan struct{})}
		return Config{NodeName: "solo", ClusterName: "c", ExpectServers: 1, VIP: "192.0.2.1", Token: "t",
			BindAddr: "127.0.0.1", AdvertiseAddr: "127.0.0.1", RaftPort: port, DataDir: dir,
			Membership: m, Publisher: m, Timing: simTiming()}
	}
	if e, err := Open(cfg(busy)); err == nil {
		e.Close()
		t.Fatalf("Open on a port in use succeeded")
	} else if want := "127.0.0.1:" + strconv.Itoa(busy); !strings.Contains(err.Error(), want) {
		t.Fatalf("Open error %q does not name %s", err, want)
	}
	// The failed Open released the store: the next Open can take it.
	port := freePort(t)
	e, err := Open(cfg(port))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := e.RaftAddr(); got != "127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("RaftAddr after Open = %q, want the bound address", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := e.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Run: %v, want an error", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Closed: the port and the store are free again.
	e2, err := Open(cfg(port))
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Fatalf("Run after Close: %v, want an error", err)
	}
}
