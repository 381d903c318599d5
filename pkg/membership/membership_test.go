package membership

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAdmit(t *testing.T) {
	tests := []struct {
		name    string
		in      AdmitInput
		admit   []string
		standby []string
		target  int
	}{
		{"4th waits", AdmitInput{Voters: []string{"a", "b", "c"}, Candidates: []string{"d"}, MaxServers: 7}, nil, []string{"d"}, 3},
		{"4th and 5th join", AdmitInput{Voters: []string{"a", "b", "c"}, Candidates: []string{"e", "d"}, MaxServers: 7}, []string{"d", "e"}, nil, 5},
		{"pair's second after the first", AdmitInput{Voters: []string{"a", "b", "c", "d"}, Candidates: []string{"e"}, MaxServers: 7}, []string{"e"}, nil, 5},
		{"holder counts", AdmitInput{Voters: []string{"a", "b", "c"}, Joining: "d", Candidates: []string{"e", "f"}, MaxServers: 7}, []string{"e"}, []string{"f"}, 5},
		{"removal leaves 2: standby fills", AdmitInput{Voters: []string{"a", "b"}, Candidates: []string{"d"}, MaxServers: 7}, []string{"d"}, nil, 3},
		{"even, nobody waiting: no demotion", AdmitInput{Voters: []string{"a", "b", "c", "d"}, MaxServers: 7}, nil, nil, 4},
		{"cap", AdmitInput{Voters: []string{"a", "b", "c", "d", "e"}, Candidates: []string{"f", "g"}, MaxServers: 5}, nil, []string{"f", "g"}, 5},
		{"cap even room", AdmitInput{Voters: []string{"a", "b", "c"}, Candidates: []string{"d", "e", "f"}, MaxServers: 6}, []string{"d", "e"}, []string{"f"}, 5},
		{"single server", AdmitInput{Voters: []string{"a"}, Candidates: []string{"b"}, MaxServers: 7}, nil, []string{"b"}, 1},
		{"voter as candidate ignored", AdmitInput{Voters: []string{"a"}, Candidates: []string{"a", "b", "c"}, MaxServers: 7}, []string{"b", "c"}, nil, 3},
		{"above the cap stays", AdmitInput{Voters: []string{"a", "b", "c", "d", "e"}, Candidates: []string{"f"}, MaxServers: 3}, nil, []string{"f"}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Admit(tt.in)
			var sb []string
			for _, w := range a.Standby {
				sb = append(sb, w.Name)
				if w.Reason == "" {
					t.Errorf("standby %s has no reason", w.Name)
				}
			}
			if !slices.Equal(a.Admit, tt.admit) || !slices.Equal(sb, tt.standby) || a.Target != tt.target {
				t.Errorf("Admit = admit %v standby %v target %d, want %v %v %d", a.Admit, sb, a.Target, tt.admit, tt.standby, tt.target)
			}
		})
	}
}

func TestCheckRemoval(t *testing.T) {
	m := func(spec string) []Member { // "a+ b- c+ l~": + answers, - does not, ~ learner
		var ms []Member
		for _, f := range strings.Fields(spec) {
			ms = append(ms, Member{Name: f[:len(f)-1], Voter: f[len(f)-1] != '~', Answers: f[len(f)-1] == '+'})
		}
		return ms
	}
	tests := []struct {
		members, target string
		ok              bool
		words           string
	}{
		{"a+ b+ c-", "c", true, "2 etcd voters remain, 2 answer, 2 are needed"},
		{"a+ b- c-", "c", false, "quorum is already lost: 1 of 3"},
		{"a+ b+ c-", "a", false, "would break quorum: 2 etcd voters would remain, 1 of them answer, and 2 are needed"},
		{"a+ b+ c+ d-", "d", true, ""},
		{"a+ b+ c- d-", "d", false, "quorum is already lost: 2 of 4"},
		{"a+ b+ c+ d- e-", "e", true, "4 etcd voters remain, 3 answer, 3 are needed"},
		{"a+ b+ c+ d+ e-", "a", true, ""},
		{"a+ b+ c+ l~", "l", true, ""},
		{"a+", "a", false, "only etcd voter"},
		{"a+ b+ c+", "x", false, "not an etcd member"},
	}
	for _, tt := range tests {
		v := CheckRemoval(m(tt.members), tt.target)
		if v.OK != tt.ok || !strings.Contains(v.Reason, tt.words) {
			t.Errorf("CheckRemoval(%s, %s) = %v %q, want %v containing %q", tt.members, tt.target, v.OK, v.Reason, tt.ok, tt.words)
		}
	}
}

