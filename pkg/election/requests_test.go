package election

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

func TestRequestCommandsDecode(t *testing.T) {
	const id = `"request":"0123456789abcdef"`
	tests := []struct{ name, in, err string }{
		{"remove", `{"v":3,"op":"request-accepted",` + id + `,"kind":"remove","node":"a","target":"c","executor":"a","at":1}`, ""},
		{"pause", `{"v":3,"op":"request-accepted",` + id + `,"kind":"upgrade-pause","node":"a","at":1}`, ""},
		{"refused", `{"v":3,"op":"request-refused",` + id + `,"kind":"remove","node":"a","target":"c","reason":"would break quorum","at":1}`, ""},
		{"refused without reason", `{"v":3,"op":"request-refused",` + id + `,"kind":"remove","node":"a","target":"c","at":1}`, "field reason missing"},
		{"bad id", `{"v":3,"op":"request-accepted","request":"xyz","kind":"upgrade-pause","node":"a","at":1}`, "want 16 lower-case hex digits"},
		{"upper-case id", `{"v":3,"op":"request-accepted","request":"0123456789ABCDEF","kind":"upgrade-pause","node":"a","at":1}`, "want 16 lower-case hex digits"},
		{"unknown kind", `{"v":3,"op":"request-accepted",` + id + `,"kind":"evict","node":"a","at":1}`, `kind "evict" unknown`},
		{"remove without executor", `{"v":3,"op":"request-accepted",` + id + `,"kind":"remove","node":"a","target":"c","at":1}`, "needs target and executor"},
		{"pause with target", `{"v":3,"op":"request-accepted",` + id + `,"kind":"upgrade-pause","node":"a","target":"c","at":1}`, "field target not allowed"},
		{"clear another", `{"v":3,"op":"request-accepted",` + id + `,"kind":"clear-member","node":"a","target":"c","at":1}`, "a host clears only itself"},
		{"request on grant", `{"v":1,"op":"grant",` + id + `,"node":"c","at":1,"expires":2}`, "fields request and kind not allowed"},
		{"vip on request", `{"v":3,"op":"request-accepted",` + id + `,"kind":"upgrade-pause","node":"a","vip":"x","at":1}`, "only request, kind"},
	}
	for _, tt := range tests {
		_, err := DecodeCommand([]byte(tt.in))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		}
	}
	b, err := EncodeCommand(Command{Op: opRequestAccepted, Request: "0123456789abcdef", Kind: RequestUpgradePause, Node: "a", At: 1})
	if err != nil || !strings.HasPrefix(string(b), `{"v":3,`) {
		t.Errorf("request-accepted encodes as %s, %v; want version 3", b, err)
	}
}

// requestWorld is a 3-server cluster whose leader a acts on the requests
// the servers relay.
type requestWorld struct {
	t        *testing.T
	st       ClusterState
	peers    []Peer
	relayed  map[string][]Request
	readers  map[string]int
	self     leaderSelf
	book     *leaderBook
	now      time.Time
	applied  []Command
	rejected []error
}

func newRequestWorld(t *testing.T) *requestWorld {
	w := &requestWorld{t: t, st: clusterOf3(), relayed: map[string][]Request{}, readers: map[string]int{}, book: newLeaderBook(), now: time.Unix(1_800_000_000, 0)}
	ca := w.st.ClusterReady.CAHash
	for _, n := range []string{"a", "b", "c"} {
		w.peers = append(w.peers, Peer{Name: n, State: MemberAlive, ClusterName: "c", RaftAddr: n + ":9348", HasRaftState: true, Ready: true, CAHash: ca})
	}
	duties := &MembershipDuties{
		Config:   membership.Config{MaxServers: 7, ExecuteTimeout: 10 * time.Minute},
		Requests: func(name string) []Request { return w.relayed[name] },
		Readers: func(name string) (int, bool) {
			if v, ok := w.readers[name]; ok {
				return v, true
			}
			return CommandVersion, true
		},
	}
	w.self = leaderSelf{Name: "a", Cluster: "c", VIP: "192.0.2.1", Membership: duties}
	return w
}

func (w *requestWorld) peer(name string) *Peer {
	for i := range w.peers {
		if w.peers[i].Name == name {
			return &w.peers[i]
		}
	}
	w.t.Fatalf("no peer %s", name)
	return nil
}

