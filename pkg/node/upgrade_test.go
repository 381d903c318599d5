package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/kubeapi"
	ms "github.com/rke2-hanode/rke2-hanode/pkg/membership"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

const (
	oldV = "v1.35.2+rke2r1"
	newV = "v1.36.1+rke2r1"
)

// fakeUpgradeOps journals the steps' effects on a host: the version on
// disk, the one running, the Node's cordon; it fails or "crashes" (ends
// the daemon's context) at a named step.
type fakeUpgradeOps struct {
	mu        sync.Mutex
	journal   []string
	onDisk    string
	running   string
	cordoned  bool
	fail      map[string]error
	crashAt   string
	crash     func()
	installTo string // what an install puts on disk ("" the version asked)
	// installing, when set, is closed as an install starts; the
	// snapshot then waits for it (an install beside the snapshot).
	installing chan struct{}
	// installGate, when set, holds an install until it is closed.
	installGate chan struct{}
}

func (f *fakeUpgradeOps) note(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.journal = append(f.journal, s)
	name, _, _ := strings.Cut(s, " ")
	if f.crashAt == name {
		f.crashAt = ""
		f.crash()
		return context.Canceled
	}
	return f.fail[name]
}

func (f *fakeUpgradeOps) steps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.journal)
}

func (f *fakeUpgradeOps) Snapshot(ctx context.Context, name string) error {
	if f.running == "" {
		return errors.New("the local server is not running")
	}
	if f.installing != nil {
		select {
		case <-f.installing:
		case <-ctx.Done():
			return fmt.Errorf("no install began beside the snapshot: %w", ctx.Err())
		}
	}
	return f.note("snapshot " + name)
}

