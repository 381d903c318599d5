package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/etcdview"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

var etcdAt = time.Unix(1_700_000_000, 0)

// threeMembers is a member list of three voters as RKE2 names them.
func threeMembers() []etcdview.Member {
	return []etcdview.Member{
		{Name: "a-0000000a", ID: 0xa, PeerURL: "https://10.0.0.1:2380"},
		{Name: "b-0000000b", ID: 0xb, PeerURL: "https://10.0.0.2:2380"},
		{Name: "c-0000000c", ID: 0xc, PeerURL: "https://10.0.0.3:2380"},
	}
}

func viewOf(name string, id uint64, healthy bool, rev int64) etcdview.View {
	v := etcdview.View{ObservedAt: etcdAt, Healthy: healthy, MemberName: name, MemberID: id, Revision: rev, Members: threeMembers()}
	if healthy {
		v.Leader = 0xa
	}
	return v
}

func server(name string, state gossip.Liveness, ready bool) gossip.MemberInfo {
	return gossip.MemberInfo{Name: name, State: state, Meta: gossip.Meta{Role: gossip.RoleServer, Ready: ready, CAHash: testCA}}
}

func TestAssessEtcd(t *testing.T) {
	cases := []struct {
		name     string
		local    etcdview.View
		peers    map[string]etcdview.View
		members  []gossip.MemberInfo
		fsm      []string
		voters   int
		healthy  int
		margin   int
		atRisk   bool
		gone     bool
		survivor string
		known    bool
		noCA     bool // the FSM holds no cluster CA yet (raft not caught up)
	}{
		{name: "nothing known"},
		{name: "all three answer, others by gossip", local: viewOf("a-0000000a", 0xa, true, 50),
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateAlive, true)},
			voters:  3, healthy: 3, margin: 1, survivor: "a", known: true},
		{name: "one dead: margin 0, at risk", local: viewOf("a-0000000a", 0xa, true, 50),
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateDead, true)},
			voters:  3, healthy: 2, margin: 0, atRisk: true, survivor: "a", known: true},
		{name: "two dead: majority gone, the survivor named with its revision", local: viewOf("a-0000000a", 0xa, false, 50),
			members: []gossip.MemberInfo{server("b", gossip.StateDead, true), server("c", gossip.StateDead, true)},
			voters:  3, healthy: 0, margin: -2, atRisk: true, gone: true, survivor: "a", known: true},
		{name: "a published view beats gossip: alive and ready but its etcd has no quorum", local: viewOf("a-0000000a", 0xa, true, 50),
			peers:   map[string]etcdview.View{"b": viewOf("b-0000000b", 0xb, false, 70)},
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateAlive, true)},
			voters:  3, healthy: 2, margin: 0, atRisk: true, survivor: "b", known: true},
		{name: "a dead server's published view does not count", local: viewOf("a-0000000a", 0xa, true, 50),
			peers:   map[string]etcdview.View{"c": viewOf("c-0000000c", 0xc, true, 90)},
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateDead, true)},
			voters:  3, healthy: 2, margin: 0, atRisk: true, survivor: "a", known: true},
		{name: "not ready with the cluster CA: not answering", local: viewOf("a-0000000a", 0xa, true, 50),
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, false), server("c", gossip.StateAlive, true)},
			voters:  3, healthy: 2, margin: 0, atRisk: true, survivor: "a", known: true},
		{name: "no local view: the FSM's voters and gossip; no survivor without a revision read from an etcd",
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateAlive, true)},
			fsm:     []string{"a", "b", "c"}, voters: 3, healthy: 2, margin: 0, atRisk: true, survivor: "", known: true},
		{name: "no local view: the newest member list an alive server published",
			peers: map[string]etcdview.View{
				"b": func() etcdview.View { v := viewOf("b-0000000b", 0xb, true, 70); v.Members = v.Members[:2]; return v }(),
				"c": func() etcdview.View {
					v := viewOf("c-0000000c", 0xc, true, 71)
					v.ObservedAt = v.ObservedAt.Add(time.Second)
					return v
				}(),
				"d": func() etcdview.View {
					v := viewOf("c-0000000c", 0xc, true, 72)
					v.ObservedAt = v.ObservedAt.Add(time.Hour)
					return v
				}(),
			},
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateAlive, true), server("d", gossip.StateDead, true)},
			voters:  3, healthy: 2, margin: 0, atRisk: true, survivor: "c", known: true},
		{name: "a learner does not vote", local: func() etcdview.View {
			v := viewOf("a-0000000a", 0xa, true, 50)
			v.Members[2].Learner = true
			return v
		}(), members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateAlive, true)},
			voters: 2, healthy: 2, margin: 0, atRisk: true, survivor: "a", known: true},
		// Just restarted (a daemon upgrade): raft has not caught up, so no
		// cluster CA to judge the others by, and they publish no view (an
		// older build). This server's etcd answered a linearizable read as
		// a voter: a quorum answers, by etcd's own word. At risk as far as
		// this server can tell, never gone (that would write the recover
		// assessment and tell the operator to recover a healthy cluster).
		{name: "just started: the local etcd's quorum read outweighs what this server cannot see", local: viewOf("a-0000000a", 0xa, true, 50),
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateAlive, true)}, noCA: true,
			voters: 3, healthy: 1, margin: -1, atRisk: true, survivor: "a", known: true},
		{name: "just started, and the local etcd has no quorum either: gone", local: viewOf("a-0000000a", 0xa, false, 50),
			members: []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateAlive, true)}, noCA: true,
			voters: 3, healthy: 0, margin: -2, atRisk: true, gone: true, survivor: "a", known: true},
		{name: "a learner's quorum read says nothing of the voters", local: func() etcdview.View {
			v := viewOf("a-0000000a", 0xa, true, 50)
			v.Learner = true
			return v
		}(), members: []gossip.MemberInfo{server("b", gossip.StateDead, true), server("c", gossip.StateDead, true)},
			voters: 3, healthy: 0, margin: -2, atRisk: true, gone: true, survivor: "a", known: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ca := testCA
			if c.noCA {
				ca = ""
			}
			st, _, known := assessEtcd("a", c.local, c.peers, c.members, c.fsm, ca)
			if known != c.known {
				t.Fatalf("known %v, want %v", known, c.known)
			}
			if !known {
				return
			}
			if st.Voters != c.voters || st.Healthy != c.healthy || st.QuorumMargin != c.margin || st.QuorumAtRisk != c.atRisk || st.MajorityGone != c.gone {
				t.Errorf("got voters %d healthy %d margin %d at risk %v gone %v; want %d %d %d %v %v",
					st.Voters, st.Healthy, st.QuorumMargin, st.QuorumAtRisk, st.MajorityGone, c.voters, c.healthy, c.margin, c.atRisk, c.gone)
			}
			got := ""
			if st.NewestSurvivor != nil {
				got = st.NewestSurvivor.Name
			}
			if got != c.survivor {
				t.Errorf("survivor %q, want %q", got, c.survivor)
			}
		})
	}
}

