package election

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

func TestMembershipCommandsDecode(t *testing.T) {
	tests := []struct{ name, in, err string }{
		{"committed", `{"v":2,"op":"removal-committed","node":"c","executor":"a","at":1,"reason":"dead in gossip for 30m0s"}`, ""},
		{"executing", `{"v":2,"op":"removal-executing","node":"c","at":2}`, ""},
		{"done", `{"v":2,"op":"removal-done","node":"c","at":3}`, ""},
		{"failed", `{"v":2,"op":"removal-failed","node":"c","at":3,"reason":"not done within 5m0s"}`, ""},
		{"newer writer", `{"v":3,"needs":2,"op":"removal-done","node":"c","at":3,"evidence":{"gone":true}}`, ""},
		{"no executor", `{"v":2,"op":"removal-committed","node":"c","at":1}`, "field executor missing"},
		{"executor elsewhere", `{"v":2,"op":"removal-done","node":"c","executor":"a","at":1}`, "field executor not allowed"},
		{"executor on grant", `{"v":2,"op":"grant","node":"c","executor":"a","at":1,"expires":2}`, "field executor not allowed"},
		{"reason on done", `{"v":2,"op":"removal-done","node":"c","at":1,"reason":"x"}`, "field reason not allowed"},
		{"no node", `{"v":2,"op":"removal-executing","at":1}`, "field node missing"},
		{"no time", `{"v":2,"op":"removal-done","node":"c"}`, "field at missing"},
		{"control char", `{"v":2,"op":"removal-committed","node":"c","executor":"a\u0007","at":1}`, "non-printable"},
		{"case", `{"v":2,"op":"removal-done","Node":"c","at":1}`, `key "Node"`},
	}
	for _, tt := range tests {
		c, err := DecodeCommand([]byte(tt.in))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		case err == nil && c.V != commandVersion:
			t.Errorf("%s: decoded as version %d", tt.name, c.V)
		}
	}
}

// Old operations keep being written as version 1, so a build that reads
// only version 1 reads them during a rolling upgrade; the new ones are
// version 2, which such a build refuses by name.
func TestMembershipCommandVersions(t *testing.T) {
	b, err := EncodeCommand(Command{Op: opGrant, Node: "d", At: 1, Expires: 2})
	if err != nil || !strings.HasPrefix(string(b), `{"v":1,`) {
		t.Errorf("grant encodes as %s, %v; want version 1", b, err)
	}
	b, err = EncodeCommand(Command{Op: opRemoveCommitted, Node: "c", Executor: "a", At: 1})
	if err != nil || !strings.HasPrefix(string(b), `{"v":2,`) || !strings.Contains(string(b), `"executor":"a"`) {
		t.Errorf("removal-committed encodes as %s, %v; want version 2", b, err)
	}
	if err := readable("command", 2, 0, 1); err == nil || !strings.Contains(err.Error(), "upgrade this server") {
		t.Errorf("a version-1 reader of a version-2 command: %v", err)
	}
}

func clusterOf3() ClusterState {
	return ClusterState{Bootstrap: "a", Started: true, ClusterReady: &ClusterReady{VIP: "192.0.2.1", CAHash: "sha256:c"}, Joined: []string{"b", "c"}}
}

func mustApply(t *testing.T, s ClusterState, c Command) ClusterState {
	t.Helper()
	next, err := s.apply(c)
	if err != nil {
		t.Fatalf("apply %+v: %v", c, err)
	}
	return next
}