func (f *fakeUpgradeOps) Install(ctx context.Context, v string) (string, error) {
	if f.installing != nil {
		close(f.installing)
	}
	if f.installGate != nil {
		select {
		case <-f.installGate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if err := f.note("install " + v); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onDisk = v
	if f.installTo != "" {
		f.onDisk = f.installTo
	}
	return f.onDisk, nil
}

func (f *fakeUpgradeOps) Cordon(_ context.Context, on bool) error {
	if err := f.note(fmt.Sprintf("cordon %v", on)); err != nil {
		return err
	}
	f.mu.Lock()
	f.cordoned = on
	f.mu.Unlock()
	return nil
}

func (f *fakeUpgradeOps) Evict(context.Context) error {
	f.mu.Lock()
	cordoned := f.cordoned
	f.mu.Unlock()
	if !cordoned {
		return errors.New("evicting from a schedulable node: the pods come back")
	}
	return f.note("evict")
}

func (f *fakeUpgradeOps) Restart(context.Context) (string, error) {
	if err := f.note("restart"); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = f.onDisk
	return f.running, nil
}

func (f *fakeUpgradeOps) WaitHealthy(context.Context) error { return f.note("wait-healthy") }

// runnerOver builds a runner whose record is kept in progress.json under
// dir, as the node keeps it.
func runnerOver(t *testing.T, dir string, role upgrade.Role, drain bool, ops upgradeOps) *upgradeRunner {
	t.Helper()
	p, err := loadProgress(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &upgradeRunner{role: role, drain: drain, ops: ops, clk: newStepClock(), log: zap.NewNop(),
		onStep: func(string, upgrade.Step) {},
		save: func(run upgradeRun) error {
			p.Upgrade = &run
			return saveProgress(dir, p, time.Unix(1_800_000_000, 0))
		},
		keep: func(run upgradeRun) { p.Upgrade = &run }}
	r.run = p.Upgrade
	return r
}

func TestUpgradeRunnerSteps(t *testing.T) {
	tests := []struct {
		role  upgrade.Role
		drain bool
		want  []string
	}{
		{upgrade.RoleServer, false, []string{"snapshot pre-upgrade-v1.36.1-rke2r1", "install " + newV, "restart", "wait-healthy"}},
		{upgrade.RoleServer, true, []string{"snapshot pre-upgrade-v1.36.1-rke2r1", "install " + newV, "cordon true", "evict", "restart", "wait-healthy", "cordon false"}},
		{upgrade.RoleAgent, false, []string{"install " + newV, "restart", "wait-healthy"}},
	}
	for _, tt := range tests {
		ops := &fakeUpgradeOps{onDisk: oldV, running: oldV}
		dir := t.TempDir()
		r := runnerOver(t, dir, tt.role, tt.drain, ops)
		b := upgradeBegin{Since: 42, Target: newV}
		if err := r.runBegin(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		got := ops.steps()
		if tt.role == upgrade.RoleServer && len(got) > 1 && got[0] != tt.want[0] {
			got[0], got[1] = got[1], got[0] // the install runs beside the snapshot: either ends first
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s drain=%v: steps %q, want %q", tt.role, tt.drain, ops.steps(), tt.want)
		}
		if ops.running != newV || ops.cordoned {
			t.Errorf("%s drain=%v: running %s, cordoned %v after the roll", tt.role, tt.drain, ops.running, ops.cordoned)
		}
		if rep := r.current().report(); rep != (upgradeReport{Finished: 42}) {
			t.Errorf("%s: report %+v, want Finished 42", tt.role, rep)
		}
		// The begin is done: seen again (every tick), nothing reruns.
		if err := r.runBegin(context.Background(), b); err != nil || len(ops.steps()) != len(tt.want) {
			t.Errorf("%s: steps ran again for the same begin: %q", tt.role, ops.steps())
		}
		// The record survives a restart of the daemon.
		p, err := loadProgress(dir)
		if err != nil || p.Upgrade == nil || !p.Upgrade.Finished || p.Upgrade.Since != 42 {
			t.Errorf("%s: progress.json holds %+v, %v", tt.role, p.Upgrade, err)
		}
	}
}

// TestUpgradeRunnerSavesWhatAResumeNeeds: progress.json is written (two
// fsyncs each, on the roll's critical path) after the steps that did
// something and at the end, not for the begin alone, an install that
// found the target on disk, or the last step before the end.
func TestUpgradeRunnerSavesWhatAResumeNeeds(t *testing.T) {
	for _, tt := range []struct {
		role     upgrade.Role
		prepared bool
		want     [][]string // the steps done in each write
	}{
		{upgrade.RoleAgent, true, [][]string{{"install", "restart"}, {"install", "restart", "wait-healthy"}}},
		{upgrade.RoleAgent, false, [][]string{{"install"}, {"install", "restart"}, {"install", "restart", "wait-healthy"}}},
		{upgrade.RoleServer, true, [][]string{{"etcd-snapshot"}, {"etcd-snapshot", "install", "restart"}, {"etcd-snapshot", "install", "restart", "wait-healthy"}}},
	} {
		ops := &fakeUpgradeOps{onDisk: oldV, running: oldV}
		dir := t.TempDir()
		r := runnerOver(t, dir, tt.role, false, ops)
		if tt.prepared {
			r.prepared = func(context.Context, string) bool { return true }
			ops.onDisk = newV
		}
		save := r.save
		var writes [][]string
		r.save = func(run upgradeRun) error {
			var done []string
			for _, s := range run.Done {
				done = append(done, string(s))
			}
			writes = append(writes, done)
			return save(run)
		}
		if err := r.runBegin(context.Background(), upgradeBegin{Since: 9, Target: newV}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(writes, tt.want) {
			t.Errorf("%s prepared %v: writes of the steps done %q, want %q", tt.role, tt.prepared, writes, tt.want)
		}
		if p, err := loadProgress(dir); err != nil || p.Upgrade == nil || !p.Upgrade.Finished {
			t.Errorf("%s: the run's end is not on disk: %+v, %v", tt.role, p.Upgrade, err)
		}
	}
}

// TestServerInstallsBesideItsSnapshot: a server's install runs beside its
// etcd snapshot (installing does not take it out of service), so the
// first server of a roll, which had no turn to install ahead, does not
// pay the two one after the other. Its restart still follows both. When
// the snapshot fails, the runner returns only once the install ended: an
// install is never left half-written behind a failed step.
func TestServerInstallsBesideItsSnapshot(t *testing.T) {
	ops := &fakeUpgradeOps{onDisk: oldV, running: oldV, installing: make(chan struct{})}
	r := runnerOver(t, t.TempDir(), upgrade.RoleServer, false, ops)
	// Without the install beside it the snapshot waits until its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.runBegin(ctx, upgradeBegin{Since: 42, Target: newV}); err != nil {
		t.Fatal(err)
	}
	want := []string{"snapshot pre-upgrade-v1.36.1-rke2r1", "install " + newV, "restart", "wait-healthy"}
	got := ops.steps()
	if rep := r.current().report(); rep != (upgradeReport{Finished: 42}) || len(got) != 4 || !slices.Equal(got[2:], want[2:]) {
		t.Fatalf("steps %q, report %+v: want the snapshot and the install, then %q", got, rep, want[2:])
	}

	gate := make(chan struct{})
	ops = &fakeUpgradeOps{onDisk: oldV, running: oldV, installGate: gate, fail: map[string]error{"snapshot": errors.New("etcd: no leader")}}
	r = runnerOver(t, t.TempDir(), upgrade.RoleServer, false, ops)
	ended := make(chan error, 1)
	go func() { ended <- r.runBegin(context.Background(), upgradeBegin{Since: 43, Target: newV}) }()
	select {
	case err := <-ended:
		t.Fatalf("the runner returned (%v) while the install beside the failed snapshot still ran", err)
	case <-time.After(200 * time.Millisecond):
	}
	if rep := r.current().report(); rep.Failed != "" {
		t.Fatalf("the failure was reported (%+v) while the install still ran", rep)
	}
	close(gate)
	if err := <-ended; err != nil {
		t.Fatal(err)
	}
	rep := r.current().report()
	if !strings.Contains(rep.Failed, "etcd-snapshot") || !strings.Contains(rep.Failed, "no leader") || ops.onDisk != newV || ops.running != oldV {
		t.Fatalf("report %+v, on disk %s, running %s: want the snapshot's failure, the install ended, the old RKE2 running", rep, ops.onDisk, ops.running)
	}
	if slices.Contains(ops.steps(), "restart") {
		t.Fatalf("restarted after a failed snapshot: %q", ops.steps())
	}
}

// A failed step stops the host: nothing after it runs, the report names
// the step, the error and the begin; the same begin is not retried; a
// new begin (after `upgrade resume`) is.
func TestUpgradeRunnerFails(t *testing.T) {
	ops := &fakeUpgradeOps{onDisk: oldV, running: oldV, fail: map[string]error{"install": errors.New("download sha256 does not match")}}
	r := runnerOver(t, t.TempDir(), upgrade.RoleServer, false, ops)
	if err := r.runBegin(context.Background(), upgradeBegin{Since: 7, Target: newV}); err != nil {
		t.Fatal(err)
	}
	rep := r.current().report()
	if rep.FailedBegin != 7 || rep.Finished != 0 || !strings.Contains(rep.Failed, "install: download sha256 does not match") {
		t.Fatalf("report %+v", rep)
	}
	if slices.Contains(ops.steps(), "restart") || ops.running != oldV {
		t.Fatalf("the service was restarted after a failed install: %q", ops.steps())
	}
	n := len(ops.steps())
	if err := r.runBegin(context.Background(), upgradeBegin{Since: 7, Target: newV}); err != nil || len(ops.steps()) != n {
		t.Fatalf("the host retried on its own: %q", ops.steps())
	}
	delete(ops.fail, "install")
	if err := r.runBegin(context.Background(), upgradeBegin{Since: 9, Target: newV}); err != nil {
		t.Fatal(err)
	}
	if rep := r.current().report(); rep != (upgradeReport{Finished: 9}) || ops.running != newV {
		t.Fatalf("after resume: report %+v, running %s", rep, ops.running)
	}
}

// In airgap mode the artifacts decide the version: an install that puts
// another version on disk fails the step, naming both.
func TestUpgradeRunnerWrongVersionOnDisk(t *testing.T) {
	ops := &fakeUpgradeOps{onDisk: oldV, running: oldV, installTo: oldV}
	r := runnerOver(t, t.TempDir(), upgrade.RoleAgent, false, ops)
	if err := r.runBegin(context.Background(), upgradeBegin{Since: 3, Target: newV}); err != nil {
		t.Fatal(err)
	}
	rep := r.current().report()
	if !strings.Contains(rep.Failed, oldV) || !strings.Contains(rep.Failed, newV) || slices.Contains(ops.steps(), "restart") {
		t.Fatalf("report %+v, steps %q", rep, ops.steps())
	}
}

// A daemon that dies mid-roll resumes at the step it was in, from
// progress.json: the steps it finished are not run again (no second
// snapshot, no second install), the one it was in is.
func TestUpgradeRunnerResumesAfterCrash(t *testing.T) {
	for _, at := range []string{"install", "cordon", "restart", "wait-healthy"} {
		dir := t.TempDir()
		ops := &fakeUpgradeOps{onDisk: oldV, running: oldV, crashAt: at}
		ctx, cancel := context.WithCancel(context.Background())
		ops.crash = cancel
		r := runnerOver(t, dir, upgrade.RoleServer, true, ops)
		b := upgradeBegin{Since: 5, Target: newV}
		if err := r.runBegin(ctx, b); !errors.Is(err, context.Canceled) {
			t.Fatalf("crash at %s: %v", at, err)
		}
		cancel()
		before := len(ops.steps())
		// A new daemon: its runner reads the record from disk.
		r2 := runnerOver(t, dir, upgrade.RoleServer, true, ops)
		if err := r2.runBegin(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		again := ops.steps()[before:]
		all := []string{"snapshot pre-upgrade-v1.36.1-rke2r1", "install " + newV, "cordon true", "evict", "restart", "wait-healthy", "cordon false"}
		if at == "install" {
			// The install runs beside the snapshot: a crash in it may
			// come before the snapshot was recorded, which then runs
			// again (once, before the restart).
			if i := slices.Index(again, all[0]); i >= 0 && i < slices.Index(again, "restart") {
				again = slices.Delete(slices.Clone(again), i, i+1)
			}
		}
		i := slices.IndexFunc(all, func(s string) bool { return strings.HasPrefix(s, at) })
		if !slices.Equal(again, all[i:]) {
			t.Errorf("crash at %s: after the restart ran %q, want %q", at, again, all[i:])
		}
		if rep := r2.current().report(); rep != (upgradeReport{Finished: 5}) || ops.running != newV {
			t.Errorf("crash at %s: report %+v, running %s", at, rep, ops.running)
		}
	}
}

func TestUpgradeRunDecode(t *testing.T) {
	for _, bad := range []string{
		`{"role":"server","upgrade":{"since":0,"target":"v1.36.1+rke2r1"}}`,
		`{"role":"server","upgrade":{"since":1,"target":"x","done":["reboot"]}}`,
		`{"role":"server","upgrade":{"since":1,"target":"x","finished":true,"failed":"y"}}`,
	} {
		if _, err := decodeProgress("progress.json", []byte(bad)); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// fakeUpgradeGossip carries hosts' facts and agents' begins in memory.
type fakeUpgradeGossip struct {
	mu     sync.Mutex
	facts  map[string]hostFacts
	begins map[string]upgradeBegin
	self   string
	// published: the agents' begins this server published, in order.
	published []claims.AgentBegins
}

func (g *fakeUpgradeGossip) Publish(f hostFacts) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.facts[g.self] = f
	return nil
}

func (g *fakeUpgradeGossip) Facts(mi gossip.MemberInfo) (hostFacts, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f, ok := g.facts[mi.Name]
	return f, ok
}

func (g *fakeUpgradeGossip) AgentBegin(_ []gossip.MemberInfo, name string) (upgradeBegin, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.begins[name]
	return b, ok
}

func (g *fakeUpgradeGossip) PublishBegins(b, _ claims.AgentBegins) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.published = append(g.published, b)
	return nil
}

// staticMembers is a gossip view that does not change.
type staticMembers struct {
	fakeMembers
	list []gossip.MemberInfo
}

func (s staticMembers) Members() []gossip.MemberInfo { return s.list }

// member is a host as gossip shows it: a server's readiness in Ready
// (from its claim), an agent's in its phase (gossip clears an agent's
// Ready).
func member(name, role string, ready bool) gossip.MemberInfo {
	m := gossip.Meta{Role: role, ClusterName: "rke2", Phase: status.PhaseStarting}
	if ready {
		m.Phase = status.PhaseReady
	}
	m.Ready = ready && role == gossip.RoleServer
	return gossip.MemberInfo{Name: name, State: gossip.StateAlive, Meta: m}
}

// leaderNode is a server "a" leading servers a, b, c and agents x, y,
// every other host's facts from g.
func leaderNode(t *testing.T, g *fakeUpgradeGossip) *Node {
	t.Helper()
	return upgradeHost(t, "server", "a", g, []gossip.MemberInfo{
		member("a", gossip.RoleServer, true), member("b", gossip.RoleServer, true), member("c", gossip.RoleServer, true),
		member("x", gossip.RoleAgent, true), member("y", gossip.RoleAgent, true),
	})
}

// upgradeHost is host name of role, ready, running oldV and wanting newV,
// among members, every other host's facts from g.
func upgradeHost(t *testing.T, role, name string, g *fakeUpgradeGossip, members []gossip.MemberInfo) *Node {
	t.Helper()
	c := config.Defaults()
	c.Role, c.NodeName, c.DataDir, c.ClusterName, c.RKE2Version = role, name, t.TempDir(), "rke2", newV
	tr, err := newTracker(zap.NewNop(), newStepClock().Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.notify = func(string) {}
	tr.set(status.PhaseReady, "")
	n := &Node{cfg: c, log: zap.NewNop(), clk: newStepClock(), t: tr, role: installer.Role(role)}
	n.prog.RKE2Running = oldV
	n.members = staticMembers{list: members}
	if err := n.initUpgrade(&fakeUpgradeOps{}, g); err != nil {
		t.Fatal(err)
	}
	return n
}

// The leader's duty through the FSM: a roll starts once every server
// wants the target, servers go one at a time with the leader last, each
// recorded done only on its own report for its begin, then agents; a
// host's failure stops the roll and status names it.
func TestUpgradeDutyRolls(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	for _, h := range []string{"b", "c", "x", "y"} {
		g.facts[h] = hostFacts{Wanted: newV, Running: oldV}
	}
	g.facts["c"] = hostFacts{Wanted: oldV, Running: oldV} // c's configuration lags
	n := leaderNode(t, g)
	st := election.ClusterState{Bootstrap: "a", Started: true, ClusterReady: &election.ClusterReady{VIP: testVIP, CAHash: testCA}, Joined: []string{"b", "c"}}
	now := time.Unix(1_800_000_000, 0)
	step := func() upgrade.Command {
		t.Helper()
		now = now.Add(time.Second)
		c, ok := n.upgradeDuty(st, now, 0)
		if !ok {
			return upgrade.Command{}
		}
		p := upgrade.Progress{}
		if st.Upgrade != nil {
			p = *st.Upgrade
		}
		next, err := p.Apply(c)
		if err != nil {
			t.Fatalf("the duty's command %+v is refused: %v", c, err)
		}
		st.Upgrade = &next
		return c
	}
	if c := step(); c.Op != "" {
		t.Fatalf("a roll started while server c wants %s: %+v", oldV, c)
	}
	if u := n.upgradeStatus(); u == nil || u.Phase != upgrade.PhaseWaiting || !strings.Contains(u.Blocked, "different versions") {
		t.Fatalf("status while the configuration disagrees: %+v", u)
	}
	g.facts["c"] = hostFacts{Wanted: newV, Running: oldV}
	if c := step(); c.Op != upgrade.OpStart || c.Target != newV {
		t.Fatalf("want start: %+v", c)
	}
	// finish plays host h's part for its committed begin.
	finish := func(h string) {
		hp, _ := st.Upgrade.Host(h)
		if h == "a" {
			n.prog.RKE2Running = newV
			n.prog.Upgrade = &upgradeRun{Since: hp.Since, Target: newV, Finished: true}
			return
		}
		g.facts[h] = hostFacts{Wanted: newV, Running: newV, Report: upgradeReport{Finished: hp.Since}}
	}
	var order []string
	for range 20 {
		c := step()
		switch c.Op {
		case upgrade.OpBegin:
			order = append(order, c.Node)
			if c.Role == upgrade.RoleServer {
				if up := st.Upgrade.In(upgrade.HostUpgrading); len(up) != 1 {
					t.Fatalf("two hosts upgrading while a server does: %+v", up)
				}
			}
			// Done is not recorded before the host's own report.
			if c2 := step(); c2.Op != "" {
				t.Fatalf("committed %+v before %s reported", c2, c.Node)
			}
			finish(c.Node)
		case upgrade.OpDone, "":
		default:
			t.Fatalf("unexpected %+v", c)
		}
	}
	if want := []string{"b", "c", "a", "x", "y"}; !slices.Equal(order, want) {
		t.Fatalf("begin order %v, want %v (servers first, the leader last, then agents)", order, want)
	}
	if u := n.upgradeStatus(); u.Phase != upgrade.PhaseDone {
		t.Fatalf("status after the roll: %+v", u)
	}
}

func TestUpgradeDutyStopsOnFailure(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	for _, h := range []string{"b", "c", "x", "y"} {
		g.facts[h] = hostFacts{Wanted: newV, Running: oldV}
	}
	n := leaderNode(t, g)
	st := election.ClusterState{Bootstrap: "a", Started: true, ClusterReady: &election.ClusterReady{VIP: testVIP, CAHash: testCA}, Joined: []string{"b", "c"}}
	now := time.Unix(1_800_000_000, 0)
	apply := func() upgrade.Command {
		now = now.Add(time.Second)
		c, ok := n.upgradeDuty(st, now, 0)
		if !ok {
			return upgrade.Command{}
		}
		p := upgrade.Progress{}
		if st.Upgrade != nil {
			p = *st.Upgrade
		}
		next, err := p.Apply(c)
		if err != nil {
			t.Fatal(err)
		}
		st.Upgrade = &next
		return c
	}
	apply() // start
	if c := apply(); c.Op != upgrade.OpBegin || c.Node != "b" {
		t.Fatalf("want begin b: %+v", c)
	}
	hp, _ := st.Upgrade.Host("b")
	g.facts["b"] = hostFacts{Wanted: newV, Running: oldV, Report: upgradeReport{Failed: "install: rke2 on disk is " + oldV, FailedBegin: hp.Since}}
	if c := apply(); c.Op != upgrade.OpFailed || c.Node != "b" {
		t.Fatalf("want failed b: %+v", c)
	}
	for range 5 {
		if c := apply(); c.Op != "" {
			t.Fatalf("the roll went on after b failed: %+v", c)
		}
	}
	u := n.upgradeStatus()
	if u.Phase != upgrade.PhaseFailed || !strings.Contains(u.Blocked, "server b failed: install: rke2 on disk is "+oldV) {
		t.Fatalf("status: %+v", u)
	}
}

// The wanted version: rke2-version, canonical; without one, what runs
// (a channel is not rolled).
func TestLocalFactsWanted(t *testing.T) {
	n := &Node{cfg: config.Defaults()}
	n.prog.RKE2Running = oldV
	if f := n.localFacts(); f.Wanted != oldV || f.Running != oldV {
		t.Fatalf("channel only: %+v", f)
	}
	n.cfg.RKE2Version = "v1.36.1+rke2r1"
	if f := n.localFacts(); f.Wanted != newV {
		t.Fatalf("rke2-version: %+v", f)
	}
}

func TestQuorumAtRisk(t *testing.T) {
	h := func(name string, healthy bool) upgrade.Host {
		return upgrade.Host{Name: name, Role: upgrade.RoleServer, Healthy: healthy}
	}
	tests := []struct {
		voters []string
		hosts  []upgrade.Host
		want   bool
	}{
		{[]string{"a"}, []upgrade.Host{h("a", true)}, false},
		{[]string{"a", "b", "c"}, []upgrade.Host{h("a", true), h("b", true), h("c", true)}, false},
		{[]string{"a", "b", "c"}, []upgrade.Host{h("a", true), h("b", false), h("c", true)}, true},
		{[]string{"a", "b", "c"}, []upgrade.Host{h("a", true), h("b", true)}, true}, // c dead: absent
		{[]string{"a", "b", "c", "d", "e"}, []upgrade.Host{h("a", true), h("b", true), h("c", true), h("d", true), h("e", false)}, false},
	}
	for i, tt := range tests {
		if got := quorumAtRisk(tt.voters, tt.hosts); got != tt.want {
			t.Errorf("%d: %v, want %v", i, got, tt.want)
		}
	}
}

// A server's facts come from its verified claim, its etcd's word on
// being a healthy voter included; an agent's from its metadata; a
// member saying server without a claim carries none. An etcd learner
// anywhere is a server joining.
func TestUpgradeHostsFromGossip(t *testing.T) {
	n := leaderNode(t, &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}})
	n.upg.gossip = memberUpgradeGossip{n: n}
	now := time.Unix(1_800_000_000, 0)
	b := member("b", gossip.RoleServer, true)
	b.Claim = &claims.Claim{Node: "b", RKE2Wanted: newV, RKE2Running: oldV, Upgrade: claims.UpgradeReport{Finished: 3},
		Etcd: claims.EtcdView{ObservedAt: now, Healthy: true}}
	c := member("c", gossip.RoleServer, true)
	c.Claim = &claims.Claim{Node: "c", RKE2Wanted: newV, RKE2Running: oldV,
		Etcd: claims.EtcdView{ObservedAt: now, Healthy: true, Learner: true, Members: []claims.EtcdMember{{Name: "c-1", Learner: true}}}}
	x := member("x", gossip.RoleAgent, true)
	x.Meta.RKE2Wanted, x.Meta.RKE2Running, x.Meta.UpgradeFailed, x.Meta.UpgradeFailedBegin = newV, oldV, "install: boom", 9
	z := member("z", gossip.RoleServer, false) // no claim: not verified
	// d read its etcd while RKE2 restarted: ready in gossip, but its
	// published view is empty until it reads a healthy voter again.
	d := member("d", gossip.RoleServer, true)
	d.Claim = &claims.Claim{Node: "d", RKE2Wanted: newV, RKE2Running: newV}
	in := n.upgradeInput(election.ClusterState{}, []gossip.MemberInfo{member("a", gossip.RoleServer, true), b, c, d, x, z}, "a", now)
	byName := map[string]upgrade.Host{}
	for _, h := range in.Hosts {
		byName[h.Name] = h
	}
	if h := byName["b"]; h.Wanted.String() != newV || h.Running.String() != oldV || !h.Healthy || h.Finished != 3 {
		t.Errorf("b: %+v", h)
	}
	if h := byName["c"]; h.Healthy {
		t.Errorf("c, an etcd learner, counted healthy: %+v", h)
	}
	if h := byName["d"]; h.Healthy {
		t.Errorf("d, whose published etcd view is empty, counted healthy: %+v", h)
	}
	if h := byName["x"]; h.Role != upgrade.RoleAgent || h.Wanted.String() != newV || h.Failed != "install: boom" || h.FailedBegin != 9 {
		t.Errorf("x: %+v", h)
	}
	if h := byName["z"]; !h.Wanted.IsZero() || !h.Running.IsZero() {
		t.Errorf("z, without a claim, carries versions: %+v", h)
	}
	if !in.ServerJoining {
		t.Errorf("a learner in c's etcd view is not a server joining")
	}
	if in.Removing != "" {
		t.Errorf("no removal in flight, and Removing is %q", in.Removing)
	}
	rm := &ms.Removal{Node: "c", State: ms.RemovalExecuting, Executor: "a"}
	if in := n.upgradeInput(election.ClusterState{Removal: rm}, nil, "a", now); in.Removing != "c" {
		t.Errorf("c's removal executing, and Removing is %q", in.Removing)
	}
	rm.State = ms.RemovalDone
	if in := n.upgradeInput(election.ClusterState{Removal: rm}, nil, "a", now); in.Removing != "" {
		t.Errorf("c's removal done, and Removing is %q", in.Removing)
	}
}

// A reason longer than gossip carries is cut on a rune boundary.
func TestClipBytes(t *testing.T) {
	s := strings.Repeat("é", 60) // 120 bytes
	got := clipBytes(s, maxReportedFailure)
	if len(got) > maxReportedFailure || !utf8.ValidString(got) || len(got) < maxReportedFailure-1 {
		t.Fatalf("clipped to %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

// An agent takes its begin from a verified server's /status, only to the
// version its own configuration wants, and asks nothing while it has
// nothing to upgrade.
func TestAgentBeginFromServerStatus(t *testing.T) {
	since := time.Unix(1_800_000_000, 123).UTC()
	var target atomic.Value
	target.Store(newV)
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		st := status.Status{Upgrade: &status.Upgrade{Phase: "agents", Target: target.Load().(string),
			Hosts: []status.UpgradeHost{{Name: "x", Role: "agent", State: "upgrading", Since: since}}}}
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	c := config.Defaults()
	c.Role, c.NodeName, c.RKE2Version, c.HTTPAddress = "agent", "x", newV, ":"+port
	clk := newStepClock()
	n := &Node{cfg: c, log: zap.NewNop(), clk: clk}
	n.prog.RKE2Running = oldV
	if err := n.initUpgrade(&fakeUpgradeOps{}, nil); err != nil {
		t.Fatal(err)
	}
	server := member("s", gossip.RoleServer, true)
	server.Claim = &claims.Claim{Node: "s", AdvertiseAddr: host}
	unverified := member("u", gossip.RoleAgent, true)
	members := []gossip.MemberInfo{unverified, server}
	b, ok := n.agentBegins.begin(members, "x")
	if !ok || b.Since != since.UnixNano() || b.Target != newV {
		t.Fatalf("begin %+v %v, want since %d", b, ok, since.UnixNano())
	}
	// A roll to another version than this agent's configuration wants is
	// not followed.
	target.Store("v1.36.9+rke2r1")
	clk.Sleep(context.Background(), time.Minute)
	if b, ok := n.agentBegins.begin(members, "x"); ok {
		t.Fatalf("followed a roll to another version: %+v", b)
	}
	// Nothing to upgrade: no question asked.
	n.prog.RKE2Running = newV
	before := asked.Load()
	clk.Sleep(context.Background(), time.Minute)
	if _, ok := n.agentBegins.begin(members, "x"); ok || asked.Load() != before {
		t.Fatalf("asked the servers with nothing to upgrade")
	}
	// Only verified servers are asked.
	n.prog.RKE2Running = oldV
	clk.Sleep(context.Background(), time.Minute)
	before = asked.Load()
	if _, ok := n.agentBegins.begin([]gossip.MemberInfo{unverified}, "x"); ok || asked.Load() != before {
		t.Fatalf("asked a member without a verified claim")
	}
}

// A long error is reported by its end, where a wrapped error names its
// cause, within what gossip carries.
func TestFailureReasonKeepsTheCause(t *testing.T) {
	err := fmt.Errorf("installer: install script failed 3 times: /tmp/x/install-rke2.sh: exit status 1; last output: [INFO]  staging artifacts from /tmp/a/very/long/path | [ERROR] download sha256 does not match 000, got 1a2b")
	got := failureReason(upgrade.StepInstall, err)
	if len(got) > maxReportedFailure || !strings.HasPrefix(got, "install: ...") || !strings.HasSuffix(got, "does not match 000, got 1a2b") {
		t.Fatalf("%q (%d bytes)", got, len(got))
	}
	if got := failureReason(upgrade.StepRestart, errors.New("short")); got != "restart: short" {
		t.Fatalf("%q", got)
	}
}

// watchCoord is raft as the upgrade loop reads it: a state, and a channel
// closed at each commit (election.Election.Changed).
type watchCoord struct {
	coordinator
	mu sync.Mutex
	st raftView
	ch chan struct{}
}

func (c *watchCoord) State() raftView {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *watchCoord) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *watchCoord) commit(st election.ClusterState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.ClusterState = st
	close(c.ch)
	c.ch = make(chan struct{})
}

// A server starts its steps at the commit of its begin, not at the upgrade
// loop's next tick: here the loop's clock never moves, so only the commit
// can wake it.
func TestUpgradeLoopWakesOnCommit(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	n := leaderNode(t, g)
	ops := &fakeUpgradeOps{onDisk: oldV, running: oldV}
	n.upg.runner.ops = ops
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	n.clk = clk
	wc := &watchCoord{ch: make(chan struct{})}
	n.coord = wc
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.runUpgrades(ctx)
	}()
	defer func() { cancel(); <-done }()
	if err := clk.WaitSleepers(ctx, 1); err != nil {
		t.Fatal("the upgrade loop never waited for its tick")
	}
	if s := ops.steps(); len(s) != 0 {
		t.Fatalf("steps ran before any begin: %v", s)
	}
	since := time.Unix(1_800_000_000, 5).UnixNano()
	wc.commit(election.ClusterState{Upgrade: &upgrade.Progress{Target: newV,
		Hosts: []upgrade.HostProgress{{Name: "a", Role: upgrade.RoleServer, State: upgrade.HostUpgrading, Since: since}}}})
	for len(ops.steps()) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the committed begin did not wake the upgrade loop: no step ran while its clock stood still")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The install runs beside the snapshot: either may be first.
	if s := ops.steps(); !strings.HasPrefix(s[0], "snapshot ") && !strings.HasPrefix(s[0], "install ") {
		t.Fatalf("first step %q, want the snapshot or the install beside it", s[0])
	}
}

// An agent the roll places in the next batch asks again within
// agentPollSoon; one further back, not before agentPoll/2.
func TestAgentAsksSoonWhenNextInLine(t *testing.T) {
	var agents atomic.Value
	agents.Store([]string{"y", "x"})
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		st := status.Status{Upgrade: &status.Upgrade{Phase: "agents", Target: newV, MaxUnavailable: 1,
			Agents: agents.Load().([]string),
			Hosts:  []status.UpgradeHost{{Name: "y", Role: "agent", State: "upgrading", Since: time.Unix(1_800_000_000, 0)}, {Name: "x", Role: "agent"}, {Name: "z", Role: "agent"}}}}
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	c := config.Defaults()
	c.Role, c.NodeName, c.RKE2Version, c.HTTPAddress = "agent", "x", newV, ":"+port
	clk := newStepClock()
	n := &Node{cfg: c, log: zap.NewNop(), clk: clk}
	n.prog.RKE2Running = oldV
	if err := n.initUpgrade(&fakeUpgradeOps{}, nil); err != nil {
		t.Fatal(err)
	}
	server := member("s", gossip.RoleServer, true)
	server.Claim = &claims.Claim{Node: "s", AdvertiseAddr: host}
	members := []gossip.MemberInfo{server}
	ask := func(after time.Duration) int32 {
		t.Helper()
		clk.Sleep(context.Background(), after)
		before := asked.Load()
		if _, ok := n.agentBegins.begin(members, "x"); ok {
			t.Fatal("x began while y upgrades")
		}
		return asked.Load() - before
	}
	if ask(0) != 1 {
		t.Fatal("the first call asked no server")
	}
	// Right after y: x is next, so it asks again within agentPollSoon·1.5.
	if ask(agentPollSoon*3/2+time.Millisecond) != 1 {
		t.Fatalf("next in line, x did not ask again within %s", agentPollSoon*3/2)
	}
	// Behind z: the usual pace, not before agentPoll/2.
	agents.Store([]string{"y", "z", "x"})
	ask(time.Minute)
	if ask(agentPoll/2-time.Millisecond) != 0 {
		t.Fatalf("x, not next in line, asked again within %s", agentPoll/2)
	}
	if ask(agentPoll+time.Millisecond) != 1 {
		t.Fatalf("x did not ask again within %s", agentPoll*3/2)
	}
}

// An agent takes its begin from the servers' verified claims once any
// publishes begins: only to the version its configuration wants, the
// newest of the servers' copies, never from a member without a verified
// claim (an agent-token holder signs none) or a dead one's, and without
// asking any server's plain-HTTP /status.
func TestAgentBeginFromServerClaims(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		st := status.Status{Upgrade: &status.Upgrade{Phase: "agents", Target: newV,
			Hosts: []status.UpgradeHost{{Name: "x", Role: "agent", State: "upgrading", Since: time.Unix(1, 0)}}}}
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	c := config.Defaults()
	c.Role, c.NodeName, c.RKE2Version, c.HTTPAddress = "agent", "x", newV, ":"+port
	n := &Node{cfg: c, log: zap.NewNop(), clk: newStepClock()}
	n.prog.RKE2Running = oldV
	if err := n.initUpgrade(&fakeUpgradeOps{}, nil); err != nil {
		t.Fatal(err)
	}
	withBegins := func(name string, b claims.AgentBegins) gossip.MemberInfo {
		mi := member(name, gossip.RoleServer, true)
		mi.Claim = &claims.Claim{Node: name, AdvertiseAddr: host, AgentBegins: b}
		return mi
	}
	none := withBegins("s1", claims.AgentBegins{Published: true})
	older := withBegins("s2", claims.AgentBegins{Published: true, Target: newV, Agents: []claims.AgentBegin{{Node: "x", Since: 100}}})
	newer := withBegins("s3", claims.AgentBegins{Published: true, Target: newV, Agents: []claims.AgentBegin{{Node: "w", Since: 300}, {Node: "x", Since: 200}}})
	other := withBegins("s4", claims.AgentBegins{Published: true, Target: "v1.36.9+rke2r1", Agents: []claims.AgentBegin{{Node: "x", Since: 900}}})

	if b, ok := n.agentBegins.begin([]gossip.MemberInfo{none}, "x"); ok {
		t.Fatalf("began with no begin published: %+v", b)
	}
	b, ok := n.agentBegins.begin([]gossip.MemberInfo{none, older, newer, other}, "x")
	if !ok || b.Since != 200 || b.Target != newV {
		t.Fatalf("begin %+v %v, want since 200 to %s (the newest, to the version wanted)", b, ok, newV)
	}
	if b, ok := n.agentBegins.begin([]gossip.MemberInfo{none, other}, "x"); ok {
		t.Fatalf("followed a roll to another version: %+v", b)
	}
	dead := newer
	dead.State = gossip.StateDead
	if b, ok := n.agentBegins.begin([]gossip.MemberInfo{none, dead}, "x"); ok {
		t.Fatalf("took a begin from a dead server's claim: %+v", b)
	}
	// A member whose claim gossip did not verify has none here, whatever
	// its metadata says: with no verified claim publishing, the agent
	// falls back to asking a verified server, of which there is none.
	forger := member("s5", gossip.RoleServer, true)
	if b, ok := n.agentBegins.begin([]gossip.MemberInfo{forger}, "x"); ok {
		t.Fatalf("took a begin without a verified claim: %+v", b)
	}
	if a := asked.Load(); a != 0 {
		t.Fatalf("asked /status %d times though the servers' claims publish begins", a)
	}
}

// A server publishes the agents upgrading now, from its copy of the
// replicated state, sorted and only on a change.
func TestServerPublishesAgentBegins(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	n := leaderNode(t, g)
	wc := &watchCoord{ch: make(chan struct{})}
	n.coord = wc
	n.publishAgentBegins()
	n.publishAgentBegins()
	wc.commit(election.ClusterState{Upgrade: &upgrade.Progress{Target: newV, Hosts: []upgrade.HostProgress{
		{Name: "a", Role: upgrade.RoleServer, State: upgrade.HostUpgrading, Since: 1},
		{Name: "x", Role: upgrade.RoleAgent, State: upgrade.HostDone, Since: 2},
		{Name: "y", Role: upgrade.RoleAgent, State: upgrade.HostUpgrading, Since: 4},
		{Name: "w", Role: upgrade.RoleAgent, State: upgrade.HostUpgrading, Since: 3},
	}}})
	n.publishAgentBegins()
	g.mu.Lock()
	defer g.mu.Unlock()
	want := []claims.AgentBegins{
		{Published: true},
		{Published: true, Target: newV, Agents: []claims.AgentBegin{{Node: "w", Since: 3}, {Node: "y", Since: 4}}},
	}
	if !reflect.DeepEqual(g.published, want) {
		t.Fatalf("published %+v\nwant %+v", g.published, want)
	}
	if _, err := (claims.Claim{Node: "a", Seq: 1, AgentBegins: want[1]}).Encode(); err != nil {
		t.Fatalf("what a server publishes does not encode: %v", err)
	}
}

// The plan never has more agents upgrading at once than a claim carries.
func TestAgentBudgetFitsAClaim(t *testing.T) {
	if upgrade.MaxAgentsAtOnce != claims.MaxAgentBegins {
		t.Fatalf("upgrade.MaxAgentsAtOnce %d, claims.MaxAgentBegins %d", upgrade.MaxAgentsAtOnce, claims.MaxAgentBegins)
	}
	if got := (upgrade.Budget{N: 100, Percent: true}).Of(1000); got != claims.MaxAgentBegins {
		t.Fatalf("100%% of 1000 agents: %d at once", got)
	}
}

// pushingMembers is a server's gossip member that records its claim
// updates and pushes.
type pushingMembers struct {
	staticMembers
	mu     sync.Mutex
	claim  claims.Claim
	pushed [][]string
}

func (p *pushingMembers) UpdateClaim(fn func(*claims.Claim)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.claim)
	return nil
}

func (p *pushingMembers) PushTo(names []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pushed = append(p.pushed, names)
}

// The begins go into the server's signed claim, and are pushed to the
// agents they newly name (a claim too big for a broadcast packet would
// reach them only at push/pull's interval): not to an agent whose begin
// the last published begins already carried, pushed then; no push when
// none is new.
func TestPublishBeginsPushesToTheAgents(t *testing.T) {
	c := config.Defaults()
	c.Role, c.NodeName = "server", "a"
	pm := &pushingMembers{}
	n := &Node{cfg: c, log: zap.NewNop(), members: pm}
	g := memberUpgradeGossip{n: n}
	none := claims.AgentBegins{Published: true}
	if err := g.PublishBegins(none, claims.AgentBegins{}); err != nil {
		t.Fatal(err)
	}
	b := claims.AgentBegins{Published: true, Target: newV, Agents: []claims.AgentBegin{{Node: "w", Since: 3}, {Node: "y", Since: 4}}}
	if err := g.PublishBegins(b, none); err != nil {
		t.Fatal(err)
	}
	// w is done, z begins, y again (a retry after a failure) with a new since.
	next := claims.AgentBegins{Published: true, Target: newV, Agents: []claims.AgentBegin{{Node: "y", Since: 9}, {Node: "z", Since: 8}}}
	if err := g.PublishBegins(next, b); err != nil {
		t.Fatal(err)
	}
	// The same begins to another target are all new.
	other := claims.AgentBegins{Published: true, Target: oldV, Agents: next.Agents}
	if err := g.PublishBegins(other, next); err != nil {
		t.Fatal(err)
	}
	// Only an agent's begin ending: nothing to push.
	if err := g.PublishBegins(claims.AgentBegins{Published: true, Target: oldV, Agents: other.Agents[1:]}, other); err != nil {
		t.Fatal(err)
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if want := other.Agents[1:]; !reflect.DeepEqual(pm.claim.AgentBegins.Agents, want) {
		t.Fatalf("claim carries %+v, want %+v", pm.claim.AgentBegins.Agents, want)
	}
	if want := [][]string{{"w", "y"}, {"y", "z"}, {"y", "z"}}; !reflect.DeepEqual(pm.pushed, want) {
		t.Fatalf("pushed %v, want %v", pm.pushed, want)
	}
}

// TestUpgradeRunnerSkipsAnInstallAhead: a target installed ahead of the
// begin (and still on disk) is not installed again; one not installed
// ahead is.
func TestUpgradeRunnerSkipsAnInstallAhead(t *testing.T) {
	for _, ahead := range []bool{true, false} {
		ops := &fakeUpgradeOps{onDisk: newV, running: oldV}
		r := runnerOver(t, t.TempDir(), upgrade.RoleAgent, false, ops)
		r.prepared = func(_ context.Context, target string) bool { return ahead && target == newV }
		if err := r.runBegin(context.Background(), upgradeBegin{Since: 3, Target: newV}); err != nil {
			t.Fatal(err)
		}
		installed := slices.Contains(ops.steps(), "install "+newV)
		if installed == ahead {
			t.Errorf("installed ahead %v: the step installed %v (%v)", ahead, installed, ops.steps())
		}
		if cur := r.current(); cur == nil || !cur.Finished {
			t.Errorf("installed ahead %v: the run did not finish: %+v", ahead, cur)
		}
	}
}

// TestLeaderDrainsOnlyTheAgentsNode is the attack: an agent-token holder
// joins gossip under the name of a Node no daemon runs on (a node joined
// by hand) and waits for the leader to drain it. The Node's InternalIP is
// not the address the impostor gossips, so the drain is refused.
func TestLeaderDrainsOnlyTheAgentsNode(t *testing.T) {
	victim := kubeapi.Node{Name: "worker-7", InternalIPs: []string{"10.0.0.7"}}
	if err := agentNodeMatches(victim, "10.0.0.66"); err == nil || !strings.Contains(err.Error(), "not the agent's Node") {
		t.Fatalf("an impostor's address drained worker-7: %v", err)
	}
	if err := agentNodeMatches(kubeapi.Node{Name: "worker-7"}, "10.0.0.7"); err == nil {
		t.Fatal("a Node without addresses was taken for the agent's")
	}
	if err := agentNodeMatches(victim, "10.0.0.7"); err != nil {
		t.Fatalf("the agent's own Node refused: %v", err)
	}
}

// TestAgentAddressIsWhereGossipReachesIt: the drain check's address is
// memberlist's, never one the member's metadata claims against it.
func TestAgentAddressIsWhereGossipReachesIt(t *testing.T) {
	honest := gossip.MemberInfo{Name: "worker-7", Addr: "10.0.0.7", State: gossip.StateAlive,
		Meta: gossip.Meta{ClusterName: "c", AdvertiseAddr: "10.0.0.7"}}
	liar := honest
	liar.Addr = "10.0.0.66" // an impostor that says it is at the victim's address
	other := honest
	other.Meta.ClusterName = "d"
	suspect := honest
	suspect.State = gossip.StateSuspect
	for _, tc := range []struct {
		mi   gossip.MemberInfo
		want string
	}{{honest, "10.0.0.7"}, {liar, ""}, {other, ""}, {suspect, ""}} {
		if got := agentAddress([]gossip.MemberInfo{tc.mi}, "worker-7", "c"); got != tc.want {
			t.Errorf("%+v: address %q, want %q", tc.mi, got, tc.want)
		}
	}
}

// An agent installs ahead only once no server will start an older RKE2
// than the target: every alive server runs it, or has it on disk and is
// restarting to it (its claim's report). A server still on the old
// version with nothing installed, one restarting to another version, or
// one without a verified claim keeps every agent's disk as it is.
func TestAgentInstallsAheadWhileTheLastServerRestarts(t *testing.T) {
	withClaim := func(mi gossip.MemberInfo) gossip.MemberInfo {
		mi.Claim = &claims.Claim{Node: mi.Name}
		return mi
	}
	for _, tc := range []struct {
		name    string
		c       hostFacts
		noClaim bool
		want    string
	}{
		{"the last server still runs the old version", hostFacts{Wanted: newV, Running: oldV}, false, ""},
		{"the last server is restarting to the target", hostFacts{Wanted: newV, Running: oldV, Report: upgradeReport{Restarting: newV}}, false, newV},
		{"the last server runs the target", hostFacts{Wanted: newV, Running: newV, Report: upgradeReport{Finished: 7}}, false, newV},
		{"the last server is restarting to another version", hostFacts{Wanted: newV, Running: oldV, Report: upgradeReport{Restarting: "v1.35.3+rke2r1"}}, false, ""},
		{"the last server failed after its install", hostFacts{Wanted: newV, Running: oldV, Report: upgradeReport{Failed: "restart: boom", FailedBegin: 7}}, false, ""},
		{"the last server shows no verified claim", hostFacts{Wanted: newV, Running: newV}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &fakeUpgradeGossip{self: "x", facts: map[string]hostFacts{
				"a": {Wanted: newV, Running: newV, Report: upgradeReport{Finished: 5}},
				"b": {Wanted: newV, Running: newV, Report: upgradeReport{Finished: 6}},
				"c": tc.c,
				"y": {Wanted: newV, Running: oldV},
			}, begins: map[string]upgradeBegin{}}
			last := withClaim(member("c", gossip.RoleServer, true))
			if tc.noClaim {
				last = member("c", gossip.RoleServer, true)
			}
			members := []gossip.MemberInfo{
				withClaim(member("a", gossip.RoleServer, true)), withClaim(member("b", gossip.RoleServer, true)), last,
				member("x", gossip.RoleAgent, true), member("y", gossip.RoleAgent, true),
			}
			n := upgradeHost(t, "agent", "x", g, members)
			if got := n.prepareTarget(members); got != tc.want {
				t.Fatalf("install ahead: %q, want %q", got, tc.want)
			}
		})
	}
}

// A server's run says it is restarting to its target from the moment
// every step before its restart is done (the install, and a drain, during
// which the old RKE2 still serves) until it finishes or fails.
func TestUpgradeRunRestarting(t *testing.T) {
	plain := upgrade.Steps(upgrade.RoleServer, false)
	drain := upgrade.Steps(upgrade.RoleServer, true)
	if !slices.Contains(drain, upgrade.StepDrain) {
		t.Fatalf("a draining server's steps have no drain: %v", drain)
	}
	snap, inst, dr, rs := upgrade.StepSnapshot, upgrade.StepInstall, upgrade.StepDrain, upgrade.StepRestart
	for _, tc := range []struct {
		run   *upgradeRun
		steps []upgrade.Step
		want  string
	}{
		{nil, plain, ""},
		{&upgradeRun{Since: 4, Target: newV}, plain, ""},
		{&upgradeRun{Since: 4, Target: newV, Done: []upgrade.Step{snap}}, plain, ""},
		{&upgradeRun{Since: 4, Target: newV, Done: []upgrade.Step{snap, inst}}, plain, newV},
		{&upgradeRun{Since: 4, Target: newV, Done: []upgrade.Step{snap, inst, rs}}, plain, newV},
		{&upgradeRun{Since: 4, Target: newV, Done: []upgrade.Step{snap, inst}}, drain, ""},
		{&upgradeRun{Since: 4, Target: newV, Done: []upgrade.Step{snap, inst, dr}}, drain, newV},
		{&upgradeRun{Since: 4, Target: newV, Done: []upgrade.Step{snap, inst}, Failed: "restart: boom"}, plain, ""},
		{&upgradeRun{Since: 4, Target: newV, Done: []upgrade.Step{snap, inst, rs}, Finished: true}, plain, ""},
	} {
		if got := tc.run.restarting(tc.steps); got != tc.want {
			t.Errorf("%+v over %v: restarting %q, want %q", tc.run, tc.steps, got, tc.want)
		}
	}
}

// identityHost is an RKE2 host whose binary is a file of the test's; its
// version is never asked (the prepared check must not need to run it).
type identityHost struct {
	rke2Host
	bin     string
	version func() (string, error)
}

func (h identityHost) BinaryIdentity() (string, error) { return fileIdentity(h.bin) }

func (h identityHost) InstalledVersion(context.Context) (string, error) { return h.version() }

// An install ahead is trusted by the install step while the binary is the
// file it left; rewritten, replaced or changed in mode, it is not, and
// the step installs again. Without a recorded identity (a progress.json
// of an older build) the binary is asked its version, as before.
func TestPreparedBinaryIdentity(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "rke2")
	if err := os.WriteFile(bin, []byte("new"), 0o755); err != nil {
		t.Fatal(err)
	}
	asked := 0
	c := config.Defaults()
	c.Role, c.NodeName, c.DataDir = "agent", "x", t.TempDir()
	n := &Node{cfg: c, log: zap.NewNop(), clk: newStepClock(), host: identityHost{bin: bin, version: func() (string, error) {
		asked++
		return newV, nil
	}}}
	n.upg = &upgradeState{}
	if err := n.savePrepared(newV, n.binaryIdentity()); err != nil {
		t.Fatal(err)
	}
	if n.prog.PreparedFile == "" || !strings.Contains(n.prog.PreparedFile, bin) {
		t.Fatalf("identity recorded: %q", n.prog.PreparedFile)
	}
	if !n.preparedOnDisk(context.Background(), newV) || asked != 0 {
		t.Fatalf("an untouched install ahead: prepared false or the binary run (%d)", asked)
	}
	if n.preparedOnDisk(context.Background(), oldV) {
		t.Fatal("prepared for a version that was not installed ahead")
	}
	for name, change := range map[string]func() error{
		"rewritten": func() error { return os.WriteFile(bin, []byte("older"), 0o755) },
		"replaced": func() error {
			tmp := bin + ".tmp"
			if err := os.WriteFile(tmp, []byte("new"), 0o755); err != nil {
				return err
			}
			return os.Rename(tmp, bin)
		},
		"chmod": func() error { return os.Chmod(bin, 0o700) },
	} {
		if err := n.savePrepared(newV, n.binaryIdentity()); err != nil {
			t.Fatal(err)
		}
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if n.preparedOnDisk(context.Background(), newV) {
			t.Errorf("%s binary still taken for the install ahead", name)
		}
	}
	if err := n.savePrepared(newV, ""); err != nil {
		t.Fatal(err)
	}
	if !n.preparedOnDisk(context.Background(), newV) || asked != 1 {
		t.Fatalf("without an identity the binary is asked (%d)", asked)
	}
}

// An agent looks for its begin more often only while it holds the target
// installed ahead and still runs another version.
func TestAgentWake(t *testing.T) {
	c := config.Defaults()
	c.Role, c.NodeName, c.RKE2Version = "agent", "x", newV
	n := &Node{cfg: c}
	n.prog.RKE2Running = oldV
	if w := n.agentWake(); w != agentUpgradeWake {
		t.Fatalf("nothing installed ahead: %s", w)
	}
	n.prog.Prepared = newV
	if w := n.agentWake(); w != agentUpgradeWakeSoon {
		t.Fatalf("installed ahead: %s", w)
	}
	n.prog.Prepared = "v1.36.0+rke2r1"
	if w := n.agentWake(); w != agentUpgradeWake {
		t.Fatalf("another version installed ahead: %s", w)
	}
	n.prog.Prepared, n.prog.RKE2Running = newV, newV
	if w := n.agentWake(); w != agentUpgradeWake {
		t.Fatalf("upgraded: %s", w)
	}
}

// raftRoleCoord is a coordinator whose raft state the test sets.
type raftRoleCoord struct {
	coordinator
	state atomic.Value
	term  atomic.Uint64
}

func (c *raftRoleCoord) State() raftView {
	return raftView{RaftState: c.state.Load().(string), Term: c.term.Load()}
}

// A leader's drain runs only while it leads: once the server is no longer
// the raft leader its jobs stop and record nothing, so the new leader's
// run is the only one, and a server that leads again runs the job anew.
// So too when it lost the leadership and won it again unseen: its jobs
// of the earlier term stop.
func TestLeaderJobsStopWithLeadership(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	n := leaderNode(t, g)
	rc := &raftRoleCoord{}
	rc.state.Store("leader")
	n.coord = rc
	started, stopped := make(chan struct{}, 4), make(chan struct{}, 4)
	run := func(ctx context.Context, _ upgrade.Job) error {
		started <- struct{}{}
		<-ctx.Done()
		stopped <- struct{}{}
		return ctx.Err()
	}
	job := upgrade.Job{Kind: upgrade.JobDrain, Node: "x", Since: 7}
	recv := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal(what)
		}
	}
	waitNotRunning := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n.upg.jobs.mu.Lock()
			running := n.upg.jobs.running[job]
			n.upg.jobs.mu.Unlock()
			if !running {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the stopped job is still marked running")
			}
			time.Sleep(time.Millisecond)
		}
	}
	n.upg.jobs.start(context.Background(), rc.term.Load(), []upgrade.Job{job}, run, func() { t.Error("a stopped job ended as if it ran") })
	recv(started, "the leader's job did not start")
	n.stopJobsUnlessLeader()
	select {
	case <-stopped:
		t.Fatal("the leader's job stopped while it leads")
	case <-time.After(50 * time.Millisecond):
	}
	rc.state.Store("follower")
	n.stopJobsUnlessLeader()
	recv(stopped, "a deposed leader's drain runs on")
	p := upgrade.Progress{Target: newV, Hosts: []upgrade.HostProgress{{Name: "x", Role: upgrade.RoleAgent, State: upgrade.HostDraining, Since: 7}}}
	waitNotRunning()
	if d, _ := n.upg.jobs.results(p, true); len(d) != 0 {
		t.Fatalf("a stopped drain left a result: %+v", d)
	}
	rc.state.Store("leader")
	n.upg.jobs.start(context.Background(), rc.term.Load(), []upgrade.Job{job}, run, func() {})
	recv(started, "leading again, the job did not run again")
	// It lost the leadership and won it again between two looks: a
	// leader still, in a later term, and its job of the earlier term
	// stops; a job started in the new term stops the old ones too.
	rc.term.Add(2)
	n.stopJobsUnlessLeader()
	recv(stopped, "a job of an earlier term of this leader's runs on")
	waitNotRunning()
	n.upg.jobs.start(context.Background(), rc.term.Load(), []upgrade.Job{job}, run, func() {})
	recv(started, "the job did not run in the new term")
	n.upg.jobs.start(context.Background(), rc.term.Load()+1, []upgrade.Job{{Kind: upgrade.JobUncordon, Node: "y", Since: 8}}, run, func() {})
	recv(started, "the later term's job did not start")
	recv(stopped, "a job started in a later term left the earlier term's running")
	n.upg.jobs.stop()
	recv(stopped, "the last job did not stop")
}