// The status names each member with its etcd ID and whether it answers.
func TestAssessEtcdMembers(t *testing.T) {
	st, _, _ := assessEtcd("a", viewOf("a-0000000a", 0xa, true, 50), nil,
		[]gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateDead, true)}, nil, testCA)
	want := []status.EtcdMember{
		{Name: "a-0000000a", ID: "a", Healthy: true, Node: "a"},
		{Name: "b-0000000b", ID: "b", Healthy: true, Node: "b"},
		{Name: "c-0000000c", ID: "c", Healthy: false, Node: "c"},
	}
	if len(st.Members) != len(want) {
		t.Fatalf("members %+v", st.Members)
	}
	for i := range want {
		if st.Members[i] != want[i] {
			t.Errorf("member %d: %+v, want %+v", i, st.Members[i], want[i])
		}
	}
	if st.NewestSurvivor == nil || st.NewestSurvivor.Revision != 50 {
		t.Errorf("survivor %+v, want a at revision 50", st.NewestSurvivor)
	}
}

type fakeEtcdReader struct {
	mu    sync.Mutex
	view  etcdview.View
	err   error
	reads int
}

func (f *fakeEtcdReader) Read(context.Context) (etcdview.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.view, f.err
}

type recordingCarrier struct {
	mu        sync.Mutex
	published []etcdview.View
	views     map[string]etcdview.View
}