// step runs one leader step and applies its command, if any.
func (w *requestWorld) step() (Command, bool) {
	w.t.Helper()
	w.now = w.now.Add(time.Second)
	c, ok := nextCommand(w.st, w.peers, aliveIndex(w.peers), w.self, w.now, LANTiming(), w.book)
	if !ok {
		return Command{}, false
	}
	// Through the log's encoding, as raft carries it.
	b, err := EncodeCommand(c)
	if err != nil {
		w.t.Fatalf("encode %+v: %v", c, err)
	}
	if c, err = DecodeCommand(b); err != nil {
		w.t.Fatalf("decode %s: %v", b, err)
	}
	next, err := w.st.apply(c)
	if err != nil {
		w.rejected = append(w.rejected, err)
		return c, true
	}
	w.st = next
	w.applied = append(w.applied, c)
	return c, true
}

func (w *requestWorld) relay(from string, r Request) {
	if r.At.IsZero() {
		r.At = w.now
	}
	w.relayed[from] = append(w.relayed[from], r)
}

func TestRequestRemoveAcceptedOnce(t *testing.T) {
	w := newRequestWorld(t)
	w.relay("b", Request{ID: "00000000000000b1", Kind: RequestRemove, Target: "c"})
	c, ok := w.step()
	if !ok || c.Op != opRequestAccepted || c.Target != "c" || c.Executor != "a" || c.Node != "b" {
		t.Fatalf("want remove c accepted with executor a: %+v", c)
	}
	r, ok := w.st.Record("00000000000000b1")
	if !ok || !r.Accepted || r.From != "b" || !strings.Contains(r.Reason, "2 etcd voters remain, 2 answer, 2 are needed") {
		t.Fatalf("record %+v, %v", r, ok)
	}
	if !w.st.Removal.Active() || w.st.Removal.Node != "c" || !w.st.Removal.Operator {
		t.Fatalf("removal %+v", w.st.Removal)
	}
	// The request stays relayed: it is never decided again.
	for i := 0; i < 5; i++ {
		if c, ok := w.step(); ok && isRequestOp(c.Op) {
			t.Fatalf("decided twice: %+v", c)
		}
	}
	// Applying the same decision again (a second leader) is refused.
	if _, err := w.st.apply(w.applied[0]); !errors.Is(err, ErrTransition) {
		t.Fatalf("second apply: %v", err)
	}
}

func TestRequestRemoveRefusedWithNumbers(t *testing.T) {
	w := newRequestWorld(t)
	w.peer("b").State = MemberDead
	w.relay("a", Request{ID: "00000000000000a1", Kind: RequestRemove, Target: "c"})
	w.relay("a", Request{ID: "00000000000000a2", Kind: RequestRemove, Target: "zz"})
	before := w.st
	c, _ := w.step()
	if c.Op != opRequestRefused {
		t.Fatalf("want refused: %+v", c)
	}
	r, _ := w.st.Record("00000000000000a1")
	if r.Accepted || !strings.Contains(r.Reason, "removing c would break quorum: 2 etcd voters would remain, 1 of them answer, and 2 are needed") {
		t.Fatalf("record %+v", r)
	}
	w.step()
	r, _ = w.st.Record("00000000000000a2")
	if r.Accepted || !strings.Contains(r.Reason, "zz is not an etcd voter (voters: [a b c])") {
		t.Fatalf("record %+v", r)
	}
	if w.st.Removal != nil || !slices.Equal(w.st.EtcdVoters(), before.EtcdVoters()) {
		t.Fatalf("a refusal changed the membership: %+v", w.st)
	}
}

func TestRequestSecondRemovalRefused(t *testing.T) {
	w := newRequestWorld(t)
	w.relay("a", Request{ID: "00000000000000a1", Kind: RequestRemove, Target: "c"})
	w.step()
	w.relay("b", Request{ID: "00000000000000b1", Kind: RequestRemove, Target: "b"})
	var c Command
	for i := 0; i < 3 && c.Request != "00000000000000b1"; i++ {
		c, _ = w.step()
	}
	r, ok := w.st.Record("00000000000000b1")
	if !ok || r.Accepted || !strings.Contains(r.Reason, "the removal of c is committed: one removal at a time") {
		t.Fatalf("record %+v, %v", r, ok)
	}
}

