package election

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestDecodeCommand(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"claim", `{"v":1,"op":"claim","node":"a","at":1}`, ""},
		{"reassign", `{"v":1,"op":"reassign","node":"b","from":"a","at":1,"reason":"dead"}`, ""},
		{"ready", `{"v":1,"op":"cluster-ready","vip":"192.0.2.1","ca_hash":"sha256:x","at":1}`, ""},
		{"grant", `{"v":1,"op":"grant","node":"a","at":1,"expires":2}`, ""},
		{"renew", `{"v":1,"op":"renew","node":"a","at":1,"expires":2}`, ""},
		{"free", `{"v":1,"op":"free","node":"a","at":1,"reason":"lease expired"}`, ""},
		{"joined", `{"v":1,"op":"joined","node":"a","at":1}`, ""},
		{"newer writer", `{"v":2,"needs":1,"op":"claim","node":"a","at":1,"new_field":{"x":[1]}}`, ""},
		{"needs version 5", `{"v":5,"op":"claim","node":"a","at":1}`, "command needs version 5, this build reads up to 4: upgrade this server"},
		{"needs 5 of v 6", `{"v":6,"needs":5,"op":"claim","node":"a","at":1}`, "command needs version 5"},
		{"needs above its writer", `{"v":1,"needs":2,"op":"claim","node":"a","at":1}`, "command version 1 needs a reader of version 2, above its own"},
		{"no version", `{"op":"claim","node":"a","at":1}`, "command version 0 (needs 0): want 1 or more"},
		{"negative needs", `{"v":1,"needs":-1,"op":"claim","node":"a","at":1}`, "want 1 or more"},
		{"unknown op of a newer writer", `{"v":2,"needs":1,"op":"evict","node":"a","at":1}`, `op "evict" unknown to this build (command version 4): it is not applied; upgrade every server`},
		{"repeated key", `{"v":1,"op":"claim","node":"a","node":"b","at":1}`, `key "node" repeated`},
		{"key case", `{"v":1,"OP":"claim","node":"a","at":1}`, `key "OP": keys are lower-case`},
		{"repeated nested key", `{"v":1,"op":"claim","node":"a","at":1,"x":[{"k":1,"k":2}]}`, `key "k" repeated`},
		{"wrong type", `{"v":1,"op":"claim","node":1,"at":1}`, "decode command"},
		{"float version", `{"v":1.5,"op":"claim","node":"a","at":1}`, "decode command"},
		{"unknown op", `{"v":1,"op":"explode","node":"a","at":1}`, `op "explode" unknown`},
		{"unknown field skipped", `{"v":1,"op":"claim","node":"a","at":1,"x":1}`, ""},
		{"trailing", `{"v":1,"op":"claim","node":"a","at":1}{}`, "trailing data"},
		{"trailing garbage", `{"v":1,"op":"claim","node":"a","at":1} x`, "trailing data"},
		{"missing node", `{"v":1,"op":"claim","at":1}`, "field node missing"},
		{"missing at", `{"v":1,"op":"claim","node":"a"}`, "field at missing"},
		{"surplus vip", `{"v":1,"op":"claim","node":"a","vip":"x","at":1}`, "field vip not allowed"},
		{"surplus expires", `{"v":1,"op":"joined","node":"a","at":1,"expires":5}`, "field expires not allowed"},
		{"surplus reason", `{"v":1,"op":"claim","node":"a","at":1,"reason":"r"}`, "field reason not allowed"},
		{"grant without expiry", `{"v":1,"op":"grant","node":"a","at":1}`, "field expires missing"},
		{"expires before at", `{"v":1,"op":"grant","node":"a","at":5,"expires":2}`, "out of order"},
		{"negative time", `{"v":1,"op":"claim","node":"a","at":-1}`, "out of order"},
		{"reassign to itself", `{"v":1,"op":"reassign","node":"a","from":"a","at":1}`, "from and node are both"},
		{"control char", `{"v":1,"op":"claim","node":"a\u0000","at":1}`, "non-printable"},
		{"long name", `{"v":1,"op":"claim","node":"` + strings.Repeat("a", 254) + `","at":1}`, "longer than 253"},
		{"not json", `claim a`, "decode command"},
		{"empty", ``, "decode command"},
		{"array", `[]`, "decode command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeCommand([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeCommand: %v", err)
				}
				b, err := EncodeCommand(c)
				if err != nil {
					t.Fatalf("EncodeCommand: %v", err)
				}
				if c2, err := DecodeCommand(b); err != nil || c2 != c {
					t.Fatalf("round trip: %+v, %v; want %+v", c2, err, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeCommand error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"op":"claim","node":"a","at":1}`,
		`{"v":1,"op":"grant","node":"a","at":1,"expires":2}`,
		`{"v":1,"op":"cluster-ready","vip":"v","ca_hash":"c","at":1}`,
		`{"v":1,"op":"reassign","node":"b","from":"a","at":1,"reason":"r"}`,
		`{"v":1,"op":"claim","node":"a","at":1}{}`,
		`{"v":2,"needs":1,"op":"joined","node":"a","at":1,"evidence":{"ca":"x","ok":[true]}}`,
		`{"v":2,"needs":2,"op":"claim","node":"a","at":1}`,
		`{"v":1,"op":"claim","node":"a","node":"b","at":1}`,
		`{"v":1,"Op":"claim","node":"a","at":1}`,
		`{"v":1,"op":"upgrade-start","target":"v1.37.1+rke2r1","at":1}`,
		`{"v":1,"op":"upgrade-begin","node":"s1","role":"server","at":2}`,
		`{"v":1,"op":"upgrade-done","node":"a1","role":"agent","at":3}`,
		`{"v":1,"op":"upgrade-failed","node":"s1","reason":"install script exited 1","at":3}`,
		`{"v":1,"op":"upgrade-pause","at":4}`,
		`{"v":2,"needs":1,"op":"upgrade-resume","at":5,"by":"operator"}`,
		`{"v":1,"op":"upgrade-start","target":"1.37.1+rke2r1","at":1}`,
		`{"v":1,"op":"claim","node":"a","role":"server","at":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		// Anything accepted re-encodes to something accepted and equal, and
		// applies to any state without panicking, deterministically.
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", b, err)
		}
		if c2, err := DecodeCommand(enc); err != nil || c2 != c {
			t.Fatalf("round trip of %q: %+v, %v", b, c2, err)
		}
		for _, s := range []ClusterState{{}, {Bootstrap: "a"}, {Bootstrap: "a", Started: true, ClusterReady: &ClusterReady{VIP: "v", CAHash: "c"}},
			{Bootstrap: "a", Started: true, ClusterReady: &ClusterReady{VIP: "v", CAHash: "c"}, Slot: &JoinSlot{Holder: "b", Expires: time.Unix(0, 5)}}} {
			n1, e1 := s.apply(c)
			n2, e2 := s.apply(c)
			if (e1 == nil) != (e2 == nil) || !statesEqual(n1, n2) {
				t.Fatalf("apply of %+v not deterministic", c)
			}
			if e1 != nil && !statesEqual(n1, s) {
				t.Fatalf("rejected %+v changed the state", c)
			}
			if s.Started && n1.Bootstrap != s.Bootstrap {
				t.Fatalf("%+v moved the bootstrap role after start", c)
			}
		}
	})
}

