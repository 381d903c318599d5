package election

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// serves is a CAFetcher for tests whose servers all serve the CA hash ca.
func serves(ca string) CAFetcher {
	return func(context.Context, Peer) (string, error) { return ca, nil }
}

// caPEM is a fresh self-signed CA, as server-ca.crt holds one.
func caPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// waitVerified steps the verifier until it holds a hash for name or the
// deadline passes.
func waitVerified(t *testing.T, v *caVerifier, p Peer) map[string]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		v.want(context.Background(), p, time.Now())
		if got := v.snapshot(); got[p.Name] != "" {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no CA fetched from %s within the deadline", p.RaftAddr)
	return nil
}

// A bootstrap node (or whoever advertises under its name) that reports
// Ready with a CA hash of its choosing is not committed: the leader commits
// only the hash it fetched from the bootstrap node's own address.
func TestClusterReadyCommitsOnlyTheCAServedAtTheBootstrapAddress(t *testing.T) {
	served := caPEM(t, "rke2-server-ca")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cacerts" {
			_, _ = w.Write(served)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	portN, _ := strconv.Atoi(port)
	prober, err := vip.NewProber(vip.ProberConfig{NodeName: "leader", Port: portN})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(ctx context.Context, p Peer) (string, error) {
		h, _, err := net.SplitHostPort(p.RaftAddr)
		if err != nil {
			return "", err
		}
		return prober.FetchCAHash(ctx, h)
	}
	realHash, err := cahash.Of(served)
	if err != nil {
		t.Fatal(err)
	}
	attacker, err := cahash.Of(caPEM(t, "attacker-ca"))
	if err != nil {
		t.Fatal(err)
	}
	st := ClusterState{Bootstrap: "boot", Started: true}
	now := time.Unix(1_800_000_000, 0)
	boot := Peer{Name: "boot", RaftAddr: net.JoinHostPort(host, "9348"), State: MemberAlive, ExpectServers: 3,
		ClusterName: "c", HasRaftState: true, StartedRKE2: true, Ready: true}
	readyOf := func(acts []action) *Command {
		for _, a := range acts {
			if a.Kind == actApply && a.Cmd.Op == opReady {
				return &a.Cmd
			}
		}
		return nil
	}

	// The attack: Ready with the attacker's CA hash.
	forged := boot
	forged.CAHash = attacker
	v := newCAVerifier(fetch, zap.NewNop(), nil)
	verified := waitVerified(t, v, forged)
	if verified["boot"] != realHash {
		t.Fatalf("fetched %q from the bootstrap address, want the served CA %q", verified["boot"], realHash)
	}
	self := leaderSelf{Name: "a", Cluster: "c", VIP: "192.0.2.1", VerifiedCA: verified}
	if c := readyOf(decide(st, []Peer{forged}, self, nil, now, LANTiming(), newLeaderBook())); c != nil {
		t.Fatalf("cluster ready committed with the claimed CA %s, which the bootstrap address does not serve", c.CAHash)
	}
	// Without any fetch, a claim alone is never committed either.
	honest := boot
	honest.CAHash = realHash
	self.VerifiedCA = nil
	if c := readyOf(decide(st, []Peer{honest}, self, nil, now, LANTiming(), newLeaderBook())); c != nil {
		t.Fatalf("cluster ready committed with CA %s before any fetch confirmed it", c.CAHash)
	}
	// The honest claim, confirmed by the fetch, is committed.
	self.VerifiedCA = verified
	c := readyOf(decide(st, []Peer{honest}, self, nil, now, LANTiming(), newLeaderBook()))
	if c == nil || c.CAHash != realHash {
		t.Fatalf("cluster ready with the verified CA not committed: %+v", c)
	}
}

// A fetch that fails backs off instead of hammering the bootstrap address.
func TestCAVerifierBacksOff(t *testing.T) {
	calls := make(chan struct{}, 100)
	v := newCAVerifier(func(context.Context, Peer) (string, error) {
		calls <- struct{}{}
		return "", context.DeadlineExceeded
	}, zap.NewNop(), nil)
	p := Peer{Name: "boot", RaftAddr: "192.0.2.7:9348", CAHash: "x"}
	now := time.Unix(1_800_000_000, 0)
	v.want(context.Background(), p, now)
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch started")
	}
	// Let the failed fetch record its backoff.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v.mu.Lock()
		busy := v.busy
		v.mu.Unlock()
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fetch never finished")
		}
		time.Sleep(10 * time.Millisecond)
	}
	v.want(context.Background(), p, now.Add(caFetchBackoffMin/2))
	time.Sleep(50 * time.Millisecond)
	if n := len(calls); n != 0 {
		t.Fatalf("fetched again %d time(s) within the backoff", n)
	}
	v.want(context.Background(), p, now.Add(caFetchBackoffMin))
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch after the backoff")
	}
}
