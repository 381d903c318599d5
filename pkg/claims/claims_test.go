package claims

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

const (
	serverToken = "0b5f8e2a91c4d7364fa0e9b2c81d5f730b5f8e2a91c4d7364fa0e9b2c81d5f73"
	cluster     = "prod"
)

func signer(t *testing.T, token string) *Signer {
	t.Helper()
	s, err := NewSigner(token, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claim(seq uint64) Claim {
	return Claim{Node: "srv-1", RaftAddr: "10.0.0.11:9348", BootstrapSet: "0123456789abcdef!", StartedRKE2: true,
		Ready: true, CAHash: strings.Repeat("ab", 32), WantJoinSlot: false, Seq: seq}
}

func verifier(t *testing.T, s *Signer) *Verifier {
	t.Helper()
	v, err := NewVerifier(s.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignAndAccept(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	c := claim(1)
	sig := s.Sign(c)
	if err := Verify(s.Public(), c, sig); err != nil {
		t.Fatal(err)
	}
	if err := v.Accept("srv-1", s.Public(), c, sig); err != nil {
		t.Fatal(err)
	}
	// gossip repeats itself: the same claim again is fine
	if err := v.Accept("srv-1", s.Public(), c, sig); err != nil {
		t.Fatalf("the same claim again: %v", err)
	}
	// every server derives the same key from the server token
	if other := signer(t, serverToken); !bytes.Equal(other.Public(), s.Public()) {
		t.Fatal("two servers derive different claim keys")
	}
}

// TestForgedClaims: what a holder of the agent token (or of nothing) can
// try, each refused.
func TestForgedClaims(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	good := claim(10)
	sig := s.Sign(good)

	attacker := signer(t, "the-agent-token-is-not-the-server-token-0123456789")
	_, randomPriv, _ := ed25519.GenerateKey(rand.Reader)
	randomPub := randomPriv.Public().(ed25519.PublicKey)

	tamper := func(f func(*Claim)) Claim { c := good; f(&c); return c }
	for _, tc := range []struct {
		name string
		from string
		pub  ed25519.PublicKey
		c    Claim
		sig  []byte
		want error
	}{
		{"another CA hash under a real signature", "srv-1", s.Public(), tamper(func(c *Claim) { c.CAHash = strings.Repeat("cd", 32) }), sig, ErrBadSignature},
		{"ready flipped", "srv-1", s.Public(), tamper(func(c *Claim) { c.Ready = false }), sig, ErrBadSignature},
		{"slot request added", "srv-1", s.Public(), tamper(func(c *Claim) { c.WantJoinSlot = true }), sig, ErrBadSignature},
		{"higher sequence, old signature", "srv-1", s.Public(), tamper(func(c *Claim) { c.Seq = 11 }), sig, ErrBadSignature},
		{"signed with another token's key", "srv-1", attacker.Public(), good, attacker.Sign(good), ErrWrongKey},
		{"a random key", "srv-1", randomPub, good, ed25519.Sign(randomPriv, good.Encode()), ErrWrongKey},
		{"the real key, a made-up signature", "srv-1", s.Public(), good, make([]byte, 64), ErrBadSignature},
		{"no signature", "srv-1", s.Public(), good, nil, ErrBadSignature},
		{"a truncated key", "srv-1", s.Public()[:16], good, sig, ErrWrongKey},
		{"a real claim for another node name", "srv-2", s.Public(), good, sig, ErrWrongNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := v.Accept(tc.from, tc.pub, tc.c, tc.sig); !errors.Is(err, tc.want) {
				t.Fatalf("Accept = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReplayedClaim: a recorded older claim of a node (say, the CA hash it
// had before) cannot replace a newer one.
func TestReplayedClaim(t *testing.T) {
	s := signer(t, serverToken)
	v := verifier(t, s)
	old := claim(5)
	old.CAHash = strings.Repeat("ee", 32)
	oldSig := s.Sign(old)
	cur := claim(6)
	if err := v.Accept("srv-1", s.Public(), old, oldSig); err != nil {
		t.Fatal(err)
	}
	if err := v.Accept("srv-1", s.Public(), cur, s.Sign(cur)); err != nil {
		t.Fatal(err)
	}
	if err := v.Accept("srv-1", s.Public(), old, oldSig); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed older claim: %v, want ErrReplay", err)
	}
	same := cur
	same.Ready = false
	if err := v.Accept("srv-1", s.Public(), same, s.Sign(same)); !errors.Is(err, ErrReplay) {
		t.Fatalf("another claim with the same sequence: %v, want ErrReplay", err)
	}
	v.Forget("srv-1")
	if err := v.Accept("srv-1", s.Public(), old, oldSig); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

func TestEncodeIsCanonical(t *testing.T) {
	a := Claim{Node: "ab", RaftAddr: "c"}
	b := Claim{Node: "a", RaftAddr: "bc"}
	if bytes.Equal(a.Encode(), b.Encode()) {
		t.Fatal("field boundaries are ambiguous")
	}
	c := claim(1)
	seen := map[string]string{string(c.Encode()): "base"}
	for name, f := range map[string]func(*Claim){
		"node": func(c *Claim) { c.Node = "srv-2" }, "raft": func(c *Claim) { c.RaftAddr = "10.0.0.12:9348" },
		"set": func(c *Claim) { c.BootstrapSet = "" }, "started": func(c *Claim) { c.StartedRKE2 = false },
		"ready": func(c *Claim) { c.Ready = false }, "ca": func(c *Claim) { c.CAHash = "" },
		"slot": func(c *Claim) { c.WantJoinSlot = true }, "seq": func(c *Claim) { c.Seq = 2 },
	} {
		d := c
		f(&d)
		if prev, dup := seen[string(d.Encode())]; dup {
			t.Errorf("changing %s encodes like %s", name, prev)
		}
		seen[string(d.Encode())] = name
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