func statesEqual(a, b ClusterState) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func TestApplyTransitions(t *testing.T) {
	ready := &ClusterReady{VIP: "v", CAHash: "c"}
	slot := &JoinSlot{Holder: "b", Granted: time.Unix(0, 10).UTC(), Expires: time.Unix(0, 20).UTC()}
	tests := []struct {
		name    string
		from    ClusterState
		cmd     Command
		want    ClusterState
		wantErr string
	}{
		{"first claim", ClusterState{}, Command{Op: opClaim, Node: "a"}, ClusterState{Bootstrap: "a"}, ""},
		{"second claim is a no-op", ClusterState{Bootstrap: "a"}, Command{Op: opClaim, Node: "b"}, ClusterState{Bootstrap: "a"}, ""},
		{"reassign before start", ClusterState{Bootstrap: "a"}, Command{Op: opReassign, From: "a", Node: "b"}, ClusterState{Bootstrap: "b", Reassigned: 1}, ""},
		{"reassign from the wrong node", ClusterState{Bootstrap: "a"}, Command{Op: opReassign, From: "c", Node: "b"}, ClusterState{Bootstrap: "a"}, `bootstrap node is "a", not "c"`},
		{"reassign after start", ClusterState{Bootstrap: "a", Started: true}, Command{Op: opReassign, From: "a", Node: "b"}, ClusterState{Bootstrap: "a", Started: true}, "already started"},
		{"started by the bootstrap node", ClusterState{Bootstrap: "a"}, Command{Op: opStarted, Node: "a"}, ClusterState{Bootstrap: "a", Started: true}, ""},
		{"started by another", ClusterState{Bootstrap: "a"}, Command{Op: opStarted, Node: "b"}, ClusterState{Bootstrap: "a"}, `not "b"`},
		{"started before any claim", ClusterState{}, Command{Op: opStarted, Node: "b"}, ClusterState{}, `bootstrap node is "", not "b"`},
		{"ready before start", ClusterState{Bootstrap: "a"}, Command{Op: opReady, VIP: "v", CAHash: "c"}, ClusterState{Bootstrap: "a"}, "not started"},
		{"ready", ClusterState{Bootstrap: "a", Started: true}, Command{Op: opReady, VIP: "v", CAHash: "c"}, ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, ""},
		{"ready again, same", ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, Command{Op: opReady, VIP: "v", CAHash: "c"}, ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, ""},
		{"ready again, other CA", ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, Command{Op: opReady, VIP: "v", CAHash: "d"}, ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, "another CA hash"},
		{"grant before ready", ClusterState{Bootstrap: "a", Started: true}, Command{Op: opGrant, Node: "b", At: 10, Expires: 20}, ClusterState{Bootstrap: "a", Started: true}, "not ready"},
		{"grant", ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, Command{Op: opGrant, Node: "b", At: 10, Expires: 20}, ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready, Slot: slot}, ""},
		{"grant while held", ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready, Slot: slot}, Command{Op: opGrant, Node: "c", At: 10, Expires: 20}, ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready, Slot: slot}, "slot held by b"},
		{"grant to the bootstrap node", ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, Command{Op: opGrant, Node: "a", At: 10, Expires: 20}, ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready}, "already in the cluster"},
		{"grant to a joined node", ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready, Joined: []string{"b"}}, Command{Op: opGrant, Node: "b", At: 10, Expires: 20}, ClusterState{Bootstrap: "a", Started: true, ClusterReady: ready, Joined: []string{"b"}}, "already in the cluster"},
		{"renew", ClusterState{ClusterReady: ready, Slot: slot}, Command{Op: opRenew, Node: "b", At: 15, Expires: 30}, ClusterState{ClusterReady: ready, Slot: &JoinSlot{Holder: "b", Granted: slot.Granted, Expires: time.Unix(0, 30).UTC()}}, ""},
		{"renew shorter", ClusterState{ClusterReady: ready, Slot: slot}, Command{Op: opRenew, Node: "b", At: 15, Expires: 18}, ClusterState{ClusterReady: ready, Slot: slot}, "does not extend"},
		{"renew by another", ClusterState{ClusterReady: ready, Slot: slot}, Command{Op: opRenew, Node: "c", At: 15, Expires: 30}, ClusterState{ClusterReady: ready, Slot: slot}, "not held by c"},
		{"free", ClusterState{ClusterReady: ready, Slot: slot}, Command{Op: opFree, Node: "b"}, ClusterState{ClusterReady: ready}, ""},
		{"free another's", ClusterState{ClusterReady: ready, Slot: slot}, Command{Op: opFree, Node: "c"}, ClusterState{ClusterReady: ready, Slot: slot}, "not held by c"},
		{"joined", ClusterState{ClusterReady: ready, Slot: slot, Joined: []string{"c"}}, Command{Op: opJoined, Node: "b"}, ClusterState{ClusterReady: ready, Joined: []string{"b", "c"}}, ""},
		{"joined without slot", ClusterState{ClusterReady: ready}, Command{Op: opJoined, Node: "b"}, ClusterState{ClusterReady: ready}, "not held by b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.from.apply(tc.cmd)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("apply: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !errors.Is(err, ErrTransition) || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("apply error = %v, want ErrTransition containing %q", err, tc.wantErr)
			}
			if !statesEqual(got, tc.want) {
				t.Fatalf("state = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFSMApplySnapshotRestore(t *testing.T) {
	notified := 0
	f := &fsm{notify: func() { notified++ }}
	at := int64(1)
	for _, c := range []Command{
		{Op: opClaim, Node: "a", At: at},
		{Op: opClaim, Node: "b", At: at},
		{Op: opStarted, Node: "a", At: at},
		{Op: opReady, VIP: "v", CAHash: "c", At: at},
		{Op: opGrant, Node: "b", At: at, Expires: at + 100},
		{Op: opJoined, Node: "b", At: at},
	} {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		res := f.Apply(&raft.Log{Type: raft.LogCommand, Data: b}).(applyResult)
		if res.Err != nil {
			t.Fatalf("%s: %v", c.Op, res.Err)
		}
	}
	if res := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte("junk")}).(applyResult); res.Err == nil {
		t.Fatal("junk command applied without error")
	}
	if notified < 6 {
		t.Fatalf("notified %d times, want at least 6", notified)
	}
	want := f.get()
	if want.Bootstrap != "a" || !want.Started || len(want.Joined) != 1 {
		t.Fatalf("state after the log: %+v", want)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := &fsm{}
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !statesEqual(g.get(), want) {
		t.Fatalf("restored %+v, want %+v", g.get(), want)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }
