package election

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestClusterCADeterministic(t *testing.T) {
	a, _, err := clusterCA("token", "c1")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := clusterCA("token", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Raw, b.Raw) {
		t.Fatal("two derivations of the same CA differ")
	}
	for _, other := range [][2]string{{"other", "c1"}, {"token", "c2"}} {
		c, _, err := clusterCA(other[0], other[1])
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a.PublicKey.(ed25519.PublicKey), c.PublicKey.(ed25519.PublicKey)) {
			t.Fatalf("CA of %v has the same key", other)
		}
	}
	if _, _, err := clusterCA("", "c1"); err == nil || !strings.Contains(err.Error(), "empty token") {
		t.Fatalf("empty token: %v", err)
	}
}

// handshake runs one connection from a client config to a server config
// over the stream layer and reports the errors of both sides.
func handshake(t *testing.T, server, client *tls.Config) (dialErr, acceptErr error) {
	t.Helper()
	s, err := newTLSStream("127.0.0.1:0", "127.0.0.1:0", server, client)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accepted := make(chan error, 1)
	go func() {
		conn, err := s.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			accepted <- err
			return
		}
		_, err = conn.Write(buf)
		accepted <- err
	}()
	dialer := &tlsStream{client: client}
	conn, err := dialer.Dial(raft.ServerAddress("127.0.0.1:"+portOf(s)), 5*time.Second)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err = conn.Write([]byte("ping")); err == nil {
			_, err = io.ReadFull(conn, make([]byte, 4))
		}
		conn.Close()
	}
	// A peer the guard refused never reaches Accept: closing the stream
	// ends the wait with an error.
	s.Close()
	return err, <-accepted
}

func portOf(s *tlsStream) string {
	a := s.Addr().String()
	return a[strings.LastIndexByte(a, ':')+1:]
}

func TestTLSStreamMutualAuth(t *testing.T) {
	now := time.Now()
	mk := func(token, cluster, node string) (*tls.Config, *tls.Config) {
		s, c, err := raftTLSConfig(token, cluster, node, now)
		if err != nil {
			t.Fatal(err)
		}
		return s, c
	}
	srvA, _ := mk("token", "c", "a")
	_, cliB := mk("token", "c", "b")
	_, cliOther := mk("another-token", "c", "x")
	_, cliOtherCluster := mk("token", "other", "x")
	srvOther, _ := mk("another-token", "c", "y")
	noCert := cliB.Clone()
	noCert.Certificates = nil

	tests := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		dialErr   string
		acceptErr bool
	}{
		{"same token", srvA, cliB, "", false},
		{"client with another token", srvA, cliOther, "", true},
		{"client of another cluster", srvA, cliOtherCluster, "", true},
		{"server with another token", srvOther, cliB, "not from this cluster's CA", true},
		{"client without certificate", srvA, noCert, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dialErr, acceptErr := handshake(t, tc.server, tc.client)
			ok := tc.dialErr == "" && !tc.acceptErr
			if ok && (dialErr != nil || acceptErr != nil) {
				t.Fatalf("dial: %v, accept: %v; want both fine", dialErr, acceptErr)
			}
			if tc.dialErr != "" && (dialErr == nil || !strings.Contains(dialErr.Error(), tc.dialErr)) {
				t.Fatalf("dial error = %v, want %q", dialErr, tc.dialErr)
			}
			if tc.acceptErr && acceptErr == nil {
				t.Fatal("server accepted a peer without this cluster's certificate")
			}
			if !ok && dialErr == nil && acceptErr == nil {
				t.Fatal("both sides talked although they should not")
			}
		})
	}
}

func TestTLSConfigIsStrict(t *testing.T) {
	s, c, err := raftTLSConfig("token", "c", "a", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.MinVersion != tls.VersionTLS13 || c.MinVersion != tls.VersionTLS13 {
		t.Fatal("TLS below 1.3 allowed")
	}
	if s.ClientAuth != tls.RequireAndVerifyClientCert || c.InsecureSkipVerify {
		t.Fatal("peer verification not required on both sides")
	}
}

func TestNewTLSStreamBadAdvertise(t *testing.T) {
	for _, tc := range []struct{ adv, wantErr string }{
		{"0.0.0.0:9348", "not an address peers can reach"},
		{"nonsense", "raft advertise address"},
	} {
		_, err := newTLSStream("127.0.0.1:0", tc.adv, &tls.Config{}, &tls.Config{})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("advertise %q: %v, want %q", tc.adv, err, tc.wantErr)
		}
	}
}

// BenchmarkHandshakeGuess is one offline guess against what a raft
// handshake shows before it asks for a client certificate: derive the CA
// from a guessed token and compare it with the CA that signed the leaf.
// Each guess is a new token, so the derivation cache never helps.
func BenchmarkHandshakeGuess(b *testing.B) {
	seen, _, err := clusterCA("the-real-token", "rke2")
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		ca, _, err := clusterCA("guess-"+strconv.Itoa(i), "rke2")
		if err != nil {
			b.Fatal(err)
		}
		if bytes.Equal(ca.RawSubjectPublicKeyInfo, seen.RawSubjectPublicKeyInfo) {
			b.Fatal("guessed")
		}
	}
}
