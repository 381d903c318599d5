package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
)

// Servers' signed claims travel beside the metadata (see "Signed claims" in
// doc.go): every member holds the newest verified claim of every server
// and passes them all on in memberlist's push/pull state; a new one also
// goes out as a user broadcast when it fits a packet.

const (
	// claimStateVersion starts the push/pull state and every claim
	// broadcast: a list of (node name, signed claim) entries.
	claimStateVersion = 1
	// maxClaimEntries bounds the entries read from one peer's state.
	maxClaimEntries = 64
	// maxClaimBroadcast is the largest claim message queued as a user
	// broadcast; memberlist sends broadcasts in UDP packets of 1400 bytes
	// with its own framing. Bigger claims spread by push/pull only.
	maxClaimBroadcast = 1024
)

// heldClaim is the newest verified claim of one node.
type heldClaim struct {
	wire  []byte
	claim claims.Claim
	// mismatchSeq is the sequence of this claim once its address mismatch
	// was counted, so a claim is counted once, not at every change.
	mismatchSeq uint64
}

// encodeClaimEntries writes the push/pull state or a broadcast: the
// version byte, then per entry the node name and the signed claim, each
// with a uvarint length.
func encodeClaimEntries(entries map[string][]byte) []byte {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	b := []byte{claimStateVersion}
	for _, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		b = binary.AppendUvarint(b, uint64(len(entries[n])))
		b = append(b, entries[n]...)
	}
	return b
}

type claimEntry struct {
	node string
	wire []byte
}

// decodeClaimEntries parses what encodeClaimEntries wrote. A newer state
// version is not read (an empty result, no error): its writer will also
// understand ours.
func decodeClaimEntries(b []byte) ([]claimEntry, error) {
	if len(b) == 0 {
		return nil, nil // a peer of a build without claims
	}
	if b[0] != claimStateVersion {
		if b[0] > claimStateVersion {
			return nil, nil
		}
		return nil, fmt.Errorf("claim state version %d", b[0])
	}
	rest := b[1:]
	var out []claimEntry
	next := func(max int) ([]byte, error) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) || n > uint64(max) {
			return nil, errors.New("truncated or oversized entry")
		}
		v := rest[k : k+int(n) : k+int(n)]
		rest = rest[k+int(n):]
		return v, nil
	}
	for len(rest) > 0 {
		if len(out) == maxClaimEntries {
			return out, fmt.Errorf("more than %d claims", maxClaimEntries)
		}
		name, err := next(maxNodeNameLen)
		if err != nil {
			return out, err
		}
		wire, err := next(claims.MaxSignedLen)
		if err != nil {
			return out, err
		}
		out = append(out, claimEntry{node: string(name), wire: wire})
	}
	return out, nil
}

// localClaimState is the push/pull state: every claim held.
func (m *Member) localClaimState() []byte {
	if m.verifier == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.claimsBy) == 0 {
		return nil
	}
	entries := make(map[string][]byte, len(m.claimsBy))
	for n, h := range m.claimsBy {
		entries[n] = h.wire
	}
	return encodeClaimEntries(entries)
}

// mergeClaims takes the claims of a peer's push/pull state or broadcast.
func (m *Member) mergeClaims(buf []byte) {
	if m.verifier == nil {
		return
	}
	entries, err := decodeClaimEntries(buf)
	for _, e := range entries {
		if e.node == m.cfg.NodeName && m.cfg.Signer != nil {
			m.ownClaimSeen(e.wire)
			continue
		}
		m.receiveClaim(e.node, e.wire)
	}
	if err != nil {
		m.claimRejected("", "malformed", fmt.Errorf("gossip: claims state: %w", err))
	}
}