// The install step waits for an install ahead still running, but no
// longer than its own context: a step ended by its deadline or by the
// daemon's stop does not stay blocked on the install ahead.
func TestInstallStepWaitsForTheInstallAheadWithinItsContext(t *testing.T) {
	ops := &fakeUpgradeOps{onDisk: oldV, running: oldV}
	r := runnerOver(t, t.TempDir(), upgrade.RoleAgent, false, ops)
	if err := r.installMu.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.step(ctx, upgrade.StepInstall, newV); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("the step ran while an install ahead held the lock: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for the install ahead") {
			t.Fatalf("step ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the step stayed blocked after its context ended")
	}
	r.installMu.unlock()
	if _, err := r.step(context.Background(), upgrade.StepInstall, newV); err != nil {
		t.Fatalf("the step once the lock is free: %v", err)
	}
}

// A snapshot taken ahead of the begin counts for the snapshot step only
// for the same target and while fresh: an older one, or one for another
// version, and the step takes its own.
func TestSnapshotStepUsesAFreshSnapshotAhead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ahead  snapshotAhead
		taken  bool // the step takes a snapshot of its own
		offset time.Duration
	}{
		{"fresh, same target", snapshotAhead{target: newV}, false, -10 * time.Second},
		{"too old", snapshotAhead{target: newV}, true, -snapshotAheadMaxAge - time.Second},
		{"another target", snapshotAhead{target: "v1.36.2+rke2r1"}, true, -10 * time.Second},
		{"none", snapshotAhead{}, true, 0},
	} {
		ops := &fakeUpgradeOps{onDisk: oldV, running: oldV}
		r := runnerOver(t, t.TempDir(), upgrade.RoleServer, false, ops)
		if tc.ahead.target != "" {
			tc.ahead.at = r.clk.Now().Add(tc.offset)
		}
		r.ahead = tc.ahead
		if err := r.runBegin(context.Background(), upgradeBegin{Since: 3, Target: newV}); err != nil {
			t.Fatal(err)
		}
		took := slices.ContainsFunc(ops.steps(), func(s string) bool { return strings.HasPrefix(s, "snapshot ") })
		if took != tc.taken || !r.current().Finished {
			t.Errorf("%s: the step took a snapshot: %v, want %v (%q)", tc.name, took, tc.taken, ops.steps())
		}
	}
}

