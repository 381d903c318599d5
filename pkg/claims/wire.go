package claims

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Wire format of a claim (see "Wire format" in the package comment).
const (
	// claimVersion is the newest encoding this build reads and writes. Bump
	// it when adding a field (older readers skip it).
	claimVersion = 5 // 2: voter addresses; 3: the recovery epoch; 4: agents' begins; 5: the upgrade report's restarting version
	// claimNeeds is what this build's claims ask of a reader; raise it only
	// for a change an older reader must not skip.
	claimNeeds = 1
	// claimOldest is the oldest encoding this build reads.
	claimOldest = 1
)

// Bounds of the encoding. They keep one claim a few kilobytes at most:
// it travels in memberlist's push/pull state with every other server's.
const (
	MaxMembers  = 16 // EtcdView.Members
	MaxRequests = 8  // Requests
	MaxVoters   = 16 // Voters
	// MaxAgentBegins bounds AgentBegins.Agents: the leader never has more
	// agents upgrading at once (pkg/upgrade's MaxAgentsAtOnce).
	MaxAgentBegins = 16

	maxNameLen         = 63 // node names (config's node-name rule)
	maxEtcdNameLen     = maxNameLen + 9
	maxBootstrapSetLen = 32
	maxVersionLen      = 64
	maxPeerURLLen      = 128
	maxFailedLen       = 96
	requestIDLen       = 16
	caHashBytes        = 32

	// MaxEncodedLen bounds an encoded claim; every field at its longest
	// stays below it (TestClaimWorstCaseFits).
	MaxEncodedLen = 8192
	// MaxSignedLen bounds a signed claim on the wire.
	MaxSignedLen = MaxEncodedLen + pubLen + sigLen

	pubLen = 32
	sigLen = 64
)

// Request kinds.
const (
	RequestRemove        = "remove"
	RequestRecover       = "recover"
	RequestUpgradePause  = "upgrade-pause"
	RequestUpgradeResume = "upgrade-resume"
	RequestClearMember   = "clear-member"
)

var requestKinds = []string{RequestRemove, RequestRecover, RequestUpgradePause, RequestUpgradeResume, RequestClearMember}

// Field tags of a Claim. A tag, once released, keeps its meaning and value
// layout for ever; a new field takes the next free number. Tag 0 is never
// used. Nested values (the etcd view, its members, requests, the upgrade
// report) are field lists of their own with their own tags.
const (
	tagNode          = 1
	tagRaftAddr      = 2
	tagAdvertiseAddr = 3
	tagBootstrapSet  = 4
	tagStartedRKE2   = 5
	tagReady         = 6
	tagCAHash        = 7
	tagWantJoinSlot  = 8
	tagClusterReady  = 9
	tagCommands      = 10
	tagSeq           = 11
	tagExpectServers = 12
	tagHasRaftState  = 13
	tagRKE2Wanted    = 14
	tagRKE2Running   = 15
	tagVoters        = 16
	tagEtcd          = 17
	tagRequests      = 18
	tagUpgrade       = 19
	tagVoterAddrs    = 20 // since claim version 2
	// tagRecoveryEpoch: the recovery epoch of the raft state the server
	// runs on (uint64 big-endian; left out while 0: never recovered).
	tagRecoveryEpoch = 21 // since claim version 3
	// tagAgentBegins: the committed begins of the agents upgrading now, as
	// this server's copy of the replicated state holds them. Present (even
	// empty) when the server's build publishes them.
	tagAgentBegins = 22 // since claim version 4

	etcdObservedAt = 1
	etcdHealthy    = 2
	etcdMemberName = 3
	etcdMemberID   = 4
	etcdLearner    = 5
	etcdRevision   = 6
	etcdRaftIndex  = 7
	etcdLeader     = 8
	etcdMembers    = 9

	memberName    = 1
	memberID      = 2
	memberPeerURL = 3
	memberLearner = 4

	requestID     = 1
	requestKind   = 2
	requestTarget = 3
	requestAt     = 4

	upgradeFailed      = 1
	upgradeFailedBegin = 2
	upgradeFinished    = 3
	upgradeRestarting  = 4 // since claim version 5

	beginsTarget = 1
	beginsAgents = 2
	beginNode    = 1
	beginSince   = 2
)

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("claims: malformed claim")

// fieldWriter appends tag, uvarint length, value; zero values are left out
// by the callers.
type fieldWriter struct{ b []byte }

func (w *fieldWriter) put(tag byte, v []byte) {
	w.b = append(w.b, tag)
	w.b = binary.AppendUvarint(w.b, uint64(len(v)))
	w.b = append(w.b, v...)
}

func (w *fieldWriter) text(tag byte, s string) {
	if s != "" {
		w.put(tag, []byte(s))
	}
}

func (w *fieldWriter) flag(tag byte, f bool) {
	if f {
		w.put(tag, nil)
	}
}

func (w *fieldWriter) u64(tag byte, n uint64) {
	if n != 0 {
		w.put(tag, binary.BigEndian.AppendUint64(nil, n))
	}
}

func (w *fieldWriter) time(tag byte, t time.Time) {
	if !t.IsZero() {
		w.u64(tag, uint64(t.UnixNano()))
	}
}

// list writes items as one field: each item uvarint length and bytes.
func (w *fieldWriter) list(tag byte, items [][]byte) {
	if len(items) == 0 {
		return
	}
	var v []byte
	for _, it := range items {
		v = binary.AppendUvarint(v, uint64(len(it)))
		v = append(v, it...)
	}
	w.put(tag, v)
}

// Encode returns the canonical wire form of c, the bytes a signature
// covers, or an error naming the first invalid field. Two claims encode
// alike only if every field is equal (times compared to the nanosecond).
func (c Claim) Encode() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	w := fieldWriter{b: make([]byte, 0, 256)}
	w.b = append(w.b, claimNeeds, claimVersion)
	w.text(tagNode, c.Node)
	w.text(tagRaftAddr, c.RaftAddr)
	w.text(tagAdvertiseAddr, c.AdvertiseAddr)
	w.text(tagBootstrapSet, c.BootstrapSet)
	w.flag(tagStartedRKE2, c.StartedRKE2)
	w.flag(tagReady, c.Ready)
	if c.CAHash != "" {
		raw, _ := hex.DecodeString(c.CAHash)
		w.put(tagCAHash, raw)
	}
	w.flag(tagWantJoinSlot, c.WantJoinSlot)
	w.flag(tagClusterReady, c.ClusterReady)
	if c.Commands != 0 {
		w.put(tagCommands, []byte{byte(c.Commands)})
	}
	w.put(tagSeq, binary.BigEndian.AppendUint64(nil, c.Seq))
	if c.ExpectServers != 0 {
		w.put(tagExpectServers, []byte{byte(c.ExpectServers)})
	}
	w.flag(tagHasRaftState, c.HasRaftState)
	w.text(tagRKE2Wanted, c.RKE2Wanted)
	w.text(tagRKE2Running, c.RKE2Running)
	var voters [][]byte
	for _, v := range c.Voters {
		voters = append(voters, []byte(v))
	}
	w.list(tagVoters, voters)
	if e := c.Etcd.encode(); len(e) > 0 {
		w.put(tagEtcd, e)
	}
	var reqs [][]byte
	for _, r := range c.Requests {
		reqs = append(reqs, r.encode())
	}
	w.list(tagRequests, reqs)
	if u := c.Upgrade.encode(); len(u) > 0 {
		w.put(tagUpgrade, u)
	}
	var addrs [][]byte
	for _, a := range c.VoterAddrs {
		addrs = append(addrs, []byte(a))
	}
	w.list(tagVoterAddrs, addrs)
	w.u64(tagRecoveryEpoch, c.RecoveryEpoch)
	if c.AgentBegins.Published {
		w.put(tagAgentBegins, c.AgentBegins.encode())
	}
	if len(w.b) > MaxEncodedLen {
		return nil, fmt.Errorf("claims: claim of %q is %d bytes, over the limit of %d", c.Node, len(w.b), MaxEncodedLen)
	}
	return w.b, nil
}

func (e EtcdView) encode() []byte {
	var w fieldWriter
	w.time(etcdObservedAt, e.ObservedAt)
	w.flag(etcdHealthy, e.Healthy)
	w.text(etcdMemberName, e.MemberName)
	w.u64(etcdMemberID, e.MemberID)
	w.flag(etcdLearner, e.Learner)
	w.u64(etcdRevision, uint64(e.Revision))
	w.u64(etcdRaftIndex, e.RaftIndex)
	w.u64(etcdLeader, e.Leader)
	var members [][]byte
	for _, m := range e.Members {
		var mw fieldWriter
		mw.text(memberName, m.Name)
		mw.u64(memberID, m.ID)
		mw.text(memberPeerURL, m.PeerURL)
		mw.flag(memberLearner, m.Learner)
		members = append(members, mw.b)
	}
	w.list(etcdMembers, members)
	return w.b
}

