package election

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// readyState is a state with every field set, as the log can produce it.
func readyState() ClusterState {
	return ClusterState{
		Bootstrap:    "a",
		Reassigned:   1,
		Started:      true,
		ClusterReady: &ClusterReady{VIP: "192.0.2.1", CAHash: "sha256:c"},
		Slot:         &JoinSlot{Holder: "c", Granted: time.Unix(0, 10).UTC(), Expires: time.Unix(0, 20).UTC()},
		Joined:       []string{"b", "d"},
	}
}

func TestSnapshotRoundTripAndFutureFields(t *testing.T) {
	want := readyState()
	b, err := encodeSnapshot(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSnapshot(b)
	if err != nil || !statesEqual(got, want) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// A newer writer that can be read by version 1 adds fields at both
	// levels: they are skipped, the known ones kept.
	future := strings.Replace(string(b), `{"v":1,`, `{"v":5,"needs":1,"timeline":[{"at":1}],`, 1)
	future = strings.Replace(future, `"bootstrap":"a",`, `"bootstrap":"a","evicted":["x"],`, 1)
	if future == string(b) || !strings.Contains(future, "evicted") {
		t.Fatalf("test did not change the snapshot: %s", b)
	}
	got, err = decodeSnapshot([]byte(future))
	if err != nil || !statesEqual(got, want) {
		t.Fatalf("newer snapshot: %+v, %v", got, err)
	}
}

func TestRestoreRejects(t *testing.T) {
	tests := []struct{ name, in, wantErr string }{
		{"needs a newer reader", `{"v":6,"state":{}}`, "snapshot needs version 6, this build reads up to 5: upgrade this server"},
		{"a recovery below version 3", `{"v":2,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"10.0.0.200","ca_hash":"ab"},"recovery":{"epoch":1,"node":"a","at":"2026-01-01T00:00:00Z"}}}`, "a recovery in a snapshot below version 3"},
		{"no version", `{"state":{}}`, "snapshot version 0"},
		{"trailing", `{"v":1,"state":{}} {}`, "trailing data"},
		{"repeated key", `{"v":1,"state":{"bootstrap":"a","bootstrap":"b"}}`, `key "bootstrap" repeated`},
		{"key case", `{"v":1,"State":{}}`, `key "State"`},
		{"wrong type", `{"v":1,"state":{"started":"yes"}}`, "cannot unmarshal"},
		{"not an object", `[1]`, "cannot unmarshal"},
		{"empty", ``, "EOF"},
		{"control char", `{"v":1,"state":{"bootstrap":"a\u001b[2J"}}`, "non-printable"},
		{"long name", `{"v":1,"state":{"bootstrap":"` + strings.Repeat("a", 254) + `"}}`, "longer than 253"},
		{"negative reassigned", `{"v":1,"state":{"bootstrap":"a","reassigned":-1}}`, "reassigned -1 is negative"},
		{"started without bootstrap", `{"v":1,"state":{"started":true}}`, "started without a bootstrap node"},
		{"ready before started", `{"v":1,"state":{"bootstrap":"a","cluster_ready":{"vip":"v","ca_hash":"c"}}}`, "cluster ready before started"},
		{"ready without CA", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":""}}}`, "without its VIP or CA hash"},
		{"slot before ready", `{"v":1,"state":{"bootstrap":"a","started":true,"slot":{"holder":"b","granted":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z"}}}`, "join slot before cluster ready"},
		{"slot held by the bootstrap", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"slot":{"holder":"a","granted":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z"}}}`, "already in the cluster"},
		{"slot expires first", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"slot":{"holder":"b","granted":"2026-01-01T00:01:00Z","expires":"2026-01-01T00:00:00Z"}}}`, "out of range or order"},
		{"slot before 1970", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"slot":{"holder":"b","granted":"1960-01-01T00:00:00Z","expires":"2026-01-01T00:00:00Z"}}}`, "out of range or order"},
		{"slot after 2262", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"slot":{"holder":"b","granted":"2026-01-01T00:00:00Z","expires":"2300-01-01T00:00:00Z"}}}`, "out of range or order"},
		{"joined before ready", `{"v":1,"state":{"bootstrap":"a","started":true,"joined":["b"]}}`, "joined servers before cluster ready"},
		{"joined unsorted", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"joined":["c","b"]}}`, "not sorted or repeated"},
		{"joined twice", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"joined":["b","b"]}}`, "not sorted or repeated"},
		{"joined bootstrap", `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"joined":["a"]}}`, `joined server "a"`},
		{"oversized", `{"v":1,"pad":"` + strings.Repeat("x", maxSnapshotBytes) + `","state":{}}`, "snapshot over 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fsm{state: readyState()}
			err := f.Restore(io.NopCloser(strings.NewReader(tc.in)))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Restore = %v, want it to contain %q", err, tc.wantErr)
			}
			if !statesEqual(f.get(), readyState()) {
				t.Fatalf("a refused snapshot changed the state to %+v", f.get())
			}
		})
	}
}

// FuzzRestore: a snapshot is network input. Whatever Restore accepts is a
// state the log could have produced (it snapshots again and restores to
// the same state), and every command applies to it deterministically.
func FuzzRestore(f *testing.F) {
	for _, s := range []ClusterState{{}, {Bootstrap: "a"}, readyState()} {
		b, err := encodeSnapshot(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":3,"needs":1,"x":{"y":[1,2,{"z":null}]},"state":{"bootstrap":"a","new":1}}`))
	f.Add([]byte(`{"v":1,"state":{"bootstrap":"a","bootstrap":"b"}}`))
	f.Add([]byte(`{"v":1,"state":{"bootstrap":"a","upgrade":{"target":"v1.37.1+rke2r1","paused":true,"hosts":[{"name":"s1","role":"server","state":"failed","since":1,"reason":"r"}]}}}`))
	f.Add([]byte(`{"v":1,"state":{"upgrade":{"hosts":[{"name":"s1","role":"server","state":"upgrading","since":1}]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g := &fsm{}
		if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			return
		}
		s := g.get()
		again, err := encodeSnapshot(s)
		if err != nil {
			t.Fatalf("restored %+v does not snapshot: %v", s, err)
		}
		s2, err := decodeSnapshot(again)
		if err != nil || !statesEqual(s, s2) {
			t.Fatalf("restored %+v snapshots to %s: %+v, %v", s, again, s2, err)
		}
		for _, c := range []Command{
			{Op: opClaim, Node: "z", At: 1},
			{Op: opStarted, Node: s.Bootstrap, At: 1},
			{Op: opReady, VIP: "v", CAHash: "c", At: 1},
			{Op: opGrant, Node: "z", At: 1, Expires: 2},
			{Op: opJoined, Node: "z", At: 1},
		} {
			if c.validate() != nil {
				continue // apply is only ever given valid commands
			}
			next, err := s.apply(c)
			if err != nil {
				continue
			}
			if err := next.validate(); err != nil {
				t.Fatalf("%+v applied to restored %+v gives an invalid state: %v", c, s, err)
			}
		}
	})
}

func TestSnapshotRefusesAnInvalidState(t *testing.T) {
	f := &fsm{state: ClusterState{Started: true}}
	if _, err := f.Snapshot(); err == nil || !strings.Contains(err.Error(), "started without a bootstrap node") {
		t.Fatalf("Snapshot = %v", err)
	}
}

// TestApplyKeepsStatesValid: every state the transitions test reaches from
// valid states is valid, so validate refuses nothing the log produces.
func TestApplyKeepsStatesValid(t *testing.T) {
	states := []ClusterState{{}}
	cmds := []Command{
		{Op: opClaim, Node: "a", At: 1},
		{Op: opReassign, From: "a", Node: "b", At: 2},
		{Op: opStarted, Node: "b", At: 3},
		{Op: opStarted, Node: "a", At: 3},
		{Op: opReady, VIP: "v", CAHash: "c", At: 4},
		{Op: opGrant, Node: "c", At: 5, Expires: 50},
		{Op: opGrant, Node: "a", At: 5, Expires: 50},
		{Op: opRenew, Node: "c", At: 6, Expires: 60},
		{Op: opFree, Node: "c", At: 70},
		{Op: opJoined, Node: "c", At: 7},
	}
	seen := 0
	for depth := 0; depth < 6; depth++ {
		var next []ClusterState
		for _, s := range states {
			for _, c := range cmds {
				n, err := s.apply(c)
				if err != nil {
					continue
				}
				if err := n.validate(); err != nil {
					t.Fatalf("%+v after %+v: %v", c, s, err)
				}
				next = append(next, n)
				seen++
			}
		}
		states = next
	}
	t.Logf("%d reachable states checked", seen)
}

func TestFormationLockEncoding(t *testing.T) {
	want := &formationLock{Hash: "0123456789abcdef", Members: []member{{"a", "10.0.0.1:9348"}, {"b", "10.0.0.2:9348"}}}
	b, err := encodeLock(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"v":1,`) {
		t.Fatalf("lock carries no version: %s", b)
	}
	for name, in := range map[string]string{
		"ours":                    string(b),
		"written before versions": `{"hash":"0123456789abcdef","members":[{"name":"a","addr":"10.0.0.1:9348"},{"name":"b","addr":"10.0.0.2:9348"}]}`,
		"newer, readable":         `{"v":2,"needs":1,"at":"x","hash":"0123456789abcdef","members":[{"name":"a","addr":"10.0.0.1:9348","id":7},{"name":"b","addr":"10.0.0.2:9348"}]}`,
	} {
		got, err := decodeLock([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Hash != want.Hash || len(got.Members) != 2 || got.Members[0] != want.Members[0] || got.Members[1] != want.Members[1] {
			t.Fatalf("%s: %+v", name, got)
		}
	}
	for _, tc := range []struct{ name, in, wantErr string }{
		{"needs newer", `{"v":2,"hash":"0123456789abcdef","members":[{"name":"a","addr":"x"}]}`, "formation lock needs version 2, this build reads up to 1"},
		{"empty hash", `{"v":1,"hash":"","members":[{"name":"a","addr":"x"}]}`, `hash "": want 16 lower-case hex`},
		{"upper-case hash", `{"v":1,"hash":"0123456789ABCDEF","members":[{"name":"a","addr":"x"}]}`, "want 16 lower-case hex"},
		{"no members", `{"v":1,"hash":"0123456789abcdef","members":[]}`, "no members"},
		{"member without address", `{"v":1,"hash":"0123456789abcdef","members":[{"name":"a"}]}`, "member 0 has no name or no address"},
		{"member repeated", `{"v":1,"hash":"0123456789abcdef","members":[{"name":"a","addr":"x"},{"name":"a","addr":"y"}]}`, "member a repeated"},
		{"control char", `{"v":1,"hash":"0123456789abcdef","members":[{"name":"a\n","addr":"x"}]}`, "non-printable"},
		{"repeated key", `{"v":1,"hash":"0123456789abcdef","hash":"0123456789abcdee","members":[{"name":"a","addr":"x"}]}`, `key "hash" repeated`},
		{"not json", `locked`, "formation lock"},
	} {
		if _, err := decodeLock([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestStoreLockRoundTrip(t *testing.T) {
	store := raft.NewInmemStore()
	if l, err := loadLock(store); err != nil || l != nil {
		t.Fatalf("empty store: %+v, %v", l, err)
	}
	want := &formationLock{Hash: "fedcba9876543210", Members: []member{{"s1", "s1"}}}
	if err := storeLock(store, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadLock(store)
	if err != nil || got.Hash != want.Hash || len(got.Members) != 1 || got.Members[0] != want.Members[0] {
		t.Fatalf("loadLock = %+v, %v", got, err)
	}
	if err := storeLock(store, &formationLock{Hash: "x"}); err == nil {
		t.Fatal("an invalid lock was stored")
	}
}

// FuzzDecodeLock: the lock is read from disk at every start. Whatever
// decodes encodes again and decodes to the same lock.
func FuzzDecodeLock(f *testing.F) {
	f.Add([]byte(`{"v":1,"hash":"0123456789abcdef","members":[{"name":"a","addr":"10.0.0.1:9348"}]}`))
	f.Add([]byte(`{"hash":"0123456789abcdef","members":[{"name":"a","addr":"a"},{"name":"b","addr":"b"}]}`))
	f.Add([]byte(`{"v":2,"needs":1,"x":[{}],"hash":"0123456789abcdef","members":[{"name":"a","addr":"a","y":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeLock(b)
		if err != nil {
			if l != nil {
				t.Fatalf("error %v with a lock %+v", err, l)
			}
			return
		}
		enc, err := encodeLock(l)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", l, err)
		}
		l2, err := decodeLock(enc)
		if err != nil || l2.Hash != l.Hash || len(l2.Members) != len(l.Members) {
			t.Fatalf("round trip of %s: %+v, %v", b, l2, err)
		}
		for i := range l.Members {
			if l.Members[i] != l2.Members[i] {
				t.Fatalf("round trip of %s: member %d %+v != %+v", b, i, l2.Members[i], l.Members[i])
			}
		}
	})
}
