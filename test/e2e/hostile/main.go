// Command hostile is the test bed's hostile host: it tries to speak raft to a
// server with every key it can derive from the one token it holds.
//
// The raft transport is mutual TLS under a CA whose ed25519 key is derived
// from the server token (pkg/keys, PurposeRaftCA). A host holding a token
// builds that CA the way a server does (the same fixed template, so the same
// certificate), signs itself a leaf for a raft server ID and dials the raft
// port twice:
//
//   - verify: the server's certificate checked against the derived CA, as a
//     raft peer does. A wrong token fails here, on the client side.
//   - present: the server's certificate not checked, the derived leaf
//     presented as a client certificate, then one read: a server that
//     refuses the leaf ends the connection (TLS alert or close) at once; one
//     that admitted it waits for a raft RPC, so the read times out.
//
// With -token the whole token is tried, and for an agent token of the form
// <fingerprint>.<secret> its secret part too. It prints one line per try
// and exits 0 when every try is refused, 3 when any is accepted, 2 when the
// raft port cannot be reached at all (no verdict), 1 on bad usage. The bed
// runs it with the agent token (all must be refused) and, as a control that
// the program can see an acceptance, with the server token (-want accept).
//
// With -gossip it is the gossip-claim attack instead (test/hostile): it
// joins gossip with the agent token under -name, says it is a server
// (raft address and advertised address on -spoof, another server's
// address; want-join-slot, ready, cluster ready, the CA hash -ca), re-signs
// its claim with the one key the agent token gives it every two seconds,
// and leaves after -for. It exits 0 when it ran its time, 1 on bad usage or
// when it could not join.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
	"github.com/rke2-hanode/rke2-hanode/test/hostile"
)

// Must match pkg/election (tls.go): the raft leaves' DNS name and the CA template.
const raftServerName = "raft.rke2-hanode.invalid"

func deriveCA(token, cluster string) (*x509.Certificate, ed25519.PrivateKey, error) {
	seed, err := keys.Derive(token, keys.PurposeRaftCA, cluster, ed25519.SeedSize)
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func leaf(ca *x509.Certificate, caKey ed25519.PrivateKey, id string) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: id},
		DNSNames:     []string{raftServerName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

var errUnreachable = errors.New("raft port unreachable")

// try dials addr once with cfg; nil means the server admitted the
// connection (the read after the handshake timed out, nothing was refused).
func try(addr string, cfg *tls.Config) error {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("%w: %v", errUnreachable, err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	conn := tls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	// TLS 1.3: the server checks the client certificate after the client's
	// handshake is done and answers a bad one with an alert on the next read.
	_ = raw.SetReadDeadline(time.Now().Add(3 * time.Second))
	var b [1]byte
	_, err = conn.Read(b[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err == nil {
		return errors.New("server sent data before any request")
	}
	return fmt.Errorf("after handshake: %w", err)
}

// gossipAttack is the -gossip mode.
func gossipAttack(token, cluster, name, bind string, port int, spoof, join, ca string, expect int, d time.Duration) error {
	if name == "" || bind == "" || spoof == "" || join == "" {
		return errors.New("-gossip needs -name, -bind, -spoof and -join")
	}
	_, stop, err := hostile.ForgedServer{
		Name: name, AgentToken: token, ClusterName: cluster, BindIP: bind, GossipPort: port,
		SpoofIP: spoof, Join: strings.Split(join, ","), ExpectServers: expect, CAHash: ca,
	}.Start(context.Background())
	if err != nil {
		return err
	}
	fmt.Printf("gossiping as %s from %s:%d, announcing server at %s with CA %s, for %s\n", name, bind, port, spoof, ca, d)
	time.Sleep(d)
	stop()
	return nil
}

func main() {
	addr := flag.String("addr", "", "a server's raft address host:port")
	tokenFile := flag.String("token-file", "", "file holding the token this host has")
	cluster := flag.String("cluster-name", "rke2", "the cluster-name")
	id := flag.String("id", "", "the raft server ID to put in the leaf (a server's node name)")
	want := flag.String("want", "refuse", "refuse (every try must be refused) or accept (the control)")
	gossipMode := flag.Bool("gossip", false, "the gossip-claim attack instead of the raft one")
	name := flag.String("name", "intruder", "-gossip: the node name to join under")
	bind := flag.String("bind", "", "-gossip: this host's address to gossip from")
	port := flag.Int("port", 9447, "-gossip: the gossip port to bind (not the daemon's)")
	spoof := flag.String("spoof", "", "-gossip: another server's address, announced as its own")
	join := flag.String("join", "", "-gossip: seeds, comma-separated host[:port]")
	ca := flag.String("ca", strings.Repeat("e", 64), "-gossip: the CA hash it wants agents to pin")
	expect := flag.Int("expect-servers", 3, "-gossip: the expect-servers it announces")
	dur := flag.Duration("for", time.Minute, "-gossip: how long to stay")
	flag.Parse()
	if *gossipMode {
		raw, err := os.ReadFile(*tokenFile)
		if err == nil {
			err = gossipAttack(strings.TrimSpace(string(raw)), *cluster, *name, *bind, *port, *spoof, *join, *ca, *expect, *dur)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "hostile:", err)
			os.Exit(1)
		}
		return
	}
	if *addr == "" || *tokenFile == "" || *id == "" || (*want != "refuse" && *want != "accept") {
		fmt.Fprintln(os.Stderr, "usage: hostile -addr HOST:PORT -token-file FILE -id SERVER-ID [-cluster-name NAME] [-want refuse|accept]")
		os.Exit(1)
	}
	raw, err := os.ReadFile(*tokenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
	token := strings.TrimSpace(string(raw))
	candidates := []string{token}
	if fp, secret, ok := strings.Cut(token, "."); ok && fp != "" && secret != "" {
		candidates = append(candidates, secret)
	}
	accepted, unreachable := 0, 0
	for i, t := range candidates {
		what := "whole token"
		if i > 0 {
			what = "secret part"
		}
		ca, caKey, err := deriveCA(t, *cluster)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hostile: derive:", err)
			os.Exit(1)
		}
		cert, err := leaf(ca, caKey, *id)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hostile: leaf:", err)
			os.Exit(1)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		tries := []struct {
			name string
			cfg  *tls.Config
		}{
			{"verify", &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: raftServerName, Certificates: []tls.Certificate{cert}}},
			{"present", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}, // #nosec G402 -- the point is to present the leaf whatever the server is
		}
		for _, tr := range tries {
			err := try(*addr, tr.cfg)
			switch {
			case err == nil:
				accepted++
				fmt.Printf("%s, %s: accepted\n", what, tr.name)
			case errors.Is(err, errUnreachable):
				unreachable++
				fmt.Printf("%s, %s: %v\n", what, tr.name, err)
			default:
				fmt.Printf("%s, %s: refused: %v\n", what, tr.name, err)
			}
		}
	}
	switch {
	case unreachable > 0:
		os.Exit(2)
	case *want == "refuse" && accepted > 0, *want == "accept" && accepted == 0:
		os.Exit(3)
	}
}
