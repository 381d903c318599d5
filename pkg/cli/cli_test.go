package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/adminsock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Execute(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := run("version")
	if code != 0 || !strings.HasPrefix(out, "rke2-hanode ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	if code, _, _ := run("no-such-verb"); code != ExitUsage {
		t.Errorf("unknown verb: exit %d", code)
	}
	if code, _, _ := run("status", "--address", "http://127.0.0.1:1"); code != ExitRuntime {
		t.Errorf("status against nothing: exit %d", code)
	}
	if code, out, _ := run("preflight", "--config", "/nonexistent/config.yaml"); code != ExitUsage || !strings.Contains(out, "FAIL") {
		t.Errorf("preflight with missing file: exit %d %q", code, out)
	}
}

func TestPreflightNamesKeyAndValue(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	os.WriteFile(p, []byte("role: server\ntoken: x-Xk8pQ2mZ7rT4vN9wB3yL6h\nexpect-servers: 2\njoin: [a]\nvip: 10.0.0.999\ninterface: eth0\nnode-name: n1\n"), 0o600)
	code, out, _ := run("preflight", "--config", p)
	if code != ExitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{`expect-servers = "2" (` + p + `:3)`, `vip = "10.0.0.999" (` + p + `:5)`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigInitRoundTrip(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "etc", "config.yaml")
	args := []string{"config", "init", "--output", out, "--role", "server", "--expect-servers", "3",
		"--token", "tok-123-Xk8pQ2mZ7rT4vN9wB3yL6h", "--join", "10.0.0.2,10.0.0.3", "--join", "seed.example.com:9347", "--vip", "10.0.0.200",
		"--interface", "eth0", "--tls-san", "k8s.example.com", "--node-taint", "CriticalAddonsOnly=true:NoExecute",
		"--rke2-config", "{cni: cilium}", "--kube-vip-lease-duration", "20"}
	if code, _, errs := run(args...); code != 0 {
		t.Fatalf("config init: %d %s", code, errs)
	}
	st, _ := os.Stat(out)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	if code, _, errs := run(args...); code != ExitRuntime || !strings.Contains(errs, "--force") {
		t.Errorf("second init without --force: %d %s", code, errs)
	}
	got, err := config.Load(config.LoadOptions{File: out, FileRequired: true, Hostname: func() string { return "host-x" }})
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeName != "host-x" || got.Role != "server" || got.ExpectServers != 3 || got.Secret() != "tok-123-Xk8pQ2mZ7rT4vN9wB3yL6h" ||
		!reflect.DeepEqual(got.Join, []string{"10.0.0.2", "10.0.0.3", "seed.example.com:9347"}) || got.VIP != "10.0.0.200" ||
		got.KubeVIPLease != 20 || got.RKE2Config["cni"] != "cilium" || !reflect.DeepEqual(got.NodeTaint, []string{"CriticalAddonsOnly=true:NoExecute"}) {
		t.Errorf("round trip: %+v", got)
	}
	if code, _, _ := run("config", "init", "--output", "-", "--role", "server"); code != ExitUsage {
		t.Errorf("invalid init: exit %d", code)
	}
	// The token may come from the environment, out of sight of ps.
	t.Setenv("RKE2_HANODE_TOKEN", "env-token-9-Xk8pQ2mZ7rT4vN9wB3yL6h")
	if code, out, errs := run("config", "init", "--output", "-", "--role", "agent", "--join", "10.0.0.2", "--vip", "10.0.0.200", "--interface", "eth0"); code != 0 || !strings.Contains(out, "token: env-token-9-Xk8pQ2mZ7rT4vN9wB3yL6h") {
		t.Errorf("token from env: %d %s %s", code, out, errs)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestRunServesMetricsAndStatus(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := config.Load(config.LoadOptions{Env: []string{
		"RKE2_HANODE_ROLE=server", "RKE2_HANODE_TOKEN=very-secret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "RKE2_HANODE_EXPECT_SERVERS=1",
		"RKE2_HANODE_VIP=127.0.0.200", "RKE2_HANODE_INTERFACE=lo", "RKE2_HANODE_NODE_NAME=n1",
		"RKE2_HANODE_HTTP_ADDRESS=" + addr, "RKE2_HANODE_LOG_LEVEL=error",
		"RKE2_HANODE_BIND_ADDRESS=127.0.0.1", "RKE2_HANODE_ADVERTISE_ADDRESS=127.0.0.1",
		"RKE2_HANODE_GOSSIP_PORT=" + fmt.Sprint(freePort(t)), "RKE2_HANODE_RAFT_PORT=" + fmt.Sprint(freePort(t)),
		"RKE2_HANODE_SERVICE_MANAGER=exec", "RKE2_HANODE_RKE2_BIN=/bin/true", "RKE2_HANODE_INSTALL_METHOD=none",
		"RKE2_HANODE_DATA_DIR=" + t.TempDir(), "RKE2_HANODE_RKE2_DATA_DIR=" + t.TempDir(), "RKE2_HANODE_RKE2_CONFIG_DIR=" + t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, c) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("run did not stop after cancel")
		}
	}()
	var body string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, `rke2_hanode_info{node="n1",role="server",version=`) || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_") {
		t.Errorf("metrics lack info/go/process collectors:\n%.2000s", body)
	}
	_, st, err := statusview.Fetch(context.Background(), addr)
	if err != nil || st.Node.Name != "n1" || st.Cluster.VIP != "127.0.0.200" {
		t.Errorf("status: %+v %v", st, err)
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz before ready: %v %v", resp, err)
	}
	if strings.Contains(body, "very-secret-token-Xk8pQ2mZ7rT4vN9wB3yL6h") {
		t.Error("token in /metrics")
	}
	// The admin socket, for the operator verbs: root and the daemon's own
	// user only.
	if fi, err := os.Stat(adminsock.Path(c.DataDir)); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket: %v, %v", fi, err)
	}
}

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := status.Status{
		Cluster: status.Cluster{Name: "rke2", BootstrapNode: "ha-m1", ClusterReady: true, JoinSlot: "ha-m2", VIP: "10.0.0.200", VIPReachable: true, VIPHolder: "ha-m1"},
		Members: []status.Member{
			{Name: "ha-m1", Role: "server", Phase: "ready", State: "alive", Address: "10.0.0.11", Since: now.Add(-90 * time.Second)},
			{Name: "ha-m2", Role: "server", Phase: "starting", State: "alive", Address: "10.0.0.12", Since: now.Add(-5 * time.Second)},
		},
	}
	var b bytes.Buffer
	statusview.PrintStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{"bootstrap ha-m1", "join slot ha-m2", "held by ha-m1", "ha-m1 (vip) *", "1m30s ago", "starting"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderKubeVIP(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	os.WriteFile(p, []byte("role: server\ntoken: x-Xk8pQ2mZ7rT4vN9wB3yL6h\nexpect-servers: 1\nvip: 10.9.8.7\ninterface: bond0\nnode-name: n1\nkube-vip-lease-duration: 30\n"), 0o600)
	code, out, errs := run("render", "kube-vip", "--config", p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"kind: DaemonSet", "value: 10.9.8.7", "value: bond0", "kind: ClusterRoleBinding"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q", want)
		}
	}
	if !regexp.MustCompile(`name: vip_leaseduration\s+value: "30"`).MatchString(out) {
		t.Errorf("lease duration not rendered:\n%s", out)
	}
}