// The server next in the plan takes its snapshot ahead while the server
// upgrading restarts to the target (its claim says restarting), and only
// then: not while that server still installs, not for another version,
// not when it is not the next, not once its own begin came.
func TestServerSnapshotsAheadWhileThePreviousRestarts(t *testing.T) {
	withClaim := func(mi gossip.MemberInfo) gossip.MemberInfo {
		mi.Claim = &claims.Claim{Node: mi.Name}
		return mi
	}
	members := []gossip.MemberInfo{withClaim(member("a", gossip.RoleServer, true)), withClaim(member("b", gossip.RoleServer, true)), withClaim(member("c", gossip.RoleServer, true))}
	plan := func(servers ...string) *status.Upgrade {
		return &status.Upgrade{Phase: upgrade.PhaseServers, Target: newV, Servers: servers,
			Hosts: []status.UpgradeHost{{Name: servers[0], Role: "server", State: string(upgrade.HostUpgrading)}}}
	}
	for _, tc := range []struct {
		name      string
		upgrading hostFacts
		plan      *status.Upgrade
		want      string
	}{
		{"the previous server restarts to the target", hostFacts{Wanted: newV, Running: oldV, Report: upgradeReport{Restarting: newV}}, plan("a", "b", "c"), newV},
		{"the previous server still installs", hostFacts{Wanted: newV, Running: oldV}, plan("a", "b", "c"), ""},
		{"it restarts to another version", hostFacts{Wanted: newV, Running: oldV, Report: upgradeReport{Restarting: "v1.36.2+rke2r1"}}, plan("a", "b", "c"), ""},
		{"this server is not the next", hostFacts{Wanted: newV, Running: oldV, Report: upgradeReport{Restarting: newV}}, plan("a", "c", "b"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &fakeUpgradeGossip{self: "b", facts: map[string]hostFacts{"a": tc.upgrading, "c": {Wanted: newV, Running: oldV}}, begins: map[string]upgradeBegin{}}
			n := upgradeHost(t, "server", "b", g, members)
			n.upg.report = tc.plan
			if got := n.snapshotAheadTarget(members); got != tc.want {
				t.Fatalf("snapshot ahead: %q, want %q", got, tc.want)
			}
			if tc.want == "" {
				return
			}
			ops := &fakeUpgradeOps{onDisk: oldV, running: oldV}
			n.upg.runner.ops = ops
			n.takeSnapshotAhead(context.Background(), tc.want)
			deadline := time.Now().Add(time.Minute)
			for {
				n.upg.runner.mu.Lock()
				a := n.upg.runner.ahead
				n.upg.runner.mu.Unlock()
				if a.target == newV {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no snapshot was taken ahead")
				}
				time.Sleep(time.Millisecond)
			}
			if got := ops.steps(); !slices.Equal(got, []string{"snapshot pre-upgrade-v1.36.1-rke2r1"}) {
				t.Fatalf("ahead of the begin: %q", got)
			}
			if got := n.snapshotAheadTarget(members); got != "" {
				t.Fatalf("a fresh snapshot ahead is taken again: %q", got)
			}
			// Once begun, the step takes none of its own.
			if err := n.upg.runner.runBegin(context.Background(), upgradeBegin{Since: 11, Target: newV}); err != nil {
				t.Fatal(err)
			}
			if got := ops.steps(); got[0] != "snapshot pre-upgrade-v1.36.1-rke2r1" || slices.Index(got[1:], got[0]) >= 0 {
				t.Fatalf("the step took a second snapshot: %q", got)
			}
		})
	}
}

