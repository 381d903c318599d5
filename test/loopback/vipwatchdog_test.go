package loopback

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// simServerPIDs are n's `rke2 server` processes (rke2sim), not its daemon
// nor a kube-vip left behind.
func simServerPIDs(n *demo.Node) []int {
	var out []int
	for _, pid := range n.SimPIDs() {
		raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(raw), "\x00")
		if len(args) > 1 && filepath.Base(args[0]) == "rke2sim" && args[1] == "server" {
			out = append(out, pid)
		}
	}
	return out
}

// TestVIPHeldByStoppedServer: the VIP holder's rke2-server goes down and
// stays down (it fails at every restart), while its kube-vip outlives it
// and keeps the VIP (RKE2SIM_KUBEVIP_OUTLIVES, as kube-vip's container
// outlives `systemctl stop rke2-server`): nothing answers on the VIP. After
// the grace period (2 × kube-vip's lease) the daemon runs rke2-killall.sh
// and the VIP moves to another server; metric, status and log say so.
func TestVIPHeldByStoppedServer(t *testing.T) {
	c := newClusterEnv(t, "127.89.0.11", 3, 0, append(append([]string(nil), simEnv...), "RKE2SIM_KUBEVIP_OUTLIVES=1"))
	// Short kube-vip leases: a grace of 10 s.
	for _, n := range c.Nodes {
		appendConfig(t, n, "kube-vip-lease-duration: 5\nkube-vip-renew-deadline: 3\nkube-vip-retry-period: 1\n")
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	holder := vipHolder(t, c, "")
	h := c.Node(holder)
	t.Logf("%s holds the VIP", holder)

	// rke2-server fails from now on (a bad drop-in: RKE2 exits at once at
	// every restart), then its running process is stopped: its kube-vip
	// stays behind with the VIP.
	dropIn := filepath.Join(h.RKE2ConfigDir, "config.yaml.d", "99-broken.yaml")
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, []byte("node-taint:\n- \"not a taint\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pids := simServerPIDs(h)
	if len(pids) == 0 {
		t.Fatalf("%s: no rke2 server process found", holder)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	stopped := time.Now()

	// Another server takes the VIP, which answers with the cluster's CA.
	newHolder := ""
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	err := demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
		for _, n := range c.Nodes {
			if n == h {
				continue
			}
			if st, err := n.Status(ctx); err == nil && st.Cluster.VIPReachable && st.Cluster.VIPHolder != "" && st.Cluster.VIPHolder != holder && probeVIPHolder(n, st) {
				newHolder = st.Cluster.VIPHolder
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("the VIP did not move away from %s, whose rke2-server is down: %v", holder, err)
	}
	t.Logf("VIP moved from %s to %s %s after its rke2-server stopped", holder, newHolder, time.Since(stopped).Round(time.Second))

	st, err := h.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Cluster.VIPReleased == nil || !strings.Contains(st.Cluster.VIPReleased.Reason, "rke2-server has been down") || st.Cluster.VIPReleased.Error != "" {
		t.Errorf("%s: status vip_released %+v, want a release with its reason", holder, st.Cluster.VIPReleased)
	} else if d := st.Cluster.VIPReleased.At.Sub(stopped); d < 10*time.Second {
		t.Errorf("%s: released the VIP %s after its rke2-server stopped, before the 10 s grace", holder, d)
	}
	if st.Node.Phase == status.PhaseReady {
		t.Errorf("%s: phase ready while its rke2-server is down", holder)
	}
	if m := scrape(t, h); !containsLine(m, "rke2_hanode_vip_released_total 1") {
		t.Errorf("%s: metrics lack rke2_hanode_vip_released_total 1", holder)
	}
	if !strings.Contains(readFile(h.LogPath), "VIP watchdog: releasing the VIP with rke2-killall.sh") {
		t.Errorf("%s: its log does not say it released the VIP", holder)
	}
	// The other servers never released anything.
	for _, n := range c.Nodes {
		if n != h && !containsLine(scrape(t, n), "rke2_hanode_vip_released_total 0") {
			t.Errorf("%s released the VIP though its rke2-server runs", n.Name)
		}
	}
	// rke2-server fixed: it comes back and the host is ready again.
	if err := os.Remove(dropIn); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 180*time.Second)
}

// vipHolder waits until a host names the VIP's holder (other than not).
func vipHolder(t *testing.T, c *demo.Cluster, not string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	holder := ""
	demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
		for _, n := range c.Nodes {
			if st, err := n.Status(ctx); err == nil && st.Cluster.VIPHolder != "" && st.Cluster.VIPHolder != not {
				holder = st.Cluster.VIPHolder
				return true
			}
		}
		return false
	})
	if holder == "" {
		t.Fatal("no host reports the VIP holder")
	}
	return holder
}

// probeVIPHolder: the holder a status names is a server of the cluster.
func probeVIPHolder(n *demo.Node, st status.Status) bool {
	for _, m := range st.Members {
		if m.Name == st.Cluster.VIPHolder && m.Role == "server" {
			return true
		}
	}
	return false
}

// appendConfig adds YAML lines to n's daemon config.
func appendConfig(t *testing.T, n *demo.Node, lines string) {
	t.Helper()
	data, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.ConfigPath, append(data, []byte(lines)...), 0o600); err != nil {
		t.Fatal(err)
	}
}
