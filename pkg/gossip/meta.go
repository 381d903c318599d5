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
)

// Roles and raft states carried in Meta.
const (
	RoleServer = "server"
	RoleAgent  = "agent"

	RaftNone   = "none"
	RaftMember = "member"
)

// Versions of the metadata encoding (see "Wire format" in doc.go). Every
// encoded Meta starts with two bytes: the version a reader must understand
// to read it (metaNeeds when this build writes), and the version of its
// writer. A reader refuses metadata that needs a version above metaVersion
// and reads the rest, skipping the fields it does not know.
const (
	// metaVersion is the newest encoding this build reads and writes. Bump
	// it when adding a field; a field older readers may skip needs nothing
	// more.
	metaVersion = 5 // 3: the advisory bootstrap node, join slot and joined servers; 4: commands; 5: agents' RKE2 versions and upgrade report
	// metaNeeds is what this build's metadata asks of a reader. Raise it
	// only for a change an older reader must not skip: a new meaning of an
	// existing field, or a field without which a peer would be misread.
	metaNeeds = 2
	// metaOldest is the oldest encoding this build reads. Version 1 was a
	// fixed layout without tags, never released.
	metaOldest = 2
)

// Length limits of the free-form fields. They keep the worst case well inside
// memberlist's MetaMaxSize (see TestMetaWorstCaseFits).
const (
	maxPhaseLen        = 32
	maxClusterNameLen  = 63
	maxBootstrapSetLen = 32
	maxNodeNameLen     = 63 // config's node-name rule
	maxVersionLen      = 64
	caHashBytes        = 32
	// maxTimelineLen is the timeline summary's limit, the same as
	// timeline.MaxEncodedLen of the package that encodes it.
	maxTimelineLen = 96
	// maxUpgradeFailedLen is the limit of an agent's upgrade failure
	// reason, the same as the signed claims' (claims.UpgradeReport).
	maxUpgradeFailedLen = 96
)

// Enumerations on the wire.
const (
	wireRoleServer = 1
	wireRoleAgent  = 2

	wireRaftMember = 1 // RaftNone is the field left out
)

// Field tags. A tag, once released, keeps its meaning and value layout for
// ever; a new field takes the next free number. Tag 0 is never used.
const (
	tagRole          = 1
	tagPhase         = 2
	tagPhaseSince    = 3
	tagAdvertiseAddr = 4
	tagRaftAddr      = 5
	tagExpectServers = 6
	tagClusterName   = 7
	tagRaftState     = 8
	tagBootstrapSet  = 9
	tagWantJoinSlot  = 10
	tagStartedRKE2   = 11
	tagReady         = 12
	tagCAHash        = 13
	tagClusterReady  = 14
	tagVersion       = 15
	tagMAC           = 16
	tagLeaving       = 17
	tagTimeline      = 18
	// What a server's FSM holds of the cluster, for agents, which are not
	// in raft, to show.
	tagBootstrapNode = 19
	tagJoinSlot      = 20
	tagJoinedServers = 21
	tagCommands      = 22
	// Agents' own day-2 report (servers sign theirs in their claim).
	tagRKE2Wanted         = 23
	tagRKE2Running        = 24
	tagUpgradeFailed      = 25
	tagUpgradeFailedBegin = 26
	tagUpgradeFinished    = 27
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
	// Timeline is this host's recent phase transitions in the timeline
	// package's wire form (≤ 96 bytes), or nil; gossip carries it opaque.
	Timeline []byte
	// What this server's raft FSM holds, advertised for agents: the
	// bootstrap node's name, the join slot's holder ("" when free) and how
	// many servers joined (0-255).
	BootstrapNode string
	JoinSlot      string
	JoinedServers int
	// Commands is the newest raft command version this server's build
	// reads (0-255; 0: a build from before the field, which reads 1). The
	// leader acts on its membership duties only once every voter reads
	// their commands.
	Commands int

	// Agent-only fields: what an agent reports of its RKE2 version and
	// its upgrade steps (servers report theirs in their signed claim). A
	// Meta with any of them is an agent's: Encode refuses them beside
	// role server or a server-only field (serverOnly).
	RKE2Wanted         string // the version this host's config asks for, ≤64 bytes
	RKE2Running        string // the version installed/running here, ≤64 bytes
	UpgradeFailed      string // why an upgrade step failed, ≤96 bytes
	UpgradeFailedBegin int64  // the Since of the committed begin it failed under
	UpgradeFinished    int64  // the Since of the last begin it ran to the end
}