// A server's new upgrade report wakes the coordinator's loop: the leader
// reads its own report when it decides, and nothing else wakes it then
// (its tick is a second once the cluster settled), where a peer's report
// wakes it through gossip.
func TestOwnUpgradeReportWakesTheLeader(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	n := upgradeHost(t, "server", "a", g, []gossip.MemberInfo{member("a", gossip.RoleServer, true)})
	wc := &wakeCoord{watchCoord: &watchCoord{ch: make(chan struct{})}}
	n.coord = wc
	n.publishUpgradeFacts()
	before := wc.wakes.Load()
	n.upg.runner.keep(upgradeRun{Since: 4, Target: newV, Done: upgrade.Steps(upgrade.RoleServer, false), Finished: true})
	if got := g.facts["a"].Report.Finished; got != 4 {
		t.Fatalf("the report was not published: %+v", g.facts["a"])
	}
	if wc.wakes.Load() == before {
		t.Fatal("the finished report did not wake the leader's loop")
	}
	n.publishUpgradeFacts()
	if wc.wakes.Load() != before+1 {
		t.Fatalf("woken %d times for one change", wc.wakes.Load()-before)
	}
}

// funcWaker is watchCoord with a Wake of the test's.
type funcWaker struct {
	*watchCoord
	wake func()
}

