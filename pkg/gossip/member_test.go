package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap/zapcore"
)

func TestThreeMembersConverge(t *testing.T) {
	a := startMember(t, "a")
	b := startMember(t, "b", withJoin(a.addr), withRole(RoleAgent))
	c := startMember(t, "c", withJoin(b.addr))
	all := []*testMember{a, b, c}
	took := eventually(t, "three members converge", func() (bool, string) { return allSeeAlive(all) })
	t.Logf("converged in %s", took)

	for _, m := range all {
		got := m.Members()
		if len(got) != 3 {
			t.Fatalf("%s: %d members", m.name, len(got))
		}
		for i, want := range []*testMember{a, b, c} {
			mi := got[i]
			if mi.Name != want.name || mi.State != StateAlive || mi.MetaErr != nil {
				t.Fatalf("%s sees %+v at %d, want %s alive", m.name, mi, i, want.name)
			}
			if fmt.Sprintf("%s:%d", mi.Addr, mi.Port) != want.addr || mi.Meta.AdvertiseAddr != mi.Addr {
				t.Errorf("%s sees %s at %s:%d (meta %s), want %s", m.name, mi.Name, mi.Addr, mi.Port, mi.Meta.AdvertiseAddr, want.addr)
			}
			if mi.Meta.ClusterName != "test" || mi.Meta.RaftState != RaftNone || mi.LastChange.IsZero() {
				t.Errorf("%s sees meta %+v", m.name, mi)
			}
		}
		if n := m.NumAlive(RoleServer); n != 2 {
			t.Errorf("%s: NumAlive(server) = %d", m.name, n)
		}
		if n := m.NumAlive(RoleAgent); n != 1 {
			t.Errorf("%s: NumAlive(agent) = %d", m.name, n)
		}
		// Every member agrees on every member's rank: the sorted names.
		for want, other := range all {
			if rank, of := m.AliveRank(other.name); rank != want || of != 3 {
				t.Errorf("%s: AliveRank(%s) = %d of %d, want %d of 3", m.name, other.name, rank, of, want)
			}
		}
		if rank, of := m.AliveRank("nobody"); rank != -1 || of != 3 {
			t.Errorf("%s: AliveRank(nobody) = %d of %d, want -1 of 3", m.name, rank, of)
		}
		if v := metricValue(t, m.reg, "rke2_hanode_gossip_members", map[string]string{"role": "server", "state": "alive"}); v != 2 {
			t.Errorf("%s: members{server,alive} = %v", m.name, v)
		}
	}
}

func TestFiftyMembersConverge(t *testing.T) {
	if testing.Short() {
		t.Skip("50 members: skipped in -short")
	}
	const n = 50
	// A loaded machine running 50 members under -race answers probes late:
	// relax failure detection so the test measures convergence, not flaps.
	tm := testTimings()
	tm.ProbeInterval = time.Second
	tm.ProbeTimeout = 500 * time.Millisecond
	tm.SuspicionMult = 6
	tm.PushPullInterval = 2 * time.Second // stragglers catch up by push/pull
	start := time.Now()
	seed := startMember(t, "m00", withTimings(tm))
	all := []*testMember{seed}
	for i := 1; i < n; i++ {
		// Every member joins through one of the first few, like hosts that
		// all list the same seeds.
		all = append(all, startMember(t, fmt.Sprintf("m%02d", i), withTimings(tm), withJoin(all[(i-1)%3].addr)))
	}
	t.Logf("50 members started in %s", time.Since(start))
	t.Cleanup(func() { shutdownAll(all) })
	took := eventually(t, "50 members converge", func() (bool, string) { return allKnowAll(all) })
	t.Logf("50 members converged %s after the last one started", took)
}

