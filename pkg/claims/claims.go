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
// # Wire format
//
// A claim is encoded like gossip metadata, so builds of two versions read
// each other's: two header bytes (the version a reader needs, the writer's
// version), then fields as tag, uvarint length, value, tags ascending;
// lists (voters, etcd members, requests) are one field holding
// length-prefixed items, nested values (the etcd view, a member, a
// request, the upgrade report) field lists of their own. A reader skips
// tags it does not know and checks the known ones strictly; zero values
// are left out. A signed claim on the wire is the encoded claim, then the
// 32-byte public key, then the 64-byte signature of the domain label and
// the encoded claim. Verification runs over the RECEIVED bytes before they
// are decoded, so fields this build does not know are covered by the
// signature too.
//
// Wiring: gossip carries every server's newest signed claim (memberlist
// push/pull state and user broadcasts, see pkg/gossip) and applies a claim
// only once Verifier.Accept took it; a member without one counts as an
// agent.
package claims

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// Claim is everything a server asserts and others rely on. Being signed at
// all is the claim "role server".
type Claim struct {
	Node          string // the node name (the memberlist name it is gossiped under)
	RaftAddr      string // IP:port of its raft listener
	AdvertiseAddr string // the IP others reach it on; must be the member's gossip address
	BootstrapSet  string // the bootstrap-set hash it proposes or locked ("" none)
	StartedRKE2   bool
	Ready         bool
	CAHash        string // 64 hex digits, or ""
	WantJoinSlot  bool
	ClusterReady  bool
	Commands      int // newest raft command version its build reads (0-255)
	// Seq orders one node's claims: strictly greater for every new claim,
	// across restarts (Signer.NextSeq).
	Seq uint64
	// ExpectServers and HasRaftState are what the formation reads of a
	// server besides the fields above (0-255; whether it holds raft state).
	ExpectServers int
	HasRaftState  bool

	// Day-2 fields.
	RKE2Wanted  string   // RKE2 version this host's config asks for ("" = whatever is installed), ≤64
	RKE2Running string   // RKE2 version installed/running here ("" unknown), ≤64
	Voters      []string // raft configuration's voter IDs as this server sees them (sorted, ≤16)
	// VoterAddrs are the voters' raft addresses (IP:port) in raft's
	// configuration, VoterAddrs[i] of Voters[i]; empty, or as long as
	// Voters. A member of a build without claims is vouched for only at
	// the raft address its voter holds (pkg/gossip, "Signed claims").
	VoterAddrs []string
	Etcd       EtcdView
	Requests   []Request // operator requests this server relays to the leader (≤ 8)
	Upgrade    UpgradeReport
	// RecoveryEpoch is the quorum-loss recovery epoch of the raft state
	// this server runs on (0: never recovered), published with Voters. A
	// server coming back on an older epoch holds a datastore from before
	// the recovery: it wipes it and rejoins (pkg/node voters.go).
	RecoveryEpoch uint64
	// AgentBegins are the committed begins of the agents upgrading now,
	// from this server's copy of the replicated state. Agents are not in
	// raft: they take their begin from a verified server claim.
	AgentBegins AgentBegins
}

// AgentBegins is the part of the roll agents act on: which agents the
// leader let begin their upgrade to Target, and when (the begin's Since,
// unix nanoseconds of the leader's clock, as the replicated state holds
// it). Published says the server's build publishes them (an empty list
// then means no agent upgrades now; a claim of an older build has
// Published false). Agents are sorted by name, at most MaxAgentBegins.
type AgentBegins struct {
	Published bool
	Target    string
	Agents    []AgentBegin
}

// AgentBegin is one agent's committed begin.
type AgentBegin struct {
	Node  string
	Since int64
}

// UpgradeReport is a host's own report on its upgrade steps (pkg/upgrade.Host's
// Failed/FailedBegin/Finished).
type UpgradeReport struct {
	Failed      string // why a step failed ("" none), printable, ≤ 96 bytes
	FailedBegin int64  // the Since of the committed begin it failed under
	Finished    int64  // the Since of the last begin whose steps it ran to the end
	// Restarting is the version this server's upgrade in flight has put
	// on disk ("" none): its install step is done, so the restart that
	// follows stops the old RKE2 and starts this one, and no older binary
	// is left to start here. Agents install ahead on it (pkg/node
	// upgrade_prepare.go). Since claim version 5.
	Restarting string // ≤64
}

// EtcdView is this server's view of its local etcd (from etcd's own API).
type EtcdView struct {
	ObservedAt time.Time // zero: no view (RKE2 not running, or not yet read)
	Healthy    bool      // the local member answered and the cluster has a leader
	MemberName string    // this host's etcd member name (<node>-<8 hex>)
	MemberID   uint64
	Learner    bool
	Revision   int64        // store revision of the local member
	RaftIndex  uint64       // raft applied index of the local member
	Leader     uint64       // etcd leader's member ID, 0 = none
	Members    []EtcdMember // the member list as this member sees it (≤ 16)
}

// EtcdMember is one etcd member as a server's etcd lists it.
type EtcdMember struct {
	Name    string
	ID      uint64
	PeerURL string // ≤ 128 bytes
	Learner bool
}