func (c *funcWaker) Wake() { c.wake() }

// When a server's finished report wakes the leader, the server is out of
// its restart and health steps: the leader, deciding at once on its own
// report, counts a host in those steps as not healthy and would wait for
// its next tick to record the done.
func TestFinishedReportComesOutOfTheSteps(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	n := upgradeHost(t, "server", "a", g, []gossip.MemberInfo{member("a", gossip.RoleServer, true)})
	n.upg.runner.ops = &fakeUpgradeOps{onDisk: oldV, running: oldV}
	var woke, restarting atomic.Int32
	n.coord = &funcWaker{watchCoord: &watchCoord{ch: make(chan struct{})}, wake: func() {
		g.mu.Lock()
		finished := g.facts["a"].Report.Finished == 8
		g.mu.Unlock()
		if finished {
			woke.Add(1)
			if n.upgradeRestarting() {
				restarting.Add(1)
			}
		}
	}}
	if err := n.upg.runner.runBegin(context.Background(), upgradeBegin{Since: 8, Target: newV}); err != nil {
		t.Fatal(err)
	}
	if woke.Load() == 0 || restarting.Load() > 0 {
		t.Fatalf("woken %d times on the finished report, %d of them still in a restart or health step", woke.Load(), restarting.Load())
	}
}