func TestMetaChangeReachesEveryMember(t *testing.T) {
	a := startMember(t, "a")
	all := []*testMember{a}
	for i := range 4 {
		all = append(all, startMember(t, fmt.Sprintf("m%d", i), withJoin(a.addr)))
	}
	eventually(t, "five members converge", func() (bool, string) { return allSeeAlive(all) })

	sub, unsubscribe := all[3].Subscribe()
	defer unsubscribe()
	<-sub // the initial signal

	since := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	start := time.Now()
	err := all[1].UpdateMeta(func(m *Meta) {
		m.Phase = "installing"
		m.PhaseSince = since
		m.WantJoinSlot = true
		m.CAHash = strings.Repeat("0f", 32)
	})
	if err != nil {
		t.Fatal(err)
	}
	returned := time.Since(start)
	if got := all[1].Local(); got.Phase != "installing" || !got.WantJoinSlot {
		t.Fatalf("Local() = %+v", got)
	}
	eventually(t, "meta change reaches everyone", func() (bool, string) {
		for _, m := range all {
			for _, mi := range m.Members() {
				if mi.Name == all[1].name && (mi.Meta.Phase != "installing" || !mi.Meta.PhaseSince.Equal(since) || !mi.Meta.WantJoinSlot) {
					return false, m.name + " still sees " + mi.Meta.Phase
				}
			}
		}
		return true, ""
	})
	t.Logf("meta change reached all 5 members %s after UpdateMeta began (it returned after %s)", time.Since(start), returned)
	select {
	case <-sub:
	case <-time.After(waitLimit):
		t.Fatal("no change signal for a peer's meta change")
	}

	if err := all[1].UpdateMeta(func(m *Meta) { m.Role = "master" }); err == nil || !strings.Contains(err.Error(), `meta role "master"`) {
		t.Fatalf("invalid update: err = %v", err)
	}
	if got := all[1].Local(); got.Role != RoleServer || got.Phase != "installing" {
		t.Fatalf("a rejected update changed Local(): %+v", got)
	}
}

func TestWrongTokenOrClusterNeverAdmitted(t *testing.T) {
	a := startMember(t, "a")
	b := startMember(t, "b", withJoin(a.addr))
	eventually(t, "a and b converge", func() (bool, string) { return allSeeAlive([]*testMember{a, b}) })

	badToken := startMember(t, "intruder-token", withToken("other-token"), withJoin(a.addr, b.addr))
	badCluster := startMember(t, "intruder-cluster", withCluster("other"), withJoin(a.addr, b.addr))

	// Wait until both intruders were rejected repeatedly, and check all
	// along that nobody admitted anybody.
	eventually(t, "intruders rejected", func() (bool, string) {
		for _, m := range []*testMember{a, b} {
			for _, mi := range m.Members() {
				if strings.HasPrefix(mi.Name, "intruder") {
					t.Fatalf("%s admitted %s", m.name, mi.Name)
				}
			}
		}
		for _, m := range []*testMember{badToken, badCluster} {
			if got := m.Members(); len(got) != 1 {
				t.Fatalf("%s sees %d members", m.name, len(got))
			}
		}
		attempts := metricValue(t, badToken.reg, "rke2_hanode_gossip_join_attempts_total", nil) +
			metricValue(t, badCluster.reg, "rke2_hanode_gossip_join_attempts_total", nil)
		rejected := metricValue(t, a.reg, "rke2_hanode_gossip_decrypt_failures_total", nil) +
			metricValue(t, b.reg, "rke2_hanode_gossip_decrypt_failures_total", nil)
		return attempts >= 8 && rejected >= 4, fmt.Sprintf("%v join attempts, %v rejected", attempts, rejected)
	})

	// The cluster's members say so clearly, once per peer address per
	// interval. (Here all intruders' streams come from 127.0.0.1: memberlist
	// does not bind the source of outgoing connections.)
	const want = "could not decrypt gossip from 127.0.0.1 — different token or cluster name?"
	for _, m := range []*testMember{a, b} {
		if n := m.logs.FilterMessage(want).Len(); n > 1 {
			t.Errorf("%s logged %q %d times, want at most once per interval", m.name, want, n)
		}
	}
	if a.logs.FilterMessage(want).Len()+b.logs.FilterMessage(want).Len() == 0 {
		t.Errorf("no warning %q", want)
	}
	// The intruder with another token learns it from its own join attempts.
	if metricValue(t, badToken.reg, "rke2_hanode_gossip_decrypt_failures_total", nil) == 0 {
		t.Error("the member with another token counted no decrypt failure")
	}
	seedHost := strings.Split(a.addr, ":")[0]
	if badToken.logs.FilterMessage("could not decrypt gossip from "+seedHost+" — different token or cluster name?").Len() != 1 {
		t.Errorf("the member with another token did not warn about seed %s once", seedHost)
	}
	if badCluster.logs.FilterMessageSnippet("no gossip seed answered").Len() == 0 {
		t.Error("the member with another cluster name did not warn")
	}
	if n := a.logs.FilterMessageSnippet("no installed keys could decrypt").FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Errorf("%d raw memberlist error lines were not demoted", n)
	}
}