// agentOnly reports whether m has an agent-only field set.
func (m *Meta) agentOnly() bool {
	return m.RKE2Wanted != "" || m.RKE2Running != "" || m.UpgradeFailed != "" || m.UpgradeFailedBegin != 0 || m.UpgradeFinished != 0
}

// serverOnly names the first server-only field m has set ("" none): what
// only a server publishes, so an agent's worst case leaves it out.
func (m *Meta) serverOnly() string {
	switch {
	case m.RaftAddr != "":
		return "raft address"
	case m.RaftState == RaftMember:
		return "raft state"
	case m.BootstrapSet != "":
		return "bootstrap set"
	case m.WantJoinSlot:
		return "want-join-slot"
	case m.StartedRKE2:
		return "started-rke2"
	case m.CAHash != "":
		return "CA hash"
	case m.ClusterReady:
		return "cluster-ready"
	case m.BootstrapNode != "":
		return "bootstrap node"
	case m.JoinSlot != "":
		return "join slot"
	case m.JoinedServers != 0:
		return "joined servers"
	}
	return ""
}

// metaField is how one field of Meta travels: put returns its value and
// whether it is sent at all (zero values are left out, and a reader sets
// what is absent to its zero value); get checks a received value as
// strictly as put would have written it. Adding an optional field is one
// entry in metaFields and a tag above the others.
type metaField struct {
	tag  byte
	name string
	put  func(m *Meta) (value []byte, present bool, err error)
	get  func(m *Meta, value []byte) error
	// advisory fields are shown to operators and acted on by nobody: when
	// everything would not fit memberlist's limit, they are left out.
	advisory bool
}

// advisory marks f as a field Encode leaves out when the metadata would
// not fit otherwise.
func advisory(f metaField) metaField {
	f.advisory = true
	return f
}

