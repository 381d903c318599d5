package rke2sim

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loManifest is the generator's DaemonSet for interface lo and vip.
func loManifest(t *testing.T, vip string) string {
	t.Helper()
	ds := golden(t, "kube-vip-v1.2.3-daemonset-seed.yaml")
	ds = strings.Replace(ds, "value: ens3", "value: lo", 1)
	return strings.Replace(ds, "value: 192.168.205.200", "value: "+vip, 1)
}

// withManifests makes a data-dir whose manifests folder holds the kube-vip objects.
func withManifests(t *testing.T, ds string) string {
	t.Helper()
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "server", "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"kube-vip-rbac.yaml": golden(t, "kube-vip-v1.2.3-rbac.yaml"), "kube-vip.yaml": ds} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dataDir
}

func vipAnswers(vip string) bool {
	code, body, _, err := get(supURL(vip)+"/ping", nil, "", "")
	return err == nil && code == 200 && body == "pong"
}

func TestVIPOnLoopbackMovesWhenHolderDies(t *testing.T) {
	vip := addr(6, 100)
	server := func(host int, name, extra string) *simRun {
		return startSim(t, simSpec{dataDir: withManifests(t, loManifest(t, vip)), config: strings.Join([]string{
			"node-ip: " + addr(6, host), "node-name: " + name, "tls-san: [" + vip + "]", extra,
		}, "\n")})
	}
	a := server(1, "a", "token: vip-secret")
	a.waitReady()
	eventually(t, 30*time.Second, "the VIP to answer", func() bool { return vipAnswers(vip) })
	b := server(2, "b", "token: "+a.token()+"\nserver: "+supURL(addr(6, 1)))
	b.waitReady()
	// Three members, so that the cluster keeps quorum when one dies (etcd).
	c := server(3, "c", "token: "+a.token()+"\nserver: "+supURL(addr(6, 1)))
	c.waitReady()
	// Through the VIP, the cluster's CA verifies the certificate (the VIP is a tls-san).
	_, caPEM, _, err := get(supURL(vip)+"/cacerts", nil, "", "")
	if err != nil || HashCACerts([]byte(caPEM)) != a.state().CAHash {
		t.Fatalf("VIP serves another CA (%v)", err)
	}
	if code, _, _, err := get(supURL(vip)+"/ping", poolFromPEM(t, []byte(caPEM)), "", ""); err != nil || code != 200 {
		t.Fatalf("verified ping through the VIP: %d %v", code, err)
	}
	var holder *simRun
	var others []*simRun
	for _, s := range []*simRun{a, b, c} {
		if strings.Contains(s.log.String(), "VIP acquired") {
			holder = s
		} else {
			others = append(others, s)
		}
	}
	if holder == nil || len(others) != 2 {
		t.Fatalf("want exactly one holder, have %d others", len(others))
	}
	holder.stop()
	eventually(t, 30*time.Second, "the VIP to move", func() bool {
		moved := 0
		for _, s := range others {
			if strings.Contains(s.log.String(), "VIP acquired") {
				moved++
			}
		}
		return moved == 1 && vipAnswers(vip)
	})
	// A server joining through the VIP while a voter is down: etcd refuses
	// any member add until every voter has been connected for a while
	// ("unhealthy cluster"); the joiner records it, retries, and gets in once
	// the first holder is back.
	d := startSim(t, simSpec{config: strings.Join([]string{
		"node-ip: " + addr(6, 4), "node-name: d", "token: " + a.token(), "server: " + supURL(vip),
	}, "\n")})
	eventually(t, 30*time.Second, "d refused while a voter is down", func() bool {
		r := d.state().Rejections
		return len(r) > 0 && r[0].Reason == "etcdserver: unhealthy cluster"
	})
	back := startSim(t, holder.spec)
	back.waitReady()
	d.waitReady()
	if d.state().JoinedVia != supURL(vip) || d.state().CAHash != a.state().CAHash {
		t.Fatalf("d's state %+v", d.state())
	}
}

