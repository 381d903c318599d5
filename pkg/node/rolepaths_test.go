package node

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// The role paths, step by step, as the fakes see them, in blocks: a block
// is one retried step of the path (a failure inside it tries the block
// again from its start). Each step carries the phase the host showed when
// it took it; a step removed, added or moved changes these lists.
var (
	bootstrapBlocks = [][]string{
		{"install@installing"},
		{"wait-bootstrap@electing"},
		{"check-vip-free@electing"},
		{"write-config@electing"},
		{"mark-started@electing"},
		{"start@starting", "wait-active@starting"},
		{"probe " + selfIP + "@waiting-vip", "wait-vip@waiting-vip"},
		{"report-ready@waiting-vip"},
		{"wait-cluster-ready@waiting-vip"},
		{"report-ready@waiting-vip"}, // markReady reports again; the leader takes it once
	}
	joinerBlocks = [][]string{
		{"install@installing"},
		{"wait-bootstrap@electing"},
		{"wait-cluster-ready@waiting-cluster", "wait-vip@waiting-cluster"},
		{"acquire-slot@waiting-join-slot"},
		{"write-config@waiting-join-slot"},
		{"start@starting", "wait-active@starting", "probe " + selfIP + "@starting"},
		{"report-ready@starting"},
		{"mark-joined@starting"},
		{"report-ready@starting"},
	}
	agentBlocks = [][]string{
		{"install@installing"},
		{"wait-vip@waiting-cluster"},
		{"write-config@waiting-cluster"},
		{"start@starting", "wait-active@starting"},
	}
)

type rolePath struct {
	name, role string
	bootstrap  bool
	blocks     [][]string
	steps      []string
}

var rolePaths = []rolePath{
	{"bootstrap", "server", true, bootstrapBlocks, slices.Concat(bootstrapBlocks...)},
	{"joiner", "server", false, joinerBlocks, slices.Concat(joinerBlocks...)},
	{"agent", "agent", false, agentBlocks, slices.Concat(agentBlocks...)},
}

func checkWorld(t *testing.T, w *world) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Errorf("protocol breach: %s", v)
	}
	if w.startedCount > 1 {
		t.Errorf("started committed %d times", w.startedCount)
	}
}

func diffSteps(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestRolePathSteps: every role path takes its steps in order, each in
// the phase DESIGN.md gives it, and ends ready.
func TestRolePathSteps(t *testing.T) {
	for _, rp := range rolePaths {
		t.Run(rp.name, func(t *testing.T) {
			w := newWorld(rp.role, rp.bootstrap)
			n := newTestNode(t, w, rp.role, t.TempDir())
			if got := walkUntil(t, n, w); got != status.PhaseReady {
				t.Fatalf("ended %s", got)
			}
			diffSteps(t, w.steps(), rp.steps)
			checkWorld(t, w)
			if !n.prog.Ready || !n.prog.StartedRKE2 {
				t.Errorf("progress not saved: %+v", n.prog)
			}
			if w.phasesPublished < 4 {
				t.Errorf("%d phase changes published to gossip", w.phasesPublished)
			}
		})
	}
}

// TestRolePathStepFailsOnce: a failure at any step is shown and retried in
// the phase the host was in at that step, and the path goes on to ready.
func TestRolePathStepFailsOnce(t *testing.T) {
	for _, rp := range rolePaths {
		for bi, block := range rp.blocks {
			for si, step := range block {
				name, _, _ := strings.Cut(step, "@")
				if name == "report-ready" || slices.Index(stepNames(rp.steps), name) != len(slices.Concat(rp.blocks[:bi]...))+si {
					continue // reports cannot fail; a repeated step fails at its first call only
				}
				t.Run(rp.name+"/"+name, func(t *testing.T) {
					w := newWorld(rp.role, rp.bootstrap)
					w.fails[name] = 1
					n := newTestNode(t, w, rp.role, t.TempDir())
					if got := walkUntil(t, n, w); got != status.PhaseReady {
						t.Fatalf("ended %s", got)
					}
					failed := block[:si+1] // the try that failed, then the block again
					want := slices.Concat(slices.Concat(rp.blocks[:bi]...), failed, slices.Concat(rp.blocks[bi:]...))
					diffSteps(t, w.steps(), want)
					checkWorld(t, w)
				})
			}
		}
	}
}

func stepNames(steps []string) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i], _, _ = strings.Cut(s, "@")
	}
	return out
}