func TestMembershipApply(t *testing.T) {
	s := clusterOf3()
	commit := Command{Op: opRemoveCommitted, Node: "c", Executor: "a", At: 10, Reason: "dead"}
	s = mustApply(t, s, commit)
	if !s.Removal.Active() || s.Removal.Executor != "a" || !slices.Equal(s.EtcdVoters(), []string{"a", "b", "c"}) {
		t.Fatalf("after commit: %+v", s)
	}
	for _, c := range []Command{
		{Op: opRemoveCommitted, Node: "b", Executor: "a", At: 11},  // a second removal
		{Op: opGrant, Node: "d", At: 11, Expires: 20},              // a join during a removal
		{Op: opRemoveDone, Node: "c", At: 11},                      // skipping executing
		{Op: opRemoveExecuting, Node: "b", At: 11},                 // another node
		{Op: opRemoveCommitted, Node: "zz", Executor: "a", At: 11}, // not a voter
	} {
		if _, err := s.apply(c); !errors.Is(err, ErrTransition) {
			t.Errorf("%+v on an active removal: %v, want ErrTransition", c, err)
		}
	}
	s = mustApply(t, s, Command{Op: opRemoveExecuting, Node: "c", At: 12})
	s = mustApply(t, s, Command{Op: opRemoveDone, Node: "c", At: 13})
	if !slices.Equal(s.EtcdVoters(), []string{"a", "b"}) || !slices.Equal(s.Removed, []string{"c"}) || slices.Contains(s.Joined, "c") {
		t.Fatalf("after done: %+v", s)
	}
	// The bootstrap node removed, then wiped, may join again.
	s = mustApply(t, s, Command{Op: opRemoveCommitted, Node: "a", Executor: "b", At: 14})
	s = mustApply(t, s, Command{Op: opRemoveExecuting, Node: "a", At: 15})
	s = mustApply(t, s, Command{Op: opRemoveDone, Node: "a", At: 16})
	if !slices.Equal(s.EtcdVoters(), []string{"b"}) {
		t.Fatalf("bootstrap removed: %v", s.EtcdVoters())
	}
	s = mustApply(t, s, Command{Op: opGrant, Node: "a", At: 17, Expires: 30})
	s = mustApply(t, s, Command{Op: opJoined, Node: "a", At: 18})
	s = mustApply(t, s, Command{Op: opGrant, Node: "c", At: 19, Expires: 30})
	s = mustApply(t, s, Command{Op: opJoined, Node: "c", At: 20})
	if !slices.Equal(s.EtcdVoters(), []string{"a", "b", "c"}) || len(s.Removed) != 0 || s.Bootstrap != "a" || !s.Started {
		t.Fatalf("rejoined: %+v", s)
	}
	// A removal while the slot is held is refused.
	s = mustApply(t, s, Command{Op: opGrant, Node: "d", At: 21, Expires: 30})
	if _, err := s.apply(Command{Op: opRemoveCommitted, Node: "b", Executor: "a", At: 22}); !errors.Is(err, ErrTransition) {
		t.Errorf("removal while the slot is held: %v", err)
	}
	// A failed removal ends it: a later one may be committed.
	s = mustApply(t, s, Command{Op: opJoined, Node: "d", At: 22})
	s = mustApply(t, s, Command{Op: opRemoveCommitted, Node: "d", Executor: "a", At: 23})
	s = mustApply(t, s, Command{Op: opRemoveFailed, Node: "d", At: 24, Reason: "Node still there"})
	if s.Removal.Active() || s.Removal.State != membership.RemovalFailed || s.Removal.Reason != "Node still there" {
		t.Fatalf("failed: %+v", s.Removal)
	}
	mustApply(t, s, Command{Op: opRemoveCommitted, Node: "d", Executor: "a", At: 25})
}

