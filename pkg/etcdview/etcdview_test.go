package etcdview

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a CA with a serving and a client certificate, written in RKE2's
// layout under dir.
type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	server tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd-server-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{ca: ca, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	certPEM, keyPEM := p.leaf(t, x509.ExtKeyUsageServerAuth)
	p.server, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) leaf(t *testing.T, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "etcd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeClientFiles puts the CA and a client certificate of p in RKE2's
// layout under a new data-dir.
func (p *pki) writeClientFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	f := FilesIn(dir)
	if err := os.MkdirAll(filepath.Dir(f.CA), 0o700); err != nil {
		t.Fatal(err)
	}
	c, k := p.leaf(t, x509.ExtKeyUsageClientAuth)
	for path, b := range map[string][]byte{f.CA: p.caPEM, f.Cert: c, f.Key: k} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeEtcd answers like etcd's HTTP client URL: the gateway's JSON and
// /health, client-cert-auth against the CA.
type fakeEtcd struct {
	status, members, health string
	healthCode              int
	code                    int
}

func (f *fakeEtcd) start(t *testing.T, p *pki) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if r.Method != http.MethodGet {
				http.Error(w, "method", http.StatusMethodNotAllowed)
				return
			}
			code := f.healthCode
			if code == 0 {
				code = http.StatusOK
			}
			w.WriteHeader(code)
			io.WriteString(w, f.health)
			return
		}
		if r.Method != http.MethodPost {
			http.Error(w, `{"error":"Method Not Allowed"}`, http.StatusMethodNotAllowed)
			return
		}
		if f.code != 0 {
			w.WriteHeader(f.code)
			io.WriteString(w, `{"code":14,"message":"etcdserver: unhealthy"}`)
			return
		}
		switch r.URL.Path {
		case "/v3/maintenance/status":
			io.WriteString(w, f.status)
		case "/v3/cluster/member/list":
			io.WriteString(w, f.members)
		default:
			http.NotFound(w, r)
		}
	}))
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// Answers as etcd 3.6's gateway writes them (proto names, 64-bit strings).
const (
	statusJSON  = `{"header":{"cluster_id":"1","member_id":"12345678901234567890","revision":"42","raft_term":"3"},"version":"3.6.16","dbSize":"20480","leader":"12345678901234567890","raftIndex":"99","raftTerm":"3","raftAppliedIndex":"98","dbSizeInUse":"16384","storageVersion":"3.6.0","dbSizeQuota":"2147483648"}`
	membersJSON = `{"header":{"cluster_id":"1","member_id":"12345678901234567890","raft_term":"3"},"members":[` +
		`{"ID":"12345678901234567890","name":"server-2-0a0b0c0d","peerURLs":["https://10.0.0.2:2380"],"clientURLs":["https://10.0.0.2:2379"]},` +
		`{"ID":"7","name":"server-1-01020304","peerURLs":["https://10.0.0.1:2380"],"clientURLs":["https://10.0.0.1:2379"]},` +
		`{"ID":"8","name":"server-3-aabbccdd","peerURLs":["https://10.0.0.3:2380"],"isLearner":true}]}`
	healthJSON = `{"health":"true","reason":""}`
)

func TestRead(t *testing.T) {
	p := newPKI(t)
	f := &fakeEtcd{status: statusJSON, members: membersJSON, health: healthJSON}
	addr := f.start(t, p)
	at := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	r := &Reader{Addr: addr, Files: FilesIn(p.writeClientFiles(t)), Now: func() time.Time { return at }}
	v, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := View{ObservedAt: at, Healthy: true, MemberName: "server-2-0a0b0c0d", MemberID: 12345678901234567890,
		Revision: 42, RaftIndex: 98, Leader: 12345678901234567890, Members: []Member{
			{Name: "server-1-01020304", ID: 7, PeerURL: "https://10.0.0.1:2380"},
			{Name: "server-2-0a0b0c0d", ID: 12345678901234567890, PeerURL: "https://10.0.0.2:2380"},
			{Name: "server-3-aabbccdd", ID: 8, PeerURL: "https://10.0.0.3:2380", Learner: true},
		}}
	if !equalView(v, want) {
		t.Fatalf("view\n got %+v\nwant %+v", v, want)
	}
	if v.Voters() != 2 {
		t.Errorf("voters %d, want 2 (one learner)", v.Voters())
	}
}