// metaFields lists the known fields in ascending tag order, which is the
// order they are written in.
var metaFields = []metaField{
	{tag: tagRole, name: "role", put: putRole, get: getRole},
	textField(tagPhase, "phase", maxPhaseLen, func(m *Meta) *string { return &m.Phase }),
	{tag: tagPhaseSince, name: "phase-since", put: putPhaseSince, get: getPhaseSince},
	{tag: tagAdvertiseAddr, name: "advertise address", put: putAdvertiseAddr, get: getAdvertiseAddr},
	{tag: tagRaftAddr, name: "raft address", put: putRaftAddr, get: getRaftAddr},
	countField(tagExpectServers, "expect-servers", func(m *Meta) *int { return &m.ExpectServers }),
	textField(tagClusterName, "cluster name", maxClusterNameLen, func(m *Meta) *string { return &m.ClusterName }),
	{tag: tagRaftState, name: "raft state", put: putRaftState, get: getRaftState},
	textField(tagBootstrapSet, "bootstrap set", maxBootstrapSetLen, func(m *Meta) *string { return &m.BootstrapSet }),
	boolField(tagWantJoinSlot, "want-join-slot", func(m *Meta) *bool { return &m.WantJoinSlot }),
	boolField(tagStartedRKE2, "started-rke2", func(m *Meta) *bool { return &m.StartedRKE2 }),
	boolField(tagReady, "ready", func(m *Meta) *bool { return &m.Ready }),
	{tag: tagCAHash, name: "CA hash", put: putCAHash, get: getCAHash},
	boolField(tagClusterReady, "cluster-ready", func(m *Meta) *bool { return &m.ClusterReady }),
	textField(tagVersion, "version", maxVersionLen, func(m *Meta) *string { return &m.Version }),
	{tag: tagMAC, name: "MAC", put: putMAC, get: getMAC},
	boolField(tagLeaving, "leaving", func(m *Meta) *bool { return &m.Leaving }),
	// The timeline is shown and acted on by nobody: an agent's worst case
	// (its RKE2 versions and upgrade report at their longest) leaves it out.
	advisory(metaField{tag: tagTimeline, name: "timeline", put: putTimeline, get: getTimeline}),
	advisory(textField(tagBootstrapNode, "bootstrap node", maxNodeNameLen, func(m *Meta) *string { return &m.BootstrapNode })),
	advisory(textField(tagJoinSlot, "join slot", maxNodeNameLen, func(m *Meta) *string { return &m.JoinSlot })),
	advisory(countField(tagJoinedServers, "joined servers", func(m *Meta) *int { return &m.JoinedServers })),
	countField(tagCommands, "commands", func(m *Meta) *int { return &m.Commands }),
	textField(tagRKE2Wanted, "rke2 wanted", maxVersionLen, func(m *Meta) *string { return &m.RKE2Wanted }),
	textField(tagRKE2Running, "rke2 running", maxVersionLen, func(m *Meta) *string { return &m.RKE2Running }),
	textField(tagUpgradeFailed, "upgrade failed", maxUpgradeFailedLen, func(m *Meta) *string { return &m.UpgradeFailed }),
	sinceField(tagUpgradeFailedBegin, "upgrade failed begin", func(m *Meta) *int64 { return &m.UpgradeFailedBegin }),
	sinceField(tagUpgradeFinished, "upgrade finished", func(m *Meta) *int64 { return &m.UpgradeFinished }),
}

// sinceField is a positive int64 sent as 8 bytes (0 is not sent).
func sinceField(tag byte, name string, field func(*Meta) *int64) metaField {
	return metaField{
		tag:  tag,
		name: name,
		put: func(m *Meta) ([]byte, bool, error) {
			n := *field(m)
			if n < 0 {
				return nil, false, fmt.Errorf("%d: negative", n)
			}
			return binary.BigEndian.AppendUint64(nil, uint64(n)), n != 0, nil
		},
		get: func(m *Meta, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("%d bytes, want 8", len(v))
			}
			n := binary.BigEndian.Uint64(v)
			if n == 0 || n > 1<<63-1 {
				return fmt.Errorf("%d out of range", n)
			}
			*field(m) = int64(n)
			return nil
		},
	}
}

// metaFieldByTag indexes metaFields; nil for tags this build does not know.
var metaFieldByTag = func() (idx [256]*metaField) {
	last := 0
	for i := range metaFields {
		f := &metaFields[i]
		if int(f.tag) <= last {
			panic(fmt.Sprintf("gossip: meta field %s: tag %d out of order", f.name, f.tag))
		}
		last = int(f.tag)
		idx[f.tag] = f
	}
	return idx
}()