// Request is an operator's request, made with the CLI on a server, relayed
// in that server's signed claim until the leader acts on it (the FSM
// records what was done with each ID).
type Request struct {
	ID     string // random, 16 hex; unique per request
	Kind   string // RequestRemove, RequestRecover, RequestUpgradePause, RequestUpgradeResume or RequestClearMember
	Target string // node name it is about ("" for pause/resume)
	At     time.Time
}

// domain separates claim signatures from any other use of the key.
const domain = "rke2-hanode server-claim v1\x00"

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

// Sign returns c signed, in its wire form (see "Wire format").
func (s *Signer) Sign(c Claim) ([]byte, error) {
	raw, err := c.Encode()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(raw)+pubLen+sigLen)
	out = append(out, raw...)
	out = append(out, s.Public()...)
	return append(out, ed25519.Sign(s.priv, signed(raw))...), nil
}

// signed is what a signature covers: the domain label, then the encoded
// claim.
func signed(raw []byte) []byte {
	return append([]byte(domain), raw...)
}

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

// Advance makes every later NextSeq greater than seq: a node that finds a
// claim of its own from an earlier run with a clock ahead of this one
// signs past it.
func (s *Signer) Advance(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = max(s.seq, seq)
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

// Errors of Accept. Every error Accept returns wraps one of them (see
// Reason).
var (
	ErrBadSignature = errors.New("claims: signature does not verify")
	ErrWrongKey     = errors.New("claims: public key does not match the cluster's server-claims fingerprint")
	ErrWrongNode    = errors.New("claims: claim is for another node name")
	ErrReplay       = errors.New("claims: claim is not newer than one already accepted")
)

// Reason is the metric label of an error of Accept: bad_signature,
// wrong_key, replay, wrong_node or malformed.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, ErrWrongKey):
		return "wrong_key"
	case errors.Is(err, ErrReplay):
		return "replay"
	case errors.Is(err, ErrWrongNode):
		return "wrong_node"
	}
	return "malformed"
}

// split cuts a signed claim into the encoded claim, the public key and
// the signature.
func split(wire []byte) (raw []byte, pub ed25519.PublicKey, sig []byte, err error) {
	if len(wire) > MaxSignedLen {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrMalformed, len(wire), MaxSignedLen)
	}
	if len(wire) < 2+pubLen+sigLen {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes, too short for a signed claim", ErrMalformed, len(wire))
	}
	n := len(wire) - pubLen - sigLen
	return wire[:n:n], ed25519.PublicKey(wire[n : n+pubLen : n+pubLen]), wire[n+pubLen:], nil
}

// Seq reads the node name and sequence number of a signed claim without
// verifying it, so a receiver can drop a copy older than the one it holds
// before spending a signature check on it. Never act on its result.
func Seq(wire []byte) (node string, seq uint64, err error) {
	raw, _, _, err := split(wire)
	if err != nil {
		return "", 0, err
	}
	c, err := DecodeClaim(raw)
	if err != nil {
		return "", 0, err
	}
	return c.Node, c.Seq, nil
}

// Verify checks that wire is a claim signed by the key with fingerprint
// fp and returns it decoded. It knows nothing of sequence numbers: see
// Verifier.
func Verify(fp string, wire []byte) (Claim, error) {
	raw, pub, sig, err := split(wire)
	if err != nil {
		return Claim{}, err
	}
	if Fingerprint(pub) != fp {
		return Claim{}, ErrWrongKey
	}
	if !ed25519.Verify(pub, signed(raw), sig) {
		return Claim{}, ErrBadSignature
	}
	return DecodeClaim(raw)
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

// Fingerprint is the fingerprint the Verifier trusts.
func (v *Verifier) Fingerprint() string { return v.fingerprint }

// Accept verifies a signed claim (wire form) attributed to the node named
// from and returns it. The same claim seen again (gossip repeats itself)
// is accepted again; an older one, or another claim with the same
// sequence number, is refused.
func (v *Verifier) Accept(from string, wire []byte) (Claim, error) {
	c, err := Verify(v.fingerprint, wire)
	if err != nil {
		return Claim{}, err
	}
	if c.Node != from {
		return Claim{}, fmt.Errorf("%w: %q gossiped as %q", ErrWrongNode, c.Node, from)
	}
	sum := sha256.Sum256(wire[:len(wire)-sigLen]) // the signature is not unique; what it signs is
	v.mu.Lock()
	defer v.mu.Unlock()
	if prev, ok := v.last[c.Node]; ok {
		switch {
		case c.Seq == prev.seq && sum == prev.sum:
			return c, nil
		case c.Seq <= prev.seq:
			return Claim{}, fmt.Errorf("%w: node %q sequence %d, accepted %d", ErrReplay, c.Node, c.Seq, prev.seq)
		}
	}
	v.last[c.Node] = accepted{seq: c.Seq, sum: sum}
	return c, nil
}

// Known reports whether the Verifier ever accepted a claim of node (and
// was not told to Forget it). A name once claimed is a server of a build
// that signs: it is never vouched for as a server of an older build that
// cannot, even after its claim is no longer held.
func (v *Verifier) Known(node string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.last[node]
	return ok
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