func (c *recordingCarrier) Publish(v etcdview.View) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.published = append(c.published, v)
	return nil
}
func (c *recordingCarrier) Views([]gossip.MemberInfo) map[string]etcdview.View { return c.views }

func etcdTestNode(t *testing.T) (*Node, *world, *fakeEtcdReader, *recordingCarrier) {
	w := newWorld("server", false)
	w.self = "a"
	n := newTestNode(t, w, "server", t.TempDir())
	n.cfg.NodeName = "a"
	r := &fakeEtcdReader{view: viewOf("a-0000000a", 0xa, true, 50)}
	r.view.ObservedAt = n.clk.Now()
	car := &recordingCarrier{}
	n.etcd = &etcdState{reader: r, carrier: car}
	w.raft.Joined = []string{"b", "c"}
	w.raft.Bootstrap = "a"
	w.members = []gossip.MemberInfo{server("b", gossip.StateAlive, true), server("c", gossip.StateDead, true)}
	return n, w, r, car
}

// The local etcd is read only while RKE2 runs; a view is published once,
// again when it changes, and the status and metrics show the assessment.
func TestReadEtcd(t *testing.T) {
	n, w, r, car := etcdTestNode(t)
	ctx := context.Background()
	n.readEtcd(ctx)
	if r.reads != 0 || n.etcdStatus().ObservedAt != (time.Time{}) {
		t.Fatalf("read %d times while RKE2 is not running", r.reads)
	}
	w.serviceOn = true
	n.readEtcd(ctx)
	r.mu.Lock()
	r.view.Revision, r.view.RaftIndex = 51, 99 // a write: not worth a publication of its own
	r.mu.Unlock()
	n.readEtcd(ctx)
	if r.reads != 2 {
		t.Fatalf("reads %d, want 2", r.reads)
	}
	car.mu.Lock()
	if len(car.published) != 2 { // the empty view at first, then the first real one; the next is not sent
		t.Fatalf("published %d views, want 2: %+v", len(car.published), car.published)
	}
	car.mu.Unlock()
	st := n.Status().Cluster.Etcd
	if st == nil || st.Voters != 3 || st.QuorumMargin != 0 || !st.QuorumAtRisk || st.MajorityGone || st.Healthy != 2 {
		t.Fatalf("status %+v, want 3 voters, 2 healthy, margin 0, at risk", st)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(newEtcdCollector(n)); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP rke2_hanode_quorum_at_risk 1 when one more failure, or none, loses etcd quorum (margin 0 or less).
# TYPE rke2_hanode_quorum_at_risk gauge
rke2_hanode_quorum_at_risk 1
# HELP rke2_hanode_quorum_lost 1 when a majority of the etcd voters is gone: quorum is lost, recovery is an operator's decision.
# TYPE rke2_hanode_quorum_lost gauge
rke2_hanode_quorum_lost 0
# HELP rke2_hanode_quorum_margin How many more etcd voters may fail before quorum is lost (healthy voters minus quorum; negative once lost).
# TYPE rke2_hanode_quorum_margin gauge
rke2_hanode_quorum_margin 0
# HELP rke2_hanode_etcd_voters etcd voting members, as this server sees the member list.
# TYPE rke2_hanode_etcd_voters gauge
rke2_hanode_etcd_voters 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rke2_hanode_quorum_at_risk", "rke2_hanode_quorum_lost", "rke2_hanode_quorum_margin", "rke2_hanode_etcd_voters"); err != nil {
		t.Fatal(err)
	}

	// The second server dies too: the local etcd loses its leader.
	w.mu.Lock()
	w.members = []gossip.MemberInfo{server("b", gossip.StateDead, true), server("c", gossip.StateDead, true)}
	w.mu.Unlock()
	r.mu.Lock()
	r.view.Healthy, r.view.Leader = false, 0
	r.mu.Unlock()
	n.readEtcd(ctx)
	st = n.Status().Cluster.Etcd
	if !st.MajorityGone || st.NewestSurvivor == nil || st.NewestSurvivor.Name != "a" || st.NewestSurvivor.Revision != 51 {
		t.Fatalf("status %+v, want quorum lost with a as the survivor", st)
	}
	if got := testutil.ToFloat64(collectorGauge(n, "rke2_hanode_quorum_lost")); got != 1 {
		t.Fatalf("rke2_hanode_quorum_lost %v, want 1", got)
	}
	car.mu.Lock()
	if len(car.published) != 3 || car.published[2].Healthy || car.published[2].Revision != 51 {
		t.Errorf("the unhealthy view with its revision was not published: %+v", car.published)
	}
	car.mu.Unlock()
	// An unchanged view goes out again after a minute.
	n.clk.(*stepClock).Sleep(ctx, etcdRepublish)
	n.readEtcd(ctx)
	car.mu.Lock()
	if len(car.published) != 4 {
		t.Errorf("the unchanged view was not published again after %s: %d publications", etcdRepublish, len(car.published))
	}
	car.mu.Unlock()

	// A read that fails says why, and the server no longer counts itself.
	r.mu.Lock()
	r.err = errors.New("etcd at 127.0.0.1:2382: connection refused")
	r.mu.Unlock()
	n.readEtcd(ctx)
	st = n.Status().Cluster.Etcd
	if st == nil || !strings.Contains(st.Error, "connection refused") || st.Healthy != 0 {
		t.Fatalf("status %+v, want the read's error", st)
	}
}

// collectorGauge is one metric of the etcd collector, for ToFloat64.
func collectorGauge(n *Node, name string) prometheus.Collector {
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		c := make(chan prometheus.Metric, 10)
		newEtcdCollector(n).Collect(c)
		close(c)
		for m := range c {
			if strings.Contains(m.Desc().String(), `"`+name+`"`) {
				ch <- m
			}
		}
	})
}

// The leader's removal judgement reads a server's published etcd view
// when there is one; without, it falls back to gossip (ok false). Its own
// health is its own view.
func TestMembershipExtra(t *testing.T) {
	n, w, _, car := etcdTestNode(t)
	if _, ok := n.membershipExtra("b"); ok {
		t.Fatal("b publishes no view, yet the duties were given one")
	}
	car.views = map[string]etcdview.View{"b": viewOf("b-0000000b", 0xb, false, 70)}
	x, ok := n.membershipExtra("b")
	if !ok || x.EtcdHealthy {
		t.Fatalf("b's view says its etcd has no quorum; extra %+v ok %v", x, ok)
	}
	car.views["b"] = viewOf("b-0000000b", 0xb, true, 70)
	if x, ok := n.membershipExtra("b"); !ok || !x.EtcdHealthy {
		t.Fatalf("b's view says healthy; extra %+v ok %v", x, ok)
	}
	stale := viewOf("b-0000000b", 0xb, true, 70)
	stale.ObservedAt = n.clk.Now().Add(-etcdPeerFresh - time.Second)
	car.views["b"] = stale
	if x, ok := n.membershipExtra("b"); ok {
		t.Fatalf("b's view is older than %s, yet the duties were given it: %+v", etcdPeerFresh, x)
	}
	car.views["b"] = viewOf("b-0000000b", 0xb, true, 70)
	// Ready, but its own etcd has no quorum: its view decides.
	n.t.set(status.PhaseReady, "rke2-server is active")
	if x, ok := n.membershipExtra("a"); !ok || !x.EtcdHealthy {
		t.Fatalf("ready with no view yet counts as answering; extra %+v ok %v", x, ok)
	}
	w.serviceOn = true
	n.etcd.reader.(*fakeEtcdReader).view.Healthy = false
	n.readEtcd(context.Background())
	if x, ok := n.membershipExtra("a"); !ok || x.EtcdHealthy {
		t.Fatalf("its own view says unhealthy; extra %+v ok %v", x, ok)
	}
}

func TestOwnLoopback(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.5": "127.0.0.1", "127.86.0.12": "127.86.0.12", "": "127.0.0.1", "::1": "::1"} {
		if got := ownLoopback(in); got != want {
			t.Errorf("ownLoopback(%q) = %q, want %q", in, got, want)
		}
	}
}

