package election

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/membership"
	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

func TestDecodeUpgradeCommand(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
		want              Command
	}{
		{"start", `{"v":1,"op":"upgrade-start","target":"v1.37.1+rke2r1","at":1}`, "",
			Command{V: commandVersion, Op: upgrade.OpStart, Target: "v1.37.1+rke2r1", At: 1}},
		{"begin", `{"v":1,"op":"upgrade-begin","node":"s1","role":"server","at":2}`, "",
			Command{V: commandVersion, Op: upgrade.OpBegin, Node: "s1", Role: "server", At: 2}},
		{"failed", `{"v":1,"op":"upgrade-failed","node":"s1","reason":"install script exited 1","at":3}`, "",
			Command{V: commandVersion, Op: upgrade.OpFailed, Node: "s1", Reason: "install script exited 1", At: 3}},
		{"newer writer, field skipped", `{"v":5,"needs":1,"op":"upgrade-pause","at":4,"by":{"who":"ops"}}`, "",
			Command{V: commandVersion, Op: upgrade.OpPause, At: 4}},
		{"target not canonical", `{"v":1,"op":"upgrade-start","target":"1.37.1+rke2r1","at":1}`, "not a canonical RKE2 version", Command{}},
		{"target missing", `{"v":1,"op":"upgrade-start","at":1}`, "field target missing", Command{}},
		{"role unknown", `{"v":1,"op":"upgrade-begin","node":"s1","role":"witness","at":2}`, `role "witness"`, Command{}},
		{"role missing", `{"v":1,"op":"upgrade-begin","node":"s1","at":2}`, "field role missing", Command{}},
		{"cluster field on an upgrade op", `{"v":1,"op":"upgrade-pause","vip":"v","at":4}`, "only node, role, target, reason and at", Command{}},
		{"upgrade field on a cluster op", `{"v":1,"op":"claim","node":"a","role":"server","at":1}`, "target and role not allowed", Command{}},
		{"reason without failure", `{"v":1,"op":"upgrade-done","node":"a","role":"agent","reason":"x","at":1}`, "field reason not allowed", Command{}},
		{"needs a newer reader", `{"v":5,"op":"upgrade-pause","at":4}`, "needs version 5, this build reads up to 4", Command{}},
	}
	for _, tc := range tests {
		c, err := DecodeCommand([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, c, err, tc.want)
		}
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Errorf("%s: encode: %v", tc.name, err)
		}
		if back, err := DecodeCommand(enc); err != nil || back != c {
			t.Errorf("%s: round trip %s: %+v, %v", tc.name, enc, back, err)
		}
	}
}

// TestUpgradeSharesTheJoinSlot: a server's upgrade and a server's join
// are one permission; the state never holds both.
func TestUpgradeSharesTheJoinSlot(t *testing.T) {
	ready := ClusterState{Bootstrap: "s0", Started: true, ClusterReady: &ClusterReady{VIP: "v", CAHash: "c"}, Joined: []string{"s1"}}
	must := func(s ClusterState, c Command) ClusterState {
		t.Helper()
		n, err := s.apply(c)
		if err != nil {
			t.Fatalf("%s %s: %v", c.Op, c.Node, err)
		}
		return n
	}
	st := must(ready, UpgradeCommand(upgrade.Command{Op: upgrade.OpStart, Target: "v1.37.1+rke2r1", At: 1}))
	up := must(st, UpgradeCommand(upgrade.Command{Op: upgrade.OpBegin, Node: "s1", Role: upgrade.RoleServer, At: 2}))
	if _, err := up.apply(Command{Op: opGrant, Node: "s2", At: 3, Expires: 4}); !errors.Is(err, ErrTransition) || !strings.Contains(err.Error(), "server s1 is upgrading") {
		t.Fatalf("grant while s1 upgrades: %v", err)
	}
	joining := must(st, Command{Op: opGrant, Node: "s2", At: 3, Expires: 4})
	if _, err := joining.apply(UpgradeCommand(upgrade.Command{Op: upgrade.OpBegin, Node: "s1", Role: upgrade.RoleServer, At: 5})); !errors.Is(err, ErrTransition) || !strings.Contains(err.Error(), "join slot held by s2") {
		t.Fatalf("server begins while s2 joins: %v", err)
	}
	// An agent's upgrade takes no slot.
	must(joining, UpgradeCommand(upgrade.Command{Op: upgrade.OpBegin, Node: "a0", Role: upgrade.RoleAgent, At: 5}))

	// The progress survives a snapshot; a refused step changes nothing.
	b, err := encodeSnapshot(up)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeSnapshot(b)
	if err != nil || !statesEqual(back, up) {
		t.Fatalf("snapshot round trip: %+v, %v", back, err)
	}
	if n, err := up.apply(UpgradeCommand(upgrade.Command{Op: upgrade.OpBegin, Node: "s0", Role: upgrade.RoleServer, At: 6})); err == nil || !statesEqual(n, up) {
		t.Fatalf("second server begins: %v", err)
	}
	failed := must(up, UpgradeCommand(upgrade.Command{Op: upgrade.OpFailed, Node: "s1", Reason: "install script exited 1", At: time.Second.Nanoseconds()}))
	if _, err := failed.apply(UpgradeCommand(upgrade.Command{Op: upgrade.OpBegin, Node: "s0", Role: upgrade.RoleServer, At: 7})); err == nil || !strings.Contains(err.Error(), "stopped: s1 failed") {
		t.Fatalf("begin after a failure: %v", err)
	}
}

