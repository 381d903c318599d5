package election

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// The attack on a leader's bookkeeping: server a leads and passes its
// barrier; between two of its steps it loses the leadership to b, which
// commits a command, and wins it back in a later term. Its step must not
// go on from the old term's barrier and book: it passes the barrier
// again (its FSM then holds b's command before it decides anything) and
// forgets what it observed as the earlier term's leader. Until that step,
// it does not count itself caught up.
func TestLeadingAgainInANewTermPassesTheBarrierAgain(t *testing.T) {
	type server struct {
		r     *raft.Raft
		fsm   *fsm
		addr  raft.ServerAddress
		trans *raft.InmemTransport
	}
	var servers []server
	for _, id := range []string{"a", "b"} {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		store := raft.NewInmemStore()
		f := &fsm{}
		r, err := raft.NewRaft(fastRaftConfig(id), f, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = r.Shutdown().Error() }()
		servers = append(servers, server{r: r, fsm: f, addr: addr, trans: trans})
	}
	a, b := servers[0], servers[1]
	a.trans.Connect(b.addr, b.trans)
	b.trans.Connect(a.addr, a.trans)
	if err := a.r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "a", Address: a.addr}, {ID: "b", Address: b.addr}}}).Error(); err != nil {
		t.Fatal(err)
	}
	lead := func(s server, other server, id string) {
		t.Helper()
		if !waitUntil(30*time.Second, func() bool { return s.r.State() == raft.Leader || other.r.State() == raft.Leader }) {
			t.Fatal("no leader")
		}
		if other.r.State() == raft.Leader {
			if err := other.r.LeadershipTransferToServer(raft.ServerID(id), s.addr).Error(); err != nil {
				t.Fatalf("leadership to %s: %v", id, err)
			}
		}
		if !waitUntil(30*time.Second, func() bool { return s.r.State() == raft.Leader }) {
			t.Fatalf("%s never led", id)
		}
	}
	e := &Election{cfg: Config{Timing: LANTiming()}, log: zap.NewNop(), fsm: a.fsm, unreach: newUnreachable(clock.System),
		kick: make(chan struct{}, 1), watch: make(chan struct{})}
	e.r, e.running = a.r, true
	l := &loop{e: e, r: a.r, book: newLeaderBook()}

	lead(a, b, "a")
	if !l.leading() {
		t.Fatal("a leads but its step does not")
	}
	first := l.leaderTerm
	if !e.caughtUp() {
		t.Fatal("a passed its barrier and does not count itself caught up")
	}
	l.book.deadSince["x"] = time.Now()

	lead(b, a, "b")
	claim, err := EncodeCommand(Command{Op: opClaim, Node: "b", At: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.r.Apply(claim, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	lead(a, b, "a")
	// Before a's next step: what waits on caughtUp (the bootstrap's
	// wait, the join slot) must not take the old term's barrier.
	if e.caughtUp() {
		t.Fatalf("a leads in term %d, its barrier passed in term %d only, and it counts itself caught up", a.r.CurrentTerm(), first)
	}

	if !l.leading() {
		t.Fatal("a leads again but its step does not")
	}
	if l.leaderTerm <= first {
		t.Fatalf("a leads in term %d and its barrier is still the one of term %d", a.r.CurrentTerm(), l.leaderTerm)
	}
	if !e.caughtUp() {
		t.Fatal("a passed the new term's barrier and does not count itself caught up")
	}
	if _, kept := l.book.deadSince["x"]; kept {
		t.Fatal("the book of a's earlier leadership was kept")
	}
	if got := a.fsm.get().Bootstrap; got != "b" {
		t.Fatalf("a decides with b's command not applied (bootstrap %q)", got)
	}
}