// A view of the most members a reader accepts travels in a signed claim
// and comes back the same, and only a member's verified claim is read.
func TestClaimCarriesEtcdView(t *testing.T) {
	if etcdview.MaxMembers != claims.MaxMembers {
		t.Fatalf("the reader accepts %d members, a claim carries %d", etcdview.MaxMembers, claims.MaxMembers)
	}
	v := etcdview.View{ObservedAt: time.Unix(1_700_000_000, 0).UTC(), Healthy: true, MemberName: "server-with-a-long-name-01-0a1b2c3d",
		MemberID: 1<<64 - 1, Revision: 1 << 40, RaftIndex: 1 << 50, Leader: 7}
	for i := range etcdview.MaxMembers {
		v.Members = append(v.Members, etcdview.Member{Name: fmt.Sprintf("server-with-a-long-name-%02d-0a1b2c3d", i), ID: uint64(i + 1),
			PeerURL: fmt.Sprintf("https://[fd00:1234:5678:9abc:def0:1234:5678:%04x]:2380", i), Learner: i == 3})
	}
	v.Members[1].ID = v.MemberID
	s, err := claims.NewSigner("0b5f8e2a91c4d7364fa0e9b2c81d5f730b5f8e2a91c4d7364fa0e9b2c81d5f73", "rke2")
	if err != nil {
		t.Fatal(err)
	}
	wire, err := s.Sign(claims.Claim{Node: "server-1", AdvertiseAddr: "10.0.0.1", RaftAddr: "10.0.0.1:9348", Seq: 1, Etcd: claimEtcd(v)})
	if err != nil {
		t.Fatalf("a reader's largest view does not fit a claim: %v", err)
	}
	got, err := claims.Verify(s.Fingerprint(), wire)
	if err != nil {
		t.Fatal(err)
	}
	views := claimCarrier{}.Views([]gossip.MemberInfo{{Name: "server-1", Claim: &got}, {Name: "agent-1"}, {Name: "server-2", Claim: &claims.Claim{}}})
	if len(views) != 1 {
		t.Fatalf("views %+v, want server-1's alone (no claim, or a claim without a view, carries none)", views)
	}
	w := views["server-1"]
	if !w.ObservedAt.Equal(v.ObservedAt) || !slices.Equal(w.Members, v.Members) {
		t.Fatalf("the view came back as\n%+v\nwant\n%+v", w, v)
	}
	w.ObservedAt, v.ObservedAt, w.Members, v.Members = time.Time{}, time.Time{}, nil, nil
	if w.Healthy != v.Healthy || w.MemberName != v.MemberName || w.MemberID != v.MemberID || w.Learner != v.Learner ||
		w.Revision != v.Revision || w.RaftIndex != v.RaftIndex || w.Leader != v.Leader {
		t.Fatalf("the view came back as %+v, want %+v", w, v)
	}
}

// An upgraded server's wait-healthy reads its etcd until it is a healthy
// voter, and that view is the one published: the others and its own status
// do not go on judging it by the empty view it read while RKE2 restarted.
func TestWaitEtcdVoter(t *testing.T) {
	n, w, r, car := etcdTestNode(t)
	w.serviceOn = true
	r.mu.Lock()
	r.view.Learner = true
	r.mu.Unlock()
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- n.waitEtcdVoter(ctx) }()
	for {
		r.mu.Lock()
		reads := r.reads
		r.mu.Unlock()
		if reads >= 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("returned %v while the member is a learner", err)
	default:
	}
	r.mu.Lock()
	r.view.Learner = false
	r.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	car.mu.Lock()
	last := car.published[len(car.published)-1]
	car.mu.Unlock()
	if !last.Healthy || last.Learner || last.MemberName == "" {
		t.Errorf("published %+v, want the healthy voter's view", last)
	}

	// RKE2 down until the deadline: the error says so.
	w.serviceOn = false
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := n.waitEtcdVoter(ctx2); err == nil || !strings.Contains(err.Error(), "RKE2 is not running") {
		t.Errorf("waitEtcdVoter with RKE2 down: %v, want an error saying RKE2 is not running", err)
	}
}