// Encode returns the wire form of m, or an error naming the first invalid
// field. The result always fits memberlist's metadata limit: when every
// field at its longest would not, the advisory fields (what a server
// advertises of its raft state for agents to show) are left out, and the
// agents show the cluster from another server or "-".
func (m Meta) Encode() ([]byte, error) {
	b, err := m.encode(true)
	if err == nil && len(b) > memberlist.MetaMaxSize {
		b, err = m.encode(false)
	}
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip: meta is %d bytes, over the limit of %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// encode writes every field of m, the advisory ones only if withAdvisory.
func (m Meta) encode(withAdvisory bool) ([]byte, error) {
	if m.agentOnly() {
		if m.Role != RoleAgent {
			return nil, fmt.Errorf("gossip: meta of role %q with an agent's RKE2 versions or upgrade report: servers report those in their signed claim", m.Role)
		}
		if f := m.serverOnly(); f != "" {
			return nil, fmt.Errorf("gossip: meta with an agent's RKE2 versions or upgrade report and a server's %s: a host is one or the other", f)
		}
	}
	b := make([]byte, 0, 192)
	b = append(b, metaNeeds, metaVersion)
	for i := range metaFields {
		f := &metaFields[i]
		if f.advisory && !withAdvisory {
			continue
		}
		v, present, err := f.put(&m)
		if err != nil {
			return nil, fmt.Errorf("gossip: meta %s %w", f.name, err)
		}
		if !present {
			continue
		}
		if len(v) > 255 {
			return nil, fmt.Errorf("gossip: meta %s: %d bytes, over 255", f.name, len(v))
		}
		b = append(b, f.tag, byte(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

// DecodeMeta parses metadata written by Encode of this or another version.
// Fields it does not know are skipped; known fields are checked as strictly
// as Encode writes them. It refuses metadata that needs a newer reader,
// input over memberlist's limit, truncated fields, tags out of ascending
// order (a repeated tag among them) and a missing role.
func DecodeMeta(buf []byte) (Meta, error) {
	var m Meta
	if len(buf) > memberlist.MetaMaxSize {
		return m, fmt.Errorf("gossip: decode meta: %d bytes, over the limit of %d", len(buf), memberlist.MetaMaxSize)
	}
	if len(buf) == 0 {
		return m, errors.New("gossip: decode meta: empty")
	}
	needs := buf[0]
	if needs > metaVersion {
		return m, fmt.Errorf("gossip: meta version %d or newer needed to read this member's metadata; this daemon reads versions %d to %d: upgrade this host", needs, metaOldest, metaVersion)
	}
	if needs < metaOldest {
		return m, fmt.Errorf("gossip: meta version %d is not read by this daemon (it reads %d to %d): upgrade the member that sent it", needs, metaOldest, metaVersion)
	}
	if len(buf) < 2 {
		return m, errors.New("gossip: decode meta: truncated in the header")
	}
	if writer := buf[1]; writer < needs {
		return m, fmt.Errorf("gossip: decode meta: writer version %d below the version %d it needs", writer, needs)
	}
	rest := buf[2:]
	last := 0
	for len(rest) > 0 {
		if len(rest) < 2 {
			return Meta{}, errors.New("gossip: decode meta: truncated in a field header")
		}
		tag, n := rest[0], int(rest[1])
		rest = rest[2:]
		f := metaFieldByTag[tag]
		switch {
		case tag == 0:
			return Meta{}, errors.New("gossip: decode meta: tag 0 is reserved")
		case int(tag) == last:
			return Meta{}, fmt.Errorf("gossip: decode meta: %s repeated", fieldName(tag))
		case int(tag) < last:
			return Meta{}, fmt.Errorf("gossip: decode meta: %s (tag %d) after tag %d: tags must ascend", fieldName(tag), tag, last)
		case len(rest) < n:
			return Meta{}, fmt.Errorf("gossip: decode meta: truncated at %s: %d of %d bytes", fieldName(tag), len(rest), n)
		}
		last = int(tag)
		value := rest[:n:n]
		rest = rest[n:]
		if f == nil {
			continue // a newer writer's field: ours to skip
		}
		if err := f.get(&m, value); err != nil {
			return Meta{}, fmt.Errorf("gossip: decode meta: %s: %w", f.name, err)
		}
	}
	if m.Role == "" {
		return Meta{}, errors.New("gossip: decode meta: role missing")
	}
	if m.agentOnly() && (m.Role != RoleAgent || m.serverOnly() != "") {
		return Meta{}, errors.New("gossip: decode meta: an agent's RKE2 versions or upgrade report beside server fields")
	}
	if m.RaftState == "" {
		m.RaftState = RaftNone
	}
	return m, nil
}

// fieldName names a tag in errors.
func fieldName(tag byte) string {
	if f := metaFieldByTag[tag]; f != nil {
		return f.name
	}
	return fmt.Sprintf("field %d", tag)
}

func textField(tag byte, name string, max int, field func(*Meta) *string) metaField {
	return metaField{
		tag:  tag,
		name: name,
		put: func(m *Meta) ([]byte, bool, error) {
			s := *field(m)
			if s == "" {
				return nil, false, nil
			}
			if err := checkText(s, max); err != nil {
				return nil, false, fmt.Errorf("%q: %w", s, err)
			}
			return []byte(s), true, nil
		},
		get: func(m *Meta, v []byte) error {
			if len(v) == 0 {
				return errors.New("empty (an empty text is left out)")
			}
			s := string(v)
			if err := checkText(s, max); err != nil {
				return err
			}
			*field(m) = s
			return nil
		},
	}
}

// boolField sends true as the tag with an empty value, false as nothing.
func boolField(tag byte, name string, field func(*Meta) *bool) metaField {
	return metaField{
		tag:  tag,
		name: name,
		put: func(m *Meta) ([]byte, bool, error) {
			return nil, *field(m), nil
		},
		get: func(m *Meta, v []byte) error {
			if len(v) != 0 {
				return fmt.Errorf("%d bytes, want none", len(v))
			}
			*field(m) = true
			return nil
		},
	}
}

func putRole(m *Meta) ([]byte, bool, error) {
	switch m.Role {
	case RoleServer:
		return []byte{wireRoleServer}, true, nil
	case RoleAgent:
		return []byte{wireRoleAgent}, true, nil
	}
	return nil, false, fmt.Errorf("%q: want %q or %q", m.Role, RoleServer, RoleAgent)
}

func getRole(m *Meta, v []byte) error {
	if len(v) != 1 {
		return fmt.Errorf("%d bytes, want 1", len(v))
	}
	switch v[0] {
	case wireRoleServer:
		m.Role = RoleServer
	case wireRoleAgent:
		m.Role = RoleAgent
	default:
		return fmt.Errorf("role %d unknown", v[0])
	}
	return nil
}

func putRaftState(m *Meta) ([]byte, bool, error) {
	switch m.RaftState {
	case RaftNone, "":
		return nil, false, nil
	case RaftMember:
		return []byte{wireRaftMember}, true, nil
	}
	return nil, false, fmt.Errorf("%q: want %q or %q", m.RaftState, RaftNone, RaftMember)
}

func getRaftState(m *Meta, v []byte) error {
	if len(v) != 1 {
		return fmt.Errorf("%d bytes, want 1", len(v))
	}
	if v[0] != wireRaftMember {
		return fmt.Errorf("raft state %d unknown", v[0])
	}
	m.RaftState = RaftMember
	return nil
}

// countField is an int field of 1-255 sent as one byte (0 is not sent).
func countField(tag byte, name string, field func(*Meta) *int) metaField {
	return metaField{
		tag:  tag,
		name: name,
		put: func(m *Meta) ([]byte, bool, error) {
			n := *field(m)
			if n < 0 || n > 255 {
				return nil, false, fmt.Errorf("%d: want 0-255", n)
			}
			return []byte{byte(n)}, n != 0, nil
		},
		get: func(m *Meta, v []byte) error {
			if len(v) != 1 || v[0] == 0 {
				return fmt.Errorf("want one byte 1-255, got %x", v)
			}
			*field(m) = int(v[0])
			return nil
		},
	}
}

// maxPhaseSince is far beyond any real clock; it keeps time arithmetic sane.
const maxPhaseSince = 1 << 40

func putPhaseSince(m *Meta) ([]byte, bool, error) {
	if m.PhaseSince.IsZero() {
		return nil, false, nil
	}
	since := m.PhaseSince.Unix()
	if since <= 0 || since > maxPhaseSince {
		return nil, false, fmt.Errorf("%s: before 1970 or too far ahead", m.PhaseSince)
	}
	return binary.BigEndian.AppendUint64(nil, uint64(since)), true, nil
}

func getPhaseSince(m *Meta, v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("%d bytes, want 8", len(v))
	}
	since := binary.BigEndian.Uint64(v)
	if since == 0 || since > maxPhaseSince {
		return fmt.Errorf("%d out of range", since)
	}
	m.PhaseSince = time.Unix(int64(since), 0).UTC()
	return nil
}

func putAdvertiseAddr(m *Meta) ([]byte, bool, error) {
	if m.AdvertiseAddr == "" {
		return nil, false, nil
	}
	ip, err := parseIP(m.AdvertiseAddr)
	if err != nil {
		return nil, false, fmt.Errorf("%q: %w", m.AdvertiseAddr, err)
	}
	return ip.AsSlice(), true, nil
}

func getAdvertiseAddr(m *Meta, v []byte) error {
	if len(v) != 4 && len(v) != 16 {
		return fmt.Errorf("%d bytes, want 4 or 16", len(v))
	}
	ip, _ := netip.AddrFromSlice(v)
	m.AdvertiseAddr = ip.String()
	return nil
}

func putRaftAddr(m *Meta) ([]byte, bool, error) {
	if m.RaftAddr == "" {
		return nil, false, nil
	}
	ap, err := netip.ParseAddrPort(m.RaftAddr)
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("%q: want IP:port", m.RaftAddr)
	case ap.Addr().Zone() != "":
		return nil, false, fmt.Errorf("%q: zones are not supported", m.RaftAddr)
	case ap.Port() == 0:
		return nil, false, fmt.Errorf("%q: port 0", m.RaftAddr)
	}
	return binary.BigEndian.AppendUint16(ap.Addr().AsSlice(), ap.Port()), true, nil
}

func getRaftAddr(m *Meta, v []byte) error {
	if len(v) != 4+2 && len(v) != 16+2 {
		return fmt.Errorf("%d bytes, want 6 or 18", len(v))
	}
	ip, _ := netip.AddrFromSlice(v[:len(v)-2])
	port := binary.BigEndian.Uint16(v[len(v)-2:])
	if port == 0 {
		return errors.New("port 0")
	}
	m.RaftAddr = netip.AddrPortFrom(ip, port).String()
	return nil
}

func putCAHash(m *Meta) ([]byte, bool, error) {
	if m.CAHash == "" {
		return nil, false, nil
	}
	raw, err := hex.DecodeString(m.CAHash)
	if err != nil || len(raw) != caHashBytes {
		return nil, false, fmt.Errorf("%q: want %d hex characters", m.CAHash, 2*caHashBytes)
	}
	return raw, true, nil
}

func getCAHash(m *Meta, v []byte) error {
	if len(v) != caHashBytes {
		return fmt.Errorf("%d bytes, want %d", len(v), caHashBytes)
	}
	m.CAHash = hex.EncodeToString(v)
	return nil
}

func putMAC(m *Meta) ([]byte, bool, error) {
	switch len(m.MAC) {
	case 0:
		return nil, false, nil
	case 6, 8, 20:
		return m.MAC, true, nil
	}
	return nil, false, fmt.Errorf("%q: want 6, 8 or 20 bytes, got %d", m.MAC, len(m.MAC))
}

func getMAC(m *Meta, v []byte) error {
	switch len(v) {
	case 6, 8, 20:
		m.MAC = net.HardwareAddr(append([]byte(nil), v...))
		return nil
	}
	return fmt.Errorf("%d bytes, want 6, 8 or 20", len(v))
}

func putTimeline(m *Meta) ([]byte, bool, error) {
	if len(m.Timeline) > maxTimelineLen {
		return nil, false, fmt.Errorf("is %d bytes, limit %d", len(m.Timeline), maxTimelineLen)
	}
	return m.Timeline, len(m.Timeline) > 0, nil
}

func getTimeline(m *Meta, v []byte) error {
	if len(v) == 0 || len(v) > maxTimelineLen {
		return fmt.Errorf("%d bytes, want 1-%d", len(v), maxTimelineLen)
	}
	m.Timeline = append([]byte(nil), v...)
	return nil
}

// checkText allows printable ASCII only, so metadata shown in logs and status
// can never carry control characters.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes, limit %d", len(s), max)
	}
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