func (r Request) encode() []byte {
	var w fieldWriter
	w.text(requestID, r.ID)
	w.text(requestKind, r.Kind)
	w.text(requestTarget, r.Target)
	w.time(requestAt, r.At)
	return w.b
}

func (u UpgradeReport) encode() []byte {
	var w fieldWriter
	w.text(upgradeFailed, u.Failed)
	w.u64(upgradeFailedBegin, uint64(u.FailedBegin))
	w.u64(upgradeFinished, uint64(u.Finished))
	w.text(upgradeRestarting, u.Restarting)
	return w.b
}

func (a AgentBegins) encode() []byte {
	var w fieldWriter
	w.text(beginsTarget, a.Target)
	var items [][]byte
	for _, b := range a.Agents {
		var bw fieldWriter
		bw.text(beginNode, b.Node)
		bw.u64(beginSince, uint64(b.Since))
		items = append(items, bw.b)
	}
	w.list(beginsAgents, items)
	return w.b
}

func (a AgentBegins) check() error {
	if !a.Published && (a.Target != "" || len(a.Agents) > 0) {
		return errors.New("begins without Published")
	}
	if err := checkText(a.Target, maxVersionLen); err != nil {
		return fmt.Errorf("target %q: %w", a.Target, err)
	}
	if len(a.Agents) > 0 && a.Target == "" {
		return errors.New("begins without a target")
	}
	if len(a.Agents) > MaxAgentBegins {
		return fmt.Errorf("%d, limit %d", len(a.Agents), MaxAgentBegins)
	}
	for i, b := range a.Agents {
		if b.Node == "" {
			return errors.New("an empty name")
		}
		if err := checkText(b.Node, maxNameLen); err != nil {
			return fmt.Errorf("%q: %w", b.Node, err)
		}
		if b.Since <= 0 {
			return fmt.Errorf("%s: begin time %d: want it after 1970", b.Node, b.Since)
		}
		if i > 0 && a.Agents[i-1].Node >= b.Node {
			return errors.New("not sorted, or a name repeated")
		}
	}
	return nil
}

