package election

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// raftServerName is the one DNS name every raft leaf carries: a dialer
// knows its peer by address, not by ID, so the name check only proves "a
// leaf issued by this cluster's CA for raft". The leaf's CommonName is the
// node's raft server ID (its node name); the inbound guard admits a peer
// only if that ID is a server of the current configuration (peerID).
const raftServerName = "raft.rke2-hanode.invalid"

// clusterCA builds the raft CA from the token. Every token holder derives
// the same ed25519 key and, with a fixed template and a deterministic
// signature scheme, the identical self-signed certificate.
func clusterCA(token, cluster string) (*x509.Certificate, ed25519.PrivateKey, error) {
	seed, err := keys.Derive(token, keys.PurposeRaftCA, cluster, ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("election: raft CA: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rke2-hanode raft CA " + cluster},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("election: raft CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("election: raft CA certificate: %w", err)
	}
	return cert, key, nil
}

// raftTLSConfig returns the server and client TLS configurations of one
// node: a fresh leaf key signed by the cluster CA, peers verified against
// that CA in both directions, TLS 1.3 only.
func raftTLSConfig(token, cluster, node string, now time.Time) (server, client *tls.Config, err error) {
	ca, caKey, err := clusterCA(token, cluster)
	if err != nil {
		return nil, nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("election: raft leaf key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("election: raft leaf serial: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node},
		DNSNames:     []string{raftServerName},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, pub, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("election: raft leaf certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   raftServerName,
	}
	return server, client, nil
}

// tlsStream is a raft.StreamLayer speaking mutual TLS over TCP. Inbound
// connections pass a guard (guard.go) before raft sees them: a handshake
// deadline, a connection cap, and the peer's raft server ID checked against
// the configuration.
type tlsStream struct {
	ln        net.Listener // plain TCP; nil on a dial-only stream
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	guard     *streamGuard
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// newTLSStream listens on bind and advertises advertise (host:port).
func newTLSStream(bind, advertise string, server, client *tls.Config) (*tlsStream, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("election: raft advertise address %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("election: raft advertise address %q: not an address peers can reach", advertise)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("election: raft listen %s: %w", bind, err)
	}
	if adv.Port == 0 { // tests bind port 0 and advertise what they got
		adv.Port = ln.Addr().(*net.TCPAddr).Port
	}
	s := &tlsStream{ln: ln, advertise: adv, server: server, client: client, guard: newStreamGuard()}
	go s.guard.acceptLoop(ln, server)
	return s, nil
}

// Accept returns the next inbound connection that passed the guard: its
// TLS handshake is complete and its peer admitted.
func (s *tlsStream) Accept() (net.Conn, error) { return s.guard.next() }

// Close stops listening; connections already handed to raft stay open.
func (s *tlsStream) Close() error {
	s.guard.close()
	return s.ln.Close()
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and completes the handshake before raft writes,
// so a peer with another token fails here, with a clear error.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(addr), s.client)
	if err != nil {
		var uerr x509.UnknownAuthorityError
		if errors.As(err, &uerr) {
			return nil, fmt.Errorf("election: raft dial %s: peer certificate not from this cluster's CA (another token or cluster name?): %w", addr, err)
		}
		return nil, fmt.Errorf("election: raft dial %s: %w", addr, err)
	}
	return conn, nil
}