func TestKilledMemberDeadStoppedMemberLeft(t *testing.T) {
	a := startMember(t, "a")
	b := startMember(t, "b", withJoin(a.addr))
	c := startMember(t, "c", withJoin(a.addr))
	d := startMember(t, "d", withJoin(a.addr))
	all := []*testMember{a, b, c, d}
	eventually(t, "four members converge", func() (bool, string) { return allSeeAlive(all) })

	// Record every state a and b go through for c.
	var mu sync.Mutex
	seen := map[Liveness]bool{}
	watch, stopWatch := a.Subscribe()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for range watch {
			st, _ := stateOf(a.Member, "c")
			st2, _ := stateOf(b.Member, "c")
			mu.Lock()
			seen[st], seen[st2] = true, true
			done := seen[StateDead]
			mu.Unlock()
			if done {
				return
			}
		}
	}()

	c.kill(t)
	eventually(t, "killed member is dead everywhere", func() (bool, string) {
		for _, m := range []*testMember{a, b, d} {
			if st, _ := stateOf(m.Member, "c"); st != StateDead {
				return false, fmt.Sprintf("%s sees c %s", m.name, st)
			}
		}
		return true, ""
	})
	stopWatch()
	<-watchDone
	mu.Lock()
	t.Logf("states of c seen: %v", seen)
	mu.Unlock()

	if err := d.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stopped member has left everywhere", func() (bool, string) {
		for _, m := range []*testMember{a, b} {
			if st, _ := stateOf(m.Member, "d"); st != StateLeft {
				return false, fmt.Sprintf("%s sees d %s", m.name, st)
			}
		}
		return true, ""
	})
	if st, _ := stateOf(d.Member, "d"); st != StateLeft {
		t.Errorf("d sees itself %s", st)
	}
	if v := metricValue(t, a.reg, "rke2_hanode_gossip_members", map[string]string{"role": "server", "state": "dead"}); v != 1 {
		t.Errorf("members{server,dead} = %v", v)
	}
	if v := metricValue(t, a.reg, "rke2_hanode_gossip_members", map[string]string{"role": "server", "state": "left"}); v != 1 {
		t.Errorf("members{server,left} = %v", v)
	}
	if err := d.UpdateMeta(func(m *Meta) { m.Phase = "x" }); err == nil {
		t.Error("UpdateMeta after leaving succeeded")
	}
}

