package vip

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testCA is a cluster CA as RKE2 makes one: self-signed, served as PEM.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	cert, key, der := issue(t, &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs tmpl, valid for an hour around now, with a new key: by ca, or
// by itself when ca is nil.
func issue(t testing.TB, tmpl *x509.Certificate, ca *testCA) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, der
}

func (ca *testCA) hash() string {
	sum := sha256.Sum256(ca.pem)
	return hex.EncodeToString(sum[:])
}

// serving returns a server certificate signed by ca for the given IP SANs.
func (ca *testCA) serving(t *testing.T, sans ...string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "rke2-supervisor"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range sans {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	_, key, der := issue(t, tmpl, ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// supervisor is a stand-in for RKE2's 9345: /cacerts serves caPEM, /ping
// answers ping (pong unless a test says otherwise), over TLS with cert.
type supervisor struct {
	port       int
	cacertsHit atomic.Int32
	pingHit    atomic.Int32
}

func startSupervisor(t *testing.T, caPEM []byte, cert tls.Certificate, ping func(n int32) (int, string)) *supervisor {
	t.Helper()
	s := &supervisor{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cacerts", func(w http.ResponseWriter, _ *http.Request) {
		s.cacertsHit.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(caPEM)
	})
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		code, body := http.StatusOK, "pong"
		if ping != nil {
			code, body = ping(s.pingHit.Load())
		}
		s.pingHit.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Failed handshakes are the point of some cases; keep them out of the test log.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.port, _ = strconv.Atoi(u.Port())
	return s
}

func newTestProber(t *testing.T, cfg ProberConfig) *Prober {
	t.Helper()
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	p, err := NewProber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbe(t *testing.T) {
	const vip = "127.0.0.1"
	clusterCA := newTestCA(t, "rke2-server-ca")
	otherCA := newTestCA(t, "another-cluster-ca")

	tests := []struct {
		name       string
		servedCA   []byte
		cert       tls.Certificate
		ping       func(int32) (int, string)
		expect     string
		reachable  bool
		wantHash   string
		wantErr    string
		wantIs     error
		wantNoPing bool
	}{
		{name: "right CA", servedCA: clusterCA.pem, cert: clusterCA.serving(t, vip),
			expect: clusterCA.hash(), reachable: true, wantHash: clusterCA.hash()},
		{name: "right CA, hash in upper case", servedCA: clusterCA.pem, cert: clusterCA.serving(t, vip),
			expect: strings.ToUpper(clusterCA.hash()), reachable: true, wantHash: clusterCA.hash()},
		{name: "no expected hash yet", servedCA: clusterCA.pem, cert: clusterCA.serving(t, vip),
			reachable: true, wantHash: clusterCA.hash()},
		{name: "another cluster's CA is an alarm", servedCA: otherCA.pem, cert: otherCA.serving(t, vip),
			expect: clusterCA.hash(), wantHash: otherCA.hash(), wantIs: ErrCAMismatch, wantNoPing: true,
			wantErr: "hashes to " + otherCA.hash() + ", but the cluster's CA hash is " + clusterCA.hash()},
		{name: "VIP missing from the server's SANs", servedCA: clusterCA.pem, cert: clusterCA.serving(t, "10.99.0.1"),
			expect: clusterCA.hash(), wantHash: clusterCA.hash(),
			wantErr: "certificate is valid for 10.99.0.1, not 127.0.0.1"},
		{name: "impostor copies the CA but cannot sign for it", servedCA: clusterCA.pem, cert: otherCA.serving(t, vip),
			expect: clusterCA.hash(), wantHash: clusterCA.hash(), wantErr: "certificate signed by unknown authority"},
		{name: "ping answers something else", servedCA: clusterCA.pem, cert: clusterCA.serving(t, vip),
			ping: func(int32) (int, string) { return http.StatusOK, "ok" }, wantHash: clusterCA.hash(),
			wantErr: `/ping answered "ok", want pong`},
		{name: "ping fails", servedCA: clusterCA.pem, cert: clusterCA.serving(t, vip),
			ping: func(int32) (int, string) { return http.StatusServiceUnavailable, "" }, wantHash: clusterCA.hash(),
			wantErr: "/ping: 503 Service Unavailable"},
		{name: "cacerts is not PEM", servedCA: []byte("404 page not found\n"), cert: clusterCA.serving(t, vip),
			expect: clusterCA.hash(), wantErr: "CA bundle holds no PEM certificate", wantNoPing: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startSupervisor(t, tc.servedCA, tc.cert, tc.ping)
			reg := prometheus.NewRegistry()
			p := newTestProber(t, ProberConfig{Port: srv.port, Registerer: reg})
			r := p.Probe(context.Background(), vip, tc.expect)

			if r.Reachable != tc.reachable || r.CAHash != tc.wantHash {
				t.Errorf("Probe = {Reachable:%v CAHash:%s Err:%v}, want reachable %v hash %s", r.Reachable, r.CAHash, r.Err, tc.reachable, tc.wantHash)
			}
			switch {
			case tc.wantErr == "" && r.Err != nil:
				t.Errorf("unexpected error: %v", r.Err)
			case tc.wantErr != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr)):
				t.Errorf("error = %v, want it to contain %q", r.Err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(r.Err, tc.wantIs) {
				t.Errorf("error = %v, want errors.Is %v", r.Err, tc.wantIs)
			}
			if tc.wantNoPing && srv.pingHit.Load() != 0 {
				t.Errorf("/ping was asked %d times after the CA check failed; want never", srv.pingHit.Load())
			}
			if r.Latency <= 0 {
				t.Errorf("latency = %v, want > 0", r.Latency)
			}
			wantGauge := 0.0
			if tc.reachable {
				wantGauge = 1
			}
			if got := metricValue(t, p.metrics.reachable).GetGauge().GetValue(); got != wantGauge {
				t.Errorf("rke2_hanode_vip_reachable = %v, want %v", got, wantGauge)
			}
			if n := metricValue(t, p.metrics.duration).GetHistogram().GetSampleCount(); n != 1 {
				t.Errorf("probe duration histogram counted %d probes, want 1", n)
			}
			checkRegistered(t, reg)
		})
	}
}

func TestProbeNobodyListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := newTestProber(t, ProberConfig{Port: port})
	r := p.Probe(context.Background(), "127.0.0.1", "")
	if r.Reachable || r.Err == nil || !strings.Contains(r.Err.Error(), "/cacerts") {
		t.Errorf("Probe of a closed port = %+v, want unreachable with a /cacerts error", r)
	}
	if r := p.Probe(context.Background(), "fd00::1", ""); r.Err == nil || !strings.Contains(r.Err.Error(), "not supported yet") {
		t.Errorf("Probe of an IPv6 VIP: %v, want not supported yet", r.Err)
	}
}

func TestCAHashOfBundle(t *testing.T) {
	root := newTestCA(t, "root")
	single, err := CAHash(root.pem)
	if err != nil || single != root.hash() {
		t.Errorf("CAHash(single) = %s, %v; want the PEM bytes' hash %s", single, err, root.hash())
	}
	// A bundle of an intermediate and its root hashes to the root's DER.
	intermediate := root.serving(t, "10.0.0.1")
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: intermediate.Certificate[0]}), root.pem...)
	got, err := CAHash(bundle)
	sum := sha256.Sum256(root.cert.Raw)
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Errorf("CAHash(bundle) = %s, %v; want the root's DER hash", got, err)
	}
	if _, err := CAHash([]byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")); err == nil {
		t.Error("CAHash of a broken certificate: want an error")
	}
}

