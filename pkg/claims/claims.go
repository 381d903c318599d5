// Package claims signs and verifies what a server says about itself.
//
// Gossip metadata is self-declared: any holder of the gossip key can
// announce "I am a server, bootstrap done, RKE2 ready, CA hash x" under any
// name. What others act on — being a server, the bootstrap set, started,
// ready, the CA hash, a join-slot request — must therefore come with a
// signature that only a server can make and any member can check.
//
// The signing key is an ed25519 key derived from the SERVER token (keys
// purpose "server-claims"), so every server holds the same key and no agent
// does. Verifiers need only its public key's fingerprint: an agent token
// made by `rke2-hanode token generate` carries it (see token.go), and a
// host that holds the server token derives it. The public key itself
// travels with each claim and must match the fingerprint.
//
// A claim has a sequence number; a Verifier accepts, per node, only claims
// newer than the last it accepted, so a recorded claim cannot be replayed
// to roll a node's state back (for example from "ready, CA y" to "ready,
// CA x").
//
// Wiring (for the gossip metadata protocol): a server signs its Claim
// whenever a claimed field changes, with Seq from Signer.NextSeq, and
// publishes the claim fields, Seq, its public key and the signature in its
// metadata. A receiver builds the Claim from the metadata it decoded, with
// Node set to the memberlist node name it came from, and calls
// Verifier.Accept; only an accepted claim may count the member as a server,
// as a voter candidate, a slot holder, or a source of the CA hash. A member
// whose claim fails keeps only what agents may say (role agent).
package claims

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// Claim is what a server asserts about itself and others rely on. Being
// signed at all is the claim "role server".
type Claim struct {
	Node         string // the node name (the memberlist name it is gossiped under)
	RaftAddr     string // IP:port of its raft listener
	BootstrapSet string // the bootstrap-set hash it proposes or locked ("" none)
	StartedRKE2  bool
	Ready        bool
	CAHash       string // 64 hex digits, or ""
	WantJoinSlot bool
	// Seq orders one node's claims: strictly greater for every new claim,
	// across restarts (Signer.NextSeq).
	Seq uint64
}

// domain separates claim signatures from any other use of the key.
const domain = "rke2-hanode server-claim v1\x00"

// Encode is the canonical byte string a signature covers: a domain label,
// the role, each string field length-prefixed in a fixed order, the flags
// and the sequence number. Two claims encode alike only if every field is
// equal.
func (c Claim) Encode() []byte {
	b := make([]byte, 0, 128)
	b = append(b, domain...)
	for _, s := range []string{"server", c.Node, c.RaftAddr, c.BootstrapSet, c.CAHash} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var flags byte
	for i, f := range []bool{c.StartedRKE2, c.Ready, c.WantJoinSlot} {
		if f {
			flags |= 1 << i
		}
	}
	b = append(b, flags)
	return binary.BigEndian.AppendUint64(b, c.Seq)
}

// Signer signs claims with the key derived from the server token.
type Signer struct {
	priv ed25519.PrivateKey
	mu   sync.Mutex
	seq  uint64
}

// NewSigner derives the server-claims key from the server token.
func NewSigner(serverToken, cluster string) (*Signer, error) {
	seed, err := keys.Derive(serverToken, keys.PurposeServerClaims, cluster, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	return &Signer{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public is the key verifiers check signatures with.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Fingerprint is the fingerprint of Public.
func (s *Signer) Fingerprint() string { return Fingerprint(s.Public()) }

// Sign returns the signature of c (64 bytes).
func (s *Signer) Sign(c Claim) []byte { return ed25519.Sign(s.priv, c.Encode()) }

// NextSeq returns a sequence number greater than every earlier one of this
// Signer and, being the wall clock in microseconds, than those of earlier
// runs of this node (a clock stepped back is covered by the counter within
// one run only).
func (s *Signer) NextSeq(now time.Time) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = max(s.seq+1, uint64(now.UnixMicro()))
	return s.seq
}

// FingerprintLen is the length of a fingerprint in hex digits.
const FingerprintLen = 32

// Fingerprint names a server-claims public key: the first 16 bytes of its
// SHA-256, as 32 lower-case hex digits.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:FingerprintLen/2])
}

// FingerprintFromServerToken is the fingerprint a host holding the server
// token derives (servers, and every host of a single-token set-up).
func FingerprintFromServerToken(serverToken, cluster string) (string, error) {
	s, err := NewSigner(serverToken, cluster)
	if err != nil {
		return "", err
	}
	return s.Fingerprint(), nil
}

// Errors of Verify and Accept.
var (
	ErrBadSignature = errors.New("claims: signature does not verify")
	ErrWrongKey     = errors.New("claims: public key does not match the cluster's server-claims fingerprint")
	ErrWrongNode    = errors.New("claims: claim is for another node name")
	ErrReplay       = errors.New("claims: claim is not newer than one already accepted")
)

// Verify checks that sig is pub's signature of c.
func Verify(pub ed25519.PublicKey, c Claim, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, c.Encode(), sig) {
		return ErrBadSignature
	}
	return nil
}

// Verifier accepts the claims of a cluster's servers: signed by the key
// with its trusted fingerprint, for the node they came from, and newer than
// that node's last accepted claim.
type Verifier struct {
	fingerprint string
	mu          sync.Mutex
	last        map[string]accepted
}

type accepted struct {
	seq uint64
	sum [sha256.Size]byte
}

// NewVerifier trusts the key with fingerprint fp.
func NewVerifier(fp string) (*Verifier, error) {
	if !isHex(fp, FingerprintLen) {
		return nil, fmt.Errorf("claims: fingerprint %q: want %d lower-case hex digits", fp, FingerprintLen)
	}
	return &Verifier{fingerprint: fp, last: map[string]accepted{}}, nil
}

// Accept verifies a claim received from the member named from, carrying
// public key pub and signature sig. The same claim seen again (gossip
// repeats itself) is accepted again; an older one, or another claim with
// the same sequence number, is refused.
func (v *Verifier) Accept(from string, pub ed25519.PublicKey, c Claim, sig []byte) error {
	if Fingerprint(pub) != v.fingerprint {
		return ErrWrongKey
	}
	if err := Verify(pub, c, sig); err != nil {
		return err
	}
	if c.Node != from {
		return fmt.Errorf("%w: %q gossiped by %q", ErrWrongNode, c.Node, from)
	}
	sum := sha256.Sum256(c.Encode())
	v.mu.Lock()
	defer v.mu.Unlock()
	if prev, ok := v.last[c.Node]; ok {
		switch {
		case c.Seq == prev.seq && sum == prev.sum:
			return nil
		case c.Seq <= prev.seq:
			return fmt.Errorf("%w: node %q sequence %d, accepted %d", ErrReplay, c.Node, c.Seq, prev.seq)
		}
	}
	v.last[c.Node] = accepted{seq: c.Seq, sum: sum}
	return nil
}

// Forget drops what the Verifier knows of node (a member removed for good).
func (v *Verifier) Forget(node string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.last, node)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
