package node

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	ms "github.com/rke2-hanode/rke2-hanode/pkg/membership"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// adminWorld is a formed cluster of self, s2 and s3, all ready, seen from
// server self.
func adminWorld() *world {
	w := newWorld("server", false)
	w.raft.Bootstrap, w.raft.Joined = "s2", []string{"s3", "self"}
	for _, name := range []string{"self", "s2", "s3"} {
		w.members = append(w.members, gossip.MemberInfo{Name: name, State: gossip.StateAlive,
			Meta: gossip.Meta{Role: gossip.RoleServer, Ready: true, CAHash: testCA}})
	}
	return w
}

// fakeLeader decides the requests n relays, as decide says, writing the
// outcome into the world's state; it returns the requests it saw.
func fakeLeader(ctx context.Context, w *world, n *Node, decide func(r election.Request, st *election.ClusterState)) *[]election.Request {
	var mu sync.Mutex
	var seen []election.Request
	go func() {
		for ctx.Err() == nil {
			for _, r := range n.selfRequests(n.cfg.NodeName) {
				w.mu.Lock()
				if _, done := w.raft.Record(r.ID); !done {
					decide(r, &w.raft)
					mu.Lock()
					seen = append(seen, r)
					mu.Unlock()
				}
				w.mu.Unlock()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return &seen
}

func call(n *Node, verb string, body any) (string, []string, error) {
	b, _ := json.Marshal(body)
	var lines []string
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg, err := n.AdminVerbs()[verb](ctx, b, func(l string) { lines = append(lines, l) })
	return msg, lines, err
}

func TestRemoveVerbOnAgent(t *testing.T) {
	w := newWorld("agent", false)
	n := newTestNode(t, w, "agent", t.TempDir())
	if _, _, err := call(n, "remove", RemoveRequest{Node: "s2"}); !errors.Is(err, errOnAgent) || !strings.Contains(err.Error(), "run it on a server") {
		t.Fatalf("remove on an agent: %v", err)
	}
}

// The server checks with its own view first: nothing is asked of the
// leader when the removal is refused here.
func TestRemoveVerbRefusesLocally(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(w *world)
		node  string
		want  string
	}{
		{"not a voter", nil, "zz", "zz is not an etcd voter (voters: [s2 s3 self]): nothing to remove"},
		{"breaks quorum", func(w *world) { w.members[1].State = gossip.StateDead }, "s3",
			"removing s3 would break quorum: 2 etcd voters would remain, 1 of them answer, and 2 are needed"},
		{"removal active", func(w *world) {
			w.raft.Removal = &ms.Removal{Node: "s3", State: ms.RemovalExecuting, Executor: "s2", Since: time.Unix(1, 0).UTC()}
		}, "s2", "the removal of s3 is executing: one removal at a time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := adminWorld()
			if tc.setup != nil {
				tc.setup(w)
			}
			n := newTestNode(t, w, "server", t.TempDir())
			_, _, err := call(n, "remove", RemoveRequest{Node: tc.node})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if len(n.reqs.list()) != 0 {
				t.Fatalf("relayed after a local refusal: %+v", n.reqs.list())
			}
		})
	}
}

// The leader commits the removal; the verb follows it to done, says so,
// and withdraws its request.
func TestRemoveVerbWaitsForOutcome(t *testing.T) {
	w := adminWorld()
	n := newTestNode(t, w, "server", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := fakeLeader(ctx, w, n, func(r election.Request, st *election.ClusterState) {
		at := time.Unix(2_000_000_000, 0).UTC()
		st.Requests = append(st.Requests, election.RequestRecord{ID: r.ID, Kind: r.Kind, From: "self", Target: r.Target, Accepted: true, Reason: "requested by the operator on self", At: at})
		st.Removal = &ms.Removal{Node: r.Target, State: ms.RemovalCommitted, Executor: "s2", Operator: true, Since: at}
		go func() {
			time.Sleep(20 * time.Millisecond)
			w.mu.Lock()
			w.raft.Removal = &ms.Removal{Node: r.Target, State: ms.RemovalDone, Executor: "s2", Operator: true, Since: at.Add(time.Minute)}
			w.raft.Joined = slices.DeleteFunc(w.raft.Joined, func(j string) bool { return j == r.Target })
			w.raft.Removed = []string{r.Target}
			w.mu.Unlock()
		}()
	})
	msg, lines, err := call(n, "remove", RemoveRequest{Node: "s3"})
	if err != nil || !strings.Contains(msg, "s3 removed") {
		t.Fatalf("remove: %q, %v; progress %q", msg, err, lines)
	}
	if len(*seen) != 1 || (*seen)[0].Kind != election.RequestRemove || (*seen)[0].Target != "s3" || !election.ValidRequestID((*seen)[0].ID) {
		t.Fatalf("requests relayed: %+v", *seen)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "committed by the raft leader") }) {
		t.Fatalf("progress %q", lines)
	}
	if len(n.reqs.list()) != 0 {
		t.Fatalf("request not withdrawn: %+v", n.reqs.list())
	}
}