func TestAssess(t *testing.T) {
	voters := []string{"a", "b", "c", "d", "e"}
	a := Assess(voters, []EtcdView{
		{Server: "a", Member: true, Revision: 90, Healthy: true},
		{Server: "c", Member: true, Revision: 120, Healthy: true},
		{Server: "e", Member: true, Revision: 120, Healthy: true},
		{Server: "x", Member: true, Revision: 999, Healthy: true}, // not a voter
	})
	if a.Quorum != 3 || a.Healthy != 3 || a.Margin != 0 || !a.AtRisk || !a.Majority || a.Survivor != "c" || a.SurvivorRevision != 120 {
		t.Errorf("Assess = %+v", a)
	}
	a = Assess(voters[:3], []EtcdView{{Server: "b", Member: true, Revision: 7, Healthy: false}})
	if a.Majority || a.Margin != -2 || a.Survivor != "b" || !a.AtRisk {
		t.Errorf("lost quorum: %+v", a)
	}
	a = Assess(voters, []EtcdView{{Server: "a", Member: true, Healthy: true}, {Server: "b", Member: true, Healthy: true},
		{Server: "c", Member: true, Healthy: true}, {Server: "d", Member: true, Healthy: true}, {Server: "e", Member: true, Healthy: true}})
	if a.Margin != 2 || a.AtRisk {
		t.Errorf("full strength: %+v", a)
	}
}

func TestRemovalAdvance(t *testing.T) {
	now := time.Unix(100, 0)
	r := Removal{Node: "c", State: RemovalCommitted}
	if _, err := r.Advance(RemovalDone, now, ""); err == nil {
		t.Error("committed → done skipped executing")
	}
	r, err := r.Advance(RemovalExecuting, now, "")
	if err != nil {
		t.Fatal(err)
	}
	if r, err = r.Advance(RemovalDone, now, ""); err != nil || r.State != RemovalDone {
		t.Fatal(r, err)
	}
	if _, err := r.Advance(RemovalFailed, now, "x"); err == nil {
		t.Error("done → failed allowed")
	}
}

func TestStepRemovedHostAndReinstall(t *testing.T) {
	now := time.Unix(1000, 0)
	c := Cluster{Voters: []string{"a", "b", "c"}, IDs: map[string]string{"a": "1", "b": "2", "c": "3"}, Removed: []string{"d"}}
	view := []Server{
		{Name: "a", Answers: true, ID: "1", HasDatastore: true},
		{Name: "b", Answers: true, ID: "2", HasDatastore: true},
		{Name: "c", ID: "9", WantsJoin: true, Clear: true}, // reinstalled: new ID, fresh disk
		{Name: "d", ID: "4", WantsJoin: true, HasDatastore: true},
	}
	d := Step(c, view, Config{MaxServers: 7}, now, NewBook(), "a")
	if !strings.Contains(d.Told["d"], "rejoin --wipe") {
		t.Errorf("removed host not told to wipe: %q", d.Told["d"])
	}
	if d.Kind != Commit || d.Removal.Node != "c" || d.Removal.Executor != "a" {
		t.Errorf("reinstall: %+v", d)
	}
	// The old c still answers: not cleared.
	view[2].Answers = true
	c.IDs["c"] = "3"
	if ok, why := ReinstallAllowed(Server{Name: "c", ID: "9"}, c, []Member{{Name: "c", Voter: true, Answers: true}}); ok || !strings.Contains(why, "still answers") {
		t.Errorf("ReinstallAllowed with the old self alive = %v %q", ok, why)
	}
	// Operator removal that would break quorum is refused with numbers.
	view = []Server{{Name: "a", Answers: true, Remove: "b"}, {Name: "b", Answers: true}, {Name: "c", Gossip: Dead}}
	d = Step(Cluster{Voters: []string{"a", "b", "c"}}, view, Config{MaxServers: 7}, now, NewBook(), "a")
	if v, ok := d.Refused["a"]; !ok || v.OK || !strings.Contains(v.Reason, "would break quorum") || d.Kind == Commit {
		t.Errorf("operator removal: %+v", d)
	}
}

