package loopback

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// squatVIP serves /cacerts and /ping on vip:9345 with a CA of its own, as a
// host outside the cluster that took the VIP would. It holds no token.
func squatVIP(t *testing.T, vip string) (stop func()) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "squatter-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP(vip)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	ln, err := net.Listen("tcp", net.JoinHostPort(vip, "9345"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/cacerts":
				_, _ = w.Write(caPEM)
			case "/ping":
				_, _ = w.Write([]byte("pong"))
			default:
				http.NotFound(w, r)
			}
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return func() { _ = srv.Close() }
}

// A squatter answering on the VIP with another CA before the cluster forms
// delays it, with an alarm naming the CA seen; nobody stops for good, and
// once the squatter goes the cluster forms and every host joins.
func TestVIPSquatterDelaysButNeverStops(t *testing.T) {
	c := newCluster(t, "127.85.0.11", 3, 1)
	stop := squatVIP(t, c.VIP)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	var alarmed *demo.Node
	var seen *status.CAMismatch
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
		for _, r := range c.Snapshot(ctx) {
			if m := r.Status.Cluster.VIPCAMismatch; r.Err == nil && m != nil {
				alarmed, seen = r.Node, m
				return true
			}
		}
		return false
	})
	if alarmed == nil {
		t.Fatal("no host raised the VIP CA alarm while a squatter held the VIP")
	}
	t.Logf("%s alarms: the VIP serves CA %s, expected %s, holder %q", alarmed.Name, seen.Seen, seen.Expected, seen.Holder)
	if seen.Seen == seen.Expected || seen.Seen == "" {
		t.Errorf("alarm %+v does not name another CA", seen)
	}
	if m := scrape(t, alarmed); !strings.Contains(m, "rke2_hanode_vip_ca_mismatch 1") || strings.Contains(m, "rke2_hanode_vip_ca_mismatch_total 0\n") {
		t.Errorf("%s: the VIP CA alarm is not in its metrics", alarmed.Name)
	}
	stop()
	stopped = true
	rows := waitReady(t, c, 3*time.Minute)
	for _, r := range rows {
		if r.Status.Cluster.VIPCAMismatch != nil {
			t.Errorf("%s still shows the VIP CA alarm after the squatter left: %+v", r.Node.Name, r.Status.Cluster.VIPCAMismatch)
		}
		// The bootstrap server's disk holds the committed CA: no false alarm.
		if r.Status.Cluster.CAMismatch != nil {
			t.Errorf("%s: committed CA not the one on disk: %+v", r.Node.Name, r.Status.Cluster.CAMismatch)
		}
	}
	checkCluster(t, c, false)
}

// The bootstrap server compares the committed cluster CA with the server CA
// on its disk: a CA swapped on disk after the commit raises the alarm
// (status and metric), and putting the CA back clears it.
func TestBootstrapAlarmsOnACommittedCANotOnDisk(t *testing.T) {
	c := newCluster(t, "127.86.0.11", 1, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 2*time.Minute)
	boot := c.Nodes[0]
	path := filepath.Join(boot.RKE2DataDir, "server", "tls", "server-ca.crt")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the bootstrap server's CA: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "swapped-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	alarm := func(want bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var st status.Status
		err := demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
			s, err := boot.Status(ctx)
			st = s
			return err == nil && (s.Cluster.CAMismatch != nil) == want
		})
		if err != nil {
			t.Fatalf("alarm shown = %v, want %v (status ca_mismatch %+v)", st.Cluster.CAMismatch != nil, want, st.Cluster.CAMismatch)
		}
		if m, v := scrape(t, boot), map[bool]string{true: "1", false: "0"}[want]; !strings.Contains(m, "rke2_hanode_ca_mismatch "+v+"\n") {
			t.Errorf("rke2_hanode_ca_mismatch is not %s", v)
		}
		if want && (st.Cluster.CAMismatch.Seen == st.Cluster.CAMismatch.Expected || st.Cluster.CAMismatch.Expected != st.Cluster.CAHash) {
			t.Errorf("alarm %+v does not set the disk's CA against the committed %s", st.Cluster.CAMismatch, st.Cluster.CAHash)
		}
	}
	alarm(true)
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	alarm(false)
}
