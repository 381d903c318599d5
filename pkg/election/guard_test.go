package election

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// refusalCounter is a fresh rke2_hanode_raft_refused_connections_total.
func refusalCounter(t *testing.T) *prometheus.CounterVec {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m.raftRefused
}

// serveLikeRaft runs what raft's NetworkTransport does with a stream
// layer: accept in a loop and serve each connection in its own goroutine
// until it ends.
func serveLikeRaft(s raft.StreamLayer) {
	for {
		c, err := s.Accept()
		if err != nil {
			return
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}

// openConns counts the connections the far side has not closed yet.
func openConns(conns []net.Conn) int {
	open := 0
	buf := make([]byte, 1)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	return open
}

// servedStream is a raft stream layer of server "a" on a loopback port,
// set up by configure (when not nil) and then served as raft serves it
// until the test ends.
func servedStream(t *testing.T, configure func(*tlsStream)) (*tlsStream, string) {
	t.Helper()
	srv, cli, err := raftTLSConfig("token", "c", "a", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := newTLSStream("127.0.0.1:0", "127.0.0.1:0", srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if configure != nil {
		configure(s)
	}
	go serveLikeRaft(s)
	return s, "127.0.0.1:" + portOf(s)
}

// dialAll opens n TCP connections to addr that never start TLS; they are
// closed when the test ends.
func dialAll(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	return conns
}

// openWithinHandshake waits, for half the handshake deadline, until want
// of conns are still open, and returns how many are.
func openWithinHandshake(conns []net.Conn, want int) int {
	deadline := time.Now().Add(raftHandshakeTimeout / 2)
	open := len(conns)
	for time.Now().Before(deadline) {
		if open = openConns(conns); open == want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return open
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestStreamGuardBoundsSilentConnections is the listener-exhaustion
// attack: 1500 TCP connections to the raft port that never start TLS. The
// old stream layer handed each to raft at once, and each held a goroutine
// and a socket for ever. Now the excess over the cap is closed at once, the
// rest by the handshake deadline, and goroutines and descriptors stay
// bounded; a real peer still gets in afterwards.
func TestStreamGuardBoundsSilentConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s handshake deadline")
	}
	s, addr := servedStream(t, nil)

	const attackers, slack = 1500, 40
	g0, fd0 := runtime.NumGoroutine(), countFDs(t)
	conns := make([]net.Conn, 0, attackers)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	maxG, maxServerFDs := 0, 0
	for range attackers {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		maxG = max(maxG, runtime.NumGoroutine()-g0)
		maxServerFDs = max(maxServerFDs, countFDs(t)-fd0-len(conns))
	}
	// Wait (generously) until the server side has dealt with every one.
	deadline := time.Now().Add(60 * time.Second)
	open := attackers
	for time.Now().Before(deadline) {
		open = openConns(conns)
		maxG = max(maxG, runtime.NumGoroutine()-g0)
		maxServerFDs = max(maxServerFDs, countFDs(t)-fd0-len(conns))
		if open == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if open != 0 {
		t.Fatalf("%d of %d silent connections still open after the handshake deadline", open, attackers)
	}
	if maxG > raftMaxConns+slack {
		t.Errorf("up to %d goroutines for %d silent connections, want at most %d", maxG, attackers, raftMaxConns+slack)
	}
	if maxServerFDs > raftMaxConns+slack {
		t.Errorf("up to %d server-side descriptors, want at most %d", maxServerFDs, raftMaxConns+slack)
	}

	// The slots are free again: a server of this cluster connects.
	c, err := s.Dial(raft.ServerAddress(addr), 5*time.Second)
	if err != nil {
		t.Fatalf("a real peer after the flood: %v", err)
	}
	c.Close()
}

// TestStreamGuardCapsConnections: past the cap a connection is closed at
// once, without waiting for the handshake deadline.
func TestStreamGuardCapsConnections(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	refused := refusalCounter(t)
	_, addr := servedStream(t, func(s *tlsStream) {
		s.guard.setAdmission(zap.New(core), nil)
		s.guard.setRefusals(refused)
		s.guard.mu.Lock()
		s.guard.maxPendingPerHost = 1000 // this test's connections all come from one host
		s.guard.mu.Unlock()
	})
	conns := dialAll(t, addr, raftMaxConns+20)
	open := openWithinHandshake(conns, raftMaxConns)
	if open != raftMaxConns {
		t.Fatalf("%d connections open before the handshake deadline, want the cap %d", open, raftMaxConns)
	}
	if n := logs.FilterMessage("raft: refused an inbound connection").Len(); n < 1 || n > 2 {
		t.Errorf("%d log lines for 20 refused connections, want one (rate-limited)", n)
	}
	if n := testutil.ToFloat64(refused.WithLabelValues(refusedCap)); n < 1 {
		t.Errorf("refused{reason=%s} = %v, want the connections past the cap counted", refusedCap, n)
	}
}

// TestStreamGuardLimitsHandshakesPerHost: one host cannot take every slot.
func TestStreamGuardLimitsHandshakesPerHost(t *testing.T) {
	_, addr := servedStream(t, nil)
	conns := dialAll(t, addr, 3*raftMaxPendingPerHost)
	open := openWithinHandshake(conns, raftMaxPendingPerHost)
	if open != raftMaxPendingPerHost {
		t.Fatalf("%d handshakes from one host in progress, want %d", open, raftMaxPendingPerHost)
	}
}

func TestRaftLeafCarriesServerID(t *testing.T) {
	srv, _, err := raftTLSConfig("token", "c", "node-a", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(srv.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	id, err := peerID(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
	if err != nil || id != "node-a" {
		t.Fatalf("peerID = %q, %v; want node-a", id, err)
	}
	if _, err := peerID(tls.ConnectionState{}); err == nil {
		t.Fatal("a connection without a certificate has an ID")
	}
}

func TestAdmitByConfiguration(t *testing.T) {
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	_, trans := raft.NewInmemTransport("a")
	rc := raft.DefaultConfig()
	rc.LocalID = "a"
	rc.LogOutput = io.Discard
	r, err := raft.NewRaft(rc, &fsm{}, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	e := &Election{watch: make(chan struct{})}

	// Before raft runs, admission waits for it, within the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.admitRaftPeer(ctx, "a"); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("before raft: %v", err)
	}
	e.r = r
	// No configuration yet: any server of the cluster (the leader that is
	// about to add this node) is admitted.
	if err := e.admitRaftPeer(context.Background(), "anyone"); err != nil {
		t.Fatalf("without a configuration: %v", err)
	}
	cfg := raft.Configuration{Servers: []raft.Server{{ID: "a", Address: trans.LocalAddr()}, {ID: "b", Address: "192.0.2.2:9348"}}}
	if err := r.BootstrapCluster(cfg).Error(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id string
		ok bool
	}{{"a", true}, {"b", true}, {"evil", false}, {"", false}} {
		err := e.admitRaftPeer(context.Background(), tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("admit %q: %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "not a server of the raft configuration") {
			t.Errorf("admit %q: %v", tc.id, err)
		}
	}
}

// TestTokenHolderOutsideConfigurationCannotAppend is the raft-write
// attack: a holder of the token signs itself a leaf for a name outside
// the configuration and sends AppendEntries. hashicorp/raft checks no
// identity, so before the guard the follower appended the entry. Now the
// connection is refused and the log is unchanged, while a server of the
// configuration is still served.
func TestTokenHolderOutsideConfigurationCannotAppend(t *testing.T) {
	now := time.Now()
	srvA, cliA, err := raftTLSConfig("token", "c", "a", now)
	if err != nil {
		t.Fatal(err)
	}
	streamA, err := newTLSStream("127.0.0.1:0", "127.0.0.1:0", srvA, cliA)
	if err != nil {
		t.Fatal(err)
	}
	e := &Election{watch: make(chan struct{})}
	streamA.guard.setAdmission(zap.NewNop(), e.admitRaftPeer)
	refused := refusalCounter(t)
	streamA.guard.setRefusals(refused)
	transA := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: streamA, MaxPool: 3, Timeout: 10 * time.Second})
	defer transA.Close()
	store := raft.NewInmemStore()
	rc := raft.DefaultConfig()
	rc.LocalID = "a"
	rc.LogOutput = io.Discard
	// b is in the configuration but not running: a stays a follower and
	// takes AppendEntries from whoever passes the transport.
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = time.Hour, time.Hour, time.Hour
	r, err := raft.NewRaft(rc, &fsm{}, store, store, raft.NewInmemSnapshotStore(), transA)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	cfg := raft.Configuration{Servers: []raft.Server{{ID: "a", Address: transA.LocalAddr()}, {ID: "b", Address: "192.0.2.2:9348"}}}
	if err := r.BootstrapCluster(cfg).Error(); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.r = r
	e.mu.Unlock()
	e.changed()

	appendAs := func(id string) (before, after uint64, err error) {
		srv, cli, err := raftTLSConfig("token", "c", id, now)
		if err != nil {
			t.Fatal(err)
		}
		st, err := newTLSStream("127.0.0.1:0", "127.0.0.1:0", srv, cli)
		if err != nil {
			t.Fatal(err)
		}
		tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: st, MaxPool: 1, Timeout: 5 * time.Second})
		defer tr.Close()
		before = r.LastIndex()
		req := &raft.AppendEntriesRequest{
			RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(tr.LocalAddr())},
			Term:         5,
			PrevLogEntry: before, PrevLogTerm: 1,
			Entries:           []*raft.Log{{Index: before + 1, Term: 5, Type: raft.LogCommand, Data: []byte("forged")}},
			LeaderCommitIndex: before + 1,
		}
		var resp raft.AppendEntriesResponse
		err = tr.AppendEntries(raft.ServerID("a"), transA.LocalAddr(), req, &resp)
		if err == nil && !resp.Success {
			t.Fatalf("append as %s: not successful (term %d)", id, resp.Term)
		}
		// let the follower's main loop store the entry before reading
		deadline := time.Now().Add(10 * time.Second)
		for after = r.LastIndex(); err == nil && after == before && time.Now().Before(deadline); after = r.LastIndex() {
			time.Sleep(10 * time.Millisecond)
		}
		return before, r.LastIndex(), err
	}

	before, after, err := appendAs("evil")
	if err == nil || after != before {
		t.Fatalf("a token holder outside the configuration appended (err %v, last index %d → %d)", err, before, after)
	}
	if n := testutil.ToFloat64(refused.WithLabelValues(refusedNotAdmited)); n < 1 {
		t.Fatalf("refused{reason=%s} = %v after a refused peer", refusedNotAdmited, n)
	}
	// Nor can it ask for a vote (raft checks RequestVote's sender only
	// against the configuration it has, after reading the RPC).
	{
		srv, cli, err := raftTLSConfig("token", "c", "evil", now)
		if err != nil {
			t.Fatal(err)
		}
		st, err := newTLSStream("127.0.0.1:0", "127.0.0.1:0", srv, cli)
		if err != nil {
			t.Fatal(err)
		}
		tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: st, MaxPool: 1, Timeout: 5 * time.Second})
		var resp raft.RequestVoteResponse
		err = tr.RequestVote("a", transA.LocalAddr(), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte(tr.LocalAddr())},
			Term:      50, LastLogIndex: 100, LastLogTerm: 50,
		}, &resp)
		tr.Close()
		if err == nil {
			t.Fatalf("a token holder outside the configuration got a vote answer (granted %v)", resp.Granted)
		}
	}
	before, after, err = appendAs("b")
	if err != nil || after != before+1 {
		t.Fatalf("a server of the configuration: err %v, last index %d → %d", err, before, after)
	}
}
