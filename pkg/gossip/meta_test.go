package gossip

import (
	"bytes"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func fullMeta() Meta {
	return Meta{
		Role:          RoleServer,
		Phase:         "waiting-cluster",
		PhaseSince:    time.Date(2026, 11, 26, 6, 30, 0, 0, time.UTC),
		AdvertiseAddr: "192.168.205.10",
		RaftAddr:      "192.168.205.10:9348",
		ExpectServers: 3,
		ClusterName:   "rke2",
		RaftState:     RaftMember,
		BootstrapSet:  "3f9a01c2",
		WantJoinSlot:  true,
		StartedRKE2:   true,
		Ready:         true,
		CAHash:        strings.Repeat("ab", 32),
		ClusterReady:  true,
		Version:       "v0.1.0",
		MAC:           net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
		BootstrapNode: "server-1",
		JoinSlot:      "server-3",
		JoinedServers: 2,
		Commands:      2,
	}
}

func worstCaseMeta() Meta {
	return Meta{
		Role:          RoleServer,
		Phase:         strings.Repeat("p", maxPhaseLen),
		PhaseSince:    time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		AdvertiseAddr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		RaftAddr:      "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
		ExpectServers: 255,
		ClusterName:   strings.Repeat("c", maxClusterNameLen),
		RaftState:     RaftMember,
		BootstrapSet:  strings.Repeat("b", maxBootstrapSetLen),
		WantJoinSlot:  true,
		StartedRKE2:   true,
		Ready:         true,
		CAHash:        strings.Repeat("f", 64),
		ClusterReady:  true,
		Version:       strings.Repeat("v", maxVersionLen),
		MAC:           make(net.HardwareAddr, 20),
		Leaving:       true,
		Timeline:      bytes.Repeat([]byte{0xff}, maxTimelineLen),
		BootstrapNode: strings.Repeat("n", maxNodeNameLen),
		JoinSlot:      strings.Repeat("s", maxNodeNameLen),
		JoinedServers: 255,
		Commands:      255,
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for name, m := range map[string]Meta{
		"full":       fullMeta(),
		"worst case": withoutAdvisory(worstCaseMeta()),
		"agent":      {Role: RoleAgent, RaftState: RaftNone},
		"ipv6":       {Role: RoleServer, RaftState: RaftNone, AdvertiseAddr: "fd00::1", RaftAddr: "[fd00::1]:9348"},
		"4in6":       {Role: RoleServer, RaftState: RaftNone, AdvertiseAddr: "::ffff:10.0.0.1"},
		"eui64":      {Role: RoleAgent, RaftState: RaftNone, MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := roundTrip(t, m); !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
			}
		})
	}
}

func TestMetaCanonicalForms(t *testing.T) {
	m := Meta{
		Role:       RoleAgent,
		PhaseSince: time.Date(2026, 1, 2, 3, 4, 5, 999, time.FixedZone("x", 3600)),
		CAHash:     strings.Repeat("AB", 32),
	}
	got := roundTrip(t, m)
	if got.RaftState != RaftNone {
		t.Errorf("raft state = %q, want %q for empty", got.RaftState, RaftNone)
	}
	if !got.PhaseSince.Equal(m.PhaseSince.Truncate(time.Second)) || got.PhaseSince.Location() != time.UTC {
		t.Errorf("phase since = %v", got.PhaseSince)
	}
	if got.CAHash != strings.Repeat("ab", 32) {
		t.Errorf("CA hash = %q, want lower case", got.CAHash)
	}
}

func withoutAdvisory(m Meta) Meta {
	m.BootstrapNode, m.JoinSlot, m.JoinedServers, m.Timeline = "", "", 0, nil
	return m
}

// TestMetaAdvisoryFieldsMakeRoom: metadata with every field at its longest
// still encodes; what is left out to fit is the advisory fields only (what
// a server shows agents of its raft state), never a field the leader or
// the phase machine acts on.
func TestMetaAdvisoryFieldsMakeRoom(t *testing.T) {
	full := worstCaseMeta()
	got := roundTrip(t, full)
	if want := withoutAdvisory(full); !reflect.DeepEqual(got, want) {
		t.Fatalf("worst case read back as\n%+v\nwant every field but the advisory ones\n%+v", got, want)
	}
	roomy := full
	roomy.Version, roomy.Timeline = "v1.0.0", nil
	if got := roundTrip(t, roomy); !reflect.DeepEqual(got, roomy) {
		t.Fatalf("with room to spare the advisory fields were dropped:\n got %+v\nwant %+v", got, roomy)
	}
}

