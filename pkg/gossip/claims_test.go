package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
)

const (
	claimsServerToken = "0b5f8e2a91c4d7364fa0e9b2c81d5f730b5f8e2a91c4d7364fa0e9b2c81d5f73"
	claimsCluster     = "rke2"
)

func testSigner(t testing.TB, token string) *claims.Signer {
	t.Helper()
	s, err := claims.NewSigner(token, claimsCluster)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifying is a member (not started) that checks claims with the
// server token's fingerprint, as an agent does; its registry at hand.
func verifying(t testing.TB) (*Member, *prometheus.Registry) {
	t.Helper()
	cfg := validConfig()
	cfg.NodeName = "agent-1"
	cfg.Meta.Role = RoleAgent
	cfg.TrustedFingerprint = testSigner(t, claimsServerToken).Fingerprint()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	m, err := newMember(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// serverMeta is what a server (or someone claiming to be one) declares.
func serverMeta(ip string) Meta {
	return Meta{Role: RoleServer, Phase: "ready", AdvertiseAddr: ip, RaftAddr: ip + ":9348", RaftState: RaftMember,
		BootstrapSet: "3f9a01c2", Ready: true, StartedRKE2: true, CAHash: strings.Repeat("ab", 32), ClusterReady: true,
		WantJoinSlot: true, Commands: 2, ExpectServers: 3, BootstrapNode: "srv-1", JoinSlot: "srv-2", JoinedServers: 2}
}

// claimOf is the claim a server with that meta makes.
func claimOf(node, ip string, seq uint64) claims.Claim {
	m := serverMeta(ip)
	return claims.Claim{Node: node, RaftAddr: m.RaftAddr, AdvertiseAddr: ip, BootstrapSet: m.BootstrapSet, StartedRKE2: true,
		Ready: true, CAHash: m.CAHash, ClusterReady: true, Commands: 2, ExpectServers: 3, HasRaftState: true, Seq: seq}
}

func signed(t testing.TB, s *claims.Signer, c claims.Claim) []byte {
	t.Helper()
	w, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// join reports a node to m as memberlist would.
func join(t testing.TB, m *Member, name, ip string, meta Meta) {
	t.Helper()
	wire, err := meta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	(&delegate{m: m}).NotifyJoin(&memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: 9347, Meta: wire})
}

// deliver hands m a claim as a peer's push/pull state.
func deliver(m *Member, entries map[string][]byte) {
	(&delegate{m: m}).MergeRemoteState(encodeClaimEntries(entries), false)
}

func infoOf(t testing.TB, m *Member, name string) MemberInfo {
	t.Helper()
	for _, mi := range m.Members() {
		if mi.Name == name {
			return mi
		}
	}
	t.Fatalf("%s not a member", name)
	return MemberInfo{}
}

// isAgent checks that name is seen as an agent with every server field
// cleared, and no claim.
func isAgent(t testing.TB, m *Member, name string) {
	t.Helper()
	mi := infoOf(t, m, name)
	mt := mi.Meta
	if mt.Role != RoleAgent || mt.RaftAddr != "" || mt.BootstrapSet != "" || mt.CAHash != "" || mt.Ready || mt.StartedRKE2 ||
		mt.WantJoinSlot || mt.ClusterReady || mt.Commands != 0 || mt.RaftState != RaftNone || mt.JoinSlot != "" || mi.Claim != nil || !mi.Unverified {
		t.Fatalf("%s: meta %+v, claim %v; want an agent with the server fields cleared", name, mt, mi.Claim)
	}
	if n := m.NumAlive(RoleServer); n != 0 {
		t.Fatalf("NumAlive(server) = %d", n)
	}
}

func rejected(t testing.TB, reg *prometheus.Registry, reason string) float64 {
	return metricValue(t, reg, "rke2_hanode_gossip_claims_rejected_total", map[string]string{"reason": reason})
}

// TestVerifiedClaimMakesAServer: a member is a server only on a verified
// claim, and then its server fields are the claim's, whatever its
// metadata says.
func TestVerifiedClaimMakesAServer(t *testing.T) {
	m, _ := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	isAgent(t, m, "srv-1")
	if mi := infoOf(t, m, "srv-1"); mi.Meta.Phase != "ready" || mi.Meta.ExpectServers != 3 {
		t.Fatalf("the fields anyone may say are kept: %+v", mi.Meta)
	}

	c := claimOf("srv-1", "10.0.0.11", 5)
	c.CAHash = strings.Repeat("cd", 32) // the claim wins over the metadata
	c.WantJoinSlot = false
	c.RKE2Running = "v1.31.4+rke2r1"
	deliver(m, map[string][]byte{"srv-1": signed(t, s, c)})
	mi := infoOf(t, m, "srv-1")
	if mi.Claim == nil || mi.Claim.Seq != 5 || mi.Claim.RKE2Running != "v1.31.4+rke2r1" {
		t.Fatalf("claim %+v", mi.Claim)
	}
	if mi.Meta.Role != RoleServer || mi.Meta.CAHash != c.CAHash || mi.Meta.WantJoinSlot || !mi.Meta.Ready || mi.Meta.AdvertiseAddr != "10.0.0.11" ||
		mi.Meta.RaftAddr != "10.0.0.11:9348" || mi.Meta.RaftState != RaftMember || mi.Meta.Commands != 2 {
		t.Fatalf("effective meta %+v, want the claim's server fields", mi.Meta)
	}
	if n := m.NumAlive(RoleServer); n != 1 {
		t.Fatalf("NumAlive(server) = %d", n)
	}
	if v := metricValueOf(t, m, RoleServer, StateAlive); v != 1 {
		t.Fatalf("members{role=server} = %v", v)
	}
}

// TestForgedClaimsNeverMakeAServer: what a holder of the agent token can
// put in gossip, each refused and counted by reason.
func TestForgedClaimsNeverMakeAServer(t *testing.T) {
	s := testSigner(t, claimsServerToken)
	real := signed(t, s, claimOf("srv-1", "10.0.0.11", 10))
	attacker := testSigner(t, "agent-token-0123456789abcdef0123456789abcdef")
	tampered := bytes.Clone(real)
	tampered[10] ^= 1
	for _, tc := range []struct {
		name    string
		member  string // the member the forger gossips as
		ip      string
		entries map[string][]byte
		reason  string
	}{
		{"signed with another key", "evil", "10.0.0.66", map[string][]byte{"evil": signed(t, attacker, claimOf("evil", "10.0.0.66", 1))}, "wrong_key"},
		{"a real claim's bytes changed", "srv-1", "10.0.0.11", map[string][]byte{"srv-1": tampered}, "bad_signature"},
		{"a real claim under another name", "evil", "10.0.0.66", map[string][]byte{"evil": real}, "wrong_node"},
		{"garbage", "evil", "10.0.0.66", map[string][]byte{"evil": []byte("not a claim")}, "malformed"},
		{"a real claim of a server for the forger's address", "srv-1", "10.0.0.66", map[string][]byte{"srv-1": real}, "address_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := verifying(t)
			join(t, m, tc.member, tc.ip, serverMeta(tc.ip))
			deliver(m, tc.entries)
			isAgent(t, m, tc.member)
			if got := rejected(t, reg, tc.reason); got != 1 {
				t.Fatalf("rejected{reason=%s} = %v, want 1", tc.reason, got)
			}
		})
	}
	t.Run("a broken state", func(t *testing.T) {
		m, reg := verifying(t)
		(&delegate{m: m}).MergeRemoteState([]byte{claimStateVersion, 0xff}, false)
		if got := rejected(t, reg, "malformed"); got != 1 {
			t.Fatalf("rejected{reason=malformed} = %v", got)
		}
	})
}

// TestReplayedClaimNeverRollsBack: a recorded older claim of a server
// (its CA hash before) cannot replace the newer one; another claim with
// the same sequence number is a replay; a relay that lags is dropped
// without counting.
func TestReplayedClaimNeverRollsBack(t *testing.T) {
	m, reg := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	old := claimOf("srv-1", "10.0.0.11", 5)
	old.CAHash = strings.Repeat("ee", 32)
	oldWire := signed(t, s, old)
	deliver(m, map[string][]byte{"srv-1": oldWire})
	deliver(m, map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.11", 6))})
	deliver(m, map[string][]byte{"srv-1": oldWire})
	if mi := infoOf(t, m, "srv-1"); mi.Claim.Seq != 6 || mi.Meta.CAHash != strings.Repeat("ab", 32) {
		t.Fatalf("after a replay: claim seq %d, CA %s", mi.Claim.Seq, mi.Meta.CAHash)
	}
	if got := rejected(t, reg, "replay"); got != 0 {
		t.Fatalf("a lagging relay counted as a replay: %v", got)
	}
	same := claimOf("srv-1", "10.0.0.11", 6)
	same.Ready = false
	deliver(m, map[string][]byte{"srv-1": signed(t, s, same)})
	if mi := infoOf(t, m, "srv-1"); !mi.Meta.Ready {
		t.Fatal("another claim with the same sequence applied")
	}
	if got := rejected(t, reg, "replay"); got != 1 {
		t.Fatalf("rejected{reason=replay} = %v, want 1", got)
	}
}

// TestRelayedClaimAccepted: a claim reaches a member through anyone (a
// broadcast relayed by an agent), and arrives before the member it is
// about.
func TestRelayedClaimAccepted(t *testing.T) {
	m, _ := verifying(t)
	s := testSigner(t, claimsServerToken)
	msg := encodeClaimEntries(map[string][]byte{"srv-2": signed(t, s, claimOf("srv-2", "10.0.0.12", 3))})
	(&delegate{m: m}).NotifyMsg(msg)
	join(t, m, "srv-2", "10.0.0.12", serverMeta("10.0.0.12"))
	if mi := infoOf(t, m, "srv-2"); mi.Claim == nil || mi.Meta.Role != RoleServer {
		t.Fatalf("relayed claim not applied: %+v", mi)
	}
	// and it is passed on: in the push/pull state and as a broadcast
	entries, err := decodeClaimEntries(m.localClaimState())
	if err != nil || len(entries) != 1 || entries[0].node != "srv-2" {
		t.Fatalf("push/pull state %v, %v", entries, err)
	}
	if got := m.claimQueue.Len(); got != 1 {
		t.Fatalf("broadcasts queued: %d", got)
	}
}

// TestLegacyServersTrustedOnlyAsVoters: a server of the previous build
// publishes no claim; its metadata counts only when a verified claim lists
// it as a raft voter at the raft address it declares, and that raft
// address is on its own address.
func TestLegacyServersTrustedOnlyAsVoters(t *testing.T) {
	m, _ := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "old-1", "10.0.0.21", serverMeta("10.0.0.21"))
	join(t, m, "old-2", "10.0.0.22", func() Meta { mt := serverMeta("10.0.0.22"); mt.RaftAddr = "10.0.0.99:9348"; return mt }())
	join(t, m, "evil", "10.0.0.66", serverMeta("10.0.0.66"))
	join(t, m, "new-1", "10.0.0.11", serverMeta("10.0.0.11"))
	for _, n := range []string{"old-1", "old-2", "evil", "new-1"} {
		if infoOf(t, m, n).Meta.Role != RoleAgent {
			t.Fatalf("%s is a server without any claim", n)
		}
	}
	c := claimOf("new-1", "10.0.0.11", 1)
	c.Voters = []string{"new-1", "old-1", "old-2"}
	// without voter addresses, a claim vouches for nobody
	deliver(m, map[string][]byte{"new-1": signed(t, s, c)})
	if infoOf(t, m, "old-1").Meta.Role != RoleAgent {
		t.Fatal("a voter vouched for by a claim without voter addresses")
	}
	c.Seq++
	c.VoterAddrs = []string{"10.0.0.11:9348", "10.0.0.21:9348", "10.0.0.99:9348"}
	join(t, m, "old-2", "10.0.0.22", serverMeta("10.0.0.22")) // raft on its own address, but not the vouched one
	deliver(m, map[string][]byte{"new-1": signed(t, s, c)})
	if infoOf(t, m, "old-2").Meta.Role != RoleAgent {
		t.Fatal("a listed voter declaring another raft address than the vouched one is trusted")
	}
	join(t, m, "old-2", "10.0.0.22", func() Meta { mt := serverMeta("10.0.0.22"); mt.RaftAddr = "10.0.0.99:9348"; return mt }())
	if mi := infoOf(t, m, "old-1"); mi.Meta.Role != RoleServer || mi.Meta.CAHash == "" || mi.Claim != nil {
		t.Fatalf("a listed voter of the previous build: %+v", mi)
	}
	if infoOf(t, m, "old-2").Meta.Role != RoleAgent {
		t.Fatal("a listed voter whose raft address is elsewhere is trusted")
	}
	if infoOf(t, m, "evil").Meta.Role != RoleAgent {
		t.Fatal("a member no claim lists is trusted")
	}
	if n := m.NumAlive(RoleServer); n != 2 {
		t.Fatalf("NumAlive(server) = %d, want new-1 and old-1", n)
	}
	// once the voter signs claims itself, only its claim counts
	oc := claimOf("old-1", "10.0.0.21", 1)
	oc.Ready = false
	deliver(m, map[string][]byte{"old-1": signed(t, s, oc)})
	if mi := infoOf(t, m, "old-1"); mi.Claim == nil || mi.Meta.Ready {
		t.Fatalf("upgraded voter: %+v", mi)
	}
}

// TestSingleTokenTrustsUnsignedServers: where the gossip key comes from
// the server token (TrustUnsigned), every member holds the server token, so
// a previous build's unsigned server metadata counts even before raft has
// voters to vouch for it (a cluster formed by two builds at once); without
// TrustUnsigned it does not.
func TestSingleTokenTrustsUnsignedServers(t *testing.T) {
	for _, trust := range []bool{false, true} {
		m, _ := verifying(t)
		m.cfg.TrustUnsigned = trust
		join(t, m, "old-1", "10.0.0.21", serverMeta("10.0.0.21"))
		if got := infoOf(t, m, "old-1").Meta.Role == RoleServer; got != trust {
			t.Fatalf("TrustUnsigned %v: unsigned server counted as a server: %v", trust, got)
		}
	}
}

func TestClaimEntriesRoundTrip(t *testing.T) {
	in := map[string][]byte{"a": []byte("x"), "srv-2": bytes.Repeat([]byte{7}, 300)}
	out, err := decodeClaimEntries(encodeClaimEntries(in))
	if err != nil || len(out) != 2 || out[0].node != "a" || !bytes.Equal(out[1].wire, in["srv-2"]) {
		t.Fatalf("%v, %v", out, err)
	}
	if out, err := decodeClaimEntries([]byte{claimStateVersion + 1, 1, 2, 3}); err != nil || out != nil {
		t.Fatalf("a newer state: %v, %v", out, err)
	}
	many := map[string][]byte{}
	for i := range maxClaimEntries + 1 {
		many[fmt.Sprint(i)] = []byte{1}
	}
	if _, err := decodeClaimEntries(encodeClaimEntries(many)); err == nil {
		t.Fatal("too many entries read")
	}
}

func FuzzClaimState(f *testing.F) {
	s := testSigner(f, claimsServerToken)
	f.Add(encodeClaimEntries(map[string][]byte{"srv-1": signed(f, s, claimOf("srv-1", "10.0.0.11", 1))}))
	f.Add([]byte{claimStateVersion, 1, 'a', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _ := verifying(t)
		(&delegate{m: m}).MergeRemoteState(b, false)
		(&delegate{m: m}).NotifyMsg(b)
	})
}

func withSigner(s *claims.Signer) memberOpt { return func(c *Config) { c.Signer = s } }
func withFingerprint(fp string) memberOpt   { return func(c *Config) { c.TrustedFingerprint = fp } }

// TestClaimsOverTheNetwork: real members. Servers sign, everyone
// verifies; a member that only says it is a server stays an agent
// everywhere; day-2 fields reach every member, also in a claim too big
// for a broadcast packet (push/pull carries it).
func TestClaimsOverTheNetwork(t *testing.T) {
	s := testSigner(t, claimsServerToken)
	fp := s.Fingerprint()
	srv1 := startMember(t, "srv-1", withCluster(claimsCluster), withSigner(s), withFingerprint(fp))
	srv2 := startMember(t, "srv-2", withCluster(claimsCluster), withSigner(s), withJoin(srv1.addr))
	agent := startMember(t, "agent-1", withCluster(claimsCluster), withRole(RoleAgent), withFingerprint(fp), withJoin(srv1.addr))
	evil := startMember(t, "evil", withCluster(claimsCluster), withJoin(srv1.addr), func(c *Config) { c.Meta = serverMeta(c.AdvertiseAddr) })
	all := []*testMember{srv1, srv2, agent, evil}
	eventually(t, "all four see each other", func() (bool, string) { return allSeeAlive(all) })
	for _, viewer := range []*testMember{srv1, srv2, agent} {
		eventually(t, viewer.name+" sees both servers verified", func() (bool, string) {
			n := viewer.NumAlive(RoleServer)
			return n == 2, fmt.Sprintf("%d servers", n)
		})
		if mi := infoOf(t, viewer.Member, "evil"); mi.Meta.Role != RoleAgent || mi.Claim != nil || mi.Meta.CAHash != "" {
			t.Fatalf("%s sees the unsigned server claim as %+v", viewer.name, mi.Meta)
		}
	}

	begins := claims.AgentBegins{Published: true, Target: "v1.31.4+rke2r1", Agents: []claims.AgentBegin{{Node: "agent-1", Since: 7}}}
	if err := srv2.UpdateClaim(func(c *claims.Claim) { c.RKE2Running, c.RecoveryEpoch, c.AgentBegins = "v1.31.4+rke2r1", 2, begins }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent sees srv-2's running version and recovery epoch", func() (bool, string) {
		mi := infoOf(t, agent.Member, "srv-2")
		return mi.Claim != nil && mi.Claim.RKE2Running == "v1.31.4+rke2r1" && mi.Claim.RecoveryEpoch == 2 && reflect.DeepEqual(mi.Claim.AgentBegins, begins), fmt.Sprintf("claim %+v", mi.Claim)
	})

	big := make([]claims.EtcdMember, claims.MaxMembers)
	for i := range big {
		big[i] = claims.EtcdMember{Name: fmt.Sprintf("server-%02d-%s", i, strings.Repeat("0", 8)), ID: uint64(i + 1),
			PeerURL: fmt.Sprintf("https://10.0.0.%d:2380", i+1)}
	}
	if err := srv1.UpdateClaim(func(c *claims.Claim) {
		c.Etcd.Members = big
		c.Voters = []string{"srv-1", "srv-2"}
		c.VoterAddrs = []string{"10.0.0.11:9348", "10.0.0.12:9348"}
	}); err != nil {
		t.Fatal(err)
	}
	if w := srv1.Claim(); w == nil || len(w.Etcd.Members) != claims.MaxMembers || len(w.VoterAddrs) != 2 {
		t.Fatalf("own claim %+v", w)
	}
	eventually(t, "the agent sees srv-1's etcd members and voter addresses (push/pull)", func() (bool, string) {
		mi := infoOf(t, agent.Member, "srv-1")
		return mi.Claim != nil && len(mi.Claim.Etcd.Members) == claims.MaxMembers &&
			slices.Equal(mi.Claim.VoterAddrs, []string{"10.0.0.11:9348", "10.0.0.12:9348"}), "not yet"
	})
	// UpdateMeta re-signs the shared fields; the day-2 fields stay
	if err := srv1.UpdateMeta(func(m *Meta) { m.Ready = true; m.CAHash = strings.Repeat("12", 32) }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent sees srv-1 ready with its CA", func() (bool, string) {
		mi := infoOf(t, agent.Member, "srv-1")
		return mi.Meta.Ready && mi.Meta.CAHash == strings.Repeat("12", 32) && len(mi.Claim.Etcd.Members) == claims.MaxMembers, fmt.Sprintf("%+v", mi.Meta)
	})
	if err := agent.UpdateClaim(func(*claims.Claim) {}); err == nil {
		t.Fatal("an agent made a claim")
	}
}

