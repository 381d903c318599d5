package gossip

// Attacks on the trust boundary by a holder of the agent token, which
// gives the gossip key and nothing else: it can join gossip under any free
// name from its own address, declare any metadata, relay or replay any
// bytes it saw, and send memberlist messages of its own making (an alive
// message about another node, at that node's address, with a higher
// incarnation, is taken by memberlist from anyone). Each test performs one
// attack as memberlist would deliver it and asserts the safe outcome.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// attackT0 is the wall clock of these tests' fake clocks.
var attackT0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

// verifyingAt is verifying with a fake clock, for tests that age members.
func verifyingAt(t testing.TB, clk *clock.Fake) (*Member, *prometheus.Registry) {
	t.Helper()
	cfg := validConfig()
	cfg.NodeName = "agent-1"
	cfg.Meta.Role = RoleAgent
	cfg.TrustedFingerprint = testSigner(t, claimsServerToken).Fingerprint()
	cfg.Clock = clk
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	m, err := newMember(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// update reports changed metadata of a known node, as memberlist does after
// an alive message with a higher incarnation.
func update(t testing.TB, m *Member, name, ip string, meta Meta) {
	t.Helper()
	wire, err := meta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	(&delegate{m: m}).NotifyUpdate(&memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: 9347, Meta: wire})
}

// gone reports a node failed (dead), or left when its metadata says
// leaving.
func gone(t testing.TB, m *Member, name, ip string, meta Meta) {
	t.Helper()
	wire, err := meta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	(&delegate{m: m}).NotifyLeave(&memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: 9347, Meta: wire})
}

// evilMeta is what the attacker declares: a ready server with its own CA,
// raft address on its own address, asking for the join slot.
func evilMeta(ip string) Meta {
	mt := serverMeta(ip)
	mt.CAHash = strings.Repeat("66", 32)
	return mt
}

// notServer fails unless name is seen as an agent with the attacker's
// server fields gone.
func notServer(t testing.TB, m *Member, name string) {
	t.Helper()
	mi := infoOf(t, m, name)
	if mi.Meta.Role == RoleServer || mi.Meta.CAHash != "" || mi.Meta.RaftAddr != "" || mi.Meta.WantJoinSlot || mi.Meta.Ready {
		t.Fatalf("%s at %s counts as a server: role %s, raft %q, CA %q, want-join-slot %v, ready %v",
			name, mi.Addr, mi.Meta.Role, mi.Meta.RaftAddr, mi.Meta.CAHash, mi.Meta.WantJoinSlot, mi.Meta.Ready)
	}
}

// A server of this build dies and stays dead past DeadRetention while it is
// still a raft voter (server-removal-timeout 0, or a removal waiting for
// quorum): every member forgets its record and claim. The attacker then
// joins under its name from its own address with unsigned server metadata.
// The live server's claim still lists the name among raft's voters, which
// is the vouching meant for servers of the previous build only.
func TestAttackVoterNameAfterItsClaimWasPruned(t *testing.T) {
	clk := clock.NewFake(attackT0)
	m, _ := verifyingAt(t, clk)
	s := testSigner(t, claimsServerToken)

	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	join(t, m, "srv-2", "10.0.0.12", serverMeta("10.0.0.12"))
	c1 := claimOf("srv-1", "10.0.0.11", 10)
	c1.Voters, c1.VoterAddrs = []string{"srv-1", "srv-2"}, []string{"10.0.0.11:9348", "10.0.0.12:9348"}
	deliver(m, map[string][]byte{"srv-1": signed(t, s, c1), "srv-2": signed(t, s, claimOf("srv-2", "10.0.0.12", 10))})
	if infoOf(t, m, "srv-2").Claim == nil {
		t.Fatal("setup: srv-2's claim not held")
	}

	gone(t, m, "srv-2", "10.0.0.12", serverMeta("10.0.0.12"))
	clk.Advance(m.cfg.Timings.DeadRetention + time.Minute)
	m.prune()
	for _, mi := range m.Members() {
		if mi.Name == "srv-2" {
			t.Fatal("setup: srv-2 not pruned")
		}
	}

	join(t, m, "srv-2", "10.0.0.66", evilMeta("10.0.0.66"))
	notServer(t, m, "srv-2")
}