func equalView(a, b View) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	for i := range a.Members {
		if a.Members[i] != b.Members[i] {
			return false
		}
	}
	a.Members, b.Members = nil, nil
	return a.ObservedAt.Equal(b.ObservedAt) && a.Healthy == b.Healthy && a.MemberName == b.MemberName && a.MemberID == b.MemberID &&
		a.Learner == b.Learner && a.Revision == b.Revision && a.RaftIndex == b.RaftIndex && a.Leader == b.Leader
}

// A member that answers but has no leader, or whose linearizable health
// read fails, is a view that says unhealthy, not an error: that is what a
// survivor of a lost quorum reports.
func TestReadUnhealthy(t *testing.T) {
	p := newPKI(t)
	dir := p.writeClientFiles(t)
	for name, f := range map[string]*fakeEtcd{
		"no leader":      {status: strings.Replace(statusJSON, `"leader":"12345678901234567890",`, "", 1), members: membersJSON, health: healthJSON},
		"health 503":     {status: statusJSON, members: membersJSON, health: `{"health":"false","reason":"RAFT NO LEADER"}`, healthCode: http.StatusServiceUnavailable},
		"health false":   {status: statusJSON, members: membersJSON, health: `{"health":"false"}`},
		"health garbage": {status: statusJSON, members: membersJSON, health: `<html>`},
	} {
		t.Run(name, func(t *testing.T) {
			r := &Reader{Addr: f.start(t, p), Files: FilesIn(dir)}
			v, err := r.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if v.Healthy || v.MemberName != "server-2-0a0b0c0d" || v.ObservedAt.IsZero() {
				t.Fatalf("view %+v: want unhealthy with its member", v)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	p := newPKI(t)
	good := p.writeClientFiles(t)
	other := newPKI(t).writeClientFiles(t) // a certificate from another CA
	noFiles := t.TempDir()
	cases := []struct {
		name    string
		f       *fakeEtcd
		dir     string
		wantErr string
	}{
		{"no CA file", &fakeEtcd{status: statusJSON, members: membersJSON}, noFiles, "etcd CA"},
		{"client certificate of another CA", &fakeEtcd{status: statusJSON, members: membersJSON}, other, "/v3/maintenance/status"},
		{"gateway error", &fakeEtcd{code: http.StatusServiceUnavailable}, good, "503 Service Unavailable: {\"code\":14"},
		{"not JSON", &fakeEtcd{status: "<html>"}, good, "not the gateway's JSON"},
		{"own member missing", &fakeEtcd{status: statusJSON, members: `{"members":[{"ID":"7","name":"server-1-01020304"}]}`}, good, "not in its own member list"},
		{"no member ID", &fakeEtcd{status: `{"header":{}}`, members: membersJSON}, good, "no member ID"},
		{"bad integer", &fakeEtcd{status: `{"header":{"member_id":"x1"}}`, members: membersJSON}, good, "not a 64-bit integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Reader{Addr: c.f.start(t, p), Files: FilesIn(c.dir)}
			_, err := r.Read(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, c.wantErr)
			}
		})
	}
}

// Each call has its own deadline: a member that accepts and never answers
// fails the read, it does not hang it.
func TestReadDeadline(t *testing.T) {
	p := newPKI(t)
	block := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}}
	srv.StartTLS()
	defer srv.Close()
	defer close(block)
	r := &Reader{Addr: strings.TrimPrefix(srv.URL, "https://"), Files: FilesIn(p.writeClientFiles(t)), Timeout: 200 * time.Millisecond}
	if _, err := r.Read(context.Background()); err == nil {
		t.Fatal("a member that never answers gave a view")
	}
}
