package claims

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

const (
	serverToken = "0b5f8e2a91c4d7364fa0e9b2c81d5f730b5f8e2a91c4d7364fa0e9b2c81d5f73"
	cluster     = "prod"
)

func signer(t testing.TB, token string) *Signer {
	t.Helper()
	s, err := NewSigner(token, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claim(seq uint64) Claim {
	return Claim{Node: "srv-1", RaftAddr: "10.0.0.11:9348", AdvertiseAddr: "10.0.0.11", BootstrapSet: "0123456789abcdef!",
		StartedRKE2: true, Ready: true, CAHash: strings.Repeat("ab", 32), WantJoinSlot: false, Commands: 2, Seq: seq}
}

// fullClaim has every field set.
func fullClaim(seq uint64) Claim {
	c := claim(seq)
	c.WantJoinSlot, c.ClusterReady, c.ExpectServers, c.HasRaftState = true, true, 3, true
	c.RKE2Wanted, c.RKE2Running = "v1.31.4+rke2r1", "v1.30.8+rke2r1"
	c.Voters = []string{"srv-1", "srv-2", "srv-3"}
	c.VoterAddrs = []string{"10.0.0.11:9348", "10.0.0.12:9348", "[fd00::13]:9348"}
	c.Etcd = EtcdView{ObservedAt: time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC), Healthy: true, MemberName: "srv-1-0a1b2c3d",
		MemberID: 0x8e9e05c52164694d, Learner: false, Revision: 81234, RaftIndex: 99123, Leader: 0x8e9e05c52164694d,
		Members: []EtcdMember{
			{Name: "srv-1-0a1b2c3d", ID: 0x8e9e05c52164694d, PeerURL: "https://10.0.0.11:2380"},
			{Name: "srv-2-1a1b2c3d", ID: 2, PeerURL: "https://10.0.0.12:2380", Learner: true},
		}}
	c.Requests = []Request{
		{ID: "0123456789abcdef", Kind: RequestRemove, Target: "srv-3", At: time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)},
		{ID: "fedcba9876543210", Kind: RequestUpgradePause, At: time.Date(2026, 3, 1, 12, 0, 2, 0, time.UTC)},
	}
	c.Upgrade = UpgradeReport{Failed: "install: checksum mismatch", FailedBegin: 1772366400, Finished: 1772360000, Restarting: "v1.36.1+rke2r1"}
	c.RecoveryEpoch = 2
	c.AgentBegins = AgentBegins{Published: true, Target: "v1.31.4+rke2r1", Agents: []AgentBegin{{Node: "agent-1", Since: 1772366400123456789}, {Node: "agent-2", Since: 1772366401}}}
	return c
}

// worstCase has every field at its longest.
func worstCase() Claim {
	name := func(c byte) string { return strings.Repeat(string(c), maxNameLen) }
	c := fullClaim(^uint64(0))
	c.Node = name('n')
	c.RaftAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
	c.AdvertiseAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	c.BootstrapSet = strings.Repeat("b", maxBootstrapSetLen)
	c.Commands, c.ExpectServers = 255, 255
	c.RKE2Wanted, c.RKE2Running = strings.Repeat("w", maxVersionLen), strings.Repeat("r", maxVersionLen)
	c.Voters, c.VoterAddrs = nil, nil
	for i := range MaxVoters {
		c.Voters = append(c.Voters, name('a' + byte(i))[:maxNameLen])
		c.VoterAddrs = append(c.VoterAddrs, c.RaftAddr)
	}
	c.Etcd.MemberName = strings.Repeat("m", maxEtcdNameLen)
	c.Etcd.MemberID, c.Etcd.Revision, c.Etcd.RaftIndex, c.Etcd.Leader = ^uint64(0), 1<<63-1, ^uint64(0), ^uint64(0)
	c.Etcd.Members = nil
	for range MaxMembers {
		c.Etcd.Members = append(c.Etcd.Members, EtcdMember{Name: strings.Repeat("m", maxEtcdNameLen), ID: ^uint64(0),
			PeerURL: strings.Repeat("u", maxPeerURLLen), Learner: true})
	}
	c.Requests = nil
	for range MaxRequests {
		c.Requests = append(c.Requests, Request{ID: strings.Repeat("f", requestIDLen), Kind: RequestUpgradeResume, Target: name('t'), At: c.Etcd.ObservedAt})
	}
	c.Upgrade = UpgradeReport{Failed: strings.Repeat("x", maxFailedLen), FailedBegin: 1<<63 - 1, Finished: 1<<63 - 1, Restarting: strings.Repeat("v", maxVersionLen)}
	c.AgentBegins = AgentBegins{Published: true, Target: strings.Repeat("v", maxVersionLen)}
	for i := range MaxAgentBegins {
		c.AgentBegins.Agents = append(c.AgentBegins.Agents, AgentBegin{Node: name('A' + byte(i)), Since: 1<<63 - 1})
	}
	return c
}