func TestCloseLeavesGracefully(t *testing.T) {
	a := startMember(t, "a")
	b := startMember(t, "b", withJoin(a.addr))
	eventually(t, "converge", func() (bool, string) { return allSeeAlive([]*testMember{a, b}) })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b left", func() (bool, string) {
		st, _ := stateOf(a.Member, "b")
		return st == StateLeft, string(st)
	})
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDuplicateNameReported(t *testing.T) {
	a := startMember(t, "a")
	b := startMember(t, "b", withJoin(a.addr))
	eventually(t, "converge", func() (bool, string) { return allSeeAlive([]*testMember{a, b}) })

	dup := startMember(t, "a", withJoin(b.addr))
	eventually(t, "duplicate name reported", func() (bool, string) {
		err := dup.NameConflict()
		return err != nil && len(b.Conflicts()) > 0, fmt.Sprintf("dup: %v, b: %v", err, b.Conflicts())
	})
	err := dup.NameConflict()
	if !strings.Contains(err.Error(), `node name "a"`) || !strings.Contains(err.Error(), a.addr) || !strings.Contains(err.Error(), "every host needs its own node name") {
		t.Errorf("NameConflict() = %v", err)
	}
	c := b.Conflicts()[0]
	if c.Name != "a" || c.Existing != a.addr || c.Other != dup.addr {
		t.Errorf("b's conflict = %+v, want a known at %s, claimed by %s", c, a.addr, dup.addr)
	}
	if b.NameConflict() != nil {
		t.Errorf("b reports a conflict about its own name: %v", b.NameConflict())
	}
	if dup.logs.FilterMessageSnippet("two hosts claim one node name").Len() == 0 {
		t.Error("no error logged")
	}
	if metricValue(t, b.reg, "rke2_hanode_gossip_name_conflicts_total", nil) == 0 {
		t.Error("conflict not counted")
	}
	// The cluster keeps the first "a".
	for _, mi := range b.Members() {
		if mi.Name == "a" && fmt.Sprintf("%s:%d", mi.Addr, mi.Port) != a.addr {
			t.Errorf("b replaced a by the duplicate: %+v", mi)
		}
	}
}