func TestSnapshotRefusesBadUpgrade(t *testing.T) {
	old := `{"v":1,"state":{"bootstrap":"a","started":true,"cluster_ready":{"vip":"v","ca_hash":"c"},"upgrade":{"target":"v1.37.1+rke2r1"}}}`
	if _, err := decodeSnapshot([]byte(old)); err == nil || !strings.Contains(err.Error(), "snapshot of version 1") {
		t.Fatalf("an upgrade in a version-1 snapshot (an older reader would skip it): %v", err)
	}
	in := `{"v":2,"state":{"bootstrap":"a","upgrade":{"target":"v1.37.1+rke2r1","hosts":[{"name":"s1","role":"server","state":"upgrading","since":1},{"name":"s2","role":"server","state":"upgrading","since":1}]}}}`
	if _, err := decodeSnapshot([]byte(in)); err == nil || !strings.Contains(err.Error(), "two servers upgrading at once") {
		t.Fatalf("decode: %v", err)
	}
}

// The leader commits the upgrade duty's command once the cluster's own
// duties have nothing to do, never while a join or grant is due, and
// not at all while a voter's build cannot read version-2 commands.
func TestDecideUpgradeDuty(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	asked := 0
	duties := &MembershipDuties{
		Config: membership.Config{MaxServers: 7},
		Extra: func(string) (MembershipExtra, bool) {
			return MembershipExtra{EtcdHealthy: true, HasDatastore: true}, true
		},
		Upgrade: func(st ClusterState, at time.Time, _ uint64) (upgrade.Command, bool) {
			asked++
			if st.Upgrade == nil {
				return upgrade.Command{Op: upgrade.OpStart, Target: "v1.36.1+rke2r1", At: at.UnixNano()}, true
			}
			if _, ok := st.Upgrade.Host("b"); !ok {
				return upgrade.Command{Op: upgrade.OpBegin, Node: "b", Role: upgrade.RoleServer, At: at.UnixNano()}, true
			}
			return upgrade.Command{}, false
		},
	}
	self := leaderSelf{Name: "a", Cluster: "c", VIP: "192.0.2.1", Membership: duties}
	st := clusterOf3()
	ca := st.ClusterReady.CAHash
	peers := []Peer{}
	for _, n := range []string{"a", "b", "c"} {
		peers = append(peers, Peer{Name: n, State: MemberAlive, ClusterName: "c", RaftAddr: n + ":9348", HasRaftState: true, Ready: true, CAHash: ca})
	}
	book := newLeaderBook()
	step := func() Command {
		t.Helper()
		for _, a := range decide(st, peers, self, nil, now, LANTiming(), book) {
			if a.Kind == actApply {
				st = mustApply(t, st, a.Cmd)
				return a.Cmd
			}
		}
		return Command{}
	}
	if c := step(); c.Op != upgrade.OpStart || c.Target != "v1.36.1+rke2r1" {
		t.Fatalf("want upgrade-start: %+v", c)
	}
	// A ready server not yet recorded: its join goes first, the duty is
	// not even asked.
	peers = append(peers, Peer{Name: "d", State: MemberAlive, ClusterName: "c", RaftAddr: "d:9348", Ready: true, CAHash: ca})
	before := asked
	if c := step(); c.Op != opGrant || c.Node != "d" {
		t.Fatalf("want the adopted server's grant first: %+v", c)
	}
	if asked != before {
		t.Fatalf("the upgrade duty was asked while the cluster's duties had a command")
	}
	// While the slot is held the FSM refuses a server's begin; the slot's
	// holder being ready is recorded first.
	if c := step(); c.Op != opJoined {
		t.Fatalf("want joined d: %+v", c)
	}
	if c := step(); c.Op != upgrade.OpBegin || c.Node != "b" {
		t.Fatalf("want upgrade-begin b: %+v", c)
	}
	if h, ok := st.Upgrade.Host("b"); !ok || h.State != upgrade.HostUpgrading {
		t.Fatalf("progress after begin: %+v", st.Upgrade)
	}
	// An older voter: nothing of the upgrade is committed.
	duties.Readers = func(name string) (int, bool) {
		if name == "c" {
			return 1, true
		}
		return CommandVersion, true
	}
	st.Upgrade = nil
	if c := step(); c.Op != "" {
		t.Fatalf("committed %+v while voter c reads only version 1", c)
	}
}