// TestRolePathRestartAtEveryStep: the daemon dies at any step and starts
// again over the same disk, service and raft. The host still reaches
// ready, never asks the leader for what raft already recorded, never
// starts RKE2 over a datastore it did not start, and a running RKE2 is
// adopted, not restarted.
func TestRolePathRestartAtEveryStep(t *testing.T) {
	for _, rp := range rolePaths {
		for i, step := range rp.steps {
			name, _, _ := strings.Cut(step, "@")
			if slices.Index(stepNames(rp.steps), name) != i {
				continue
			}
			t.Run(rp.name+"/"+name, func(t *testing.T) {
				w := newWorld(rp.role, rp.bootstrap)
				w.crashAt = name
				dir := t.TempDir()
				if got := walkUntil(t, newTestNode(t, w, rp.role, dir), w); got != "crashed" {
					t.Fatalf("first run ended %s, want a crash at %s", got, name)
				}
				before := len(w.steps())
				w.mu.Lock()
				wasRunning := w.serviceOn
				w.mu.Unlock()
				n := newTestNode(t, w, rp.role, dir)
				if got := walkUntil(t, n, w); got != status.PhaseReady {
					t.Fatalf("after restart: ended %s; steps:\n%s", got, strings.Join(w.steps(), "\n"))
				}
				after := stepNames(w.steps()[before:])
				checkWorld(t, w)
				if wasRunning && slices.Contains(after, "start") {
					t.Errorf("a running RKE2 was started again: %v", after)
				}
				if wasRunning && slices.Contains(after, "write-config") {
					t.Errorf("a running RKE2 was reconfigured: %v", after)
				}
				w.mu.Lock()
				joined := slices.Contains(w.raft.Joined, w.self)
				w.mu.Unlock()
				if rp.name == "joiner" && !joined && !wasRunning {
					t.Errorf("the joiner's join was never recorded: %v", after)
				}
			})
		}
	}
}

// TestJoinedServerRetriesInItsOwnPhase: an already-joined server (raft
// recorded its join, its RKE2 is not running) whose config write fails goes
// back to waiting-cluster, the phase it is in, never to waiting-join-slot,
// which it skips.
func TestJoinedServerRetriesInItsOwnPhase(t *testing.T) {
	w := newWorld("server", false)
	w.raft.Joined = []string{"self"}
	w.datastore.Present, w.datastore.CAHash = true, testCA
	w.fails["write-config"] = 1
	n := newTestNode(t, w, "server", t.TempDir())
	if got := walkUntil(t, n, w); got != status.PhaseReady {
		t.Fatalf("ended %s", got)
	}
	diffSteps(t, w.steps(), []string{
		"install@installing",
		"wait-bootstrap@electing",
		"wait-cluster-ready@waiting-cluster",
		"wait-vip@waiting-cluster",
		"write-config@waiting-cluster",
		"write-config@waiting-cluster",
		"start@starting",
		"wait-active@starting",
		"probe " + selfIP + "@starting",
		"report-ready@starting",
		"report-ready@starting",
	})
	checkWorld(t, w)
}

// TestJoinRecordedBehindAStaleView: a restarted joiner whose raft view
// has not caught up yet plans to ask for a slot; election answers that the
// join is recorded, and the joiner goes on without waiting for a record
// that already exists.
func TestJoinRecordedBehindAStaleView(t *testing.T) {
	w := newWorld("server", false)
	w.raft.Joined = []string{"self"}
	w.datastore.Present, w.datastore.CAHash = true, testCA
	dir := t.TempDir()
	if err := saveProgress(dir, progress{Role: "server", StartedRKE2: true, CAHash: testCA}, time.Now()); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, w, "server", dir)
	n.coord = staleCoord{fakeCoord{w}}
	if got := walkUntil(t, n, w); got != status.PhaseReady {
		t.Fatalf("ended %s", got)
	}
	steps := stepNames(w.steps())
	if slices.Contains(steps, "mark-joined") {
		t.Errorf("waited for a join record that exists: %v", steps)
	}
	if i := slices.Index(steps, "acquire-slot"); i < 0 || slices.Index(steps, "start") < i {
		t.Errorf("steps %v: want the slot asked for (and answered) before the start", steps)
	}
	checkWorld(t, w)
}

// staleCoord shows a raft view from before this server's join.
type staleCoord struct{ fakeCoord }

func (s staleCoord) State() raftView {
	v := s.fakeCoord.State()
	v.Joined = slices.DeleteFunc(v.Joined, func(n string) bool { return n == s.w.self })
	return v
}