// fakeResolver answers a host name only once it is told to, like DNS for a
// seed that comes up later.
type fakeResolver struct {
	mu      sync.Mutex
	answer  []string
	lookups int
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if r.answer == nil {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	return r.answer, nil
}

func (r *fakeResolver) set(addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = addrs
}

func (r *fakeResolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups
}

func TestJoinRetriesAndResolvesAgain(t *testing.T) {
	seedIP := nextTestIP()
	port := freePort(t, seedIP)
	res := &fakeResolver{}
	joiner := startMember(t, "joiner", withJoin(fmt.Sprintf("seed.example:%d", port)), func(c *Config) { c.Resolver = res })

	eventually(t, "retries while the name does not resolve", func() (bool, string) {
		return res.count() >= 3, fmt.Sprint(res.count(), " lookups")
	})
	// The name resolves, but nothing listens yet.
	res.set(seedIP)
	before := metricValue(t, joiner.reg, "rke2_hanode_gossip_join_failures_total", nil)
	eventually(t, "retries while the seed is down", func() (bool, string) {
		n := metricValue(t, joiner.reg, "rke2_hanode_gossip_join_failures_total", nil)
		return n >= before+2, fmt.Sprint(n, " failures")
	})
	seed := startMember(t, "seed", withIP(seedIP), withPort(port))
	eventually(t, "joins once the seed is up", func() (bool, string) {
		return allSeeAlive([]*testMember{seed, joiner})
	})
	if joiner.logs.FilterMessageSnippet("no gossip seed").Len() == 0 {
		t.Error("failed joins were not logged")
	}
}

func TestRejoinWhenAlone(t *testing.T) {
	ipA, ipB := nextTestIP(), nextTestIP()
	portB := freePort(t, ipB)
	tm := testTimings()
	tm.GossipToTheDeadTime = time.Second // forget b soon, so a new b is a stranger
	a := startMember(t, "a", withIP(ipA), withTimings(tm), withJoin(fmt.Sprintf("%s:%d", ipB, portB)))
	b := startMember(t, "b", withIP(ipB), withPort(portB), withTimings(tm))
	eventually(t, "a joins b", func() (bool, string) { return allSeeAlive([]*testMember{a, b}) })

	// b crashes; a, now alone, must keep trying its seed and find the
	// restarted b, which does not know a (its join list is empty).
	b.kill(t)
	eventually(t, "a sees b dead", func() (bool, string) {
		st, _ := stateOf(a.Member, "b")
		return st == StateDead, string(st)
	})
	b2 := startMember(t, "b", withIP(ipB), withPort(portB), withTimings(tm))
	eventually(t, "a rejoins the restarted b", func() (bool, string) {
		return allSeeAlive([]*testMember{a, b2})
	})
}

func TestGroupsThatFormedApartMerge(t *testing.T) {
	s2IP := nextTestIP()
	s2Port := freePort(t, s2IP)
	s1 := startMember(t, "s1")
	// a knows both seeds but only s1 is up: a joins s1 and stops being
	// alone, so only the periodic seed check can bring it to s2 later.
	a := startMember(t, "a", withJoin(s1.addr, fmt.Sprintf("%s:%d", s2IP, s2Port)))
	eventually(t, "a joins s1", func() (bool, string) { return allSeeAlive([]*testMember{s1, a}) })

	s2 := startMember(t, "s2", withIP(s2IP), withPort(s2Port))
	b := startMember(t, "b", withJoin(s2.addr))
	eventually(t, "b joins s2", func() (bool, string) { return allSeeAlive([]*testMember{s2, b}) })

	eventually(t, "the two groups merge", func() (bool, string) {
		return allSeeAlive([]*testMember{s1, a, s2, b})
	})
}

// TestSyncRoleReachesServersDirectly: with gossip's own dissemination
// stopped (no gossip rounds, probes or periodic push/pull), a server's
// metadata change still reaches the other server at once, through the
// direct exchange SyncRole asks for, and only it: the agent learns nothing.
func TestSyncRoleReachesServersDirectly(t *testing.T) {
	quiet := testTimings()
	quiet.GossipInterval = time.Hour
	quiet.ProbeInterval = time.Hour
	quiet.PushPullInterval = time.Hour
	a := startMember(t, "a", withTimings(quiet), withRole(RoleServer), func(c *Config) { c.SyncRole = RoleServer })
	b := startMember(t, "b", withTimings(quiet), withRole(RoleServer), withJoin(a.addr))
	c := startMember(t, "c", withTimings(quiet), withRole(RoleAgent), withJoin(a.addr))
	// Both joined a (a push/pull each): a knows everyone, b and c know a.
	knows := func(m *testMember, name string) bool {
		for _, mi := range m.Members() {
			if mi.Name == name && mi.State == StateAlive {
				return true
			}
		}
		return false
	}
	eventually(t, "b and c joined a", func() (bool, string) {
		return knows(a, "b") && knows(a, "c") && knows(b, "a") && knows(c, "a"), "not yet"
	})

	start := time.Now()
	if err := a.UpdateMeta(func(m *Meta) { m.WantJoinSlot = true }); err != nil {
		t.Fatal(err)
	}
	sees := func(m *testMember) bool {
		for _, mi := range m.Members() {
			if mi.Name == "a" {
				return mi.Meta.WantJoinSlot
			}
		}
		return false
	}
	eventually(t, "the other server sees the change", func() (bool, string) { return sees(b), "b sees the old metadata" })
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	if sees(c) {
		t.Error("the agent saw the change although gossip was stopped: the test does not isolate the direct exchange")
	}
	t.Logf("the other server saw the change %v after UpdateMeta", took)
}

// TestUpdateMetaAndSyncReachesTheRole: with gossip's own dissemination
// stopped, an agent's (no SyncRole) ordinary change does not reach the
// server, and one made with UpdateMetaAndSync does, once.
func TestUpdateMetaAndSyncReachesTheRole(t *testing.T) {
	quiet := testTimings()
	quiet.GossipInterval = time.Hour
	quiet.ProbeInterval = time.Hour
	quiet.PushPullInterval = time.Hour
	s := startMember(t, "s", withTimings(quiet), withRole(RoleServer))
	a := startMember(t, "a", withTimings(quiet), withRole(RoleAgent), withJoin(s.addr))
	finished := func() int64 {
		for _, mi := range s.Members() {
			if mi.Name == "a" {
				return mi.Meta.UpgradeFinished
			}
		}
		return -1
	}
	eventually(t, "a joined s", func() (bool, string) { return finished() == 0, "not yet" })
	if err := a.UpdateMeta(func(m *Meta) { m.UpgradeFinished = 1 }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if finished() != 0 {
		t.Fatal("an ordinary change reached the server although gossip was stopped: the test does not isolate the direct exchange")
	}
	if err := a.UpdateMetaAndSync(func(m *Meta) { m.UpgradeFinished = 2 }, RoleServer); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the server sees the synced change", func() (bool, string) { return finished() == 2, fmt.Sprint("s sees ", finished()) })
}

// TestRapidMetaChangesEndWithTheNewest: bursts of metadata changes, as the
// phase machine makes when phases follow each other within a millisecond,
// always end with every member (this one included) seeing the newest.
func TestRapidMetaChangesEndWithTheNewest(t *testing.T) {
	a := startMember(t, "a", withRole(RoleAgent))
	b := startMember(t, "b", withJoin(a.addr))
	c := startMember(t, "c", withJoin(a.addr))
	all := []*testMember{a, b, c}
	eventually(t, "three members converge", func() (bool, string) { return allSeeAlive(all) })
	for round := range 20 {
		var last string
		for i := range 1 + round%4 {
			last = fmt.Sprintf("p%d-%d", round, i)
			if err := a.UpdateMeta(func(m *Meta) { m.Phase = last }); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "every member sees "+last, func() (bool, string) {
			for _, m := range all {
				for _, mi := range m.Members() {
					if mi.Name == "a" && mi.Meta.Phase != last {
						return false, m.name + " sees " + mi.Meta.Phase
					}
				}
			}
			return true, ""
		})
	}
}

// TestRetryNameOnceTheHolderLeft: a newcomer to a held name gets
// NameConflict, and RetryName keeps it while the holder runs; once the
// holder has left, RetryName finds the name free and the cluster holds it
// at the newcomer's address (memberlist hands a left node's name on at
// once).
func TestRetryNameOnceTheHolderLeft(t *testing.T) {
	a := startMember(t, "a")
	holder := startMember(t, "x", withJoin(a.addr))
	eventually(t, "a sees the holder", func() (bool, string) {
		st, _ := stateOf(a.Member, "x")
		return st == StateAlive, string(st)
	})
	newcomer := startMember(t, "x", withJoin(a.addr))
	eventually(t, "the newcomer sees the conflict", func() (bool, string) {
		return newcomer.NameConflict() != nil, "no conflict"
	})
	if err := newcomer.RetryName(context.Background()); err == nil {
		t.Fatal("RetryName: the name is free while its holder runs")
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	ip, _, _ := net.SplitHostPort(newcomer.addr)
	eventually(t, "the newcomer holds the name", func() (bool, string) {
		err := newcomer.RetryName(context.Background())
		mi := lookup(a.Member, "x")
		return err == nil && mi.Addr == ip && mi.State == StateAlive, fmt.Sprintf("%v; a sees x at %s, %s", err, mi.Addr, mi.State)
	})
}

// phaseSeen is the phase member name has in m's view ("": not seen).
func phaseSeen(m *Member, name string) string {
	for _, mi := range m.Members() {
		if mi.Name == name {
			return mi.Meta.Phase
		}
	}
	return ""
}

// mutingTransport sends no packets while mute is set; streams pass.
type mutingTransport struct {
	*memberlist.NetTransport
	mute atomic.Bool
}

func (t *mutingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.mute.Load() {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *mutingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// TestUnconfirmedMetaBroadcastIsHandedOnDirectly: memberlist stores a
// change, and its broadcast reaches nobody and is not confirmed, as when
// memberlist's queue drops it (see storeMeta). The member then hands its
// state to its peers directly, and they see the change long before
// push/pull would carry it.
func TestUnconfirmedMetaBroadcastIsHandedOnDirectly(t *testing.T) {
	quiet := testTimings()
	quiet.PushPullInterval = time.Hour
	quiet.UpdateTimeout = time.Second
	nt, ip := newTestTransport(t)
	mt := &mutingTransport{NetTransport: nt}
	var armed atomic.Bool
	var endedMuted atomic.Int32
	a := startMember(t, "a", withIP(ip), withTimings(quiet), withRole(RoleAgent), func(c *Config) {
		withTransport(mt, nt)(c)
		c.updateNode = func(ml *memberlist.Memberlist, timeout time.Duration) error {
			if !armed.CompareAndSwap(true, false) {
				return ml.UpdateNode(timeout)
			}
			start := time.Now()
			mt.mute.Store(true)
			if ml.UpdateNode(timeout) == nil {
				endedMuted.Add(1) // every send of the broadcast went nowhere
			}
			time.Sleep(timeout - time.Since(start))
			mt.mute.Store(false)
			return errors.New("timeout waiting for update broadcast")
		}
	})
	b := startMember(t, "b", withTimings(quiet), withJoin(a.addr))
	phase := func() string { return phaseSeen(b.Member, "a") }
	eventually(t, "b sees a", func() (bool, string) { return phase() == "discovering", "b sees " + phase() })
	armed.Store(true)
	if err := a.UpdateMeta(func(m *Meta) { m.Phase = "ready" }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees the change whose broadcast reached nobody", func() (bool, string) { return phase() == "ready", "b sees " + phase() })
	if endedMuted.Load() != 1 {
		t.Fatal("the change's broadcast did not end while a sent no packets: the test did not lose it")
	}
	if a.logs.FilterMessage("metadata broadcast not confirmed: exchanging state directly").Len() != 1 {
		t.Error("the direct exchange was not logged once")
	}
	// b saw it through that exchange, not another way (a refute of a
	// suspicion would carry the new metadata too).
	eventually(t, "a's state handed to b directly", func() (bool, string) {
		for _, e := range a.logs.FilterMessage("metadata synced directly").All() {
			if c := e.ContextMap(); c["peer"] == b.addr && c["error"] == nil {
				return true, ""
			}
		}
		return false, "no successful direct exchange with b logged"
	})
}

// TestMetaUpdateMemberlistLostIsStoredAgain: memberlist can lose an
// update of this member's metadata (a refute of a suspicion between
// UpdateNode's taking of its incarnation and its store wins, and the
// update's alive message is dropped as older: nothing stored, nothing
// reported, the broadcast never ends). With push/pull stopped, only a
// second store brings the change to the peer; before, the peer kept the
// old metadata until the next change.
func TestMetaUpdateMemberlistLostIsStoredAgain(t *testing.T) {
	quiet := testTimings()
	quiet.PushPullInterval = time.Hour
	quiet.UpdateTimeout = 200 * time.Millisecond
	var armed atomic.Bool
	var lost, calls atomic.Int32
	lose := func(c *Config) {
		c.updateNode = func(ml *memberlist.Memberlist, timeout time.Duration) error {
			calls.Add(1)
			if armed.CompareAndSwap(true, false) {
				lost.Add(1)
				time.Sleep(timeout)
				return errors.New("timeout waiting for update broadcast")
			}
			return ml.UpdateNode(timeout)
		}
	}
	a := startMember(t, "a", withTimings(quiet), withRole(RoleAgent), lose)
	b := startMember(t, "b", withTimings(quiet), withJoin(a.addr))
	phase := func() string { return phaseSeen(b.Member, "a") }
	eventually(t, "b sees a", func() (bool, string) { return phase() == "discovering", "b sees " + phase() })
	before := calls.Load()
	armed.Store(true)
	if err := a.UpdateMeta(func(m *Meta) { m.Phase = "ready" }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees the change memberlist lost once", func() (bool, string) { return phase() == "ready", "b sees " + phase() })
	if lost.Load() != 1 || calls.Load()-before < 2 {
		t.Errorf("%d stores lost of %d after the change: the test did not lose the change's first store", lost.Load(), calls.Load()-before)
	}
	if a.logs.FilterMessage("metadata update not stored by memberlist: storing it again").Len() != 1 {
		t.Error("the second store was not logged once")
	}
}