// Requests come only from the servers of the gossip view: a host that is
// not a verified server (an agent, or a name unknown to gossip) is never
// asked, whatever it relays; nor is a dead server.
func TestRequestFromNonServerNeverActed(t *testing.T) {
	w := newRequestWorld(t)
	w.relay("agent-1", Request{ID: "00000000000000f1", Kind: RequestRemove, Target: "c"})
	w.relay("agent-1", Request{ID: "00000000000000f2", Kind: RequestUpgradePause})
	w.peer("b").State = MemberDead
	w.relay("b", Request{ID: "00000000000000f3", Kind: RequestUpgradePause})
	for i := 0; i < 5; i++ {
		if c, ok := w.step(); ok && isRequestOp(c.Op) {
			t.Fatalf("acted on %+v", c)
		}
	}
	if len(w.st.Requests) != 0 || w.st.Removal != nil || w.st.Upgrade != nil {
		t.Fatalf("state changed: %+v", w.st)
	}
}

func TestRequestPauseResume(t *testing.T) {
	w := newRequestWorld(t)
	w.relay("c", Request{ID: "00000000000000c1", Kind: RequestUpgradePause})
	w.step()
	if w.st.Upgrade == nil || !w.st.Upgrade.Paused {
		t.Fatalf("not paused: %+v", w.st.Upgrade)
	}
	w.relay("b", Request{ID: "00000000000000b1", Kind: RequestUpgradeResume})
	w.step()
	if w.st.Upgrade.Paused {
		t.Fatal("not resumed")
	}
	for _, id := range []string{"00000000000000c1", "00000000000000b1"} {
		if r, ok := w.st.Record(id); !ok || !r.Accepted {
			t.Fatalf("record %s: %+v", id, r)
		}
	}
	w.relay("b", Request{ID: "00000000000000b2", Kind: RequestRecover, Target: "a"})
	w.step()
	if r, _ := w.st.Record("00000000000000b2"); r.Accepted || !strings.Contains(r.Reason, "not handled by this build") {
		t.Fatalf("recover: %+v", r)
	}
}

// An older voter's build does not read the request commands: the requests
// wait until every voter is upgraded.
func TestRequestsWaitForEveryVoter(t *testing.T) {
	w := newRequestWorld(t)
	w.readers["c"] = 2
	w.relay("a", Request{ID: "00000000000000a1", Kind: RequestUpgradePause})
	if c, ok := w.step(); ok && isRequestOp(c.Op) {
		t.Fatalf("acted with a version-2 voter: %+v", c)
	}
	delete(w.readers, "c")
	if c, _ := w.step(); c.Op != opRequestAccepted {
		t.Fatalf("want accepted once all read it: %+v", c)
	}
}

// A reinstalled host (same name, RKE2 not answering) asks to clear its old
// member: granted as a quorum-checked removal; while its old self still
// answers, the request waits. Once removed, its next request clears the mark.
func TestRequestClearMember(t *testing.T) {
	w := newRequestWorld(t)
	w.relay("c", Request{ID: "00000000000000c1", Kind: RequestClearMember, Target: "c"})
	if c, ok := w.step(); ok && isRequestOp(c.Op) {
		t.Fatalf("cleared while the old member answers: %+v", c)
	}
	w.peer("c").Ready = false // the fresh host: nothing answers under its name
	c, _ := w.step()
	if c.Op != opRequestAccepted || c.Executor != "a" || !w.st.Removal.Active() || w.st.Removal.Node != "c" || w.st.Removal.Operator {
		t.Fatalf("want the old member's removal committed: %+v, %+v", c, w.st.Removal)
	}
	w.st = mustApply(t, w.st, Command{Op: opRemoveExecuting, Node: "c", At: w.now.UnixNano() + 1})
	w.st = mustApply(t, w.st, Command{Op: opRemoveDone, Node: "c", At: w.now.UnixNano() + 2})
	if !slices.Equal(w.st.Removed, []string{"c"}) {
		t.Fatalf("removed %v", w.st.Removed)
	}
	// The raft voter of its name stays: it is the new host already.
	if acts := membershipVoterChanges(w.st, w.self, map[string]string{"a": "a", "b": "b", "c": "c"}); len(acts) != 0 {
		t.Fatalf("the reinstalled host's raft voter was dropped: %+v", acts)
	}
	// Removed and told to wipe until it says it holds no datastore; then
	// it is granted the slot and its join clears the record.
	w.peer("c").WantJoinSlot = true
	if c, ok := w.step(); ok && c.Op == opGrant {
		t.Fatalf("granted before its clear-member: %+v", c)
	}
	w.relay("c", Request{ID: "00000000000000c2", Kind: RequestClearMember, Target: "c"})
	var granted bool
	for i := 0; i < 3 && !granted; i++ {
		c, _ := w.step()
		granted = c.Op == opGrant && c.Node == "c"
	}
	if r, ok := w.st.Record("00000000000000c2"); !ok || !r.Accepted || !r.Wiped || !granted {
		t.Fatalf("wiped host not granted: %+v, granted %v", r, granted)
	}
	w.peer("c").Ready, w.peer("c").WantJoinSlot = true, false
	if c, _ := w.step(); c.Op != opJoined {
		t.Fatalf("want joined: %+v", c)
	}
	if len(w.st.Removed) != 0 || w.st.wiped("c") || !slices.Contains(w.st.EtcdVoters(), "c") {
		t.Fatalf("after the join: removed %v, wiped %v, voters %v", w.st.Removed, w.st.wiped("c"), w.st.EtcdVoters())
	}
	// Another host's name: refused.
	w.relay("b", Request{ID: "00000000000000b1", Kind: RequestClearMember, Target: "a"})
	for i := 0; i < 3; i++ {
		w.step()
	}
	if r, ok := w.st.Record("00000000000000b1"); !ok || r.Accepted || !strings.Contains(r.Reason, "a host clears only itself") {
		t.Fatalf("clear of another: %+v, %v", r, ok)
	}
}