func TestWaitReachableAgainstSupervisor(t *testing.T) {
	ca := newTestCA(t, "rke2-server-ca")
	// The supervisor answers 503 to its first three pings, as RKE2 does
	// while it starts.
	srv := startSupervisor(t, ca.pem, ca.serving(t, "127.0.0.1"), func(n int32) (int, string) {
		if n < 3 {
			return http.StatusServiceUnavailable, "starting"
		}
		return http.StatusOK, "pong"
	})
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	p := newTestProber(t, ProberConfig{Port: srv.port, Clock: clock, Jitter: func(n int64) int64 { return n - 1 }})
	hash, err := p.WaitReachable(context.Background(), "127.0.0.1", ca.hash())
	if err != nil || hash != ca.hash() {
		t.Fatalf("WaitReachable = %s, %v; want %s", hash, err, ca.hash())
	}
	if got := srv.pingHit.Load(); got != 4 {
		t.Errorf("pinged %d times, want 4", got)
	}
	// Waits of at most 1s, 2s, 4s (the jitter picks the top of each range).
	if want := []time.Duration{time.Second - 1, 2*time.Second - 1, 4*time.Second - 1}; !equalDurations(clock.slept, want) {
		t.Errorf("slept %v, want %v", clock.slept, want)
	}
}

func TestWaitReachableStopsAtCAMismatch(t *testing.T) {
	clusterCA, otherCA := newTestCA(t, "cluster"), newTestCA(t, "other")
	srv := startSupervisor(t, otherCA.pem, otherCA.serving(t, "127.0.0.1"), nil)
	clock := &fakeClock{}
	p := newTestProber(t, ProberConfig{Port: srv.port, Clock: clock})
	hash, err := p.WaitReachable(context.Background(), "127.0.0.1", clusterCA.hash())
	var mismatch *CAMismatchError
	if !errors.As(err, &mismatch) || mismatch.Permanent() || hash != otherCA.hash() {
		t.Fatalf("WaitReachable = %s, %v; want a CA mismatch (not permanent: the caller retries) naming %s", hash, err, otherCA.hash())
	}
	if srv.cacertsHit.Load() != 1 || len(clock.slept) != 0 {
		t.Errorf("probed %d times and slept %d times; a mismatch must not be retried", srv.cacertsHit.Load(), len(clock.slept))
	}
}

func TestWaitReachableHonoursContext(t *testing.T) {
	p := newTestProber(t, ProberConfig{})
	p.probe = func(context.Context, string, string) Result {
		return Result{Err: errors.New("vip: GET https://10.0.0.1:9345/cacerts: connection refused")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.WaitReachable(ctx, "10.0.0.1", "")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("WaitReachable after the deadline = %v, want DeadlineExceeded with the last probe's error", err)
	}
}

func TestNewProberConfigErrors(t *testing.T) {
	if _, err := NewProber(ProberConfig{Port: 70000}); err == nil || !strings.Contains(err.Error(), "port 70000") {
		t.Errorf("port 70000: %v", err)
	}
	if _, err := NewProber(ProberConfig{BackoffBase: time.Minute, BackoffMax: time.Second}); err == nil || !strings.Contains(err.Error(), "below backoff base") {
		t.Errorf("max below base: %v", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := NewProber(ProberConfig{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewProber(ProberConfig{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("second registration on one registry: %v, want an error", err)
	}
}

// fakeClock advances only when slept on, and records the waits.
type fakeClock struct {
	now   time.Time
	slept []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	return nil
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func metricValue(t *testing.T, c prometheus.Metric) *dto.Metric {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// checkRegistered checks the prober's metrics carry the contract's names and
// a help text.
func checkRegistered(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"rke2_hanode_vip_reachable": true, "rke2_hanode_vip_local": true, "rke2_hanode_vip_probe_duration_seconds": true}
	for _, f := range families {
		if !want[f.GetName()] {
			t.Errorf("unexpected metric %s", f.GetName())
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %s has no help text", f.GetName())
		}
		delete(want, f.GetName())
	}
	for name := range want {
		t.Errorf("metric %s not registered", name)
	}
}

// FuzzCAHash: whatever a host on the VIP serves as /cacerts, hashing it must
// not panic, and a hash comes only with at least one certificate.
func FuzzCAHash(f *testing.F) {
	ca := newTestCA(f, "seed")
	f.Add(ca.pem)
	f.Add(append(append([]byte{}, ca.pem...), ca.pem...))
	f.Add([]byte("404 page not found\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, bundle []byte) {
		hash, err := CAHash(bundle)
		if err == nil && len(hash) != 64 {
			t.Fatalf("hash %q of %q is not 64 hex digits", hash, bundle)
		}
		if err != nil && hash != "" {
			t.Fatalf("hash %q returned with error %v", hash, err)
		}
	})
}