// The leader's jobs belong to the raft term the decision was made in,
// not the one the election shows when they start: a leader that lost the
// leadership and won it again between its decision and the start would
// otherwise run the earlier term's decision as jobs of the new term, and
// nothing would stop them.
func TestLeaderJobsTakeTheDecisionsTerm(t *testing.T) {
	g := &fakeUpgradeGossip{self: "a", facts: map[string]hostFacts{}, begins: map[string]upgradeBegin{}}
	members := []gossip.MemberInfo{
		member("a", gossip.RoleServer, true), member("b", gossip.RoleServer, true), member("c", gossip.RoleServer, true),
		member("x", gossip.RoleAgent, true), member("y", gossip.RoleAgent, true),
	}
	for i := range members {
		members[i].Meta.Commands = election.CommandVersion
	}
	for _, h := range []string{"b", "c", "x", "y"} {
		g.facts[h] = hostFacts{Wanted: newV, Running: newV}
	}
	g.facts["x"] = hostFacts{Wanted: newV, Running: oldV}
	n := upgradeHost(t, "server", "a", g, members)
	n.cfg.UpgradeDrain = true
	n.prog.RKE2Running = newV
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.upg.mu.Lock()
	n.upg.ctx = ctx
	n.upg.mu.Unlock()
	rc := &raftRoleCoord{}
	rc.state.Store("leader")
	rc.term.Store(7) // it leads again, in term 7
	n.coord = rc
	st := election.ClusterState{Bootstrap: "a", Started: true, ClusterReady: &election.ClusterReady{VIP: testVIP, CAHash: testCA}, Joined: []string{"b", "c"},
		Upgrade: &upgrade.Progress{Target: newV, Hosts: []upgrade.HostProgress{
			{Name: "a", Role: upgrade.RoleServer, State: upgrade.HostDone, Since: 1},
			{Name: "b", Role: upgrade.RoleServer, State: upgrade.HostDone, Since: 2},
			{Name: "c", Role: upgrade.RoleServer, State: upgrade.HostDone, Since: 3},
			{Name: "x", Role: upgrade.RoleAgent, State: upgrade.HostDraining, Since: 5},
		}}}
	n.upgradeDuty(st, time.Unix(1_800_000_000, 0), 5) // decided in term 5
	n.upg.jobs.mu.Lock()
	started, term := n.upg.jobs.term != nil, n.upg.jobs.raftTerm
	n.upg.jobs.mu.Unlock()
	if !started {
		t.Fatal("the duty started no drain for the draining agent: the test does not reach the jobs")
	}
	if term != 5 {
		t.Fatalf("the drain runs as a job of term %d, want 5, the decision's", term)
	}
	n.stopJobsUnlessLeader()
	n.upg.jobs.mu.Lock()
	stopped := n.upg.jobs.term == nil
	n.upg.jobs.mu.Unlock()
	if !stopped {
		t.Error("the earlier term's drain was not stopped in term 7")
	}
}