func TestSignerConfig(t *testing.T) {
	s := testSigner(t, claimsServerToken)
	cfg := validConfig()
	cfg.Signer = s
	cfg.TrustedFingerprint = testSigner(t, "another-server-token-0123456789abcdef0123").Fingerprint()
	if _, err := newMember(cfg); err == nil || !strings.Contains(err.Error(), "do not belong together") {
		t.Fatalf("a signer of another key: %v", err)
	}
	cfg = validConfig()
	cfg.Signer = s
	cfg.Meta.Role = RoleAgent
	if _, err := newMember(cfg); err == nil || !strings.Contains(err.Error(), "only servers sign") {
		t.Fatalf("an agent with a signer: %v", err)
	}
	cfg.TrustedFingerprint = "nope"
	cfg.Signer = nil
	if _, err := newMember(cfg); err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("a bad fingerprint: %v", err)
	}
}

// TestRestartBehindTheClock: a server restarted with its clock behind its
// previous run finds that run's newer claim in gossip and signs past it,
// so the others, who hold that run's sequence, take its claims again.
func TestRestartBehindTheClock(t *testing.T) {
	s := testSigner(t, claimsServerToken)
	srv := startMember(t, "srv-1", withCluster(claimsCluster), withSigner(s))
	own := srv.Claim()
	if own == nil {
		t.Fatal("no own claim")
	}
	earlier := *own
	earlier.Seq = own.Seq + uint64(time.Hour/time.Microsecond) // the earlier run's clock was an hour ahead
	earlier.Ready = true
	earlierWire := signed(t, s, earlier)

	peer, _ := verifying(t)
	join(t, peer, "srv-1", own.AdvertiseAddr, serverMeta(own.AdvertiseAddr))
	deliver(peer, map[string][]byte{"srv-1": earlierWire})

	deliver(srv.Member, map[string][]byte{"srv-1": earlierWire})
	eventually(t, "srv-1 signs past its earlier run", func() (bool, string) {
		c := srv.Claim()
		return c.Seq > earlier.Seq, fmt.Sprintf("sequence %d, earlier run's %d", c.Seq, earlier.Seq)
	})
	if c := srv.Claim(); c.Ready {
		t.Fatal("the earlier run's claim was taken as this run's")
	}
	if err := srv.UpdateMeta(func(m *Meta) { m.Phase = "ready" }); err != nil {
		t.Fatal(err)
	}
	deliver(peer, srv.localStateFor(t, "srv-1"))
	if mi := infoOf(t, peer, "srv-1"); mi.Claim == nil || mi.Claim.Seq <= earlier.Seq || mi.Claim.Ready {
		t.Fatalf("the peer holds %+v", mi.Claim)
	}
}