// worstCaseAgentMeta is an agent's Meta at its longest: the server worst
// case without the server-only fields, with the agent-only ones.
func worstCaseAgentMeta() Meta {
	m := worstCaseMeta()
	m.Role = RoleAgent
	m.RaftAddr, m.RaftState, m.BootstrapSet, m.WantJoinSlot, m.StartedRKE2 = "", RaftNone, "", false, false
	m.CAHash, m.ClusterReady, m.BootstrapNode, m.JoinSlot, m.JoinedServers = "", false, "", "", 0
	m.RKE2Wanted = strings.Repeat("w", maxVersionLen)
	m.RKE2Running = strings.Repeat("r", maxVersionLen)
	m.UpgradeFailed = strings.Repeat("f", maxUpgradeFailedLen)
	m.UpgradeFailedBegin, m.UpgradeFinished = 1<<63-1, 1<<63-1
	return m
}

func TestMetaWorstCaseFits(t *testing.T) {
	for role, m := range map[string]Meta{RoleServer: worstCaseMeta(), RoleAgent: worstCaseAgentMeta()} {
		t.Run(role, func(t *testing.T) {
			all, err := m.encode(true)
			if err != nil {
				t.Fatal(err)
			}
			essential, err := m.encode(false)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("worst case %d bytes (%d without the advisory fields), typical %d bytes", len(all), len(essential), len(mustEncode(t, fullMeta())))
			if len(essential) > memberlist.MetaMaxSize {
				t.Fatalf("the worst case without advisory fields is %d bytes, over %d", len(essential), memberlist.MetaMaxSize)
			}
			want := m
			if len(all) > memberlist.MetaMaxSize {
				want = withoutAdvisory(m)
			}
			if got := roundTrip(t, m); !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestMetaAgentOnlyFields: an agent's versions and upgrade report travel
// in its Meta; a server's never do (they are in its signed claim).
func TestMetaAgentOnlyFields(t *testing.T) {
	agent := Meta{Role: RoleAgent, RaftState: RaftNone, Ready: true, Commands: 2, RKE2Wanted: "v1.31.4+rke2r1",
		RKE2Running: "v1.30.8+rke2r1", UpgradeFailed: "drain: timed out", UpgradeFailedBegin: 1772366400, UpgradeFinished: 1772360000}
	if got := roundTrip(t, agent); !reflect.DeepEqual(got, agent) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, agent)
	}
	for name, f := range map[string]func(*Meta){
		"role server":  func(m *Meta) { m.Role = RoleServer },
		"raft address": func(m *Meta) { m.RaftAddr = "10.0.0.1:9348" },
		"CA hash":      func(m *Meta) { m.CAHash = strings.Repeat("ab", 32) },
		"join slot":    func(m *Meta) { m.WantJoinSlot = true },
	} {
		m := agent
		f(&m)
		if _, err := m.Encode(); err == nil {
			t.Errorf("%s beside agent-only fields: encoded", name)
		}
		// and a reader refuses such metadata from a hand-made writer
		m.RKE2Wanted, m.RKE2Running, m.UpgradeFailed, m.UpgradeFailedBegin, m.UpgradeFinished = "", "", "", 0, 0
		wire := mustEncode(t, m)
		wire = append(wire, tagRKE2Wanted, 2, 'v', '1')
		if _, err := DecodeMeta(wire); err == nil {
			t.Errorf("%s beside agent-only fields: decoded", name)
		}
	}
	if _, err := (Meta{Role: RoleAgent, UpgradeFinished: -1}).Encode(); err == nil {
		t.Error("a negative upgrade begin encoded")
	}
}

func roundTrip(t *testing.T, m Meta) Meta {
	t.Helper()
	got, err := DecodeMeta(mustEncode(t, m))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func mustEncode(t *testing.T, m Meta) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMetaEncodeRejects(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Meta)
		wantErr string
	}{
		{"no role", func(m *Meta) { m.Role = "" }, `meta role "": want "server" or "agent"`},
		{"bad role", func(m *Meta) { m.Role = "master" }, `meta role "master"`},
		{"raft state", func(m *Meta) { m.RaftState = "leader" }, `meta raft state "leader"`},
		{"expect negative", func(m *Meta) { m.ExpectServers = -1 }, "expect-servers -1: want 0-255"},
		{"expect large", func(m *Meta) { m.ExpectServers = 256 }, "expect-servers 256"},
		{"phase long", func(m *Meta) { m.Phase = strings.Repeat("x", 33) }, "meta phase"},
		{"phase control", func(m *Meta) { m.Phase = "ready\n" }, "not printable ASCII"},
		{"phase utf8", func(m *Meta) { m.Phase = "bereit✓" }, "not printable ASCII"},
		{"cluster long", func(m *Meta) { m.ClusterName = strings.Repeat("c", 64) }, "meta cluster name"},
		{"bootstrap long", func(m *Meta) { m.BootstrapSet = strings.Repeat("b", 33) }, "meta bootstrap set"},
		{"version long", func(m *Meta) { m.Version = strings.Repeat("v", 65) }, "meta version"},
		{"advertise name", func(m *Meta) { m.AdvertiseAddr = "host1" }, `advertise address "host1": not an IP address`},
		{"advertise zone", func(m *Meta) { m.AdvertiseAddr = "fe80::1%eth0" }, "zones are not supported"},
		{"raft no port", func(m *Meta) { m.RaftAddr = "10.0.0.1" }, `raft address "10.0.0.1": want IP:port`},
		{"raft host name", func(m *Meta) { m.RaftAddr = "host1:9348" }, "want IP:port"},
		{"raft port 0", func(m *Meta) { m.RaftAddr = "10.0.0.1:0" }, "port 0"},
		{"CA short", func(m *Meta) { m.CAHash = "abcd" }, "want 64 hex characters"},
		{"CA not hex", func(m *Meta) { m.CAHash = strings.Repeat("zz", 32) }, "want 64 hex characters"},
		{"MAC odd", func(m *Meta) { m.MAC = net.HardwareAddr{1, 2, 3} }, "want 6, 8 or 20 bytes, got 3"},
		{"timeline long", func(m *Meta) { m.Timeline = make([]byte, 97) }, "meta timeline is 97 bytes, limit 96"},
		{"before 1970", func(m *Meta) { m.PhaseSince = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }, "before 1970"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fullMeta()
			tt.change(&m)
			_, err := m.Encode()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// tlv is one field on the wire, for building metadata by hand.
type tlv struct {
	tag   byte
	value []byte
}

func wire(needs, writer byte, fields ...tlv) []byte {
	b := []byte{needs, writer}
	for _, f := range fields {
		b = append(b, f.tag, byte(len(f.value)))
		b = append(b, f.value...)
	}
	return b
}

// splitFields is the inverse of wire for well-formed input.
func splitFields(t *testing.T, b []byte) []tlv {
	t.Helper()
	var fields []tlv
	for rest := b[2:]; len(rest) > 0; {
		n := int(rest[1])
		fields = append(fields, tlv{rest[0], rest[2 : 2+n]})
		rest = rest[2+n:]
	}
	return fields
}

var agentRole = tlv{tagRole, []byte{wireRoleAgent}}

// TestDecodeMetaFutureFields: a newer writer's metadata, with fields this
// build does not know, reads as its known fields: a member of a newer
// version never drops out of an older one's view.
func TestDecodeMetaFutureFields(t *testing.T) {
	want := fullMeta()
	future := append(splitFields(t, mustEncode(t, want)),
		tlv{tagUpgradeFinished + 1, nil},
		tlv{tagUpgradeFinished + 2, []byte{0xff}},
		tlv{200, bytes.Repeat([]byte{0}, 255)},
		tlv{255, []byte("a timeline summary of a newer daemon")},
	)
	in := wire(metaNeeds, metaVersion+3, future...)
	if len(in) > memberlist.MetaMaxSize {
		t.Fatalf("test input is %d bytes", len(in))
	}
	got, err := DecodeMeta(in)
	if err != nil {
		t.Fatalf("newer writer's metadata refused: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("known fields:\n got %+v\nwant %+v", got, want)
	}

	// Fewer fields than we know (an older writer, or zero values left out)
	// read as zero values.
	got, err = DecodeMeta(wire(metaOldest, metaOldest, agentRole))
	if err != nil || !reflect.DeepEqual(got, Meta{Role: RoleAgent, RaftState: RaftNone}) {
		t.Fatalf("minimal meta: %+v, %v", got, err)
	}
}

func TestDecodeMetaVersions(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string // "" for success
	}{
		{"ours", wire(metaNeeds, metaVersion, agentRole), ""},
		{"older writer", wire(metaNeeds, metaVersion-1, agentRole), ""},
		{"newer writer, needs ours", wire(metaVersion, metaVersion+1, agentRole), ""},
		{"needs a newer reader", wire(metaVersion+1, metaVersion+1, agentRole), "meta version 6 or newer needed to read this member's metadata; this daemon reads versions 2 to 5: upgrade this host"},
		{"needs 255", []byte{255}, "meta version 255 or newer needed"},
		{"version 1 layout", wire(1, 1, agentRole), "meta version 1 is not read by this daemon"},
		{"version 0", wire(0, 2, agentRole), "meta version 0 is not read"},
		{"writer below what it needs", wire(metaVersion, metaVersion-1, agentRole), "writer version 4 below the version 5 it needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMeta(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	good := mustEncode(t, fullMeta())
	h := func(f ...tlv) []byte { return wire(metaNeeds, metaVersion, f...) }
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "decode meta: empty"},
		{"header cut", []byte{metaNeeds}, "truncated in the header"},
		{"no role", h(), "role missing"},
		{"field header cut", append(h(agentRole), tagPhase), "truncated in a field header"},
		{"value cut", append(h(agentRole), tagPhase, 5, 'a', 'b'), "truncated at phase: 2 of 5 bytes"},
		{"tag 0", h(tlv{0, nil}, agentRole), "tag 0 is reserved"},
		{"repeated tag", h(agentRole, agentRole), "role repeated"},
		{"repeated unknown tag", h(agentRole, tlv{99, nil}, tlv{99, nil}), "field 99 repeated"},
		{"tags descend", h(agentRole, tlv{tagVersion, []byte("v1")}, tlv{tagPhase, []byte("ready")}), "phase (tag 2) after tag 15: tags must ascend"},
		{"role 0", h(tlv{tagRole, []byte{0}}), "role 0 unknown"},
		{"role 3", h(tlv{tagRole, []byte{3}}), "role 3 unknown"},
		{"role two bytes", h(tlv{tagRole, []byte{1, 1}}), "role: 2 bytes, want 1"},
		{"raft state 0", h(agentRole, tlv{tagRaftState, []byte{0}}), "raft state 0 unknown"},
		{"raft state 2", h(agentRole, tlv{tagRaftState, []byte{2}}), "raft state 2 unknown"},
		{"expect 0", h(agentRole, tlv{tagExpectServers, []byte{0}}), "expect-servers: want one byte 1-255"},
		{"phase empty", h(agentRole, tlv{tagPhase, nil}), "phase: empty"},
		{"phase too long", h(agentRole, tlv{tagPhase, bytes.Repeat([]byte("p"), 33)}), "phase: 33 bytes, limit 32"},
		{"phase control char", h(agentRole, tlv{tagPhase, []byte("\nready")}), "phase: byte 0 is not printable ASCII"},
		{"version utf8", h(agentRole, tlv{tagVersion, []byte("v1✓")}), "version: byte 2 is not printable ASCII"},
		{"bool with a value", h(agentRole, tlv{tagReady, []byte{1}}), "ready: 1 bytes, want none"},
		{"phase-since zero", h(agentRole, tlv{tagPhaseSince, make([]byte, 8)}), "phase-since: 0 out of range"},
		{"phase-since huge", h(agentRole, tlv{tagPhaseSince, bytes.Repeat([]byte{0xff}, 8)}), "phase-since: 18446744073709551615 out of range"},
		{"phase-since short", h(agentRole, tlv{tagPhaseSince, []byte{1}}), "phase-since: 1 bytes, want 8"},
		{"address 5 bytes", h(agentRole, tlv{tagAdvertiseAddr, []byte{1, 2, 3, 4, 5}}), "advertise address: 5 bytes, want 4 or 16"},
		{"raft address 4 bytes", h(agentRole, tlv{tagRaftAddr, []byte{10, 0, 0, 1}}), "raft address: 4 bytes, want 6 or 18"},
		{"raft port 0", h(agentRole, tlv{tagRaftAddr, []byte{10, 0, 0, 1, 0, 0}}), "raft address: port 0"},
		{"CA 31 bytes", h(agentRole, tlv{tagCAHash, make([]byte, 31)}), "CA hash: 31 bytes, want 32"},
		{"MAC 7 bytes", h(agentRole, tlv{tagMAC, make([]byte, 7)}), "MAC: 7 bytes, want 6, 8 or 20"},
		{"timeline empty", h(agentRole, tlv{tagTimeline, nil}), "timeline: 0 bytes, want 1-96"},
		{"timeline 97 bytes", h(agentRole, tlv{tagTimeline, make([]byte, 97)}), "timeline: 97 bytes, want 1-96"},
		{"bootstrap node empty", h(agentRole, tlv{tagBootstrapNode, nil}), "bootstrap node: empty"},
		{"join slot 64 bytes", h(agentRole, tlv{tagJoinSlot, bytes.Repeat([]byte("s"), 64)}), "join slot"},
		{"joined servers 0", h(agentRole, tlv{tagJoinedServers, []byte{0}}), "joined servers: want one byte 1-255"},
		{"joined servers 2 bytes", h(agentRole, tlv{tagJoinedServers, []byte{1, 2}}), "joined servers: want one byte 1-255"},
		{"over the size limit", h(agentRole, tlv{200, make([]byte, 255)}, tlv{201, make([]byte, 255)}), "over the limit of 512"},
	}
	// Every cut inside a field is refused (a cut between fields is shorter,
	// well-formed metadata).
	for cut, rest := 2, good[2:]; len(rest) > 0; {
		n := 2 + int(rest[1])
		for i := 1; i < n; i++ {
			tests = append(tests, struct {
				name    string
				in      []byte
				wantErr string
			}{"cut", good[:cut+i], "truncated"})
		}
		cut, rest = cut+n, rest[n:]
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMeta(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("len %d: err = %v, want it to contain %q", len(tt.in), err, tt.wantErr)
			}
			if !reflect.DeepEqual(m, Meta{}) {
				t.Fatalf("a failed decode returned %+v", m)
			}
		})
	}
}

// knownOnly is the input with unknown fields removed and this build's
// header: what a re-encoding of its decoded form must be.
func knownOnly(in []byte) []byte {
	out := []byte{metaNeeds, metaVersion}
	for rest := in[2:]; len(rest) >= 2; {
		n := 2 + int(rest[1])
		if metaFieldByTag[rest[0]] != nil {
			out = append(out, rest[:n]...)
		}
		rest = rest[n:]
	}
	return out
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{fullMeta(), worstCaseMeta(), {Role: RoleAgent}} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append(b, 99, 2, 'h', 'i'))
	}
	f.Add([]byte{})
	f.Add([]byte{metaVersion})
	f.Add(wire(metaVersion, metaVersion+1, tlv{tagRole, []byte{1}}, tlv{tagRole + 1, []byte("x")}, tlv{240, nil}))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeMeta(in)
		if err != nil {
			return
		}
		// Whatever decodes encodes again, to the known fields of the input
		// byte for byte: each value has one form on the wire.
		out, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		if want := knownOnly(in); !bytes.Equal(out, want) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x\nwant %x", in, out, want)
		}
		if len(in) > memberlist.MetaMaxSize {
			t.Fatalf("accepted %d bytes", len(in))
		}
	})
}