// The attack on a run of the leader's commands: an agent's drain ended,
// the leader decides its begin and, on the copy that holds the begin, the
// next command. Raft then loses the begin (a leadership change). Deciding
// on the copy must not have dropped the drain's result, or the agent is
// cordoned and drained again (and a PodDisruptionBudget can fail the
// roll there). The committed state's own decision still drops results
// of hosts no longer in flight.
func TestDecisionOnACopyKeepsTheJobResults(t *testing.T) {
	j := newLeaderJobs()
	j.drains["x"] = upgrade.JobResult{Since: 5}
	committed := upgrade.Progress{Target: newV, Hosts: []upgrade.HostProgress{{Name: "x", Role: upgrade.RoleAgent, State: upgrade.HostDraining, Since: 5}}}
	copied, err := committed.Apply(upgrade.Command{Op: upgrade.OpBegin, Node: "x", Role: upgrade.RoleAgent, At: 9})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := j.results(copied, false); len(d) != 0 {
		t.Fatalf("a result for another begin was handed to the decision: %+v", d)
	}
	if d, _ := j.results(committed, true); d["x"] != (upgrade.JobResult{Since: 5}) {
		t.Fatalf("the drain's result is gone after a decision on a copy: %+v", d)
	}
	if d, _ := j.results(copied, true); len(d) != 0 || len(j.drains) != 0 {
		t.Fatalf("the committed begin did not drop the drain's result: %+v, %+v", d, j.drains)
	}
}
