package gossip

import (
	"bytes"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/rke2-hanode/rke2-hanode/pkg/timeline"
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
		Timeline:      bytes.Repeat([]byte{0xff}, timeline.MaxEncodedLen),
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for name, m := range map[string]Meta{
		"full":       fullMeta(),
		"worst case": worstCaseMeta(),
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

func TestMetaWorstCaseFits(t *testing.T) {
	wire, err := worstCaseMeta().Encode()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst case %d bytes, typical %d bytes", len(wire), len(mustEncode(t, fullMeta())))
	if len(wire) > memberlist.MetaMaxSize {
		t.Fatalf("worst case is %d bytes, over %d", len(wire), memberlist.MetaMaxSize)
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

func TestDecodeMetaRejects(t *testing.T) {
	good := mustEncode(t, fullMeta())
	with := func(i int, b byte) []byte {
		out := bytes.Clone(good)
		out[i] = b
		return out
	}
	// Offsets of the fixed header: version, role, flags, raft state,
	// expect-servers, 8 bytes of phase-since, then the phase length.
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "truncated at version"},
		{"version 0", with(0, 0), "meta version 0"},
		{"version 2", with(0, 2), "meta version 2"},
		{"role 0", with(1, 0), "role 0 unknown"},
		{"role 3", with(1, 3), "role 3 unknown"},
		{"unknown flag", with(2, 0x80), "unknown flags 0x80"},
		{"raft state 2", with(3, 2), "raft state 2 unknown"},
		{"phase too long", with(13, 200), "phase is 200 bytes, limit 32"},
		{"phase control char", with(14, '\n'), "phase: byte 0 is not printable ASCII"},
		{"trailing byte", append(bytes.Clone(good), 1, 7, 0), "1 trailing bytes"}, // after a 1-byte timeline
		{"phase-since huge", append(append(bytes.Clone(good[:5]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), good[13:]...), "phase-since"},
	}
	for cut := 1; cut < len(good); cut++ {
		tests = append(tests, struct {
			name    string
			in      []byte
			wantErr string
		}{"truncated", good[:cut], "truncated at"})
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

func TestDecodeMetaRejectsBadLengths(t *testing.T) {
	// Build the variable tail by hand: all texts empty, then the address,
	// raft address, CA hash and MAC length bytes.
	head := []byte{metaVersion, wireRoleAgent, 0, wireRaftNone, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	tests := []struct {
		name    string
		tail    []byte
		wantErr string
	}{
		{"address length 5", []byte{5, 1, 2, 3, 4, 5, 0, 0, 0}, "advertise address length 5"},
		{"raft port 0", []byte{0, 4, 10, 0, 0, 1, 0, 0, 0, 0}, "raft port 0"},
		{"CA length 31", append([]byte{0, 0, 31}, make([]byte, 31)...), "CA hash length 31"},
		{"MAC length 7", []byte{0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7}, "MAC length 7"},
		{"MAC short", []byte{0, 0, 0, 6, 1, 2}, "truncated at MAC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMeta(append(bytes.Clone(head), tt.tail...))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := DecodeMeta(append(bytes.Clone(head), 0, 0, 0, 0)); err != nil {
		t.Fatalf("minimal meta: %v", err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{fullMeta(), worstCaseMeta(), {Role: RoleAgent}} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{metaVersion})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeMeta(in)
		if err != nil {
			return
		}
		// Whatever decodes must encode again, to the same bytes modulo
		// nothing: the layout has one form per value.
		out, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
		if len(out) > memberlist.MetaMaxSize {
			t.Fatalf("decoded meta is %d bytes", len(out))
		}
	})
}

// The timeline is optional and last: absent it costs nothing, present it is
// bounded, and a length the encoder would never write is refused.
func TestMetaTimelineField(t *testing.T) {
	m := fullMeta()
	without := mustEncode(t, m)
	m.Timeline = []byte{1, 2, 3}
	with := mustEncode(t, m)
	if len(with) != len(without)+4 || !bytes.Equal(with[:len(without)], without) {
		t.Fatalf("timeline adds %d bytes, want a length byte and the 3 bytes at the end", len(with)-len(without))
	}
	if got := roundTrip(t, m); !bytes.Equal(got.Timeline, m.Timeline) {
		t.Fatalf("timeline round trip: got %v", got.Timeline)
	}
	m.Timeline = make([]byte, timeline.MaxEncodedLen+1)
	if _, err := m.Encode(); err == nil || !strings.Contains(err.Error(), "timeline is 97 bytes") {
		t.Errorf("oversized timeline: err = %v", err)
	}
	for _, tail := range [][]byte{{0}, {byte(timeline.MaxEncodedLen + 1)}, {5, 1, 2}} {
		if _, err := DecodeMeta(append(append([]byte{}, without...), tail...)); err == nil {
			t.Errorf("decode with timeline bytes %v: accepted", tail)
		}
	}
}
