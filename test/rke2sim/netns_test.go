package rke2sim

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestVIPOnRealInterfaceMoves runs two sims in two network namespaces joined
// by a veth pair (both ends named eth0): the VIP is added to exactly one
// eth0, moves when its holder is SIGKILLed, and is removed on a clean stop.
func TestVIPOnRealInterfaceMoves(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and netlink")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	bin := simBinary(t)
	nsA, nsB := fmt.Sprintf("rke2sim-%d-a", os.Getpid()), fmt.Sprintf("rke2sim-%d-b", os.Getpid())
	for _, ns := range []string{nsA, nsB} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	}
	ipCmd(t, "link", "add", "eth0", "netns", nsA, "type", "veth", "peer", "name", "eth0", "netns", nsB)
	ips := map[string]string{nsA: "10.213.7.1", nsB: "10.213.7.2"}
	const vip = "10.213.7.100"
	for ns, ip := range ips {
		ipCmd(t, "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ds := strings.Replace(golden(t, "kube-vip-v1.2.3-daemonset-seed.yaml"), "value: ens3", "value: eth0", 1)
	ds = strings.Replace(ds, "value: 192.168.205.200", "value: "+vip, 1)
	type proc struct {
		cmd     *exec.Cmd
		log     *syncBuffer
		dataDir string
	}
	start := func(ns, name, extra string) *proc {
		p := &proc{log: &syncBuffer{}, dataDir: withManifests(t, ds)}
		cfg := filepath.Join(t.TempDir(), "config.yaml")
		body := strings.Join([]string{"node-ip: " + ips[ns], "node-name: " + name, "tls-san: [" + vip + "]", "data-dir: " + p.dataDir, extra}, "\n")
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		p.cmd = exec.Command("ip", "netns", "exec", ns, bin, "server", "--config", cfg)
		for k, v := range baseEnv() {
			p.cmd.Env = append(p.cmd.Env, k+"="+v)
		}
		p.cmd.Env = append(p.cmd.Env, "RKE2SIM_VIP_RETRY=200ms", "RKE2SIM_VIP_LEASE=1s")
		p.cmd.Stderr = p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		})
		return p
	}
	holds := func(ns string) bool {
		return strings.Contains(ipCmd(t, "-n", ns, "-4", "addr", "show", "dev", "eth0"), " "+vip+"/32 ")
	}
	a := start(nsA, "a", "token: arp")
	eventually(t, 60*time.Second, "a to hold the VIP", func() bool { return holds(nsA) && strings.Contains(a.log.String(), "VIP acquired") })
	tok, err := os.ReadFile(filepath.Join(a.dataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	b := start(nsB, "b", "token: "+strings.TrimSpace(string(tok))+"\nserver: https://"+ips[nsA]+":"+testSupPort)
	eventually(t, 60*time.Second, "b to be ready", func() bool { return strings.Contains(b.log.String(), "\tready") })
	// b sees a answering on the VIP and does not claim it.
	time.Sleep(2 * time.Second)
	if holds(nsB) || strings.Contains(b.log.String(), "VIP acquired") {
		t.Fatalf("b claimed a VIP a holds; b's log:\n%s", b.log.String())
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the VIP to move to b", func() bool { return holds(nsB) && strings.Contains(b.log.String(), "VIP acquired") })
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = b.cmd.Wait()
	if holds(nsB) {
		t.Fatal("a clean stop left the VIP on the interface")
	}
	for _, p := range []*proc{a, b} {
		if strings.Contains(p.log.String(), "gratuitous ARP failed") || strings.Contains(p.log.String(), "cannot remove VIP") {
			t.Fatalf("VIP handling failed:\n%s", p.log.String())
		}
	}
}