// TestNewerMemberStaysInView: a member whose metadata carries fields of a
// newer version is counted alive with its known fields; one whose metadata
// needs a newer reader is listed with a MetaErr that says to upgrade.
func TestNewerMemberStaysInView(t *testing.T) {
	m, err := newMember(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	d := &delegate{m: m}
	known := Meta{Role: RoleServer, Phase: "ready", RaftAddr: "10.0.0.2:9348", RaftState: RaftMember}
	fields := append(splitFields(t, mustEncode(t, known)), tlv{tagUpgradeFinished + 5, []byte("field of a newer daemon")})
	d.NotifyJoin(&memberlist.Node{Name: "newer", Addr: net.IPv4(10, 0, 0, 2), Port: 9347, Meta: wire(metaNeeds, metaVersion+1, fields...)})
	d.NotifyJoin(&memberlist.Node{Name: "far-newer", Addr: net.IPv4(10, 0, 0, 3), Port: 9347, Meta: wire(metaVersion+1, metaVersion+1, fields...)})
	for _, mi := range m.Members() {
		switch mi.Name {
		case "newer":
			if mi.MetaErr != nil || !reflect.DeepEqual(mi.Meta, known) {
				t.Errorf("newer member: meta %+v, err %v; want %+v", mi.Meta, mi.MetaErr, known)
			}
		case "far-newer":
			if mi.MetaErr == nil || !strings.Contains(mi.MetaErr.Error(), "upgrade this host") {
				t.Errorf("member needing a newer reader: err %v", mi.MetaErr)
			}
		}
	}
	if n := m.NumAlive(RoleServer); n != 1 {
		t.Errorf("NumAlive(server) = %d, want the newer member counted", n)
	}
}

// BenchmarkMetaCodec: every metadata change of every member is decoded by
// every other member, so decoding stays cheap.
func BenchmarkMetaCodec(b *testing.B) {
	m := worstCaseMeta()
	wire, err := m.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Encode(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeMeta(wire); err != nil {
				b.Fatal(err)
			}
		}
	})
}