func decodeAgentBegins(buf []byte) (AgentBegins, error) {
	a := AgentBegins{Published: true}
	err := readFields(buf, func(tag byte, v []byte) error {
		var err error
		switch tag {
		case beginsTarget:
			a.Target, err = getText(v, maxVersionLen)
		case beginsAgents:
			err = readList(v, MaxAgentBegins, func(item []byte) error {
				var b AgentBegin
				err := readFields(item, func(tag byte, v []byte) error {
					var err error
					switch tag {
					case beginNode:
						b.Node, err = getText(v, maxNameLen)
					case beginSince:
						var n uint64
						if n, err = getU64(v); err == nil {
							if n > 1<<63-1 {
								err = errors.New("before 1970")
							}
							b.Since = int64(n)
						}
					}
					if err != nil {
						return fmt.Errorf("field %d: %w", tag, err)
					}
					return nil
				})
				a.Agents = append(a.Agents, b)
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("begins field %d: %w", tag, err)
		}
		return nil
	})
	return a, err
}

// check refuses what Encode must not write; DecodeClaim applies the same
// rules to what it reads.
func (c Claim) check() error {
	errf := func(field string, err error) error { return fmt.Errorf("claims: claim %s: %w", field, err) }
	if c.Node == "" {
		return errf("node", errors.New("empty"))
	}
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{
		{"node", c.Node, maxNameLen},
		{"bootstrap set", c.BootstrapSet, maxBootstrapSetLen},
		{"rke2 wanted", c.RKE2Wanted, maxVersionLen},
		{"rke2 running", c.RKE2Running, maxVersionLen},
	} {
		if err := checkText(f.v, f.max); err != nil {
			return errf(f.name, fmt.Errorf("%q: %w", f.v, err))
		}
	}
	if c.RaftAddr != "" {
		if err := checkAddrPort(c.RaftAddr); err != nil {
			return errf("raft address", err)
		}
	}
	if c.AdvertiseAddr != "" {
		if err := checkAddr(c.AdvertiseAddr); err != nil {
			return errf("advertise address", err)
		}
	}
	if c.CAHash != "" && !isHex(c.CAHash, 2*caHashBytes) {
		return errf("CA hash", fmt.Errorf("%q: want %d lower-case hex digits", c.CAHash, 2*caHashBytes))
	}
	if c.Commands < 0 || c.Commands > 255 {
		return errf("commands", fmt.Errorf("%d: want 0-255", c.Commands))
	}
	if c.ExpectServers < 0 || c.ExpectServers > 255 {
		return errf("expect servers", fmt.Errorf("%d: want 0-255", c.ExpectServers))
	}
	if c.Seq == 0 {
		return errf("sequence", errors.New("0 (take it from Signer.NextSeq)"))
	}
	if len(c.Voters) > MaxVoters {
		return errf("voters", fmt.Errorf("%d, limit %d", len(c.Voters), MaxVoters))
	}
	for i, v := range c.Voters {
		if v == "" {
			return errf("voters", errors.New("an empty name"))
		}
		if err := checkText(v, maxNameLen); err != nil {
			return errf("voters", fmt.Errorf("%q: %w", v, err))
		}
		if i > 0 && c.Voters[i-1] >= v {
			return errf("voters", errors.New("not sorted, or a name repeated"))
		}
	}
	if len(c.VoterAddrs) != 0 && len(c.VoterAddrs) != len(c.Voters) {
		return errf("voter addresses", fmt.Errorf("%d for %d voters: want one per voter, or none", len(c.VoterAddrs), len(c.Voters)))
	}
	for _, a := range c.VoterAddrs {
		if err := checkAddrPort(a); err != nil {
			return errf("voter addresses", err)
		}
	}
	if err := c.Etcd.check(); err != nil {
		return errf("etcd", err)
	}
	if len(c.Requests) > MaxRequests {
		return errf("requests", fmt.Errorf("%d, limit %d", len(c.Requests), MaxRequests))
	}
	for _, r := range c.Requests {
		if err := r.check(); err != nil {
			return errf("request", err)
		}
	}
	if err := checkText(c.Upgrade.Failed, maxFailedLen); err != nil {
		return errf("upgrade failed", fmt.Errorf("%q: %w", c.Upgrade.Failed, err))
	}
	if err := checkText(c.Upgrade.Restarting, maxVersionLen); err != nil {
		return errf("upgrade restarting", fmt.Errorf("%q: %w", c.Upgrade.Restarting, err))
	}
	if c.Upgrade.FailedBegin < 0 || c.Upgrade.Finished < 0 {
		return errf("upgrade", errors.New("negative begin"))
	}
	if err := c.AgentBegins.check(); err != nil {
		return errf("agent begins", err)
	}
	return nil
}

func (e EtcdView) check() error {
	if err := checkText(e.MemberName, maxEtcdNameLen); err != nil {
		return fmt.Errorf("member name %q: %w", e.MemberName, err)
	}
	if e.Revision < 0 {
		return fmt.Errorf("revision %d: negative", e.Revision)
	}
	if !e.ObservedAt.IsZero() && e.ObservedAt.UnixNano() <= 0 {
		return fmt.Errorf("observed at %s: before 1970", e.ObservedAt)
	}
	if len(e.Members) > MaxMembers {
		return fmt.Errorf("%d members, limit %d", len(e.Members), MaxMembers)
	}
	for _, m := range e.Members {
		if err := checkText(m.Name, maxEtcdNameLen); err != nil {
			return fmt.Errorf("member name %q: %w", m.Name, err)
		}
		if err := checkText(m.PeerURL, maxPeerURLLen); err != nil {
			return fmt.Errorf("member %q peer URL %q: %w", m.Name, m.PeerURL, err)
		}
	}
	return nil
}

func (r Request) check() error {
	if !isHex(r.ID, requestIDLen) {
		return fmt.Errorf("id %q: want %d lower-case hex digits", r.ID, requestIDLen)
	}
	if !slices.Contains(requestKinds, r.Kind) {
		return fmt.Errorf("%s: kind %q: want one of %s", r.ID, r.Kind, strings.Join(requestKinds, ", "))
	}
	if err := checkText(r.Target, maxNameLen); err != nil {
		return fmt.Errorf("%s: target %q: %w", r.ID, r.Target, err)
	}
	if !r.At.IsZero() && r.At.UnixNano() <= 0 {
		return fmt.Errorf("%s: time %s before 1970", r.ID, r.At)
	}
	return nil
}

// DecodeClaim parses a claim written by Encode of this or another version.
// Fields it does not know are skipped; known fields are checked as
// strictly as Encode writes them. It refuses a claim that needs a newer
// reader, input over MaxEncodedLen, truncated fields, tags out of
// ascending order (a repeated tag among them), a missing node name or
// sequence number. Errors wrap ErrMalformed.
func DecodeClaim(buf []byte) (Claim, error) {
	c, err := decodeClaim(buf)
	if err != nil {
		return Claim{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return c, nil
}

func decodeClaim(buf []byte) (Claim, error) {
	var c Claim
	if len(buf) > MaxEncodedLen {
		return c, fmt.Errorf("%d bytes, over the limit of %d", len(buf), MaxEncodedLen)
	}
	if len(buf) < 2 {
		return c, errors.New("truncated in the header")
	}
	needs, writer := buf[0], buf[1]
	switch {
	case needs > claimVersion:
		return c, fmt.Errorf("claim version %d or newer needed to read it; this daemon reads versions %d to %d: upgrade this host", needs, claimOldest, claimVersion)
	case needs < claimOldest:
		return c, fmt.Errorf("claim version %d is not read by this daemon (it reads %d to %d)", needs, claimOldest, claimVersion)
	case writer < needs:
		return c, fmt.Errorf("writer version %d below the version %d it needs", writer, needs)
	}
	seqSeen := false
	err := readFields(buf[2:], func(tag byte, v []byte) error {
		var err error
		switch tag {
		case tagNode:
			c.Node, err = getText(v, maxNameLen)
		case tagRaftAddr:
			if c.RaftAddr, err = getText(v, 64); err == nil {
				err = checkAddrPort(c.RaftAddr)
			}
		case tagAdvertiseAddr:
			if c.AdvertiseAddr, err = getText(v, 64); err == nil {
				err = checkAddr(c.AdvertiseAddr)
			}
		case tagBootstrapSet:
			c.BootstrapSet, err = getText(v, maxBootstrapSetLen)
		case tagStartedRKE2:
			err = getFlag(v, &c.StartedRKE2)
		case tagReady:
			err = getFlag(v, &c.Ready)
		case tagCAHash:
			if len(v) != caHashBytes {
				return fmt.Errorf("CA hash: %d bytes, want %d", len(v), caHashBytes)
			}
			c.CAHash = hex.EncodeToString(v)
		case tagWantJoinSlot:
			err = getFlag(v, &c.WantJoinSlot)
		case tagClusterReady:
			err = getFlag(v, &c.ClusterReady)
		case tagCommands:
			c.Commands, err = getCount(v)
		case tagSeq:
			var n uint64
			if n, err = getU64(v); err == nil {
				c.Seq, seqSeen = n, true
			}
		case tagExpectServers:
			c.ExpectServers, err = getCount(v)
		case tagHasRaftState:
			err = getFlag(v, &c.HasRaftState)
		case tagRKE2Wanted:
			c.RKE2Wanted, err = getText(v, maxVersionLen)
		case tagRKE2Running:
			c.RKE2Running, err = getText(v, maxVersionLen)
		case tagVoters:
			err = readList(v, MaxVoters, func(item []byte) error {
				name, err := getText(item, maxNameLen)
				if err == nil && len(c.Voters) > 0 && c.Voters[len(c.Voters)-1] >= name {
					err = errors.New("not sorted, or a name repeated")
				}
				c.Voters = append(c.Voters, name)
				return err
			})
		case tagVoterAddrs:
			err = readList(v, MaxVoters, func(item []byte) error {
				a, err := getText(item, 64)
				if err == nil {
					err = checkAddrPort(a)
				}
				c.VoterAddrs = append(c.VoterAddrs, a)
				return err
			})
		case tagEtcd:
			c.Etcd, err = decodeEtcd(v)
		case tagRequests:
			err = readList(v, MaxRequests, func(item []byte) error {
				r, err := decodeRequest(item)
				c.Requests = append(c.Requests, r)
				return err
			})
		case tagUpgrade:
			c.Upgrade, err = decodeUpgrade(v)
		case tagRecoveryEpoch:
			c.RecoveryEpoch, err = getU64(v)
		case tagAgentBegins:
			c.AgentBegins, err = decodeAgentBegins(v)
		default:
			return nil // a newer writer's field: ours to skip
		}
		if err != nil {
			return fmt.Errorf("%s: %w", claimFieldName(tag), err)
		}
		return nil
	})
	if err != nil {
		return Claim{}, err
	}
	if c.Node == "" {
		return Claim{}, errors.New("node name missing")
	}
	if !seqSeen || c.Seq == 0 {
		return Claim{}, errors.New("sequence number missing")
	}
	if err := c.check(); err != nil { // cross-field rules, the same as Encode's
		return Claim{}, err
	}
	return c, nil
}

func decodeEtcd(buf []byte) (EtcdView, error) {
	var e EtcdView
	err := readFields(buf, func(tag byte, v []byte) error {
		var err error
		switch tag {
		case etcdObservedAt:
			e.ObservedAt, err = getTime(v)
		case etcdHealthy:
			err = getFlag(v, &e.Healthy)
		case etcdMemberName:
			e.MemberName, err = getText(v, maxEtcdNameLen)
		case etcdMemberID:
			e.MemberID, err = getU64(v)
		case etcdLearner:
			err = getFlag(v, &e.Learner)
		case etcdRevision:
			var n uint64
			n, err = getU64(v)
			if err == nil && n > 1<<63-1 {
				err = errors.New("negative")
			}
			e.Revision = int64(n)
		case etcdRaftIndex:
			e.RaftIndex, err = getU64(v)
		case etcdLeader:
			e.Leader, err = getU64(v)
		case etcdMembers:
			err = readList(v, MaxMembers, func(item []byte) error {
				var m EtcdMember
				err := readFields(item, func(tag byte, v []byte) error {
					var err error
					switch tag {
					case memberName:
						m.Name, err = getText(v, maxEtcdNameLen)
					case memberID:
						m.ID, err = getU64(v)
					case memberPeerURL:
						m.PeerURL, err = getText(v, maxPeerURLLen)
					case memberLearner:
						err = getFlag(v, &m.Learner)
					}
					if err != nil {
						return fmt.Errorf("field %d: %w", tag, err)
					}
					return nil
				})
				e.Members = append(e.Members, m)
				return err
			})
		default:
			return nil
		}
		if err != nil {
			return fmt.Errorf("etcd field %d: %w", tag, err)
		}
		return nil
	})
	return e, err
}

func decodeRequest(buf []byte) (Request, error) {
	var r Request
	err := readFields(buf, func(tag byte, v []byte) error {
		var err error
		switch tag {
		case requestID:
			r.ID, err = getText(v, requestIDLen)
		case requestKind:
			r.Kind, err = getText(v, 32)
		case requestTarget:
			r.Target, err = getText(v, maxNameLen)
		case requestAt:
			r.At, err = getTime(v)
		}
		if err != nil {
			return fmt.Errorf("request field %d: %w", tag, err)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	return r, r.check()
}

func decodeUpgrade(buf []byte) (UpgradeReport, error) {
	var u UpgradeReport
	err := readFields(buf, func(tag byte, v []byte) error {
		var err error
		var n uint64
		switch tag {
		case upgradeFailed:
			u.Failed, err = getText(v, maxFailedLen)
		case upgradeRestarting:
			u.Restarting, err = getText(v, maxVersionLen)
		case upgradeFailedBegin, upgradeFinished:
			if n, err = getU64(v); err == nil && n > 1<<63-1 {
				err = errors.New("negative")
			}
			if tag == upgradeFailedBegin {
				u.FailedBegin = int64(n)
			} else {
				u.Finished = int64(n)
			}
		}
		if err != nil {
			return fmt.Errorf("upgrade field %d: %w", tag, err)
		}
		return nil
	})
	return u, err
}

// readFields walks a field list: tag, uvarint length, value; tags
// ascending, 0 reserved. fn sees every field and skips those it does not
// know.
func readFields(rest []byte, fn func(tag byte, v []byte) error) error {
	last := 0
	for len(rest) > 0 {
		tag := rest[0]
		n, k := binary.Uvarint(rest[1:])
		switch {
		case tag == 0:
			return errors.New("tag 0 is reserved")
		case int(tag) == last:
			return fmt.Errorf("field %d repeated", tag)
		case int(tag) < last:
			return fmt.Errorf("field %d after field %d: tags must ascend", tag, last)
		case k <= 0:
			return fmt.Errorf("field %d: truncated or overlong length", tag)
		case n > uint64(len(rest)-1-k):
			return fmt.Errorf("field %d: truncated: %d of %d bytes", tag, len(rest)-1-k, n)
		}
		last = int(tag)
		rest = rest[1+k:]
		v := rest[:n:n]
		rest = rest[n:]
		if err := fn(tag, v); err != nil {
			return err
		}
	}
	return nil
}

// readList walks a list value: items as uvarint length and bytes, at most
// max of them.
func readList(rest []byte, max int, fn func(item []byte) error) error {
	if len(rest) == 0 {
		return errors.New("an empty list is left out")
	}
	for i := 0; len(rest) > 0; i++ {
		if i == max {
			return fmt.Errorf("more than %d items", max)
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return fmt.Errorf("item %d truncated", i)
		}
		if err := fn(rest[k : k+int(n) : k+int(n)]); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		rest = rest[k+int(n):]
	}
	return nil
}

func getText(v []byte, max int) (string, error) {
	if len(v) == 0 {
		return "", errors.New("empty (an empty text is left out)")
	}
	s := string(v)
	return s, checkText(s, max)
}

func getFlag(v []byte, f *bool) error {
	if len(v) != 0 {
		return fmt.Errorf("%d bytes, want none", len(v))
	}
	*f = true
	return nil
}

func getCount(v []byte) (int, error) {
	if len(v) != 1 || v[0] == 0 {
		return 0, fmt.Errorf("want one byte 1-255, got %x", v)
	}
	return int(v[0]), nil
}

func getU64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%d bytes, want 8", len(v))
	}
	n := binary.BigEndian.Uint64(v)
	if n == 0 {
		return 0, errors.New("0 is left out")
	}
	return n, nil
}

func getTime(v []byte) (time.Time, error) {
	n, err := getU64(v)
	if err != nil {
		return time.Time{}, err
	}
	if n > 1<<63-1 {
		return time.Time{}, errors.New("before 1970")
	}
	return time.Unix(0, int64(n)).UTC(), nil
}

func claimFieldName(tag byte) string {
	names := map[byte]string{
		tagNode: "node", tagRaftAddr: "raft address", tagAdvertiseAddr: "advertise address",
		tagBootstrapSet: "bootstrap set", tagStartedRKE2: "started-rke2", tagReady: "ready",
		tagCAHash: "CA hash", tagWantJoinSlot: "want-join-slot", tagClusterReady: "cluster-ready",
		tagCommands: "commands", tagSeq: "sequence", tagExpectServers: "expect servers",
		tagHasRaftState: "raft state", tagRKE2Wanted: "rke2 wanted", tagRKE2Running: "rke2 running",
		tagVoters: "voters", tagVoterAddrs: "voter addresses", tagEtcd: "etcd", tagRequests: "requests", tagUpgrade: "upgrade",
		tagRecoveryEpoch: "recovery epoch", tagAgentBegins: "agent begins",
	}
	if n, ok := names[tag]; ok {
		return n
	}
	return fmt.Sprintf("field %d", tag)
}

// checkText allows printable ASCII only, like gossip metadata, so claims
// shown in logs and status never carry control characters.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes, limit %d", len(s), max)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }); i >= 0 {
		return fmt.Errorf("byte %d is not printable ASCII", i)
	}
	return nil
}

// checkAddr accepts an IP address in its canonical form, without a zone.
func checkAddr(s string) error {
	ip, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q: not an IP address", s)
	case ip.Zone() != "":
		return fmt.Errorf("%q: zones are not supported", s)
	case ip.String() != s:
		return fmt.Errorf("%q: not in canonical form (%s)", s, ip)
	}
	return nil
}

func checkAddrPort(s string) error {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q: want IP:port", s)
	case ap.Addr().Zone() != "":
		return fmt.Errorf("%q: zones are not supported", s)
	case ap.Port() == 0:
		return fmt.Errorf("%q: port 0", s)
	case ap.String() != s:
		return fmt.Errorf("%q: not in canonical form (%s)", s, ap)
	}
	return nil
}