// TestUpgradeDrainWireFormat: upgrade-drain is written as command
// version 4, so a build that reads up to 3 refuses it rather than
// skipping it, and a snapshot holding a drained agent is version 5.
func TestUpgradeDrainWireFormat(t *testing.T) {
	c := UpgradeCommand(upgrade.Command{Op: upgrade.OpDrain, Node: "a1", Role: upgrade.RoleAgent, At: 5})
	enc, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(enc), `"v":4`) {
		t.Fatalf("upgrade-drain encoded as %s, want version 4", enc)
	}
	if enc, err := EncodeCommand(UpgradeCommand(upgrade.Command{Op: upgrade.OpRelease, Node: "a1", At: 6})); err != nil || !strings.Contains(string(enc), `"v":4`) {
		t.Fatalf("upgrade-release encoded as %s (%v), want version 4", enc, err)
	}
	if _, err := DecodeCommand([]byte(`{"v":1,"op":"upgrade-drain","node":"s1","role":"server","at":2}`)); err == nil || !strings.Contains(err.Error(), "only agents are drained") {
		t.Fatalf("a server's drain decoded: %v", err)
	}
	st := ClusterState{Bootstrap: "s0", Started: true, ClusterReady: &ClusterReady{VIP: "v", CAHash: "c"},
		Upgrade: &upgrade.Progress{Target: "v1.37.1+rke2r1", Hosts: []upgrade.HostProgress{{Name: "a1", Role: upgrade.RoleAgent, State: upgrade.HostDraining, Since: 5}}}}
	b, err := encodeSnapshot(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"v":5,`) {
		t.Fatalf("snapshot with a draining agent: %.40s, want version 5", b)
	}
	if _, err := decodeSnapshot(b); err != nil {
		t.Fatal(err)
	}
	old := strings.Replace(string(b), `{"v":5,`, `{"v":4,`, 1)
	if _, err := decodeSnapshot([]byte(old)); err == nil || !strings.Contains(err.Error(), "below version 5") {
		t.Fatalf("a drained agent in a version 4 snapshot: %v", err)
	}
}

// rollDuty is the upgrade duty as the node runs it, on a fixed view of
// the hosts: pkg/upgrade's Decide on the committed progress.
func rollDuty(hosts func() []upgrade.Host, drain bool) func(ClusterState, time.Time, uint64) (upgrade.Command, bool) {
	return func(st ClusterState, now time.Time, _ uint64) (upgrade.Command, bool) {
		in := upgrade.Input{Hosts: hosts(), Leader: "a", MaxUnavailable: upgrade.Budget{N: 1}, Now: now, DrainAgents: drain}
		if st.Upgrade != nil {
			in.Progress = st.Upgrade.Clone()
		}
		if st.Slot != nil {
			in.ServerJoining = true
		}
		p := upgrade.Decide(in)
		if p.Command == nil {
			return upgrade.Command{}, false
		}
		return *p.Command, true
	}
}

// rollHosts: servers a, b, c and agents x, y, all at from and wanting to.
func rollHosts(from, to string) []upgrade.Host {
	var hs []upgrade.Host
	for _, n := range []string{"a", "b", "c", "x", "y"} {
		role := upgrade.RoleServer
		if n >= "x" {
			role = upgrade.RoleAgent
		}
		hs = append(hs, upgrade.Host{Name: n, Role: role, Running: rke2version.MustParse(from), Wanted: rke2version.MustParse(to), Healthy: true})
	}
	return hs
}

func applies(acts []action) []Command {
	var out []Command
	for _, a := range acts {
		if a.Kind == actApply {
			out = append(out, a.Cmd)
		}
	}
	return out
}

func opsOf(cmds []Command) string {
	var s []string
	for _, c := range cmds {
		s = append(s, c.Op+" "+c.Node)
	}
	return strings.Join(s, ", ")
}

// rollCluster is a ready cluster of servers a, b and c (a leads) with
// agents x and y, from one version to the next, its upgrade duty pkg/upgrade's
// Decide on hosts.
type rollCluster struct {
	hosts []upgrade.Host
	self  leaderSelf
	st    ClusterState
	peers []Peer
	book  *leaderBook
}

const rollFrom, rollTo = "v1.35.2+rke2r1", "v1.36.0+rke2r1"

func newRollCluster(drain bool) *rollCluster {
	r := &rollCluster{hosts: rollHosts(rollFrom, rollTo), st: clusterOf3(), book: newLeaderBook()}
	duties := &MembershipDuties{
		Config: membership.Config{MaxServers: 7},
		Extra: func(string) (MembershipExtra, bool) {
			return MembershipExtra{EtcdHealthy: true, HasDatastore: true}, true
		},
		Upgrade:      rollDuty(func() []upgrade.Host { return r.hosts }, drain),
		UpgradeAhead: rollDuty(func() []upgrade.Host { return r.hosts }, drain),
	}
	r.self = leaderSelf{Name: "a", Cluster: "c", VIP: "192.0.2.1", Membership: duties}
	for _, n := range []string{"a", "b", "c"} {
		r.peers = append(r.peers, Peer{Name: n, State: MemberAlive, ClusterName: "c", RaftAddr: n + ":9348", HasRaftState: true, Ready: true, CAHash: r.st.ClusterReady.CAHash})
	}
	return r
}

// serverUpgrading commits the roll's start and server b's begin.
func (r *rollCluster) serverUpgrading(t *testing.T, now time.Time) {
	t.Helper()
	r.st = mustApply(t, r.st, Command{Op: upgrade.OpStart, Target: rollTo, At: now.UnixNano()})
	r.st = mustApply(t, r.st, Command{Op: upgrade.OpBegin, Node: "b", Role: string(upgrade.RoleServer), At: now.UnixNano()})
}

// decide is one step of the leader's duties: the commands it decides.
func (r *rollCluster) decide(now time.Time) []Command {
	return applies(decide(r.st, r.peers, r.self, nil, now, LANTiming(), r.book))
}

// TestGrantWaitsForTheUpgradingServer: a server that asks for the join
// slot while another server upgrades gets it after that server's done. The
// FSM refuses the grant meanwhile; deciding it anyway would starve the
// upgrade's own commands (its done, or its failure at the host timeout)
// for as long as the new server asks, and the roll would never end.
func TestGrantWaitsForTheUpgradingServer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRollCluster(false)
	r.serverUpgrading(t, now)
	since := now.UnixNano()
	// d and e ask for the slot while b upgrades (together: an even count
	// of etcd voters waits).
	for _, n := range []string{"d", "e"} {
		r.peers = append(r.peers, Peer{Name: n, State: MemberAlive, ClusterName: "c", RaftAddr: n + ":9348", WantJoinSlot: true})
	}
	for range 3 {
		now = now.Add(time.Second)
		if cmds := r.decide(now); len(cmds) > 0 {
			t.Fatalf("decided %s while b upgrades and has not finished", opsOf(cmds))
		}
	}
	// b finishes: its done is decided, and d's grant comes next, before
	// the next server's begin.
	r.hosts[1].Running, r.hosts[1].Finished = rke2version.MustParse(rollTo), since
	now = now.Add(time.Second)
	cmds := r.decide(now)
	if len(cmds) != 1 || cmds[0].Op != upgrade.OpDone || cmds[0].Node != "b" {
		t.Fatalf("want b's done alone (d's grant next): %s", opsOf(cmds))
	}
	r.st = mustApply(t, r.st, cmds[0])
	cmds = r.decide(now)
	if len(cmds) != 1 || cmds[0].Op != opGrant || cmds[0].Node != "d" {
		t.Fatalf("want d's grant: %s", opsOf(cmds))
	}
}

// TestUpgradingServerHoldsOnlyTheGrants: while a server upgrades, only
// grants wait. A server already running the cluster's RKE2 (adopted),
// whose grant would be decided first, must not keep the operator's
// `upgrade pause` from being accepted while b restarts.
func TestUpgradingServerHoldsOnlyTheGrants(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRollCluster(false)
	r.serverUpgrading(t, now)
	pause := Request{ID: "00000000000000e1", Kind: RequestUpgradePause}
	r.self.Membership.Requests = func(name string) []Request {
		if name == "c" {
			return []Request{pause}
		}
		return nil
	}
	r.peers = append(r.peers, Peer{Name: "d", State: MemberAlive, ClusterName: "c", RaftAddr: "d:9348", HasRaftState: true, Ready: true, CAHash: r.st.ClusterReady.CAHash})
	now = now.Add(time.Second)
	cmds := r.decide(now)
	if len(cmds) != 1 || cmds[0].Op != opRequestAccepted || cmds[0].Request != pause.ID {
		t.Fatalf("want the pause accepted while b upgrades: %s", opsOf(cmds))
	}
	r.st = mustApply(t, r.st, cmds[0])
	for _, c := range r.decide(now) {
		if c.Op == opGrant {
			t.Fatalf("a grant was decided while b upgrades: %s", opsOf([]Command{c}))
		}
	}
}

// The attack on quorum through a removal during a roll: servers a, b and
// c; b's begin is committed, and while it takes its snapshot (its etcd
// still answering) the operator asks to remove c, and c later dies for
// the removal timeout. Either removal would leave {a, b}, and b's
// restart then loses quorum. Neither is decided while b upgrades; both
// are once b is done. A removal in flight, the other way round, holds
// the next server's begin (upgrade.Input.Removing, from the node).
func TestRemovalWaitsForTheUpgradingServer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRollCluster(false)
	r.self.Membership.Config.RemovalTimeout = time.Minute
	r.serverUpgrading(t, now)
	since := now.UnixNano()
	rm := Request{ID: "00000000000000e2", Kind: RequestRemove, Target: "c", At: now}
	r.self.Membership.Requests = func(name string) []Request {
		if name == "a" {
			return []Request{rm}
		}
		return nil
	}
	for range 3 {
		now = now.Add(time.Second)
		if cmds := r.decide(now); len(cmds) > 0 {
			t.Fatalf("decided %s while b upgrades", opsOf(cmds))
		}
	}
	// c dies, past the removal timeout, and the operator's request goes.
	r.self.Membership.Requests = nil
	r.peers[2].State = MemberDead
	for range 3 {
		now = now.Add(time.Minute)
		if cmds := r.decide(now); len(cmds) > 0 {
			t.Fatalf("decided %s while b upgrades, c dead", opsOf(cmds))
		}
	}
	// b is done: c's removal is committed next.
	r.hosts[1].Running, r.hosts[1].Finished = rke2version.MustParse(rollTo), since
	cmds := r.decide(now)
	if len(cmds) != 1 || cmds[0].Op != upgrade.OpDone || cmds[0].Node != "b" {
		t.Fatalf("want b's done: %s", opsOf(cmds))
	}
	r.st = mustApply(t, r.st, cmds[0])
	if cmds := r.decide(now); len(cmds) != 1 || cmds[0].Op != opRemoveCommitted || cmds[0].Node != "c" {
		t.Fatalf("want c's removal once b is done: %s", opsOf(cmds))
	}
}

// The upgrading server's own removal takes no second voter out: b died
// in its restart, and once dead for the removal timeout it is removed
// while its upgrade is still in flight.
func TestUpgradingServerItselfIsRemoved(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRollCluster(false)
	r.self.Membership.Config.RemovalTimeout = time.Minute
	r.serverUpgrading(t, now)
	r.peers[1].State = MemberDead
	var got []Command
	for range 3 {
		now = now.Add(time.Minute)
		got = append(got, r.decide(now)...)
	}
	if len(got) == 0 || got[0].Op != opRemoveCommitted || got[0].Node != "b" {
		t.Fatalf("want b's removal while its upgrade is in flight: %s", opsOf(got))
	}
}

// TestUpgradeRunEndsAtARefusedCommand: a command the FSM refuses ends the
// run: nothing is decided on a state it does not make (a duty deciding
// again on the same state would fill the run with the same refusal).
func TestUpgradeRunEndsAtARefusedCommand(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRollCluster(false)
	r.st = mustApply(t, r.st, Command{Op: upgrade.OpStart, Target: rollTo, At: now.UnixNano()})
	refused := func(ClusterState, time.Time, uint64) (upgrade.Command, bool) {
		return upgrade.Command{Op: upgrade.OpRelease, Node: "x", Role: upgrade.RoleAgent, At: now.UnixNano()}, true
	}
	r.self.Membership.Upgrade, r.self.Membership.UpgradeAhead = refused, refused
	if _, err := r.st.apply(Command{Op: upgrade.OpRelease, Node: "x", Role: string(upgrade.RoleAgent), At: now.UnixNano()}); err == nil {
		t.Fatal("the FSM took a release of an agent that is not draining")
	}
	if got := opsOf(r.decide(now)); got != "upgrade-release x" {
		t.Fatalf("decided %q, want the refused release alone", got)
	}
}

// TestDecideUpgradeRun: a host's done and the next host's begin are
// decided in one step, each on the state the one before makes, so raft
// commits them together; the run ends where the cluster's own duties
// have a command. Without the duty's UpgradeAhead (the decision with no
// effect outside it) a run holds the first command only.
func TestDecideUpgradeRun(t *testing.T) {
	for _, drain := range []bool{false, true} {
		now := time.Unix(1_800_000_000, 0)
		r := newRollCluster(drain)
		step := func(want string) {
			t.Helper()
			now = now.Add(time.Second)
			cmds := r.decide(now)
			if got := opsOf(cmds); got != want {
				t.Fatalf("drain %v: decided %q, want %q", drain, got, want)
			}
			for _, c := range cmds {
				r.st = mustApply(t, r.st, c)
			}
		}
		finish := func(i int) {
			h, _ := r.st.Upgrade.Host(r.hosts[i].Name)
			r.hosts[i].Running, r.hosts[i].Finished = rke2version.MustParse(rollTo), h.Since
		}
		ahead := r.self.Membership.UpgradeAhead
		r.self.Membership.UpgradeAhead = nil
		if got := opsOf(r.decide(now)); got != "upgrade-start " {
			t.Fatalf("without UpgradeAhead: decided %q, want the start alone", got)
		}
		r.self.Membership.UpgradeAhead = ahead
		step("upgrade-start , upgrade-begin b")
		step("")
		finish(1)
		step("upgrade-done b, upgrade-begin c")
		finish(2)
		step("upgrade-done c, upgrade-begin a")
		finish(0)
		if drain {
			step("upgrade-done a, upgrade-drain x")
			step("") // the drain's job runs; no result yet
			continue
		}
		step("upgrade-done a, upgrade-begin x")
		finish(3)
		step("upgrade-done x, upgrade-begin y")
		finish(4)
		step("upgrade-done y")
		step("")
	}
}

// The upgrade duties are told the raft term the step decides in, for
// the leader's jobs they start (see MembershipDuties.Upgrade).
func TestUpgradeDutiesGetTheStepsTerm(t *testing.T) {
	var got []uint64
	duty := func(_ ClusterState, _ time.Time, term uint64) (upgrade.Command, bool) {
		got = append(got, term)
		return upgrade.Command{}, false
	}
	self := leaderSelf{Name: "a", Term: 9, Membership: &MembershipDuties{Upgrade: duty, UpgradeAhead: duty}}
	st := ClusterState{Bootstrap: "a", ClusterReady: &ClusterReady{VIP: "10.0.0.100", CAHash: "ca"}}
	upgradeNext(st, self, time.Unix(1, 0), false)
	upgradeNext(st, self, time.Unix(1, 0), true)
	if len(got) != 2 || got[0] != 9 || got[1] != 9 {
		t.Fatalf("the duties were told terms %v, want [9 9]", got)
	}
}
