package node

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// idleService is a service manager whose RKE2 never runs.
type idleService struct{}

func (idleService) Start(context.Context, installer.Role) error { return nil }
func (idleService) WaitActive(ctx context.Context, _ installer.Role) error {
	<-ctx.Done()
	return ctx.Err()
}
func (idleService) Active(context.Context, installer.Role) (bool, error) { return false, nil }
func (idleService) Stop(context.Context, installer.Role) error           { return nil }

// TestRunFailsNowWhenTheGossipPortIsTaken: Run opens gossip, so a port in
// use is Run's error at once, naming the address: no timer, no phase
// machine walking on without gossip.
func TestRunFailsNowWhenTheGossipPortIsTaken(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.LocalAddr().(*net.UDPAddr).Port
	p := strconv.Itoa(port)
	c, err := config.Load(config.LoadOptions{Env: []string{
		"RKE2_HANODE_ROLE=agent", "RKE2_HANODE_TOKEN=a-secret-token-for-tests", "RKE2_HANODE_NODE_NAME=a1",
		"RKE2_HANODE_VIP=127.0.0.200", "RKE2_HANODE_INTERFACE=lo", "RKE2_HANODE_JOIN=127.0.0.1:" + p,
		"RKE2_HANODE_BIND_ADDRESS=127.0.0.1", "RKE2_HANODE_ADVERTISE_ADDRESS=127.0.0.1", "RKE2_HANODE_GOSSIP_PORT=" + p,
		"RKE2_HANODE_INSTALL_METHOD=none", "RKE2_HANODE_DATA_DIR=" + t.TempDir(),
		"RKE2_HANODE_RKE2_DATA_DIR=" + t.TempDir(), "RKE2_HANODE_RKE2_CONFIG_DIR=" + t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{Config: c, ServiceManager: idleService{}})
	if err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.Node.Phase != status.PhasePreflight || len(st.Members) != 0 {
		t.Errorf("status before Run: %+v", st.Node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listen on 127.0.0.1:"+strconv.Itoa(port)) {
			t.Fatalf("Run = %v, want the taken gossip port named", err)
		}
	case <-ctx.Done():
		phase, _, lastErr := n.t.get()
		t.Fatalf("Run did not return with the port taken (phase %s: %s)", phase, lastErr)
	}
}