// A server of the previous build (no claims) restarts during the rolling
// upgrade: it leaves, and memberlist lets another address take a left
// node's name at once. The attacker takes it from its own address, its
// raft address on that address: the vouching checks the name only.
func TestAttackLegacyVoterNameFromAnotherAddress(t *testing.T) {
	m, _ := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "new-1", "10.0.0.11", serverMeta("10.0.0.11"))
	join(t, m, "old-1", "10.0.0.21", serverMeta("10.0.0.21"))
	c := claimOf("new-1", "10.0.0.11", 1)
	c.Voters, c.VoterAddrs = []string{"new-1", "old-1"}, []string{"10.0.0.11:9348", "10.0.0.21:9348"}
	deliver(m, map[string][]byte{"new-1": signed(t, s, c)})
	if infoOf(t, m, "old-1").Meta.Role != RoleServer {
		t.Fatal("setup: the vouched voter of the previous build is not a server")
	}

	leaving := serverMeta("10.0.0.21")
	leaving.Leaving = true
	gone(t, m, "old-1", "10.0.0.21", leaving)
	join(t, m, "old-1", "10.0.0.66", evilMeta("10.0.0.66")) // memberlist: "Updating address for left or failed node"
	notServer(t, m, "old-1")
}

// The attacker sends memberlist an alive message about a verified server,
// at that server's own address with a higher incarnation (memberlist takes
// it from any key holder; the server refutes it a gossip round later).
// The claim keeps the server fields; the address others act on must be the
// claim's too (holderByCertificate maps a certificate's IP to a server by
// Meta.AdvertiseAddr).
func TestAttackSpoofedMetadataOfAVerifiedServer(t *testing.T) {
	m, _ := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	deliver(m, map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.11", 3))})

	spoof := evilMeta("10.0.0.66") // every declared field the attacker's
	spoof.BootstrapSet = "deadbeef"
	update(t, m, "srv-1", "10.0.0.11", spoof)
	mi := infoOf(t, m, "srv-1")
	if mi.Claim == nil || mi.Meta.Role != RoleServer {
		t.Fatalf("the verified server lost its claim to spoofed metadata: %+v", mi)
	}
	if mi.Meta.CAHash != strings.Repeat("ab", 32) || mi.Meta.RaftAddr != "10.0.0.11:9348" || mi.Meta.BootstrapSet != "3f9a01c2" {
		t.Fatalf("server fields taken from spoofed metadata: %+v", mi.Meta)
	}
	if mi.Meta.AdvertiseAddr != "10.0.0.11" {
		t.Fatal("a verified server's effective AdvertiseAddr is the unsigned declared one (" + mi.Meta.AdvertiseAddr +
			"); fix: applyClaim sets meta.AdvertiseAddr = c.AdvertiseAddr")
	}
}

// A server's clock ran ahead (a bad RTC at boot, a VM restored) and is set
// back before it restarts. Its peers hold its last claim, with a sequence
// number from the future; the restarted server signs lower ones. Neither
// the peers nor the server itself may stay stuck on the old claim: the old
// claim says ready with the old CA, and a server that cannot sign cannot
// publish anything (UpdateMeta re-signs).
func TestAttackClaimFromBeforeAClockStepBack(t *testing.T) {
	observer, reg := verifying(t)
	join(t, observer, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))

	server := func(now time.Time, meta Meta) *Member {
		cfg := validConfig()
		cfg.NodeName = "srv-1"
		cfg.ClusterName, cfg.Meta.ClusterName = claimsCluster, claimsCluster
		cfg.Meta = meta
		cfg.Signer = testSigner(t, claimsServerToken) // a new process: a new signer
		cfg.Clock = clock.NewFake(now)
		m, err := newMember(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := server(attackT0.Add(time.Hour), serverMeta("10.0.0.11"))
	(&delegate{m: observer}).MergeRemoteState(before.localClaimState(), false)
	if mi := infoOf(t, observer, "srv-1"); mi.Claim == nil || !mi.Meta.Ready {
		t.Fatalf("setup: %+v", mi)
	}

	restarted := serverMeta("10.0.0.11")
	restarted.Ready, restarted.CAHash = false, ""
	after := server(attackT0, restarted)
	// The exchanges of a rejoin, both ways, twice. (A running member
	// re-signs in the background; this one is not running, so its next
	// change signs.)
	for range 2 {
		(&delegate{m: after}).MergeRemoteState(observer.localClaimState(), false)
		(&delegate{m: observer}).MergeRemoteState(after.localClaimState(), false)
	}
	c := after.Claim()
	own := c != nil && !c.Ready
	errMeta := after.UpdateMeta(func(mt *Meta) { mt.WantJoinSlot = false }) // a claimed field: a new claim
	(&delegate{m: observer}).MergeRemoteState(after.localClaimState(), false)
	seen := !infoOf(t, observer, "srv-1").Meta.Ready
	if errMeta != nil || !own || !seen || infoOf(t, observer, "srv-1").Meta.WantJoinSlot {
		t.Fatalf("after a clock step back across a restart the server's UpdateMeta fails (%v), its own claim "+
			"is its earlier run's (current: %v) and peers keep that claim (current: %v; replays counted %v); fix: a member that "+
			"receives a verified claim of its own name newer than its own advances its signer past it (Signer.Advance) and re-signs",
			errMeta, own, seen, rejected(t, reg, "replay"))
	}
}

// Junk for many invented nodes, in full push/pull states and broadcasts:
// nothing is held, nothing queued for relay, no member becomes a server,
// the Verifier learns no name, and each message reads at most 64 entries.
func TestAttackClaimFloodForInventedNodes(t *testing.T) {
	m, reg := verifying(t)
	s := testSigner(t, claimsServerToken)
	attacker := testSigner(t, "agent-token-0123456789abcdef0123456789abcdef")
	real := signed(t, s, claimOf("srv-1", "10.0.0.11", 10))
	for round := range 20 {
		entries := map[string][]byte{}
		for i := range maxClaimEntries {
			name := fmt.Sprintf("fake-%d-%d", round, i)
			ip := fmt.Sprintf("10.1.%d.%d", round, i+1)
			join(t, m, name, ip, evilMeta(ip))
			var w []byte
			switch i % 4 {
			case 0: // the trusted public key, a signature that does not verify
				w = bytes.Clone(signed(t, s, claimOf(name, ip, 1)))
				w[len(w)-1] ^= 1
			case 1: // another key
				w = signed(t, attacker, claimOf(name, ip, 1))
			case 2: // a real server's claim under the fake name
				w = real
			default: // junk
				w = bytes.Repeat([]byte{0xff}, 50)
			}
			entries[name] = w
		}
		deliver(m, entries)
		(&delegate{m: m}).NotifyMsg(encodeClaimEntries(entries))
	}
	if n := m.NumAlive(RoleServer); n != 0 {
		t.Fatalf("%d invented nodes count as servers", n)
	}
	m.mu.Lock()
	held := len(m.claimsBy)
	m.mu.Unlock()
	if held != 0 || m.claimQueue.Len() != 0 {
		t.Fatalf("held %d claims, queued %d broadcasts of junk", held, m.claimQueue.Len())
	}
	// the Verifier remembers no invented name: srv-1's real claim is still taken
	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	deliver(m, map[string][]byte{"srv-1": real})
	if infoOf(t, m, "srv-1").Claim == nil {
		t.Fatal("a real claim refused after the flood")
	}
	total := 0.0
	for _, r := range []string{"bad_signature", "wrong_key", "wrong_node", "malformed"} {
		if rejected(t, reg, r) == 0 {
			t.Errorf("no %s counted", r)
		}
		total += rejected(t, reg, r)
	}
	if want := float64(2 * 20 * maxClaimEntries); total != want {
		t.Errorf("rejections counted %v, want %v (one per junk entry)", total, want)
	}

	// more than 64 entries: the rest of the message is not read
	many := map[string][]byte{}
	for i := range 10 * maxClaimEntries {
		many[fmt.Sprintf("x-%04d", i)] = []byte("junk")
	}
	before := rejected(t, reg, "malformed")
	deliver(m, many)
	if got := rejected(t, reg, "malformed") - before; got != maxClaimEntries+1 {
		t.Errorf("an oversized state: %v malformed counted, want %d entries and the state itself", got, maxClaimEntries+1)
	}
}

// A flood of broadcasts repeating a held claim (or an older one): each is
// dropped before any signature check, nothing is relayed again, and
// nothing counts as a replay.
func TestAttackBroadcastFloodOfAHeldClaim(t *testing.T) {
	m, reg := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	old := encodeClaimEntries(map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.11", 4))})
	cur := encodeClaimEntries(map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.11", 5))})
	(&delegate{m: m}).NotifyMsg(cur)
	m.claimQueue.Reset()
	for range 5000 {
		(&delegate{m: m}).NotifyMsg(cur)
		(&delegate{m: m}).NotifyMsg(old)
	}
	if n := m.claimQueue.Len(); n != 0 {
		t.Fatalf("repeats queued for relay: %d", n)
	}
	if got := rejected(t, reg, "replay"); got != 0 {
		t.Fatalf("lagging copies counted as replays: %v", got)
	}
	if mi := infoOf(t, m, "srv-1"); mi.Claim == nil || mi.Claim.Seq != 5 {
		t.Fatalf("claim %+v", mi.Claim)
	}
}

// An agent's metadata (role agent) carrying server-only fields, and a
// member declaring server in the oldest metadata encoding this build reads:
// neither makes a server, and an agent's own fields stay.
func TestAttackAgentMetaWithServerFieldsAndOldEncoding(t *testing.T) {
	m, _ := verifying(t)
	ag := evilMeta("10.0.0.66")
	ag.Role = RoleAgent
	join(t, m, "evil-agent", "10.0.0.66", ag)
	notServer(t, m, "evil-agent")
	if mi := infoOf(t, m, "evil-agent"); mi.Meta.ClusterReady || mi.Meta.StartedRKE2 || mi.Meta.BootstrapSet != "" || mi.Meta.JoinSlot != "" {
		t.Fatalf("an agent's server-only fields kept: %+v", mi.Meta)
	}

	wire, err := evilMeta("10.0.0.67").Encode()
	if err != nil {
		t.Fatal(err)
	}
	wire[1] = metaOldest // the writer claims the oldest version readers take
	if _, err := DecodeMeta(wire); err != nil {
		t.Fatalf("setup: %v", err)
	}
	(&delegate{m: m}).NotifyJoin(&memberlist.Node{Name: "evil-old", Addr: net.ParseIP("10.0.0.67"), Port: 9347, Meta: wire})
	notServer(t, m, "evil-old")
}

// A real server's claim relayed by the attacker under the server's own
// name while the attacker holds that name from another address (the
// server left; memberlist hands a left node's name to a new address):
// the claim is for the server's address, so the attacker stays an agent;
// and an older claim of the server cannot be slipped in to undo a newer
// one.
func TestAttackRelayedClaimUnderATakenName(t *testing.T) {
	m, reg := verifying(t)
	s := testSigner(t, claimsServerToken)
	join(t, m, "srv-1", "10.0.0.11", serverMeta("10.0.0.11"))
	deliver(m, map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.11", 7))})
	leaving := serverMeta("10.0.0.11")
	leaving.Leaving = true
	gone(t, m, "srv-1", "10.0.0.11", leaving)
	join(t, m, "srv-1", "10.0.0.66", evilMeta("10.0.0.66"))
	deliver(m, map[string][]byte{"srv-1": signed(t, s, claimOf("srv-1", "10.0.0.11", 6))})
	notServer(t, m, "srv-1")
	if got := rejected(t, reg, "address_mismatch"); got != 1 {
		t.Fatalf("address_mismatch counted %v, want 1", got)
	}
}

// Real members. A server restarts (it leaves gracefully, as the daemon's
// stop does); memberlist hands a left node's name to any new address at
// once, and the attacker takes it from its own. The server comes back on
// its own address, with its signed claim for that address: it must get its
// name back and run, not stop for good as a newcomer to a held name.
func TestAttackNameSquatWhileAServerRestarts(t *testing.T) {
	s := testSigner(t, claimsServerToken)
	srv1 := startMember(t, "srv-1", withCluster(claimsCluster), withSigner(s))
	srv2 := startMember(t, "srv-2", withCluster(claimsCluster), withSigner(s), withJoin(srv1.addr))
	eventually(t, "srv-1 sees srv-2 verified", func() (bool, string) {
		mi := lookup(srv1.Member, "srv-2")
		return mi.Claim != nil && mi.State == StateAlive, fmt.Sprintf("%+v", mi)
	})
	ip2, _, _ := net.SplitHostPort(srv2.addr)
	if err := srv2.Close(); err != nil { // a graceful stop: leaves
		t.Fatal(err)
	}
	eventually(t, "srv-1 sees srv-2 left", func() (bool, string) {
		st, _ := stateOf(srv1.Member, "srv-2")
		return st == StateLeft, string(st)
	})

	squatter := startMember(t, "srv-2", withCluster(claimsCluster), withJoin(srv1.addr),
		func(c *Config) { c.Meta = evilMeta(c.AdvertiseAddr) })
	ipS, _, _ := net.SplitHostPort(squatter.addr)
	eventually(t, "the squatter joined", func() (bool, string) {
		_, ok := stateOf(squatter.Member, "srv-1")
		return ok, "srv-1 not known to the squatter"
	})
	if mi := lookup(srv1.Member, "srv-2"); mi.Meta.Role == RoleServer && mi.Addr == ipS {
		t.Fatalf("the squatter counts as a server: %+v", mi)
	}

	back := startMember(t, "srv-2", withCluster(claimsCluster), withSigner(s), withIP(ip2), withJoin(srv1.addr))
	var outcome string
	eventually(t, "the server is back under its name, or stopped by the squatter", func() (bool, string) {
		mi := lookup(srv1.Member, "srv-2")
		switch {
		case back.NameConflict() != nil:
			outcome = "halted: " + back.NameConflict().Error()
			return true, ""
		case mi.Addr == ip2 && mi.State == StateAlive && mi.Claim != nil:
			outcome = ""
			return true, ""
		}
		return false, fmt.Sprintf("srv-1 sees srv-2 at %s, %s", mi.Addr, mi.State)
	})
	if outcome != "" {
		t.Fatalf("an agent-token holder that takes a restarting server's name stops that server for good (%s)", outcome)
	}
}

// lookup is name as m sees it, the zero MemberInfo when unknown.
func lookup(m *Member, name string) MemberInfo {
	for _, mi := range m.Members() {
		if mi.Name == name {
			return mi
		}
	}
	return MemberInfo{}
}

// An outsider (no key, only the cluster name, which is public) opens a few
// TCP streams to the gossip port and starts each as an encrypted push/pull
// of memberlist's largest size (20 MB): memberlist reads the whole
// ciphertext before it can tell the sender holds no key, so each stream
// holds as much memory as the outsider sends, and nothing caps the streams
// at once. A handful must not cost the member more than a few megabytes.
func TestAttackOutsiderLargeStreams(t *testing.T) {
	tm := testTimings()
	tm.TCPTimeout = 2 * time.Minute // the stream's deadline: the outsider keeps them open that long
	victim := startMember(t, "victim", withTimings(tm))
	const streams, size = 4, 20 * 1024 * 1024
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	junk := make([]byte, 1<<20)
	for i := range streams {
		c, err := net.Dial("tcp", victim.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		hdr := []byte{244, byte(len("test"))} // memberlist's label header, then the label
		hdr = append(hdr, "test"...)
		hdr = append(hdr, 10) // encryptMsg: a push/pull follows, ciphertext length first
		hdr = binary.BigEndian.AppendUint32(hdr, size)
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
		sent := 0
		for sent < size-len(junk) { // all but the last MB: memberlist keeps reading
			_ = c.SetWriteDeadline(time.Now().Add(waitLimit))
			n, err := c.Write(junk)
			if err != nil {
				t.Logf("stream %d closed by the member after %d bytes: %v", i, sent, err)
				break
			}
			sent += n
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	if grew > 16<<20 {
		t.Fatalf("%d streams of an outsider hold %d MB of the member's heap", streams, grew>>20)
	}
	if got := metricValue(t, victim.reg, "rke2_hanode_gossip_streams_refused_total", map[string]string{"reason": "oversized"}); got != streams {
		t.Errorf("oversized streams counted %v, want %d", got, streams)
	}
}

// Silent streams of one outsider host are capped: past maxStreamsPerHost
// open at once the member closes new ones before memberlist reads them,
// and a member of the cluster still joins.
func TestAttackOutsiderSilentStreamsCapped(t *testing.T) {
	tm := testTimings()
	tm.TCPTimeout = 2 * time.Minute // memberlist's read deadline: the streams stay open that long
	victim := startMember(t, "victim", withTimings(tm))
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// from a source address of its own (members of these tests all dial
	// from the loopback's first address)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.200")}}
	for range maxStreamsPerHost + 4 {
		c, err := d.Dial("tcp", victim.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	eventually(t, "the streams past the cap refused", func() (bool, string) {
		got := metricValue(t, victim.reg, "rke2_hanode_gossip_streams_refused_total", map[string]string{"reason": "host_streams"})
		return got == 4, fmt.Sprintf("host_streams refused %v, want 4", got)
	})
	startMember(t, "peer", withTimings(tm), withJoin(victim.addr))
	eventually(t, "a member joins past the outsider's streams", func() (bool, string) {
		st, _ := stateOf(victim.Member, "peer")
		return st == StateAlive, string(st)
	})
}