// receiveClaim verifies a signed claim attributed to node and holds it if
// it is the newest of that node. A copy older than the one held, or the
// same again, is dropped unchecked and uncounted: gossip relays lag. It
// reports whether the claim was new.
func (m *Member) receiveClaim(node string, wire []byte) bool {
	if cnode, seq, err := claims.Seq(wire); err == nil && cnode == node {
		m.mu.Lock()
		h := m.claimsBy[node]
		stale := h != nil && (seq < h.claim.Seq || seq == h.claim.Seq && bytes.Equal(wire, h.wire))
		m.mu.Unlock()
		if stale {
			return false
		}
	}
	c, err := m.verifier.Accept(node, wire)
	if err != nil {
		m.claimRejected(node, claims.Reason(err), err)
		return false
	}
	m.mu.Lock()
	h := m.claimsBy[node]
	if h != nil && h.claim.Seq >= c.Seq { // a concurrent delivery of a newer one won
		m.mu.Unlock()
		return false
	}
	wire = bytes.Clone(wire)
	m.claimsBy[node] = &heldClaim{wire: wire, claim: c}
	m.applyAllLocked()
	m.changedLocked()
	// Queued under mu, as it was taken: an older claim delivered at the
	// same time (a packet and a push/pull) cannot be queued after it and
	// relayed in its place.
	m.queueClaim(node, wire)
	m.mu.Unlock()
	return true
}

// ownClaimSeen looks at a claim of this member's own name coming back
// from gossip. Only this member signs its name, so one newer than its
// current claim was signed by an earlier run whose clock was ahead of this
// one's: the others hold its sequence number and would drop every claim
// of this run as older. This member then signs past it (the broadcaster
// re-signs). Nothing a peer sends is ever held as this member's claim.
func (m *Member) ownClaimSeen(wire []byte) {
	node, seq, err := claims.Seq(wire)
	if err != nil || node != m.cfg.NodeName {
		return
	}
	m.mu.Lock()
	h := m.claimsBy[node]
	ahead := h == nil || seq > h.claim.Seq
	m.mu.Unlock()
	if !ahead {
		return
	}
	if _, err := claims.Verify(m.verifier.Fingerprint(), wire); err != nil {
		m.claimRejected(node, claims.Reason(err), err)
		return
	}
	m.cfg.Signer.Advance(seq)
	if !m.resign.Swap(true) {
		m.log.Warn("gossip carries a claim of this node newer than its own, from an earlier run whose clock was ahead: signing past it",
			zap.Uint64("seen_sequence", seq))
	}
	m.kick()
}

// resignIfAsked signs this member's claim anew after ownClaimSeen.
func (m *Member) resignIfAsked() {
	if !m.resign.Swap(false) {
		return
	}
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	m.ownBase = nil
	if _, err := m.signLocal(m.Local(), m.day2); err != nil {
		m.log.Warn("could not sign this node's claim anew", zap.Error(err))
	}
}

// queueClaim broadcasts a node's new claim, when it fits a packet.
func (m *Member) queueClaim(node string, wire []byte) {
	msg := encodeClaimEntries(map[string][]byte{node: wire})
	if len(msg) > maxClaimBroadcast {
		return
	}
	m.claimQueue.queue(node, msg) // a newer claim of the node replaces its older one
}

// claimRejected counts and reports (rate-limited) a claim not applied.
func (m *Member) claimRejected(node, reason string, err error) {
	m.metrics.claimsRejected.WithLabelValues(reason).Inc()
	if ok, suppressed := m.warns.allow("claim " + reason + " " + node); ok {
		m.log.Warn("server claim refused: the member is not counted as a server on its strength",
			zap.String("member", node), zap.String("reason", reason), zap.Error(err), zap.Int("suppressed", suppressed))
	}
}

// applyAllLocked recomputes every member's effective metadata: a new claim
// can change the voters that vouch for members of an older build.
func (m *Member) applyAllLocked() {
	voters := m.vouchedLocked()
	for _, r := range m.records {
		m.applyLocked(r, voters)
	}
}

// vouchedLocked are the raft voters some verified claim lists, by name,
// each with the raft addresses the claims give it. A claim without voter
// addresses vouches for nobody.
func (m *Member) vouchedLocked() map[string][]string {
	out := map[string][]string{}
	for _, h := range m.claimsBy {
		if len(h.claim.VoterAddrs) != len(h.claim.Voters) {
			continue
		}
		for i, v := range h.claim.Voters {
			out[v] = append(out[v], h.claim.VoterAddrs[i])
		}
	}
	return out
}