// localStateFor is node's entry of m's push/pull state.
func (m *testMember) localStateFor(t *testing.T, node string) map[string][]byte {
	t.Helper()
	entries, err := decodeClaimEntries(m.localClaimState())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.node == node {
			return map[string][]byte{node: e.wire}
		}
	}
	t.Fatalf("%s holds no claim of %s", m.name, node)
	return nil
}

// TestAliveRefusedForAClaimedNameElsewhere: an alive message for a name
// whose held verified claim names another address is refused (and
// counted); one from the claim's address, one for a name without a claim,
// and this member's own name are taken; and a newer claim for the new
// address lets a server that moved back in.
func TestAliveRefusedForAClaimedNameElsewhere(t *testing.T) {
	m, reg := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	deliver(m, map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.11", 3))})
	d := &delegate{m: m}
	alive := func(name, ip string) error {
		return d.NotifyAlive(&memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: 9347})
	}
	refused := func() float64 { return metricValue(t, reg, "rke2_hanode_gossip_alive_refused_total", nil) }
	if err := alive("srv-1", "10.0.0.66"); err == nil || !strings.Contains(err.Error(), "10.0.0.11") {
		t.Fatalf("alive for a claimed name from another address: %v, want refused naming the claim's address", err)
	}
	if got := refused(); got != 1 {
		t.Fatalf("alive_refused counted %v, want 1", got)
	}
	for _, a := range [][2]string{{"srv-1", "10.0.0.11"}, {"agent-9", "10.0.0.66"}, {"agent-1", "10.0.0.66"}} {
		if err := alive(a[0], a[1]); err != nil {
			t.Fatalf("alive for %s from %s refused: %v", a[0], a[1], err)
		}
	}
	deliver(m, map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.12", 4))})
	if err := alive("srv-1", "10.0.0.12"); err != nil {
		t.Fatalf("a server that moved, with its new claim held: %v", err)
	}
	if got := refused(); got != 1 {
		t.Fatalf("alive_refused counted %v, want 1", got)
	}
}

// TestPushToCarriesABigClaim: a claim too big for a broadcast packet
// reaches the members PushTo names at once, not at push/pull's interval
// (an hour here, so nothing else could carry it within the test).
func TestPushToCarriesABigClaim(t *testing.T) {
	s := testSigner(t, claimsServerToken)
	fp := s.Fingerprint()
	slow := testTimings()
	slow.PushPullInterval = time.Hour
	srv := startMember(t, "srv-1", withCluster(claimsCluster), withSigner(s), withFingerprint(fp), withTimings(slow))
	agent := startMember(t, "agent-1", withCluster(claimsCluster), withRole(RoleAgent), withFingerprint(fp), withJoin(srv.addr), withTimings(slow))
	eventually(t, "the agent sees the server verified", func() (bool, string) {
		n := agent.NumAlive(RoleServer)
		return n == 1, fmt.Sprintf("%d servers", n)
	})
	begins := beginInABigClaim(t, srv)
	srv.PushTo([]string{"agent-1", "not-a-member"})
	eventually(t, "the agent sees the begin in the pushed claim", func() (bool, string) {
		mi := infoOf(t, agent.Member, "srv-1")
		return mi.Claim != nil && reflect.DeepEqual(mi.Claim.AgentBegins, begins), "not yet"
	})
}

// beginInABigClaim has srv's claim begin agent-1, in a claim too big for
// a broadcast packet: only a push or push/pull carries it.
func beginInABigClaim(t *testing.T, srv *testMember) claims.AgentBegins {
	t.Helper()
	big := make([]claims.EtcdMember, claims.MaxMembers)
	for i := range big {
		big[i] = claims.EtcdMember{Name: fmt.Sprintf("server-%02d-%s", i, strings.Repeat("0", 8)), ID: uint64(i + 1),
			PeerURL: fmt.Sprintf("https://10.0.0.%d:2380", i+1)}
	}
	begins := claims.AgentBegins{Published: true, Target: "v1.31.4+rke2r1", Agents: []claims.AgentBegin{{Node: "agent-1", Since: 7}}}
	var voters []string
	for i := range claims.MaxVoters {
		voters = append(voters, fmt.Sprintf("server-%02d-of-the-cluster", i))
	}
	if err := srv.UpdateClaim(func(c *claims.Claim) { c.Etcd.Members, c.Voters, c.AgentBegins = big, voters, begins }); err != nil {
		t.Fatal(err)
	}
	if w, err := srv.Claim().Encode(); err != nil || len(w) <= maxClaimBroadcast {
		t.Fatalf("claim of %d bytes (%v): want one too big to broadcast", len(w), err)
	}
	return begins
}

// failingTransport fails the next fail stream dials, as a peer whose
// gossip port is briefly unreachable (its host busy restarting RKE2).
type failingTransport struct {
	*memberlist.NetTransport
	fail atomic.Int32
}

func (f *failingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, errors.New("connection refused (test)")
	}
	return f.NetTransport.DialAddressTimeout(a, timeout)
}