func TestStepDeadTimeout(t *testing.T) {
	book := NewBook()
	now := time.Unix(1000, 0)
	c := Cluster{Voters: []string{"a", "b", "c"}}
	view := []Server{{Name: "a", Answers: true}, {Name: "b", Answers: true}, {Name: "c", Gossip: Dead}}
	cfg := Config{MaxServers: 7, RemovalTimeout: 30 * time.Minute}
	if d := Step(c, view, cfg, now, book, "a"); d.Kind != None {
		t.Fatalf("removed at once: %+v", d)
	}
	if d := Step(c, view, cfg, now.Add(29*time.Minute), book, "a"); d.Kind != None {
		t.Fatalf("removed before the timeout: %+v", d)
	}
	if d := Step(c, view, cfg, now.Add(30*time.Minute), book, "a"); d.Kind != Commit || d.Removal.Node != "c" {
		t.Fatalf("not removed after the timeout: %+v", d)
	}
	cfg.RemovalTimeout = 0
	if d := Step(c, view, cfg, now.Add(300*time.Hour), book, "a"); d.Kind != None {
		t.Fatalf("timeout 0 removed: %+v", d)
	}
}

// TestStepDeadTimeoutCountsFromSuspicion: the removal timeout runs from the
// first suspicion, a suspect is never removed while only suspected, and
// one that answers again starts afresh.
func TestStepDeadTimeoutCountsFromSuspicion(t *testing.T) {
	book := NewBook()
	now := time.Unix(1000, 0)
	c := Cluster{Voters: []string{"a", "b", "c"}}
	cfg := Config{MaxServers: 7, RemovalTimeout: 30 * time.Second}
	view := func(g Liveness) []Server {
		return []Server{{Name: "a", Gossip: Alive, Answers: true}, {Name: "b", Gossip: Alive, Answers: true}, {Name: "c", Gossip: g}}
	}
	if d := Step(c, view(Suspect), cfg, now, book, "a"); d.Kind != None {
		t.Fatalf("suspect removed at once: %+v", d)
	}
	if d := Step(c, view(Suspect), cfg, now.Add(40*time.Second), book, "a"); d.Kind != None {
		t.Fatalf("a suspect (not yet dead) removed: %+v", d)
	}
	if d := Step(c, view(Dead), cfg, now.Add(41*time.Second), book, "a"); d.Kind != Commit || d.Removal.Node != "c" {
		t.Fatalf("dead 41s after its first suspicion, not removed: %+v", d)
	}

	// Suspected, then alive again: the clock starts afresh at the next
	// suspicion.
	book = NewBook()
	Step(c, view(Suspect), cfg, now, book, "a")
	Step(c, view(Alive), cfg, now.Add(10*time.Second), book, "a")
	Step(c, view(Suspect), cfg, now.Add(20*time.Second), book, "a")
	if d := Step(c, view(Dead), cfg, now.Add(45*time.Second), book, "a"); d.Kind != None {
		t.Fatalf("removed 25s after its second suspicion (timeout 30s): %+v", d)
	}
	if d := Step(c, view(Dead), cfg, now.Add(50*time.Second), book, "a"); d.Kind != Commit {
		t.Fatalf("not removed 30s after its second suspicion: %+v", d)
	}
}