// applyLocked sets r's effective metadata from what it declared: with a
// verified claim for its address, the server fields are the claim's; a
// member of the previous build (no claim at all, and none ever accepted
// under its name: a pruned claim leaves the name known to the Verifier)
// keeps its declared server fields only in the single-token set-up
// (TrustUnsigned), or if a verified claim lists it as a raft voter at the
// raft address it declares, and that raft address is on its gossip
// address; every other member is an agent.
func (m *Member) applyLocked(r *record, voters map[string][]string) {
	r.info.Meta = cloneMeta(r.declared)
	r.info.Claim, r.info.Unverified = nil, false
	if m.verifier == nil || r.info.MetaErr != nil {
		return
	}
	if h := m.claimsBy[r.info.Name]; h != nil {
		if sameIP(h.claim.AdvertiseAddr, r.info.Addr) {
			c := h.claim
			r.info.Claim = &c
			applyClaim(&r.info.Meta, c)
			return
		}
		if h.mismatchSeq != h.claim.Seq {
			h.mismatchSeq = h.claim.Seq
			m.metrics.claimsRejected.WithLabelValues("address_mismatch").Inc()
			if ok, suppressed := m.warns.allow("claim address " + r.info.Name); ok {
				m.log.Warn("server claim for another address than the member's: not applied, the member counts as an agent",
					zap.String("member", r.info.Name), zap.String("address", r.info.Addr),
					zap.String("claimed", h.claim.AdvertiseAddr), zap.Int("suppressed", suppressed))
			}
		}
	} else if r.declared.Role == RoleServer && m.cfg.TrustUnsigned {
		return // every member holds the server token (single-token set-up)
	} else if r.declared.Role == RoleServer && slices.ContainsFunc(voters[r.info.Name], func(a string) bool { return sameAddrPort(a, r.declared.RaftAddr) }) &&
		!m.verifier.Known(r.info.Name) && raftOnIP(r.declared.RaftAddr, r.info.Addr) {
		return
	}
	r.info.Unverified = r.declared.Role == RoleServer
	demoteToAgent(&r.info.Meta)
}

// applyClaim takes the server fields of meta from a verified claim.
func applyClaim(meta *Meta, c claims.Claim) {
	meta.Role = RoleServer
	meta.AdvertiseAddr = c.AdvertiseAddr // the member's gossip address: applyLocked checked it
	meta.RaftAddr = c.RaftAddr
	meta.BootstrapSet = c.BootstrapSet
	meta.StartedRKE2 = c.StartedRKE2
	meta.Ready = c.Ready
	meta.CAHash = c.CAHash
	meta.WantJoinSlot = c.WantJoinSlot
	meta.ClusterReady = c.ClusterReady
	meta.Commands = c.Commands
	meta.ExpectServers = c.ExpectServers
	meta.RaftState = RaftNone
	if c.HasRaftState {
		meta.RaftState = RaftMember
	}
	meta.RKE2Wanted, meta.RKE2Running = "", ""
	meta.UpgradeFailed, meta.UpgradeFailedBegin, meta.UpgradeFinished = "", 0, 0
}

// demoteToAgent clears what only a verified server may say.
func demoteToAgent(meta *Meta) {
	meta.Role = RoleAgent
	meta.RaftAddr, meta.BootstrapSet, meta.CAHash = "", "", ""
	meta.StartedRKE2, meta.Ready, meta.WantJoinSlot, meta.ClusterReady = false, false, false, false
	meta.Commands = 0
	meta.RaftState = RaftNone
	meta.BootstrapNode, meta.JoinSlot, meta.JoinedServers = "", "", 0
}

// sameIP compares two IP addresses in any notation.
func sameIP(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x.Unmap() == y.Unmap()
}

// sameAddrPort compares two IP:port addresses in any notation.
func sameAddrPort(a, b string) bool {
	x, err1 := netip.ParseAddrPort(a)
	y, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && x.Addr().Unmap() == y.Addr().Unmap() && x.Port() == y.Port()
}