func TestRequestRecordsBoundedAndSnapshot(t *testing.T) {
	s := clusterOf3()
	for i := 0; i < maxRequestRecords+5; i++ {
		id, err := NewRequestID()
		if err != nil {
			t.Fatal(err)
		}
		s = mustApply(t, s, Command{Op: opRequestAccepted, Request: id, Kind: RequestUpgradePause, Node: "a", At: int64(i + 1)})
	}
	if len(s.Requests) != maxRequestRecords {
		t.Fatalf("%d records kept", len(s.Requests))
	}
	b, err := encodeSnapshot(s)
	if err != nil || !strings.HasPrefix(string(b), `{"v":4,`) {
		t.Fatalf("snapshot %.40s, %v", b, err)
	}
	got, err := decodeSnapshot(b)
	if err != nil || !statesEqual(got, s) {
		t.Fatalf("round trip: %v", err)
	}
	old := strings.Replace(string(b), `{"v":4,`, `{"v":3,`, 1)
	if _, err := decodeSnapshot([]byte(old)); err == nil || !strings.Contains(err.Error(), "request records in a snapshot below version 4") {
		t.Fatalf("records in a version-3 snapshot: %v", err)
	}
}

// A removed server back on a fresh raft store is added as a voter only
// once it said it was wiped, and its voter is not dropped again then (nor
// once it joined again).
func TestRemovedServerBackIntoRaft(t *testing.T) {
	w := newRequestWorld(t)
	w.st = mustApply(t, w.st, Command{Op: opRemoveCommitted, Node: "c", Executor: "a", At: 10})
	w.st = mustApply(t, w.st, Command{Op: opRemoveExecuting, Node: "c", At: 11})
	w.st = mustApply(t, w.st, Command{Op: opRemoveDone, Node: "c", At: 12})
	c := w.peer("c")
	c.HasRaftState, c.Ready = false, false
	voters := map[string]string{"a": "a:9348", "b": "b:9348"}
	kinds := func(acts []action) (add, remove bool) {
		for _, a := range acts {
			add = add || a.Kind == actAddVoter && a.Name == "c"
			remove = remove || a.Kind == actRemoveVoter && a.Name == "c"
		}
		return
	}
	if add, _ := kinds(decide(w.st, w.peers, w.self, voters, w.now, LANTiming(), w.book)); add {
		t.Fatal("a removed server added back to raft before it said it was wiped")
	}
	w.relay("c", Request{ID: "00000000000000c1", Kind: RequestClearMember, Target: "c"})
	w.step()
	if !w.st.wiped("c") {
		t.Fatalf("not wiped: %+v", w.st.Requests)
	}
	if add, _ := kinds(decide(w.st, w.peers, w.self, voters, w.now, LANTiming(), w.book)); !add {
		t.Fatal("the wiped server is not added back to raft")
	}
	voters["c"] = "c:9348"
	if _, remove := kinds(decide(w.st, w.peers, w.self, voters, w.now, LANTiming(), w.book)); remove {
		t.Fatal("the wiped server's raft voter is dropped again")
	}
}
