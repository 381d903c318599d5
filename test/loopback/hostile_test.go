package loopback

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/test/hostile"
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

// TestAgentTokenHolderCannotPoseAsServer is the gossip-claim attack: a
// host holding only the agent token joins gossip before the cluster forms,
// under a new name, announcing role server, a raft address on another
// server's address, want-join-slot, ready, cluster ready and a CA hash of
// its own, with a claim signed by the one key it can derive. Before signed
// claims every host took that metadata as the truth. Now: the leader never
// grants it the slot, it never becomes a voter and the voters stay odd, an
// agent that joins while it is there pins the real CA, every status shows
// it as an unverified agent, and the rejected-claims metric counts it.
func TestAgentTokenHolderCannotPoseAsServer(t *testing.T) {
	tok, err := claims.Generate("demo")
	if err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		t.Skip("loopback clusters take tens of seconds; skipped with -short")
	}
	c, err := demo.New(demo.Options{
		Servers: 3, Agents: 1, Base: "127.93.0.11", Dir: t.TempDir(), Token: tok.Server, AgentToken: tok.Agent,
		Daemon: daemonBin, Sim: simBin, Env: simEnv, LogLevel: "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("---- %s: last lines of its log\n%s", n.Name, tail(n.LogPath, 40))
			}
		}
		c.Close()
	})
	const intruder = "intruder"
	fakeCA := strings.Repeat("e", 64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, stop, err := hostile.ForgedServer{
		Name: intruder, AgentToken: tok.Agent, ClusterName: "demo", BindIP: "127.93.0.150",
		SpoofIP: c.Nodes[1].IP, Join: c.Seeds, ExpectServers: 3, CAHash: fakeCA,
	}.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	// What the raft group says, watched all along: the slot holder, the
	// bootstrap node and the voters (from the servers' verified claims,
	// read by an observer that holds the agent token).
	fp, _ := claims.AgentTokenFingerprint(tok.Agent)
	observer, err := gossip.Open(gossip.Config{NodeName: "observer", BindAddr: "127.93.0.151", BindPort: 9347,
		AdvertiseAddr: "127.93.0.151", Join: c.Seeds, Token: tok.Agent, ClusterName: "demo",
		TrustedFingerprint: fp, Meta: gossip.Meta{Role: gossip.RoleAgent, Phase: "ready"}})
	if err != nil {
		t.Fatal(err)
	}
	obsDone := make(chan struct{})
	go func() { defer close(obsDone); _ = observer.Run(ctx) }()
	defer func() { cancel(); <-obsDone; observer.Close() }()
	var watchErr atomic.Value
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	servers := slices.Clone(c.Nodes[:3]) // AddNode below appends to c.Nodes
	go func() {
		defer close(watchDone)
		for {
			for _, n := range servers {
				var st status.Status
				if raw, err := get("http://" + n.HTTPAddress + "/status"); err == nil && json.Unmarshal([]byte(raw), &st) == nil {
					if st.Cluster.JoinSlot == intruder || st.Cluster.BootstrapNode == intruder {
						watchErr.Store(fmt.Sprintf("%s: join slot %q, bootstrap %q", n.Name, st.Cluster.JoinSlot, st.Cluster.BootstrapNode))
					}
				}
			}
			for _, mi := range observer.Members() {
				if mi.Claim == nil {
					continue
				}
				if slices.Contains(mi.Claim.Voters, intruder) || len(mi.Claim.Voters)%2 == 0 && len(mi.Claim.Voters) > 0 {
					watchErr.Store(fmt.Sprintf("%s's claim lists the voters %v", mi.Name, mi.Claim.Voters))
				}
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()

	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 3*time.Minute)
	// A second agent joins while the intruder is there, announcing its CA.
	late, err := c.AddNode("agent-2", "agent", "127.93.0.20")
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Start(); err != nil {
		t.Fatal(err)
	}
	rows := waitReady(t, c, 3*time.Minute)
	checkCluster(t, c, false)
	// every server vouches for the three voters
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer wcancel()
	var voters map[string][]string
	demo.WaitFor(wctx, 250*time.Millisecond, func() bool {
		voters = map[string][]string{}
		for _, mi := range observer.Members() {
			if mi.Claim != nil {
				voters[mi.Name] = mi.Claim.Voters
			}
		}
		for _, n := range c.Nodes[:3] {
			if len(voters[n.Name]) != 3 {
				return false
			}
		}
		return true
	})
	for _, n := range c.Nodes[:3] {
		if want := []string{"server-1", "server-2", "server-3"}; !slices.Equal(voters[n.Name], want) {
			t.Errorf("%s vouches for the voters %v, want %v", n.Name, voters[n.Name], want)
		}
	}
	close(stopWatch)
	<-watchDone
	if v := watchErr.Load(); v != nil {
		t.Errorf("the intruder got somewhere: %v", v)
	}

	for _, r := range rows {
		s := readSim(t, r.Node)
		if s.CAHash == fakeCA || r.Status.Cluster.CAHash == fakeCA {
			t.Errorf("%s pinned the intruder's CA", r.Node.Name)
		}
		seen := false
		for _, m := range r.Status.Members {
			switch {
			case m.Name == intruder:
				seen = true
				if m.Role != "agent" || m.ClaimVerified || !m.UnverifiedServer {
					t.Errorf("%s's status shows the intruder as %+v", r.Node.Name, m)
				}
			case strings.HasPrefix(m.Name, "server-") && !m.ClaimVerified:
				t.Errorf("%s's status shows %s without a verified claim", r.Node.Name, m.Name)
			}
		}
		if !seen {
			t.Errorf("%s does not list the intruder", r.Node.Name)
		}
		// the intruder keeps re-signing: every host hears it soon
		counted := regexp.MustCompile(`rke2_hanode_gossip_claims_rejected_total\{reason="wrong_key"\} [1-9]`)
		mctx, mcancel := context.WithTimeout(context.Background(), 3*time.Minute)
		if demo.WaitFor(mctx, time.Second, func() bool { return counted.MatchString(scrape(t, r.Node)) }) != nil {
			t.Errorf("%s counted no rejected claim", r.Node.Name)
		}
		mcancel()
	}
	out, err := exec.Command(daemonBin, "status", "--address", c.Nodes[0].HTTPAddress).CombinedOutput()
	if err != nil || !strings.Contains(string(out), intruder+" !") || !strings.Contains(string(out), "without a valid server claim") {
		t.Errorf("status table does not mark the intruder (%v):\n%s", err, out)
	}
	checkNoSecrets(t, c)
}