// raftOnIP reports whether the raft address raft listens on ip.
func raftOnIP(raft, ip string) bool {
	ap, err := netip.ParseAddrPort(raft)
	return err == nil && sameIP(ap.Addr().String(), ip)
}

// signLocal signs this member's claim from meta and the day-2 fields, when
// it has a signer and anything claimed changed, and spreads it. It
// reports whether a new claim was made.
func (m *Member) signLocal(meta Meta, day2 claims.Claim) (bool, error) {
	if m.cfg.Signer == nil {
		return false, nil
	}
	c := day2
	c.Node = m.cfg.NodeName
	c.RaftAddr = meta.RaftAddr
	c.AdvertiseAddr = meta.AdvertiseAddr
	if m.self.IsValid() {
		c.AdvertiseAddr = m.self.Addr().String() // what peers see as this member's address
	}
	c.BootstrapSet = meta.BootstrapSet
	c.StartedRKE2 = meta.StartedRKE2
	c.Ready = meta.Ready
	c.CAHash = meta.CAHash
	c.WantJoinSlot = meta.WantJoinSlot
	c.ClusterReady = meta.ClusterReady
	c.Commands = meta.Commands
	c.ExpectServers = meta.ExpectServers
	c.HasRaftState = meta.RaftState == RaftMember
	c.Seq = 1
	base, err := c.Encode()
	if err != nil {
		return false, fmt.Errorf("gossip: claim: %w", err)
	}
	if bytes.Equal(base, m.ownBase) {
		return false, nil
	}
	c.Seq = m.cfg.Signer.NextSeq(m.cfg.Clock.Now())
	wire, err := m.cfg.Signer.Sign(c)
	if err != nil {
		return false, fmt.Errorf("gossip: claim: %w", err)
	}
	if !m.receiveClaim(m.cfg.NodeName, wire) {
		return false, errors.New("gossip: this member's own claim was not accepted: is the signer's key the trusted fingerprint's?")
	}
	m.ownBase = base
	m.claimDirty.Store(true)
	return true, nil
}

// UpdateClaim changes the day-2 fields of this server's claim with fn (the
// fields it shares with Meta are Meta's: UpdateMeta changes those), signs
// it and has it spread at once in the background. An invalid result is
// rejected and the claim stays as it was. Only a member with a Signer has
// a claim.
func (m *Member) UpdateClaim(fn func(*claims.Claim)) error {
	if m.cfg.Signer == nil {
		return errors.New("gossip: update claim: this member has no signer (only servers sign claims)")
	}
	if m.left.Load() || m.stopped.Load() {
		return errors.New("gossip: update claim: member has left or stopped")
	}
	m.metaMu.Lock()
	next := m.day2
	next.Voters = slices.Clone(next.Voters)
	next.VoterAddrs = slices.Clone(next.VoterAddrs)
	next.Requests = slices.Clone(next.Requests)
	next.Etcd.Members = slices.Clone(next.Etcd.Members)
	next.AgentBegins.Agents = slices.Clone(next.AgentBegins.Agents)
	fn(&next)
	day2 := claims.Claim{RKE2Wanted: next.RKE2Wanted, RKE2Running: next.RKE2Running, Voters: next.Voters,
		VoterAddrs: next.VoterAddrs, Etcd: next.Etcd, Requests: next.Requests, Upgrade: next.Upgrade, RecoveryEpoch: next.RecoveryEpoch,
		AgentBegins: next.AgentBegins}
	changed, err := m.signLocal(m.Local(), day2)
	if err == nil {
		m.day2 = day2
	}
	m.metaMu.Unlock()
	if err != nil {
		return err
	}
	if changed {
		m.kick()
	}
	return nil
}

// Claim returns this member's own current claim, or nil when it has none.
func (m *Member) Claim() *claims.Claim {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.claimsBy[m.cfg.NodeName]; h != nil {
		c := h.claim
		return &c
	}
	return nil
}
