package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// TestDrawEscapesGossip: names, phases and errors other hosts gossip
// cannot clear the demo's screen or forge its rows.
func TestDrawEscapesGossip(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := start.Add(time.Minute)
	m1 := &Node{Name: "m1", Role: "server", IP: "127.0.0.11"}
	m2 := &Node{Name: "m2", Role: "server", IP: "127.0.0.12"}
	rows := []Row{
		{Node: m1, Status: status.Status{
			Node:    status.Node{Name: "m1", Phase: "ready\x1b[2J", Since: start},
			Cluster: status.Cluster{Name: "rke2", BootstrapNode: "evil\x1b[2J", JoinSlot: "slot\nforged row", ClusterReady: true, VIP: "127.0.0.200"},
		}, ReadyAt: start.Add(30 * time.Second)},
		{Node: m2, Status: status.Status{Node: status.Node{Name: "m2", Phase: status.PhaseFailed, Error: "start: \x1b[2Jboom"}}},
	}
	var b bytes.Buffer
	Draw(&b, rows, start, now)
	out := b.String()
	if strings.Contains(out, "\x1b") || strings.Contains(out, "slot\nforged") {
		t.Fatalf("control characters reached the screen:\n%q", out)
	}
	for _, want := range []string{`bootstrap evil\x1b[2J`, `join slot slot\x0aforged row`, `ready\x1b[2J`, `start: \x1b[2Jboom`, "30s"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
