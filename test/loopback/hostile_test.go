package loopback

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// hostileStream is a raft stream layer built the way a token holder would
// build one from public information: the raft CA derived from the token
// (keys.PurposeRaftCA, the documented template), a leaf for any name.
type hostileStream struct {
	net.Listener
	cfg *tls.Config
}

func (h *hostileStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), h.cfg)
}

func newHostileStream(t *testing.T, token, cluster, name string) *hostileStream {
	t.Helper()
	seed, err := keys.Derive(token, keys.PurposeRaftCA, cluster, ed25519.SeedSize)
	if err != nil {
		t.Fatal(err)
	}
	caKey := ed25519.NewKeyFromSeed(seed)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rke2-hanode raft CA " + cluster},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{"raft.rke2-hanode.invalid"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &hostileStream{Listener: ln, cfg: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "raft.rke2-hanode.invalid",
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
	}}
}

// TestTokenHolderCannotWriteRaft is the raft-write attack against real
// daemons: a host holding the token (all a single-token set-up gives an
// agent) signs itself a raft certificate for a name that is not a server
// and sends AppendEntries and RequestVote to a server of a formed cluster.
// Before the raft listener's guard, AppendEntries was served (two RPCs
// committed a cluster-ready of the attacker's choosing). Now the server
// refuses the connection and logs it; the cluster stays ready.
func TestTokenHolderCannotWriteRaft(t *testing.T) {
	c := newCluster(t, "127.83.0.11", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 90*time.Second)
	victim := c.Nodes[0]
	addr := raft.ServerAddress(net.JoinHostPort(victim.IP, "9348"))

	st := newHostileStream(t, c.Opts.Token, c.Opts.ClusterName, "intruder")
	// The handshake itself succeeds: the intruder's CA is the cluster's.
	conn, err := st.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatalf("the token holder's certificate is not even accepted by TLS (test broken?): %v", err)
	}
	conn.Close()

	tr := raft.NewNetworkTransport(st, 1, 5*time.Second, nil)
	defer tr.Close()
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte(tr.LocalAddr())}
	var ae raft.AppendEntriesResponse
	err = tr.AppendEntries(raft.ServerID(victim.Name), addr, &raft.AppendEntriesRequest{
		RPCHeader: hdr, Term: 1 << 30, PrevLogEntry: 0, PrevLogTerm: 0,
		Entries: []*raft.Log{{Index: 1 << 20, Term: 1 << 30, Type: raft.LogCommand, Data: []byte("{}")}},
	}, &ae)
	if err == nil {
		t.Fatalf("AppendEntries from a token holder outside the configuration was served (success %v, term %d)", ae.Success, ae.Term)
	}
	var rv raft.RequestVoteResponse
	if err := tr.RequestVote(raft.ServerID(victim.Name), addr, &raft.RequestVoteRequest{
		RPCHeader: hdr, Term: 1 << 30, LastLogIndex: 1 << 20, LastLogTerm: 1 << 30,
	}, &rv); err == nil {
		t.Fatalf("RequestVote from a token holder outside the configuration was answered (granted %v)", rv.Granted)
	}

	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(readFile(victim.LogPath), "raft: refused an inbound connection") {
		if time.Now().After(deadline) {
			t.Fatalf("%s logged no refusal", victim.Name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rows := waitReady(t, c, 30*time.Second)
	for _, r := range rows {
		if r.Status.Node.Phase != "ready" {
			t.Errorf("%s: phase %s after the attack", r.Node.Name, r.Status.Node.Phase)
		}
	}
}
