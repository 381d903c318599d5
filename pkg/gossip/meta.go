package gossip

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/rke2-hanode/rke2-hanode/pkg/timeline"
)

// Roles and raft states carried in Meta.
const (
	RoleServer = "server"
	RoleAgent  = "agent"

	RaftNone   = "none"
	RaftMember = "member"
)

// metaVersion is the first byte of every encoded Meta. A peer running a newer
// daemon with another layout is reported with MetaErr rather than misread.
const metaVersion = 1

// Length limits of the free-form fields. They keep the worst case well inside
// memberlist's MetaMaxSize (see TestMetaWorstCaseFits).
const (
	maxPhaseLen        = 32
	maxClusterNameLen  = 63
	maxBootstrapSetLen = 32
	maxVersionLen      = 64
	caHashBytes        = 32
)

// Flag bits of the encoded Meta.
const (
	flagWantJoinSlot = 1 << iota
	flagStartedRKE2
	flagReady
	flagClusterReady
	flagLeaving
	flagsKnown = flagWantJoinSlot | flagStartedRKE2 | flagReady | flagClusterReady | flagLeaving
)

// Enumerations on the wire.
const (
	wireRoleServer = 1
	wireRoleAgent  = 2

	wireRaftNone   = 0
	wireRaftMember = 1
)

// Meta is what a host tells every other host about itself. It travels as
// memberlist node metadata, so its encoding must stay under 512 bytes; the
// field limits make sure it does.
type Meta struct {
	Role          string    // RoleServer or RoleAgent
	Phase         string    // the phase machine's current phase, printable ASCII, ≤32 bytes
	PhaseSince    time.Time // when Phase was entered; second precision on the wire
	AdvertiseAddr string    // IP address peers reach this host on
	RaftAddr      string    // IP:port of the raft listener (servers), or ""
	ExpectServers int       // 0-255
	ClusterName   string    // ≤63 bytes
	RaftState     string    // RaftNone or RaftMember ("" encodes as RaftNone)
	BootstrapSet  string    // short hash of the bootstrap set this host sees, ≤32 bytes
	WantJoinSlot  bool
	StartedRKE2   bool   // the bootstrap node asks the leader to commit "started"
	Ready         bool   // the local RKE2 is ready
	CAHash        string // 64 hex characters, or ""
	ClusterReady  bool
	Version       string           // daemon version, ≤64 bytes
	MAC           net.HardwareAddr // of the VIP interface; nil, 6, 8 or 20 bytes
	// Leaving is set by Leave just before the member leaves, so peers can
	// tell a graceful leave from a failure.
	Leaving bool
	// Timeline is this host's recent phase transitions in pkg/timeline's
	// wire form (≤ timeline.MaxEncodedLen bytes), or nil; optional, last.
	Timeline []byte
}