func TestMembershipSnapshot(t *testing.T) {
	s := clusterOf3()
	s = mustApply(t, s, Command{Op: opRemoveCommitted, Node: "c", Executor: "a", At: 10})
	s = mustApply(t, s, Command{Op: opRemoveExecuting, Node: "c", At: 12})
	s = mustApply(t, s, Command{Op: opRemoveDone, Node: "c", At: 13})
	b, err := encodeSnapshot(s)
	if err != nil || !strings.HasPrefix(string(b), `{"v":2,`) {
		t.Fatalf("snapshot %s, %v", b, err)
	}
	got, err := decodeSnapshot(b)
	if err != nil || !statesEqual(got, s) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Without membership fields a snapshot stays version 1.
	if b, _ := encodeSnapshot(clusterOf3()); !strings.HasPrefix(string(b), `{"v":1,`) {
		t.Errorf("plain snapshot %s", b)
	}
	ready := `"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"}`
	for name, tt := range map[string]struct{ in, err string }{
		"v1 with removed":       {`{"v":1,"state":{` + ready + `,"removed":["c"]}}`, "snapshot of version 1"},
		"removed unsorted":      {`{"v":2,"state":{` + ready + `,"removed":["d","c"]}}`, "not sorted"},
		"joined and removed":    {`{"v":2,"state":{` + ready + `,"joined":["c"],"removed":["c"]}}`, "both joined and removed"},
		"removed before ready":  {`{"v":2,"state":{"bootstrap":"a","started":true,"removed":["c"]}}`, "before cluster ready"},
		"unknown removal state": {`{"v":2,"state":{` + ready + `,"joined":["c"],"removal":{"node":"c","state":"maybe","executor":"a","since":"2026-01-01T00:00:00Z"}}}`, `state "maybe"`},
		"no executor":           {`{"v":2,"state":{` + ready + `,"joined":["c"],"removal":{"node":"c","state":"committed","since":"2026-01-01T00:00:00Z"}}}`, "without an executor"},
		"active on non-voter":   {`{"v":2,"state":{` + ready + `,"removal":{"node":"c","state":"executing","executor":"a","since":"2026-01-01T00:00:00Z"}}}`, "not an etcd voter"},
		"active with slot":      {`{"v":2,"state":{` + ready + `,"joined":["c"],"slot":{"holder":"d","granted":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z"},"removal":{"node":"c","state":"committed","executor":"a","since":"2026-01-01T00:00:00Z"}}}`, "while the join slot is held"},
	} {
		if _, err := decodeSnapshot([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want %q", name, err, tt.err)
		}
	}
}

func FuzzDecodeMembershipCommand(f *testing.F) {
	for _, s := range []string{
		`{"v":2,"op":"removal-committed","node":"c","executor":"a","at":1,"reason":"r"}`,
		`{"v":2,"op":"removal-executing","node":"c","at":2}`,
		`{"v":2,"op":"removal-done","node":"c","at":3}`,
		`{"v":2,"op":"removal-failed","node":"c","at":3,"reason":"x"}`,
		`{"v":3,"needs":2,"op":"removal-done","node":"c","at":3,"new":[1]}`,
		`{"v":2,"op":"removal-committed","node":"c","executor":"","at":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", c, err)
		}
		if c2, err := DecodeCommand(enc); err != nil || c2 != c {
			t.Fatalf("round trip of %s: %+v, %v", b, c2, err)
		}
		// Applied to any reachable state, the result snapshots.
		for _, s := range []ClusterState{clusterOf3(), mustApplyF(clusterOf3(), Command{Op: opRemoveCommitted, Node: "c", Executor: "a", At: 1})} {
			next, _ := s.apply(c)
			if _, err := encodeSnapshot(next); err != nil {
				t.Fatalf("%+v applied to %+v gives an invalid state: %v", c, s, err)
			}
		}
	})
}

func mustApplyF(s ClusterState, c Command) ClusterState {
	next, err := s.apply(c)
	if err != nil {
		panic(err)
	}
	return next
}

// A cluster's life through decide, with the duties on: the 4th server
// waits, a 5th makes both join, a dead server is removed after the
// timeout and a standby fills the even count, its raft voter is dropped.
func TestDecideMembership(t *testing.T) {
	tm := LANTiming()
	now := time.Unix(1_800_000_000, 0)
	progress := map[string]membership.Progress{}
	duties := &MembershipDuties{Config: membership.Config{MaxServers: 7, RemovalTimeout: 30 * time.Minute, ExecuteTimeout: 10 * time.Minute},
		Extra: func(name string) (MembershipExtra, bool) {
			return MembershipExtra{EtcdHealthy: true, HasDatastore: true, Progress: progress[name]}, true
		}}
	self := leaderSelf{Name: "a", Cluster: "c", VIP: "192.0.2.1", Membership: duties}
	st := clusterOf3()
	ca := st.ClusterReady.CAHash
	peer := func(name string, want bool) Peer {
		return Peer{Name: name, State: MemberAlive, ClusterName: "c", RaftAddr: name + ":9348", HasRaftState: true, Ready: !want, CAHash: ca, WantJoinSlot: want}
	}
	peers := []Peer{peer("a", false), peer("b", false), peer("c", false), peer("d", true)}
	voters := map[string]string{"a": "a:9348", "b": "b:9348", "c": "c:9348"}
	book := newLeaderBook()
	step := func() (Command, []action) {
		t.Helper()
		acts := decide(st, peers, self, voters, now, tm, book)
		for _, a := range acts {
			if a.Kind == actApply {
				st = mustApply(t, st, a.Cmd)
				return a.Cmd, acts
			}
		}
		return Command{}, acts
	}
	if c, _ := step(); c.Op != "" {
		t.Fatalf("the 4th server was admitted alone: %+v", c)
	}
	peers = append(peers, peer("e", true))
	if c, _ := step(); c.Op != opGrant || c.Node != "d" {
		t.Fatalf("with a 5th, want grant d: %+v", c)
	}
	peers[3] = peer("d", false) // ready with the cluster CA
	if c, _ := step(); c.Op != opJoined {
		t.Fatalf("want joined d: %+v", c)
	}
	if c, _ := step(); c.Op != opGrant || c.Node != "e" {
		t.Fatalf("want grant e: %+v", c)
	}
	peers[4] = peer("e", false)
	step()
	if got := st.EtcdVoters(); len(got) != 5 {
		t.Fatalf("voters %v", got)
	}
	// A 6th waits; then c dies.
	peers = append(peers, peer("f", true))
	if c, _ := step(); c.Op != "" {
		t.Fatalf("the 6th was admitted alone: %+v", c)
	}
	if n := book.membershipNotes(); len(n.Standby) != 1 || n.Standby[0].Name != "f" {
		t.Fatalf("status notes: %+v", n)
	}
	peers[2].State = MemberDead
	step()
	now = now.Add(29 * time.Minute)
	if c, _ := step(); c.Op != "" {
		t.Fatalf("removed before the timeout: %+v", c)
	}
	now = now.Add(time.Minute)
	if c, _ := step(); c.Op != opRemoveCommitted || c.Node != "c" || c.Executor != "a" {
		t.Fatalf("want removal-committed c: %+v", c)
	}
	progress["a"] = membership.Progress{Node: "c", State: membership.RemovalExecuting}
	if c, _ := step(); c.Op != opRemoveExecuting {
		t.Fatalf("want removal-executing: %+v", c)
	}
	progress["a"] = membership.Progress{Node: "c", State: membership.RemovalDone}
	c, acts := step()
	if c.Op != opRemoveDone {
		t.Fatalf("want removal-done: %+v", c)
	}
	_ = acts
	_, acts = step()
	removed := false
	for _, a := range acts {
		removed = removed || (a.Kind == actRemoveVoter && a.Name == "c")
	}
	if !removed {
		t.Fatalf("raft voter c not dropped: %+v", acts)
	}
	// The standby fills the even count (4 → 5).
	if c := st.Slot; c == nil || c.Holder != "f" {
		t.Fatalf("standby f not granted the slot after the removal: %+v", st.Slot)
	}
}

// A standby (raft voter, never an etcd voter) dead for good is dropped
// from raft after server-removal-timeout, one at a time and never so that
// the alive voters are no quorum of what is left; etcd members are not
// touched this way. A dropped standby that comes back is added again.
func TestDecideDeadStandby(t *testing.T) {
	tm := LANTiming()
	now := time.Unix(1_800_000_000, 0)
	duties := &MembershipDuties{Config: membership.Config{MaxServers: 7, RemovalTimeout: 30 * time.Minute, ExecuteTimeout: 10 * time.Minute},
		Extra: func(name string) (MembershipExtra, bool) {
			return MembershipExtra{EtcdHealthy: true, HasDatastore: true}, true
		}}
	self := leaderSelf{Name: "a", Cluster: "c", VIP: "192.0.2.1", Membership: duties}
	st := clusterOf3()
	ca := st.ClusterReady.CAHash
	peer := func(name string, ready bool) Peer {
		return Peer{Name: name, State: MemberAlive, ClusterName: "c", RaftAddr: name + ":9348", HasRaftState: true, Ready: ready, CAHash: ca, WantJoinSlot: !ready}
	}
	// a, b, c are etcd voters; d and e standbys (raft voters only).
	peers := []Peer{peer("a", true), peer("b", true), peer("c", true), peer("d", false), peer("e", false)}
	voters := map[string]string{"a": "a:9348", "b": "b:9348", "c": "c:9348", "d": "d:9348", "e": "e:9348"}
	book := newLeaderBook()
	dropped := func() []string {
		t.Helper()
		var out []string
		for _, a := range decide(st, peers, self, voters, now, tm, book) {
			switch a.Kind {
			case actRemoveVoter:
				out = append(out, a.Name)
				delete(voters, a.Name)
			}
		}
		return out
	}
	// d, e and the etcd voter c die; their absence is counted from now
	// (c's etcd removal, membership's, is not applied here).
	peers[2].State, peers[3].State, peers[4].State = MemberDead, MemberDead, MemberDead
	if got := dropped(); got != nil {
		t.Fatalf("dropped at once: %v", got)
	}
	now = now.Add(29 * time.Minute)
	if got := dropped(); got != nil {
		t.Fatalf("dropped before server-removal-timeout: %v", got)
	}
	// a and b alive of 5 voters: dropping d leaves 2 of 4, no quorum.
	now = now.Add(time.Minute)
	if got := dropped(); got != nil {
		t.Fatalf("dropped %v although a and b are no quorum of the 4 voters left", got)
	}
	// e comes back: 3 alive of 5; dropping d leaves 3 of 4.
	peers[4].State = MemberAlive
	if got := dropped(); len(got) != 1 || got[0] != "d" {
		t.Fatalf("want d dropped: %v (voters %v)", got, voters)
	}
	// c is an etcd voter: its removal is membership's, never this one.
	now = now.Add(time.Hour)
	if got := dropped(); got != nil {
		t.Fatalf("dropped %v: an etcd voter", got)
	}
	// d comes back with this group's raft state: added again.
	peers[3].State = MemberAlive
	var added bool
	for _, a := range decide(st, peers, self, voters, now, tm, book) {
		added = added || a.Kind == actAddVoter && a.Name == "d"
	}
	if !added {
		t.Fatal("the dropped standby d was not added back when it returned")
	}
}

// With the duties off, decide behaves as before: every server that asks
// is admitted, even to an even count.
func TestDecideMembershipOff(t *testing.T) {
	st := clusterOf3()
	peers := []Peer{{Name: "d", State: MemberAlive, ClusterName: "c", WantJoinSlot: true}}
	acts := decide(st, peers, leaderSelf{Name: "a", Cluster: "c"}, nil, time.Unix(1_800_000_000, 0), LANTiming(), newLeaderBook())
	if len(acts) != 1 || acts[0].Cmd.Op != opGrant || acts[0].Cmd.Node != "d" {
		t.Fatalf("duties off: %+v", acts)
	}
}

// Random schedules through decide and the FSM, duties on: servers arrive,
// die and come back; the leader changes. Checked against the true world:
// the etcd voters never settle even while a server waits, never exceed
// max-servers, no removal of a server alive in truth, none losing quorum.
func TestDecideMembershipSchedules(t *testing.T) {
	ops := map[string]int{}
	defer func() {
		t.Logf("commands over the schedules: %v", ops)
		for _, op := range []string{opGrant, opJoined, opRemoveCommitted, opRemoveExecuting, opRemoveDone} {
			if ops[op] == 0 && !t.Failed() {
				t.Errorf("no schedule committed %s", op)
			}
		}
	}()
	runs := uint64(300)
	if testing.Short() {
		runs = 60
	}
	for seed := range runs {
		rng := rand.New(rand.NewPCG(seed, 11))
		now := time.Unix(1_800_000_000, 0)
		tm := LANTiming()
		cfg := membership.Config{MaxServers: []int{3, 5, 7}[rng.IntN(3)], RemovalTimeout: 5 * time.Minute, ExecuteTimeout: 3 * time.Minute}
		st := clusterOf3()
		ca := st.ClusterReady.CAHash
		alive := map[string]bool{"a": true, "b": true, "c": true}
		deadAt := map[string]time.Time{}
		joined := map[string]bool{"a": true, "b": true, "c": true}
		progress := map[string]membership.Progress{}
		execDone := map[string]int{}
		duties := &MembershipDuties{Config: cfg, Extra: func(name string) (MembershipExtra, bool) {
			return MembershipExtra{EtcdHealthy: alive[name] && joined[name], HasDatastore: joined[name], Progress: progress[name]}, true
		}}
		book := newLeaderBook()
		leader := "a"
		var log []string
		fail := func(format string, a ...any) {
			t.Helper()
			if len(log) > 40 {
				log = log[len(log)-40:]
			}
			t.Fatalf("seed %d: %s\n  %s", seed, fmt.Sprintf(format, a...), strings.Join(log, "\n  "))
		}
		n := 3
		for range 400 {
			switch r := rng.IntN(100); {
			case r < 8:
				name := fmt.Sprintf("s%02d", n)
				n++
				alive[name] = true
				log = append(log, "arrive "+name)
			case r < 14:
				var live []string
				for s, ok := range alive {
					if ok {
						live = append(live, s)
					}
				}
				slices.Sort(live)
				if len(live) > 0 {
					s := live[rng.IntN(len(live))]
					alive[s], deadAt[s] = false, now
					log = append(log, "die "+s)
				}
			case r < 17:
				for s, ok := range alive {
					if !ok && rng.IntN(3) == 0 {
						alive[s] = true
						log = append(log, "revive "+s)
						break
					}
				}
			default:
				now = now.Add([]time.Duration{time.Second, 30 * time.Second, 2 * time.Minute}[rng.IntN(3)])
			}
			voters := st.EtcdVoters()
			if !alive[leader] || !slices.Contains(voters, leader) {
				leader = ""
				for _, v := range voters {
					if alive[v] {
						leader = v
						break
					}
				}
				book = newLeaderBook()
				if leader == "" {
					continue
				}
			}
			// The executor carries out its removal over two steps.
			if r := st.Removal; r.Active() && r.Executor == leader {
				execDone[r.Node]++
				switch {
				case execDone[r.Node] == 1:
					progress[leader] = membership.Progress{Node: r.Node, State: membership.RemovalExecuting}
				case execDone[r.Node] >= 2 && r.State == membership.RemovalExecuting:
					progress[leader] = membership.Progress{Node: r.Node, State: membership.RemovalDone}
					joined[r.Node] = false
				}
			}
			var peers []Peer
			for s, ok := range alive {
				p := Peer{Name: s, State: MemberAlive, ClusterName: "c", HasRaftState: joined[s]}
				if !ok {
					p.State = MemberDead
				}
				isVoter := slices.Contains(voters, s)
				p.Ready = isVoter || (st.Slot != nil && st.Slot.Holder == s && rng.IntN(2) == 0)
				p.CAHash = ca
				p.WantJoinSlot = !isVoter && !slices.Contains(st.Removed, s)
				peers = append(peers, p)
			}
			slices.SortFunc(peers, func(x, y Peer) int { return strings.Compare(x.Name, y.Name) })
			self := leaderSelf{Name: leader, Cluster: "c", VIP: "192.0.2.1", Membership: duties}
			for _, a := range decide(st, peers, self, nil, now, tm, book) {
				if a.Kind != actApply {
					continue
				}
				c := a.Cmd
				answering := func(except string) int {
					k := 0
					for _, v := range voters {
						if v != except && alive[v] && joined[v] {
							k++
						}
					}
					return k
				}
				switch c.Op {
				case opGrant:
					waiting := 0
					for _, p := range peers {
						if p.State == MemberAlive && p.WantJoinSlot {
							waiting++
						}
					}
					if len(voters)%2 == 1 && waiting < 2 {
						fail("grant %s with %d voters and %d waiting: an even count with no pair", c.Node, len(voters), waiting)
					}
					if len(voters)+1 > cfg.MaxServers {
						fail("grant %s past max-servers %d", c.Node, cfg.MaxServers)
					}
				case opRemoveCommitted:
					if alive[c.Node] || now.Sub(deadAt[c.Node]) < cfg.RemovalTimeout {
						fail("removal of %s: alive %v, dead for %s", c.Node, alive[c.Node], now.Sub(deadAt[c.Node]))
					}
					if answering(c.Node) < (len(voters)-1)/2+1 || answering("") < len(voters)/2+1 {
						fail("removal of %s loses quorum: %d voters, %d answer", c.Node, len(voters), answering(""))
					}
				case opJoined:
					joined[c.Node] = true
				}
				next, err := st.apply(c)
				if err != nil {
					fail("leader's command %+v rejected: %v", c, err)
				}
				st = next
				ops[c.Op]++
				log = append(log, fmt.Sprintf("%s %s", c.Op, c.Node))
				if c.Op == opRemoveDone || c.Op == opRemoveFailed {
					delete(progress, leader)
				}
			}
		}
	}
}

func TestAdmissionForStatus(t *testing.T) {
	st := clusterOf3()
	peers := []Peer{{Name: "d", State: MemberAlive, ClusterName: "c", WantJoinSlot: true}, {Name: "x", State: MemberDead, ClusterName: "c", WantJoinSlot: true}}
	a := Admission(st, peers, "c", 7)
	if len(a.Admit) != 0 || len(a.Standby) != 1 || a.Standby[0].Name != "d" || !strings.Contains(a.Standby[0].Reason, "even count") {
		t.Fatalf("Admission = %+v", a)
	}
	peers = append(peers, Peer{Name: "e", State: MemberAlive, ClusterName: "c", WantJoinSlot: true})
	if a := Admission(st, peers, "c", 7); !slices.Equal(a.Admit, []string{"d", "e"}) {
		t.Fatalf("with a 5th: %+v", a)
	}
}

func TestQuorumForStatus(t *testing.T) {
	q := Quorum(clusterOf3(), []membership.EtcdView{{Server: "a", Member: true, Healthy: true, Revision: 5}, {Server: "b", Member: true, Healthy: true, Revision: 9}})
	if q.Voters != 3 || q.Healthy != 2 || q.Margin != 0 || !q.AtRisk || q.Survivor != "b" {
		t.Fatalf("Quorum = %+v", q)
	}
}

// A 4th server already running RKE2 with the cluster's CA is recorded, not
// held in standby: it is an etcd member in fact.
func TestDecideMembershipAdopted(t *testing.T) {
	st := clusterOf3()
	duties := &MembershipDuties{Config: membership.Config{MaxServers: 7}}
	self := leaderSelf{Name: "a", Cluster: "c", Membership: duties}
	peers := []Peer{{Name: "d", State: MemberAlive, ClusterName: "c", Ready: true, CAHash: st.ClusterReady.CAHash}}
	acts := decide(st, peers, self, nil, time.Unix(1_800_000_000, 0), LANTiming(), newLeaderBook())
	if len(acts) != 1 || acts[0].Cmd.Op != opGrant || acts[0].Cmd.Node != "d" {
		t.Fatalf("adopted server: %+v", acts)
	}
	peers[0].CAHash = "sha256:other"
	if acts := decide(st, peers, self, nil, time.Unix(1_800_000_000, 0), LANTiming(), newLeaderBook()); len(acts) != 0 {
		t.Fatalf("a server of another CA was recorded: %+v", acts)
	}
}