// TestBootstrapRestartBehindAStaleView: a bootstrap node restarted with
// its RKE2 stopped, whose raft view has not caught up with "started", is
// not sent back through the checks for a new cluster (kube-vip elsewhere
// may hold the VIP by now): its progress file says raft committed its start.
func TestBootstrapRestartBehindAStaleView(t *testing.T) {
	w := newWorld("server", true)
	w.raft.Started, w.configKind = true, installer.Bootstrap
	w.datastore.Present, w.datastore.CAHash = true, testCA
	dir := t.TempDir()
	if err := saveProgress(dir, progress{Role: "server", StartedRKE2: true, Bootstrap: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, w, "server", dir)
	n.coord = notStartedCoord{fakeCoord{w}}
	if got := walkUntil(t, n, w); got != status.PhaseReady {
		t.Fatalf("ended %s", got)
	}
	if steps := stepNames(w.steps()); slices.Contains(steps, "check-vip-free") {
		t.Errorf("a started bootstrap node checked that nobody holds the VIP: %v", steps)
	}
	checkWorld(t, w)
}

// notStartedCoord shows a raft view from before the bootstrap's start.
type notStartedCoord struct{ fakeCoord }

func (s notStartedCoord) State() raftView {
	v := s.fakeCoord.State()
	v.Started = false
	return v
}

// TestRKE2StartedMeanwhileIsAdopted: an RKE2 that someone started while
// the host was electing or waiting is adopted at the next decision, never
// reconfigured or restarted.
func TestRKE2StartedMeanwhileIsAdopted(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bootstrap bool
	}{{"bootstrap", true}, {"joiner", false}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld("server", tc.bootstrap)
			w.after = func(step string) {
				if step == "wait-bootstrap" {
					w.serviceOn = true
				}
			}
			n := newTestNode(t, w, "server", t.TempDir())
			if got := walkUntil(t, n, w); got != status.PhaseReady {
				t.Fatalf("ended %s", got)
			}
			for _, s := range stepNames(w.steps()) {
				if s == "write-config" || s == "start" || s == "mark-started" || s == "acquire-slot" {
					t.Errorf("%s while RKE2 was running: %v", s, w.steps())
				}
			}
		})
	}
}

// TestDatastoreRefused: a datastore this cluster never started stops the
// bootstrap node and a joiner for good, before any config is written.
func TestDatastoreRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bootstrap bool
		diskCA    string
		want      string
	}{
		{"bootstrap over an old datastore", true, "old", "that this cluster never started"},
		{"joiner over another cluster's", false, "old", "of another cluster (CA hash old"},
		{"joiner over an unknown cluster's", false, "", "of an unknown cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld("server", tc.bootstrap)
			w.datastore.Present, w.datastore.CAHash = true, tc.diskCA
			n := newTestNode(t, w, "server", t.TempDir())
			got := walkUntil(t, n, w)
			if !strings.HasPrefix(got, status.PhaseFailed) || !strings.Contains(got, tc.want) {
				t.Fatalf("ended %q, want failed with %q", got, tc.want)
			}
			for _, s := range stepNames(w.steps()) {
				if s == "write-config" || s == "start" || s == "mark-started" || s == "acquire-slot" {
					t.Errorf("%s after the datastore was refused", s)
				}
			}
		})
	}
}

// TestBootstrapRoleMovesToAJoiner: a joiner whose wait for cluster ready
// finds the bootstrap role moved to it takes the bootstrap path.
func TestBootstrapRoleMovesToAJoiner(t *testing.T) {
	w := newWorld("server", false)
	w.raft = election.ClusterState{Bootstrap: "other"}
	w.vipHolder = false
	n := newTestNode(t, w, "server", t.TempDir())
	n.coord = movingCoord{fakeCoord{w}}
	if got := walkUntil(t, n, w); got != status.PhaseReady {
		t.Fatalf("ended %s", got)
	}
	if !slices.Contains(stepNames(w.steps()), "mark-started") {
		t.Errorf("the new bootstrap node did not commit its start: %v", w.steps())
	}
	checkWorld(t, w)
}

// movingCoord moves the bootstrap role to this host at its first wait for
// cluster ready, as election does when the holder died before starting.
type movingCoord struct{ fakeCoord }

func (m movingCoord) WaitClusterReady(ctx context.Context) (election.ClusterReady, error) {
	m.w.mu.Lock()
	if m.w.raft.Bootstrap != m.w.self {
		m.w.raft.Bootstrap = m.w.self
		m.w.mu.Unlock()
		return election.ClusterReady{}, election.ErrBootstrapRole
	}
	m.w.mu.Unlock()
	return m.fakeCoord.WaitClusterReady(ctx)
}

// TestKeepReadyReportsTheService: once ready, RKE2 stopping withdraws the
// readiness report and shows the failure; RKE2 back reports it again.
func TestKeepReadyReportsTheService(t *testing.T) {
	w := newWorld("server", false)
	n := newTestNode(t, w, "server", t.TempDir())
	if got := walkUntil(t, n, w); got != status.PhaseReady {
		t.Fatalf("ended %s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.keepReady(ctx) }()
	defer func() { cancel(); <-done }()
	waitPhase := func(want string) {
		t.Helper()
		for {
			if phase, _, _ := n.t.get(); phase == want {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("never %s; steps: %v", want, w.steps())
			case <-time.After(time.Millisecond):
			}
		}
	}
	w.mu.Lock()
	w.serviceOn = false
	w.mu.Unlock()
	waitPhase(status.PhaseFailed)
	if _, _, lastErr := n.t.get(); !strings.Contains(lastErr, "rke2-server.service: not active") {
		t.Errorf("failure shown: %q", lastErr)
	}
	w.mu.Lock()
	withdrawn := w.readyCA == ""
	w.serviceOn = true
	w.mu.Unlock()
	if !withdrawn {
		t.Error("readiness not withdrawn while RKE2 was down")
	}
	waitPhase(status.PhaseReady)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.readyCA != testCA {
		t.Errorf("readiness not reported again: %q", w.readyCA)
	}
}