// Encode returns the wire form of m, or an error naming the first invalid
// field. The result always fits memberlist's metadata limit.
func (m Meta) Encode() ([]byte, error) {
	b := make([]byte, 0, 160)
	b = append(b, metaVersion)

	switch m.Role {
	case RoleServer:
		b = append(b, wireRoleServer)
	case RoleAgent:
		b = append(b, wireRoleAgent)
	default:
		return nil, fmt.Errorf("gossip: meta role %q: want %q or %q", m.Role, RoleServer, RoleAgent)
	}

	var flags byte
	for _, f := range []struct {
		set bool
		bit byte
	}{
		{m.WantJoinSlot, flagWantJoinSlot},
		{m.StartedRKE2, flagStartedRKE2},
		{m.Ready, flagReady},
		{m.ClusterReady, flagClusterReady},
		{m.Leaving, flagLeaving},
	} {
		if f.set {
			flags |= f.bit
		}
	}
	b = append(b, flags)

	switch m.RaftState {
	case RaftNone, "":
		b = append(b, wireRaftNone)
	case RaftMember:
		b = append(b, wireRaftMember)
	default:
		return nil, fmt.Errorf("gossip: meta raft state %q: want %q or %q", m.RaftState, RaftNone, RaftMember)
	}

	if m.ExpectServers < 0 || m.ExpectServers > 255 {
		return nil, fmt.Errorf("gossip: meta expect-servers %d: want 0-255", m.ExpectServers)
	}
	b = append(b, byte(m.ExpectServers))

	var since int64
	if !m.PhaseSince.IsZero() {
		since = m.PhaseSince.Unix()
		if since <= 0 {
			return nil, fmt.Errorf("gossip: meta phase-since %s: before 1970", m.PhaseSince)
		}
	}
	b = binary.BigEndian.AppendUint64(b, uint64(since))

	var err error
	if b, err = appendText(b, "phase", m.Phase, maxPhaseLen); err != nil {
		return nil, err
	}
	if b, err = appendText(b, "cluster name", m.ClusterName, maxClusterNameLen); err != nil {
		return nil, err
	}
	if b, err = appendText(b, "bootstrap set", m.BootstrapSet, maxBootstrapSetLen); err != nil {
		return nil, err
	}
	if b, err = appendText(b, "version", m.Version, maxVersionLen); err != nil {
		return nil, err
	}

	if m.AdvertiseAddr == "" {
		b = append(b, 0)
	} else {
		ip, err := parseIP(m.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: meta advertise address %q: %w", m.AdvertiseAddr, err)
		}
		b = appendIP(b, ip)
	}

	if m.RaftAddr == "" {
		b = append(b, 0)
	} else {
		ap, err := netip.ParseAddrPort(m.RaftAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: meta raft address %q: want IP:port", m.RaftAddr)
		}
		if ap.Addr().Zone() != "" {
			return nil, fmt.Errorf("gossip: meta raft address %q: zones are not supported", m.RaftAddr)
		}
		if ap.Port() == 0 {
			return nil, fmt.Errorf("gossip: meta raft address %q: port 0", m.RaftAddr)
		}
		b = appendIP(b, ap.Addr())
		b = binary.BigEndian.AppendUint16(b, ap.Port())
	}

	if m.CAHash == "" {
		b = append(b, 0)
	} else {
		raw, err := hex.DecodeString(m.CAHash)
		if err != nil || len(raw) != caHashBytes {
			return nil, fmt.Errorf("gossip: meta CA hash %q: want %d hex characters", m.CAHash, 2*caHashBytes)
		}
		b = append(b, caHashBytes)
		b = append(b, raw...)
	}

	switch len(m.MAC) {
	case 0, 6, 8, 20:
	default:
		return nil, fmt.Errorf("gossip: meta MAC %q: want 6, 8 or 20 bytes, got %d", m.MAC, len(m.MAC))
	}
	b = append(b, byte(len(m.MAC)))
	b = append(b, m.MAC...)

	if len(m.Timeline) > timeline.MaxEncodedLen {
		return nil, fmt.Errorf("gossip: meta timeline is %d bytes, limit %d", len(m.Timeline), timeline.MaxEncodedLen)
	}
	if len(m.Timeline) > 0 {
		b = append(b, byte(len(m.Timeline)))
		b = append(b, m.Timeline...)
	}

	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip: meta is %d bytes, over the limit of %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// DecodeMeta parses the wire form written by Encode. It rejects unknown
// versions, truncated or trailing bytes and any value Encode would not write.
func DecodeMeta(buf []byte) (Meta, error) {
	d := metaDecoder{buf: buf}
	var m Meta

	if v := d.byte("version"); d.err == nil && v != metaVersion {
		return Meta{}, fmt.Errorf("gossip: meta version %d: this daemon understands %d", v, metaVersion)
	}

	switch r := d.byte("role"); {
	case d.err != nil:
	case r == wireRoleServer:
		m.Role = RoleServer
	case r == wireRoleAgent:
		m.Role = RoleAgent
	default:
		d.fail(fmt.Errorf("role %d unknown", r))
	}

	flags := d.byte("flags")
	if d.err == nil && flags&^flagsKnown != 0 {
		d.fail(fmt.Errorf("unknown flags %#02x", flags&^flagsKnown))
	}
	m.WantJoinSlot = flags&flagWantJoinSlot != 0
	m.StartedRKE2 = flags&flagStartedRKE2 != 0
	m.Ready = flags&flagReady != 0
	m.ClusterReady = flags&flagClusterReady != 0
	m.Leaving = flags&flagLeaving != 0

	switch s := d.byte("raft state"); {
	case d.err != nil:
	case s == wireRaftNone:
		m.RaftState = RaftNone
	case s == wireRaftMember:
		m.RaftState = RaftMember
	default:
		d.fail(fmt.Errorf("raft state %d unknown", s))
	}

	m.ExpectServers = int(d.byte("expect-servers"))

	if since := d.uint64("phase-since"); d.err == nil && since != 0 {
		if since > 1<<40 { // far beyond any real clock; keeps time arithmetic sane
			d.fail(fmt.Errorf("phase-since %d out of range", since))
		}
		m.PhaseSince = time.Unix(int64(since), 0).UTC()
	}

	m.Phase = d.text("phase", maxPhaseLen)
	m.ClusterName = d.text("cluster name", maxClusterNameLen)
	m.BootstrapSet = d.text("bootstrap set", maxBootstrapSetLen)
	m.Version = d.text("version", maxVersionLen)

	if ip, ok := d.ip("advertise address"); ok {
		m.AdvertiseAddr = ip.String()
	}
	if ip, ok := d.ip("raft address"); ok {
		port := d.uint16("raft port")
		if d.err == nil && port == 0 {
			d.fail(errors.New("raft port 0"))
		}
		m.RaftAddr = netip.AddrPortFrom(ip, port).String()
	}

	switch n := d.byte("CA hash length"); {
	case d.err != nil:
	case n == 0:
	case n == caHashBytes:
		m.CAHash = hex.EncodeToString(d.bytes("CA hash", caHashBytes))
	default:
		d.fail(fmt.Errorf("CA hash length %d", n))
	}

	switch n := d.byte("MAC length"); {
	case d.err != nil:
	case n == 0:
	case n == 6 || n == 8 || n == 20:
		m.MAC = net.HardwareAddr(d.bytes("MAC", int(n)))
	default:
		d.fail(fmt.Errorf("MAC length %d", n))
	}

	if d.err == nil && len(d.buf) > 0 {
		switch n := d.byte("timeline length"); {
		case n == 0 || int(n) > timeline.MaxEncodedLen:
			d.fail(fmt.Errorf("timeline length %d", n))
		default:
			m.Timeline = d.bytes("timeline", int(n))
		}
	}

	if d.err == nil && len(d.buf) != 0 {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.buf)))
	}
	if d.err != nil {
		return Meta{}, fmt.Errorf("gossip: decode meta: %w", d.err)
	}
	return m, nil
}