func (f *failingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return f.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// TestPushToTriesAgain: a push of a change the agent must see (its begin,
// in a claim too big to broadcast) that fails is tried again. The caller
// pushes each change once; before, a push that failed left the agent
// without its begin until push/pull's interval.
func TestPushToTriesAgain(t *testing.T) {
	s := testSigner(t, claimsServerToken)
	fp := s.Fingerprint()
	slow := testTimings()
	slow.PushPullInterval = time.Hour
	nt, ip := newTestTransport(t)
	ft := &failingTransport{NetTransport: nt}
	srv := startMember(t, "srv-1", withIP(ip), withCluster(claimsCluster), withSigner(s), withFingerprint(fp), withTimings(slow),
		func(c *Config) {
			withTransport(ft, nt)(c)
		})
	agent := startMember(t, "agent-1", withCluster(claimsCluster), withRole(RoleAgent), withFingerprint(fp), withJoin(srv.addr), withTimings(slow))
	eventually(t, "the agent sees the server verified", func() (bool, string) {
		n := agent.NumAlive(RoleServer)
		return n == 1, fmt.Sprintf("%d servers", n)
	})
	begins := beginInABigClaim(t, srv)
	ft.fail.Store(2)
	srv.PushTo([]string{"agent-1"})
	eventually(t, "the agent sees the begin in the claim pushed again", func() (bool, string) {
		mi := infoOf(t, agent.Member, "srv-1")
		return mi.Claim != nil && reflect.DeepEqual(mi.Claim.AgentBegins, begins), "not yet"
	})
	if n := srv.logs.FilterMessage("could not push this member's state").Len(); n == 0 {
		t.Error("no push failed: the test does not fail one")
	}
}