func TestServerOutsideSANsFailsTLSVerification(t *testing.T) {
	vip := addr(7, 100)
	// The VIP is missing from tls-san.
	a := startSim(t, simSpec{dataDir: withManifests(t, loManifest(t, vip)), config: "node-ip: " + addr(7, 1) + "\ntoken: sans\n"})
	a.waitReady()
	eventually(t, 30*time.Second, "the VIP to answer", func() bool { return vipAnswers(vip) })
	_, caPEM, _, _ := get(supURL(addr(7, 1))+"/cacerts", nil, "", "")
	if _, _, _, err := get(supURL(vip)+"/ping", poolFromPEM(t, []byte(caPEM)), "", ""); err == nil || !isTLSVerifyError(err) {
		t.Fatalf("verified GET through an address outside the SANs: %v, want a certificate error", err)
	}
	if _, _, _, err := get(supURL(addr(7, 1))+"/ping", poolFromPEM(t, []byte(caPEM)), "", ""); err != nil {
		t.Fatalf("verified GET through node-ip: %v", err)
	}
	j := startSim(t, simSpec{config: "node-ip: " + addr(7, 2) + "\ntoken: " + a.token() + "\nserver: " + supURL(vip)})
	if code := j.waitExit(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if r := j.state().Rejections; len(r) != 1 || !strings.Contains(r[0].Reason, "TLS verification of "+supURL(vip)+" failed") {
		t.Fatalf("rejections %+v", r)
	}
}

func TestBadKubeVIPManifestKeepsVIPDown(t *testing.T) {
	vip := addr(8, 100)
	bad := strings.Replace(loManifest(t, vip), "value: \"32\"", "value: \"24\"", 1)
	a := startSim(t, simSpec{dataDir: withManifests(t, bad), config: "node-ip: " + addr(8, 1) + "\ntoken: bad\ntls-san: [" + vip + "]"})
	a.waitReady()
	eventually(t, 30*time.Second, "the log to name the field", func() bool {
		return strings.Contains(a.log.String(), `kube-vip manifest: env vip_subnet = "24", want "32"`)
	})
	// Several poll and retry periods later the VIP is still down.
	for range 10 {
		if vipAnswers(vip) {
			t.Fatal("the VIP answers with an invalid manifest")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ln, err := net.Listen("tcp", net.JoinHostPort(vip, testSupPort)); err != nil {
		t.Fatalf("someone holds the VIP: %v", err)
	} else {
		ln.Close()
	}
	// Fixing the file brings it up, as RKE2 re-applies a changed manifest.
	if err := os.WriteFile(filepath.Join(a.dataDir, "server", "manifests", "kube-vip.yaml"), []byte(loManifest(t, vip)), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the VIP after the fix", func() bool { return vipAnswers(vip) })
}

// TestManifestsAreClusterWide: objects applied on one server reach every
// server, a bad apply anywhere breaks the VIP everywhere, and removing the
// file does not bring the old objects back (RKE2's auto-deploy semantics).
func TestManifestsAreClusterWide(t *testing.T) {
	vip := addr(10, 100)
	a := startSim(t, simSpec{dataDir: withManifests(t, loManifest(t, vip)), config: "node-ip: " + addr(10, 1) + "\nnode-name: a\ntoken: wide\ntls-san: [" + vip + "]"})
	a.waitReady()
	eventually(t, 30*time.Second, "the VIP on a", func() bool { return vipAnswers(vip) })
	b := startSim(t, simSpec{config: "node-ip: " + addr(10, 2) + "\nnode-name: b\ntls-san: [" + vip + "]\ntoken: " + a.token() + "\nserver: " + supURL(addr(10, 1))})
	b.waitReady()
	eventually(t, 30*time.Second, "b to learn the kube-vip objects", func() bool {
		return strings.Contains(b.log.String(), "kube-vip manifest valid")
	})
	a.stop()
	eventually(t, 30*time.Second, "the VIP on b, which has no manifest file", func() bool {
		return strings.Contains(b.log.String(), "VIP acquired") && vipAnswers(vip)
	})
	dir := filepath.Join(b.dataDir, "server", "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(loManifest(t, vip), "value: \"32\"", "value: \"24\"", 1)
	if err := os.WriteFile(filepath.Join(dir, "kube-vip.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the bad apply to take the VIP down", func() bool {
		return strings.Contains(b.log.String(), `env vip_subnet = "24", want "32"`) && !vipAnswers(vip)
	})
	if err := os.Remove(filepath.Join(dir, "kube-vip.yaml")); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if vipAnswers(vip) {
			t.Fatal("removing the file brought the VIP back: the bad objects must stay applied")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