// metaDecoder consumes buf front to back; after the first error every read
// returns zero values, so DecodeMeta checks d.err once per field at most.
type metaDecoder struct {
	buf []byte
	err error
}

func (d *metaDecoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *metaDecoder) bytes(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.buf) < n {
		d.fail(fmt.Errorf("truncated at %s", field))
		return nil
	}
	out := make([]byte, n)
	copy(out, d.buf[:n])
	d.buf = d.buf[n:]
	return out
}

func (d *metaDecoder) byte(field string) byte {
	if b := d.bytes(field, 1); b != nil {
		return b[0]
	}
	return 0
}

func (d *metaDecoder) uint16(field string) uint16 {
	if b := d.bytes(field, 2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *metaDecoder) uint64(field string) uint64 {
	if b := d.bytes(field, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *metaDecoder) text(field string, max int) string {
	n := int(d.byte(field + " length"))
	if d.err != nil {
		return ""
	}
	if n > max {
		d.fail(fmt.Errorf("%s is %d bytes, limit %d", field, n, max))
		return ""
	}
	s := string(d.bytes(field, n))
	if d.err == nil {
		if err := checkText(s); err != nil {
			d.fail(fmt.Errorf("%s: %w", field, err))
		}
	}
	return s
}

// ip reads a length-prefixed address; ok is false for the empty address and
// after an error.
func (d *metaDecoder) ip(field string) (netip.Addr, bool) {
	n := int(d.byte(field + " length"))
	if d.err != nil || n == 0 {
		return netip.Addr{}, false
	}
	if n != 4 && n != 16 {
		d.fail(fmt.Errorf("%s length %d", field, n))
		return netip.Addr{}, false
	}
	raw := d.bytes(field, n)
	if d.err != nil {
		return netip.Addr{}, false
	}
	ip, _ := netip.AddrFromSlice(raw)
	return ip, true
}

func appendText(b []byte, field, s string, max int) ([]byte, error) {
	if len(s) > max {
		return nil, fmt.Errorf("gossip: meta %s %q: %d bytes, limit %d", field, s, len(s), max)
	}
	if err := checkText(s); err != nil {
		return nil, fmt.Errorf("gossip: meta %s %q: %w", field, s, err)
	}
	b = append(b, byte(len(s)))
	return append(b, s...), nil
}

// checkText allows printable ASCII only, so metadata shown in logs and status
// can never carry control characters.
func checkText(s string) error {
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }); i >= 0 {
		return fmt.Errorf("byte %d is not printable ASCII", i)
	}
	return nil
}

func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, errors.New("not an IP address")
	}
	if ip.Zone() != "" {
		return netip.Addr{}, errors.New("zones are not supported")
	}
	return ip, nil
}

func appendIP(b []byte, ip netip.Addr) []byte {
	raw := ip.AsSlice()
	b = append(b, byte(len(raw)))
	return append(b, raw...)
}