func verifier(t testing.TB, s *Signer) *Verifier {
	t.Helper()
	v, err := NewVerifier(s.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sign(t testing.TB, s *Signer, c Claim) []byte {
	t.Helper()
	w, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustEncode(t testing.TB, c Claim) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignAndAccept(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	c := fullClaim(1)
	w := sign(t, s, c)
	got, err := v.Accept("srv-1", w)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("accepted claim:\n got %+v\nwant %+v", got, c)
	}
	// gossip repeats itself: the same claim again is fine
	if _, err := v.Accept("srv-1", w); err != nil {
		t.Fatalf("the same claim again: %v", err)
	}
	// every server derives the same key from the server token
	if other := signer(t, serverToken); !bytes.Equal(other.Public(), s.Public()) {
		t.Fatal("two servers derive different claim keys")
	}
}

// reencode replaces the encoded claim of a signed one, keeping key and
// signature: what an attacker who holds a real signed claim can do.
func reencode(t *testing.T, w []byte, raw []byte) []byte {
	t.Helper()
	tail := w[len(w)-pubLen-sigLen:]
	return append(append([]byte(nil), raw...), tail...)
}

// TestForgedClaims: what a holder of the agent token (or of nothing) can
// try, each refused.
func TestForgedClaims(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	good := claim(10)
	w := sign(t, s, good)

	attacker := signer(t, "the-agent-token-is-not-the-server-token-0123456789")
	_, randomPriv, _ := ed25519.GenerateKey(rand.Reader)

	tamper := func(f func(*Claim)) []byte {
		c := good
		f(&c)
		return reencode(t, w, mustEncode(t, c))
	}
	withKeySig := func(pub ed25519.PublicKey, sig []byte) []byte {
		raw := mustEncode(t, good)
		return append(append(append([]byte(nil), raw...), pub...), sig...)
	}
	raw := mustEncode(t, good)
	for _, tc := range []struct {
		name string
		from string
		wire []byte
		want error
	}{
		{"another CA hash under a real signature", "srv-1", tamper(func(c *Claim) { c.CAHash = strings.Repeat("cd", 32) }), ErrBadSignature},
		{"ready flipped", "srv-1", tamper(func(c *Claim) { c.Ready = false }), ErrBadSignature},
		{"slot request added", "srv-1", tamper(func(c *Claim) { c.WantJoinSlot = true }), ErrBadSignature},
		{"voters added", "srv-1", tamper(func(c *Claim) { c.Voters = []string{"evil"} }), ErrBadSignature},
		{"another address", "srv-1", tamper(func(c *Claim) { c.AdvertiseAddr = "10.0.0.66" }), ErrBadSignature},
		{"higher sequence, old signature", "srv-1", tamper(func(c *Claim) { c.Seq = 11 }), ErrBadSignature},
		{"an unknown field appended", "srv-1", reencode(t, w, append(append([]byte(nil), raw...), 200, 1, 'x')), ErrBadSignature},
		{"signed with another token's key", "srv-1", sign(t, attacker, good), ErrWrongKey},
		{"a random key", "srv-1", withKeySig(randomPriv.Public().(ed25519.PublicKey), ed25519.Sign(randomPriv, signed(raw))), ErrWrongKey},
		{"the real key, a made-up signature", "srv-1", withKeySig(s.Public(), make([]byte, 64)), ErrBadSignature},
		{"the real key, signed without the domain", "srv-1", withKeySig(s.Public(), ed25519.Sign(s.priv, raw)), ErrBadSignature},
		{"truncated", "srv-1", w[:len(w)-1], ErrWrongKey},
		{"too short", "srv-1", w[:90], ErrMalformed},
		{"a real claim for another node name", "srv-2", w, ErrWrongNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := v.Accept(tc.from, tc.wire); !errors.Is(err, tc.want) {
				t.Fatalf("Accept = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestUnknownFieldsAreSigned: a newer writer's field is skipped by this
// reader, and still covered by the signature.
func TestUnknownFieldsAreSigned(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	raw := append(mustEncode(t, claim(3)), 200, 2, 'h', 'i')
	raw[1] = claimVersion + 1 // a newer writer, readable by this one
	w := append(append(append([]byte(nil), raw...), s.Public()...), ed25519.Sign(s.priv, signed(raw))...)
	got, err := v.Accept("srv-1", w)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, claim(3)) {
		t.Fatalf("got %+v", got)
	}
	w2 := bytes.Clone(w)
	w2[len(raw)-1] = 'o'
	if _, err := v.Accept("srv-1", w2); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("unknown field changed: %v, want ErrBadSignature", err)
	}
}

// TestReplayedClaim: a recorded older claim of a node (say, the CA hash it
// had before) cannot replace a newer one.
func TestReplayedClaim(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	old := claim(5)
	old.CAHash = strings.Repeat("ee", 32)
	oldWire := sign(t, s, old)
	if _, err := v.Accept("srv-1", oldWire); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Accept("srv-1", sign(t, s, claim(6))); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Accept("srv-1", oldWire); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed older claim: %v, want ErrReplay", err)
	}
	same := claim(6)
	same.Ready = false
	if _, err := v.Accept("srv-1", sign(t, s, same)); !errors.Is(err, ErrReplay) {
		t.Fatalf("another claim with the same sequence: %v, want ErrReplay", err)
	}
	v.Forget("srv-1")
	if v.Known("srv-1") {
		t.Fatal("a forgotten node is still known")
	}
	if _, err := v.Accept("srv-1", oldWire); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

// Known is true only for a node with an accepted claim, never for one
// whose claims were all refused.
func TestVerifierKnown(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	if v.Known("srv-1") {
		t.Fatal("known before any claim")
	}
	forged := sign(t, s, claim(1))
	forged[len(forged)-1] ^= 1
	if _, err := v.Accept("srv-1", forged); err == nil {
		t.Fatal("a forged claim accepted")
	}
	if _, err := v.Accept("srv-2", sign(t, s, claim(1))); err == nil {
		t.Fatal("a claim under another name accepted")
	}
	if v.Known("srv-1") || v.Known("srv-2") {
		t.Fatal("known from refused claims")
	}
	if _, err := v.Accept("srv-1", sign(t, s, claim(1))); err != nil {
		t.Fatal(err)
	}
	if !v.Known("srv-1") {
		t.Fatal("not known after an accepted claim")
	}
}

func TestReason(t *testing.T) {
	for err, want := range map[error]string{
		ErrBadSignature: "bad_signature", ErrWrongKey: "wrong_key", ErrReplay: "replay", ErrWrongNode: "wrong_node",
		ErrMalformed: "malformed", errors.New("x"): "malformed",
	} {
		if got := Reason(err); got != want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestEncodeIsCanonical(t *testing.T) {
	a := Claim{Node: "ab", BootstrapSet: "c", Seq: 1}
	b := Claim{Node: "a", BootstrapSet: "bc", Seq: 1}
	if bytes.Equal(mustEncode(t, a), mustEncode(t, b)) {
		t.Fatal("field boundaries are ambiguous")
	}
	c := fullClaim(1)
	seen := map[string]string{string(mustEncode(t, c)): "base"}
	for name, f := range map[string]func(*Claim){
		"node": func(c *Claim) { c.Node = "srv-2" }, "raft": func(c *Claim) { c.RaftAddr = "10.0.0.12:9348" },
		"advertise": func(c *Claim) { c.AdvertiseAddr = "10.0.0.12" },
		"set":       func(c *Claim) { c.BootstrapSet = "" }, "started": func(c *Claim) { c.StartedRKE2 = false },
		"ready": func(c *Claim) { c.Ready = false }, "ca": func(c *Claim) { c.CAHash = "" },
		"slot": func(c *Claim) { c.WantJoinSlot = false }, "seq": func(c *Claim) { c.Seq = 2 },
		"cluster ready": func(c *Claim) { c.ClusterReady = false }, "commands": func(c *Claim) { c.Commands = 1 },
		"expect": func(c *Claim) { c.ExpectServers = 5 }, "raft state": func(c *Claim) { c.HasRaftState = false },
		"wanted": func(c *Claim) { c.RKE2Wanted = "" }, "running": func(c *Claim) { c.RKE2Running = "v1" },
		"voters":        func(c *Claim) { c.Voters, c.VoterAddrs = c.Voters[:2], c.VoterAddrs[:2] },
		"voter addrs":   func(c *Claim) { c.VoterAddrs = slices.Clone(c.VoterAddrs); c.VoterAddrs[0] = "10.0.0.66:9348" },
		"etcd healthy":  func(c *Claim) { c.Etcd.Healthy = false },
		"etcd member":   func(c *Claim) { c.Etcd.Members[1].Learner = false },
		"etcd observed": func(c *Claim) { c.Etcd.ObservedAt = c.Etcd.ObservedAt.Add(1) },
		"request":       func(c *Claim) { c.Requests[0].Target = "srv-2" },
		"upgrade":       func(c *Claim) { c.Upgrade.Finished++ },
		"restarting":    func(c *Claim) { c.Upgrade.Restarting = "v1.37.0+rke2r1" },
		"recovery":      func(c *Claim) { c.RecoveryEpoch = 3 },
		"begins":        func(c *Claim) { c.AgentBegins.Agents = c.AgentBegins.Agents[:1] },
		"begin since": func(c *Claim) {
			c.AgentBegins.Agents = slices.Clone(c.AgentBegins.Agents)
			c.AgentBegins.Agents[1].Since++
		},
		"begins target": func(c *Claim) { c.AgentBegins.Target = "v1.32.0+rke2r1" },
		"no begins":     func(c *Claim) { c.AgentBegins = AgentBegins{Published: true} },
		"unpublished":   func(c *Claim) { c.AgentBegins = AgentBegins{} },
	} {
		d := fullClaim(1)
		d.Voters = append([]string(nil), d.Voters...)
		d.VoterAddrs = append([]string(nil), d.VoterAddrs...)
		d.Etcd.Members = append([]EtcdMember(nil), d.Etcd.Members...)
		d.Requests = append([]Request(nil), d.Requests...)
		f(&d)
		enc := string(mustEncode(t, d))
		if prev, dup := seen[enc]; dup {
			t.Errorf("changing %s encodes like %s", name, prev)
		}
		seen[enc] = name
	}
}

func TestClaimRoundTrip(t *testing.T) {
	for name, c := range map[string]Claim{
		"minimal":            {Node: "a", Seq: 1},
		"typical":            claim(7),
		"full":               fullClaim(8),
		"worst case":         worstCase(),
		"ipv6":               {Node: "a", Seq: 1, AdvertiseAddr: "fd00::1", RaftAddr: "[fd00::1]:9348"},
		"no agent upgrading": {Node: "a", Seq: 1, AgentBegins: AgentBegins{Published: true}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeClaim(mustEncode(t, c))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
			}
		})
	}
}

func TestClaimWorstCaseFits(t *testing.T) {
	b := mustEncode(t, worstCase())
	t.Logf("worst case %d bytes, typical %d bytes", len(b), len(mustEncode(t, claim(1))))
	if len(b) > MaxEncodedLen {
		t.Fatalf("worst case %d bytes, over %d", len(b), MaxEncodedLen)
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Claim)
		want   string
	}{
		{"no node", func(c *Claim) { c.Node = "" }, "claim node: empty"},
		{"long node", func(c *Claim) { c.Node = strings.Repeat("n", 64) }, "64 bytes, limit 63"},
		{"control char", func(c *Claim) { c.BootstrapSet = "a\nb" }, "not printable ASCII"},
		{"raft host name", func(c *Claim) { c.RaftAddr = "srv-1:9348" }, "want IP:port"},
		{"raft port 0", func(c *Claim) { c.RaftAddr = "10.0.0.1:0" }, "port 0"},
		{"advertise name", func(c *Claim) { c.AdvertiseAddr = "srv-1" }, "not an IP address"},
		{"advertise not canonical", func(c *Claim) { c.AdvertiseAddr = "fd00:0::1" }, "not in canonical form"},
		{"CA short", func(c *Claim) { c.CAHash = "abcd" }, "want 64 lower-case hex digits"},
		{"CA upper", func(c *Claim) { c.CAHash = strings.Repeat("AB", 32) }, "want 64 lower-case hex digits"},
		{"commands", func(c *Claim) { c.Commands = 256 }, "want 0-255"},
		{"seq 0", func(c *Claim) { c.Seq = 0 }, "sequence: 0"},
		{"voters unsorted", func(c *Claim) { c.Voters = []string{"b", "a"} }, "not sorted"},
		{"voters repeated", func(c *Claim) { c.Voters = []string{"a", "a"} }, "not sorted"},
		{"too many voters", func(c *Claim) { c.Voters = make([]string, 17) }, "17, limit 16"},
		{"voter addresses not one per voter", func(c *Claim) { c.Voters, c.VoterAddrs = []string{"a", "b", "c"}, []string{"10.0.0.1:1", "10.0.0.2:1"} }, "2 for 3 voters"},
		{"voter address not IP:port", func(c *Claim) { c.Voters, c.VoterAddrs = []string{"a"}, []string{"srv-2:9348"} }, "want IP:port"},
		{"too many members", func(c *Claim) { c.Etcd.Members = make([]EtcdMember, 17) }, "17 members, limit 16"},
		{"too many requests", func(c *Claim) { c.Requests = make([]Request, 9) }, "9, limit 8"},
		{"request id", func(c *Claim) { c.Requests = []Request{{ID: "xyz", Kind: RequestRemove}} }, `id "xyz"`},
		{"request kind", func(c *Claim) { c.Requests = []Request{{ID: "0123456789abcdef", Kind: "reboot"}} }, `kind "reboot"`},
		{"long version", func(c *Claim) { c.RKE2Wanted = strings.Repeat("v", 65) }, "rke2 wanted"},
		{"long failure", func(c *Claim) { c.Upgrade.Failed = strings.Repeat("f", 97) }, "upgrade failed"},
		{"long restarting version", func(c *Claim) { c.Upgrade.Restarting = strings.Repeat("v", maxVersionLen+1) }, "upgrade restarting"},
		{"begins unpublished", func(c *Claim) { c.AgentBegins = AgentBegins{Target: "v1"} }, "begins without Published"},
		{"begins without target", func(c *Claim) {
			c.AgentBegins = AgentBegins{Published: true, Agents: []AgentBegin{{Node: "a", Since: 1}}}
		}, "without a target"},
		{"begins unsorted", func(c *Claim) {
			c.AgentBegins = AgentBegins{Published: true, Target: "v1", Agents: []AgentBegin{{Node: "b", Since: 1}, {Node: "a", Since: 1}}}
		}, "not sorted"},
		{"begin at 0", func(c *Claim) {
			c.AgentBegins = AgentBegins{Published: true, Target: "v1", Agents: []AgentBegin{{Node: "a"}}}
		}, "want it after 1970"},
		{"too many begins", func(c *Claim) {
			c.AgentBegins = AgentBegins{Published: true, Target: "v1", Agents: make([]AgentBegin, MaxAgentBegins+1)}
		}, "17, limit 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claim(1)
			tc.change(&c)
			_, err := c.Encode()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Encode = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := mustEncode(t, claim(1))
	field := func(tag byte, v ...byte) []byte { return append([]byte{tag, byte(len(v))}, v...) }
	hdr := []byte{claimNeeds, claimVersion}
	seq := field(tagSeq, 0, 0, 0, 0, 0, 0, 0, 1)
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		buf  []byte
		want string
	}{
		{"empty", nil, "truncated in the header"},
		{"needs newer", append([]byte{claimVersion + 1, claimVersion + 1}, good[2:]...), "upgrade this host"},
		{"needs 0", append([]byte{0, 1}, good[2:]...), "not read by this daemon"},
		{"writer below needs", append([]byte{1, 0}, good[2:]...), "writer version 0"},
		{"no node", join(hdr, seq), "node name missing"},
		{"no seq", join(hdr, field(tagNode, 'a')), "sequence number missing"},
		{"out of order", join(hdr, seq, field(tagNode, 'a')), "tags must ascend"},
		{"repeated", join(hdr, field(tagNode, 'a'), field(tagNode, 'b'), seq), "repeated"},
		{"tag 0", join(hdr, field(0)), "tag 0"},
		{"truncated value", join(hdr, []byte{tagNode, 5, 'a'}), "truncated"},
		{"overlong length", join(hdr, []byte{tagNode, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), "length"},
		{"flag with value", join(hdr, field(tagNode, 'a'), field(tagReady, 1), seq), "want none"},
		{"CA wrong size", join(hdr, field(tagNode, 'a'), field(tagCAHash, 1, 2), seq), "CA hash"},
		{"empty text", join(hdr, field(tagNode), seq), "empty"},
		{"too big", make([]byte, MaxEncodedLen+1), "over the limit"},
		{"voters unsorted", join(hdr, field(tagNode, 'a'), seq, field(tagVoters, 1, 'b', 1, 'a')), "not sorted"},
		{"empty list", join(hdr, field(tagNode, 'a'), seq, field(tagVoters)), "empty list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeClaim(tc.buf)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeClaim = %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
	// an unknown field is skipped
	c, err := DecodeClaim(join(hdr, field(tagNode, 'a'), seq, field(250, 1, 2, 3)))
	if err != nil || c.Node != "a" {
		t.Fatalf("unknown field: %+v, %v", c, err)
	}
}

func TestNextSeqIncreases(t *testing.T) {
	s := signer(t, serverToken)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := s.NextSeq(now)
	b := s.NextSeq(now)
	c := s.NextSeq(now.Add(-time.Hour)) // clock stepped back
	if !(a < b && b < c) {
		t.Fatalf("sequence %d, %d, %d does not increase", a, b, c)
	}
	// a restarted node (new Signer) a second later is ahead of the old run
	if d := signer(t, serverToken).NextSeq(now.Add(time.Second)); d <= b {
		t.Fatalf("after a restart: %d, not above %d", d, b)
	}
}

func TestNewVerifierChecksFingerprint(t *testing.T) {
	for _, fp := range []string{"", "xyz", strings.Repeat("A", 32), strings.Repeat("a", 31)} {
		if _, err := NewVerifier(fp); err == nil {
			t.Errorf("fingerprint %q accepted", fp)
		}
	}
}

func TestGenerate(t *testing.T) {
	tok, err := Generate(cluster)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok.Server) {
		t.Errorf("server token %q", tok.Server)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}\.[0-9a-f]{64}$`).MatchString(tok.Agent) {
		t.Errorf("agent token %q", tok.Agent)
	}
	// RKE2 reads a 6.16 token as a bootstrap token: ours must not look like one
	if regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(tok.Agent) || strings.Contains(tok.Agent, ":") {
		t.Errorf("agent token %q is not a plain RKE2 password", tok.Agent)
	}
	for _, s := range []string{tok.Server, tok.Agent} {
		if err := keys.CheckStrength(s); err != nil {
			t.Errorf("generated token too weak: %v", err)
		}
	}
	fp, ok := AgentTokenFingerprint(tok.Agent)
	want, _ := FingerprintFromServerToken(tok.Server, cluster)
	if !ok || fp != want {
		t.Fatalf("agent token fingerprint %q, %v; server token's %q", fp, ok, want)
	}
	again, _ := Generate(cluster)
	if again.Server == tok.Server || again.Agent == tok.Agent {
		t.Fatal("two generated tokens are equal")
	}
}

func TestTrustedFingerprint(t *testing.T) {
	tok, err := Generate(cluster)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := FingerprintFromServerToken(tok.Server, cluster)
	for _, tc := range []struct {
		name, server, agent, err string
	}{
		{"server with both", tok.Server, tok.Agent, ""},
		{"agent", "", tok.Agent, ""},
		{"single token", tok.Server, "", ""},
		{"tokens of two generations", tok.Server, strings.Repeat("0", 32) + ".x", "do not belong together"},
		{"hand-made agent token", "", "an-agent-token-typed-by-hand-Xk8pQ2mZ7rT4", "carries no server-claims fingerprint"},
	} {
		fp, err := TrustedFingerprint(tc.server, tc.agent, cluster)
		switch {
		case tc.err == "" && (err != nil || fp != want):
			t.Errorf("%s: %q, %v; want %q", tc.name, fp, err, want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}