// The leader's raft loses a killed server within a heartbeat, seconds
// before gossip suspects it: the removal timeout counts from raft's last
// contact once gossip doubts it too, never while gossip sees it alive.
func TestStepDeadTimeoutCountsFromRaftsLastContact(t *testing.T) {
	now := time.Unix(1000, 0)
	c := Cluster{Voters: []string{"a", "b", "c"}}
	cfg := Config{MaxServers: 7, RemovalTimeout: 30 * time.Second}
	lost := now.Add(-3 * time.Second) // raft's last contact with c
	view := func(g Liveness, since time.Time) []Server {
		return []Server{{Name: "a", Gossip: Alive, Answers: true}, {Name: "b", Gossip: Alive, Answers: true},
			{Name: "c", Gossip: g, UnreachableSince: since}}
	}
	book := NewBook()
	Step(c, view(Suspect, lost), cfg, now, book, "a")
	if d := Step(c, view(Dead, lost), cfg, now.Add(26*time.Second), book, "a"); d.Kind != None {
		t.Fatalf("removed 29s after raft's last contact (timeout 30s): %+v", d)
	}
	if d := Step(c, view(Dead, lost), cfg, now.Add(27*time.Second), book, "a"); d.Kind != Commit || d.Removal.Node != "c" {
		t.Fatalf("dead 30s after raft's last contact, 27s after gossip's doubt: not removed: %+v", d)
	}

	// Raft unreachable while gossip sees it alive (its raft port blocked):
	// no clock runs; once gossip doubts it, raft's last contact an hour ago
	// moves the clock back by MaxRaftLead at most, so that a moment of
	// faked doubt does not remove it at once.
	book = NewBook()
	long := now.Add(-time.Hour)
	if d := Step(c, view(Alive, long), cfg, now, book, "a"); d.Kind != None {
		t.Fatalf("alive in gossip, removed: %+v", d)
	}
	if _, ok := book.DeadSince["c"]; ok {
		t.Fatal("a clock runs for a server gossip sees alive")
	}
	Step(c, view(Suspect, long), cfg, now.Add(time.Second), book, "a")
	if got := book.DeadSince["c"]; !got.Equal(now.Add(time.Second)) {
		t.Fatalf("clock started at %s, want gossip's doubt %s (raft's contact is too old to count)", got, now.Add(time.Second))
	}
	if d := Step(c, view(Dead, long), cfg, now.Add(2*time.Second), book, "a"); d.Kind != None {
		t.Fatalf("removed a second after gossip's first doubt: %+v", d)
	}
	book = NewBook()
	edge := now.Add(-MaxRaftLead)
	Step(c, view(Suspect, edge), cfg, now, book, "a")
	if got := book.DeadSince["c"]; !got.Equal(edge) {
		t.Fatalf("clock started at %s, want raft's last contact %s (MaxRaftLead before)", got, edge)
	}

	// A last contact in the future (clocks apart) never delays the clock.
	book = NewBook()
	Step(c, view(Suspect, now.Add(time.Minute)), cfg, now, book, "a")
	if got := book.DeadSince["c"]; !got.Equal(now) {
		t.Fatalf("clock started at %s, want now %s", got, now)
	}
}

// An executor that finished before the leader saw it executing: the
// removal still goes committed → executing → done, one state per step.
func TestStepQuickExecutor(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := &Removal{Node: "c", State: RemovalCommitted, Executor: "a", Since: now}
	c := Cluster{Voters: []string{"a", "b", "c"}, Removal: r}
	view := []Server{{Name: "a", Gossip: Alive, Answers: true, Progress: Progress{Node: "c", State: RemovalDone}}, {Name: "b", Gossip: Alive, Answers: true}}
	cfg := Config{MaxServers: 7, ExecuteTimeout: 10 * time.Minute}
	d := Step(c, view, cfg, now.Add(time.Second), NewBook(), "a")
	if d.Kind != Advance || d.Removal.State != RemovalExecuting {
		t.Fatalf("first step: %+v", d)
	}
	c.Removal = &d.Removal
	d = Step(c, view, cfg, now.Add(2*time.Second), NewBook(), "a")
	if d.Kind != Advance || d.Removal.State != RemovalDone {
		t.Fatalf("second step: %+v", d)
	}
}

// TestExecutorNotTheRemovedLeader: the leader executes a removal itself,
// except its own (an operator's remove of the leader host): then the
// lowest-named answering voter besides it does, so the removal does not
// wait on a leader that steps down and fail by its deadline.
func TestExecutorNotTheRemovedLeader(t *testing.T) {
	members := []Member{{Name: "a", Voter: true, Answers: true}, {Name: "b", Voter: true}, {Name: "c", Voter: true, Answers: true}, {Name: "d", Voter: true, Answers: true}}
	if got := Executor(members, "a", "d"); got != "a" {
		t.Errorf("removing d: executor %q, want the leader a", got)
	}
	if got := Executor(members, "a", "a"); got != "c" {
		t.Errorf("the leader a removed: executor %q, want c (b does not answer)", got)
	}
}