func TestRemoveVerbLeaderRefuses(t *testing.T) {
	w := adminWorld()
	n := newTestNode(t, w, "server", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fakeLeader(ctx, w, n, func(r election.Request, st *election.ClusterState) {
		st.Requests = append(st.Requests, election.RequestRecord{ID: r.ID, Kind: r.Kind, From: "self", Target: r.Target,
			Reason: "removing s3 would break quorum: 2 etcd voters would remain, 1 of them answer, and 2 are needed", At: time.Unix(2_000_000_000, 0).UTC()})
	})
	_, _, err := call(n, "remove", RemoveRequest{Node: "s3"})
	if err == nil || !strings.Contains(err.Error(), "the raft leader refused: removing s3 would break quorum: 2 etcd voters would remain") {
		t.Fatalf("remove: %v", err)
	}
}

func TestUpgradePauseResumeVerbs(t *testing.T) {
	w := adminWorld()
	n := newTestNode(t, w, "server", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := fakeLeader(ctx, w, n, func(r election.Request, st *election.ClusterState) {
		st.Requests = append(st.Requests, election.RequestRecord{ID: r.ID, Kind: r.Kind, From: "self", Accepted: true, At: time.Unix(2_000_000_000, 0).UTC()})
	})
	if msg, _, err := call(n, "upgrade-pause", nil); err != nil || !strings.HasPrefix(msg, "upgrade paused") {
		t.Fatalf("pause: %q, %v", msg, err)
	}
	if msg, _, err := call(n, "upgrade-resume", nil); err != nil || !strings.HasPrefix(msg, "upgrade resumed") {
		t.Fatalf("resume: %q, %v", msg, err)
	}
	if len(*seen) != 2 || (*seen)[0].Kind != election.RequestUpgradePause || (*seen)[1].Kind != election.RequestUpgradeResume {
		t.Fatalf("requests: %+v", *seen)
	}
}

// A live server the cluster removed stops RKE2 and fails for good, saying
// what to do; its datastore is left alone.
func TestRemovedServerStopsRKE2(t *testing.T) {
	w := adminWorld()
	w.serviceOn, w.datastore.Present = true, true
	n := newTestNode(t, w, "server", t.TempDir())
	n.t.set(status.PhaseReady, "")
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() { done <- n.keepReady(ctx) }()
	w.mu.Lock()
	w.raft.Joined = []string{"s3"}
	w.raft.Removed = []string{"self"}
	w.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("keepReady did not stop")
	}
	w.mu.Lock()
	on, ds := w.serviceOn, w.datastore.Present
	w.mu.Unlock()
	phase, _, lastErr := n.t.get()
	if on || !ds || phase != status.PhaseFailed || !strings.Contains(lastErr, "rke2-hanode rejoin --wipe") {
		t.Fatalf("service on %v, datastore %v, phase %s (%s)", on, ds, phase, lastErr)
	}
}

// A removed host back with its datastore stops before anything starts;
// once wiped it says so to the leader and joins as a joiner.
func TestRemovedHostRejoin(t *testing.T) {
	w := adminWorld()
	w.raft.Joined = []string{"s3"}
	w.raft.Removed = []string{"self"}
	w.datastore.Present = true
	n := newTestNode(t, w, "server", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := n.rejoinAs(ctx); !errors.Is(err, errRemoved) {
		t.Fatalf("removed with a datastore: %v", err)
	}
	w.datastore.Present = false
	seen := fakeLeader(ctx, w, n, func(r election.Request, st *election.ClusterState) {
		st.Requests = append(st.Requests, election.RequestRecord{ID: r.ID, Kind: r.Kind, From: "self", Target: r.Target, Accepted: true, Wiped: true, At: time.Unix(2_000_000_000, 0).UTC()})
	})
	rejoin, err := n.rejoinAs(ctx)
	if err != nil || !rejoin || len(*seen) != 1 || (*seen)[0].Kind != election.RequestClearMember || (*seen)[0].Target != "self" {
		t.Fatalf("wiped: rejoin %v, %v, requests %+v", rejoin, err, *seen)
	}
}

// A fresh disk under a member's name: it asks to clear its old member,
// waits for the removal, says it is wiped, and joins as a joiner; a
// server that started RKE2 here before is not taken for a reinstall.
func TestReinstalledHostClears(t *testing.T) {
	w := adminWorld()
	n := newTestNode(t, w, "server", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := fakeLeader(ctx, w, n, func(r election.Request, st *election.ClusterState) {
		at := time.Unix(2_000_000_000, 0).UTC()
		if slices.Contains(st.Removed, "self") {
			st.Requests = append(st.Requests, election.RequestRecord{ID: r.ID, Kind: r.Kind, From: "self", Target: "self", Accepted: true, Wiped: true, At: at})
			return
		}
		st.Requests = append(st.Requests, election.RequestRecord{ID: r.ID, Kind: r.Kind, From: "self", Target: "self", Accepted: true, At: at})
		st.Removal = &ms.Removal{Node: "self", State: ms.RemovalCommitted, Executor: "s2", Clear: true, Since: at}
		go func() {
			time.Sleep(20 * time.Millisecond)
			w.mu.Lock()
			w.raft.Removal = &ms.Removal{Node: "self", State: ms.RemovalDone, Executor: "s2", Clear: true, Since: at.Add(time.Minute)}
			w.raft.Joined = []string{"s3"}
			w.raft.Removed = []string{"self"}
			w.mu.Unlock()
		}()
	})
	rejoin, err := n.rejoinAs(ctx)
	if err != nil || !rejoin || len(*seen) != 2 {
		t.Fatalf("reinstall: rejoin %v, %v, requests %+v", rejoin, err, *seen)
	}
	if f := n.raftFacts(); f.Joined {
		t.Fatal("still recorded as joined after the clear")
	}

	w2 := adminWorld()
	n2 := newTestNode(t, w2, "server", t.TempDir())
	n2.prog.StartedRKE2 = true
	if rejoin, err := n2.rejoinAs(ctx); rejoin || err != nil || len(n2.reqs.list()) != 0 {
		t.Fatalf("a member that started here: rejoin %v, %v", rejoin, err)
	}
}

// The leader reads a peer's requests only from its verified claim: a member
// without one (an agent, or a host that cannot sign) relays nothing.
func TestPeerRequestsOnlyFromVerifiedClaims(t *testing.T) {
	w := adminWorld()
	at := time.Unix(2_000_000_000, 0).UTC()
	w.members = append(w.members,
		gossip.MemberInfo{Name: "agent-1", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent}},
		gossip.MemberInfo{Name: "s4", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleServer},
			Claim: &claims.Claim{Node: "s4", Requests: []claims.Request{{ID: "00000000000000a1", Kind: claims.RequestRemove, Target: "s3", At: at}}}})
	n := newTestNode(t, w, "server", t.TempDir())
	if got := n.selfRequests("agent-1"); len(got) != 0 {
		t.Fatalf("requests of a member without a claim: %+v", got)
	}
	got := n.selfRequests("s4")
	if len(got) != 1 || got[0] != (election.Request{ID: "00000000000000a1", Kind: election.RequestRemove, Target: "s3", At: at}) {
		t.Fatalf("requests of s4: %+v", got)
	}
}

// A server removed while it was away restarts out of the raft
// configuration: no leader contacts it, so its FSM never says removed; its
// own raft configuration does, and it stops for good before RKE2 starts.
func TestRemovedWhileAwayStops(t *testing.T) {
	w := adminWorld()
	w.outOfRaft, w.datastore.Present = true, true
	n := newTestNode(t, w, "server", t.TempDir())
	phase := walkUntil(t, n, w)
	if !strings.HasPrefix(phase, status.PhaseFailed) || !strings.Contains(phase, "rejoin --wipe") || slices.ContainsFunc(w.steps(), func(s string) bool { return strings.HasPrefix(s, "start@") }) {
		t.Fatalf("ended %q; steps %v", phase, w.steps())
	}
}

// A bootstrap node that rejoined through the slot after it was removed (a
// quorum-loss recovery on another server) is not in Joined, yet it is an
// etcd voter again and did not bootstrap its datastore: it counts as
// joined, so a restart resumes it as a joiner, never with cluster-init.
// The bootstrap node that did bootstrap, or one still removed, does not.
func TestRejoinedBootstrapCountsAsJoined(t *testing.T) {
	w := adminWorld()
	n := newTestNode(t, w, "server", t.TempDir())
	w.mu.Lock()
	w.raft.Bootstrap, w.raft.Started, w.raft.Joined, w.raft.Removed = "self", true, []string{"s2", "s3"}, []string{"self"}
	w.mu.Unlock()
	if n.raftFacts().Joined {
		t.Fatal("a removed bootstrap node counts as joined")
	}
	w.mu.Lock()
	w.raft.Removed = nil
	w.mu.Unlock()
	if !n.raftFacts().Joined {
		t.Fatal("a bootstrap node that joined again through the slot does not count as joined")
	}
	n.prog.Bootstrap = true
	if n.raftFacts().Joined {
		t.Fatal("the bootstrap node that bootstrapped its datastore counts as joined")
	}
}
