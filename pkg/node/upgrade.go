package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// The rolling upgrade as this host executes it (pkg/upgrade's doc says
// the rules). Once the committed progress says this host's upgrade began
// (a begin naming it, keyed by its Since), the runner walks
// upgrade.Steps(role, upgrade-drain) one step at a time, each under its
// deadline, records every finished step that did something in
// progress.json before the next (a daemon that dies mid-roll resumes at
// the step it was in: each step may run twice, none is skipped), and
// reports the outcome in its own
// gossip: Finished = the begin's Since after the last step, or Failed and
// FailedBegin after a failed one. It never retries on its own: the
// operator's `upgrade resume` makes the leader begin the host again, with
// a new Since.

// Step deadlines (doc.go of pkg/upgrade).
const (
	upgradeSnapshotDeadline = 10 * time.Minute
	upgradeInstallDeadline  = 20 * time.Minute
	upgradeDrainDeadline    = 10 * time.Minute
	upgradeRestartDeadline  = 5 * time.Minute
	upgradeUncordonDeadline = 2 * time.Minute
	// upgradeHostTimeout is Input.HostTimeout: a host upgrading longer is
	// failed by the leader. The runner's own wait for health ends a
	// little before it, so the host's reason is the one shown.
	upgradeHostTimeout     = 30 * time.Minute
	upgradeHealthyDeadline = upgradeHostTimeout - 5*time.Minute
	// upgradeTick is how often the runner reads the committed progress.
	upgradeTick = time.Second
	// agentUpgradeWake is the least time between an agent's looks for its
	// begin: it looks at every gossip change, which in a large cluster
	// come many a second.
	agentUpgradeWake = 50 * time.Millisecond
	// agentUpgradeWakeSoon is that least time for an agent that installed
	// the target ahead (upgrade_prepare.go): its begin is among the next
	// (at most two batches of agents are such at once), and every look it
	// misses waits on the roll's critical chain.
	agentUpgradeWakeSoon = 2 * time.Millisecond
)

func stepDeadline(s upgrade.Step) time.Duration {
	switch s {
	case upgrade.StepSnapshot:
		return upgradeSnapshotDeadline
	case upgrade.StepInstall:
		return upgradeInstallDeadline
	case upgrade.StepDrain:
		return upgradeDrainDeadline
	case upgrade.StepRestart:
		return upgradeRestartDeadline
	case upgrade.StepUncordon:
		return upgradeUncordonDeadline
	default:
		return upgradeHealthyDeadline
	}
}

// upgradeRun is this host's record of the upgrade it runs, kept in
// progress.json (field "upgrade"): the begin it runs under and the steps
// it finished.
type upgradeRun struct {
	Since  int64          `json:"since"` // the committed begin's Since
	Target string         `json:"target"`
	Done   []upgrade.Step `json:"done,omitempty"`
	// Finished: every step ran to the end; Failed: why one failed.
	Finished bool   `json:"finished,omitempty"`
	Failed   string `json:"failed,omitempty"`
}

func (r *upgradeRun) validate() error {
	if r.Since <= 0 {
		return fmt.Errorf("upgrade.since %d", r.Since)
	}
	if r.Finished && r.Failed != "" {
		return errors.New("upgrade: both finished and failed")
	}
	for _, s := range r.Done {
		if !slices.Contains(allSteps, s) {
			return fmt.Errorf("upgrade.done: step %q unknown", s)
		}
	}
	return nil
}

var allSteps = []upgrade.Step{upgrade.StepSnapshot, upgrade.StepInstall, upgrade.StepDrain, upgrade.StepRestart, upgrade.StepHealthy, upgrade.StepUncordon}

// upgradeBegin is a committed begin naming this host.
type upgradeBegin struct {
	Since  int64
	Target string
}

// upgradeOps are the steps' effects on this host (upgrade_ops.go on a
// real host; fakes in the tests).
type upgradeOps interface {
	// Snapshot runs `rke2 etcd-snapshot save --name name` (servers).
	Snapshot(ctx context.Context, name string) error
	// Install puts version on disk by the install method and returns the
	// version the binary on disk prints.
	Install(ctx context.Context, version string) (installed string, err error)
	// Cordon marks this host's Node unschedulable (false: schedulable).
	Cordon(ctx context.Context, unschedulable bool) error
	// Evict evicts this host's pods and waits until they are gone.
	Evict(ctx context.Context) error
	// Restart stops and starts this host's RKE2 service and returns the
	// version of the binary it was started from.
	Restart(ctx context.Context) (running string, err error)
	// WaitHealthy returns once this host is healthy (servers: the service
	// active and the local supervisor answering with the cluster's CA;
	// agents: the service active).
	WaitHealthy(ctx context.Context) error
}

// upgradeReport is this host's report on its upgrade, as it gossips it
// (state-contract: UpgradeReport).
type upgradeReport struct {
	Failed      string
	FailedBegin int64
	Finished    int64
	// Restarting: the target while this run restarts RKE2 to it and after
	// (upgradeRun.restarting); a server publishes it
	// (claims.UpgradeReport.Restarting).
	Restarting string
}

func (r *upgradeRun) report() upgradeReport {
	switch {
	case r == nil:
		return upgradeReport{}
	case r.Failed != "":
		return upgradeReport{Failed: r.Failed, FailedBegin: r.Since}
	case r.Finished:
		return upgradeReport{Finished: r.Since}
	}
	return upgradeReport{}
}

// restarting is the target while this run, whose steps are steps, is in
// its restart or after it (every step before the restart done: the target
// is on disk, and a drain, during which the old RKE2 still serves, is
// over), "" otherwise and once it finished or failed.
func (r *upgradeRun) restarting(steps []upgrade.Step) string {
	if r == nil || r.Finished || r.Failed != "" {
		return ""
	}
	i := slices.Index(steps, upgrade.StepRestart)
	if i < 0 || !slices.Contains(steps[:i], upgrade.StepInstall) {
		return ""
	}
	for _, s := range steps[:i] {
		if !slices.Contains(r.Done, s) {
			return ""
		}
	}
	return r.Target
}

// upgradeRunner runs this host's steps. Its record is saved through save
// (progress.json) after every step that did something, before the next
// runs, and at the end. The rest is only kept (keep: in memory and
// published) until the next save, since a crash before it changes
// nothing a resume does: the begin alone (no step finished: the run
// starts from its first step either way), an install that found the
// target on disk already (it finds it again), the last step (it is
// saved with the run's end). Each save is two fsyncs on the roll's
// critical path; the end is reported before it is written.
type upgradeRunner struct {
	role  upgrade.Role
	drain bool
	ops   upgradeOps
	clk   clock.Clock
	log   *zap.Logger
	// save persists the record; the runner does not proceed on an error.
	// keep records it without persisting it (nil: save does).
	save func(upgradeRun) error
	keep func(upgradeRun)
	// onStep is told each step as it starts ("" when the run ends), for
	// the phase detail and the service watch.
	onStep func(target string, s upgrade.Step)
	// installMu is held by every install, the step's and one ahead of the
	// begin (upgrade_prepare.go), so that two never run at once; prepared
	// reports whether target was installed ahead and is on disk (nil:
	// never).
	installMu ctxMutex
	prepared  func(ctx context.Context, target string) bool
	// snapMu is held by every etcd snapshot, the step's and one ahead of
	// the begin (upgrade_prepare.go); ahead is the last one taken ahead
	// (guarded by mu).
	snapMu ctxMutex
	ahead  snapshotAhead

	mu  sync.Mutex
	run *upgradeRun
}

// current is the runner's record (nil: none).
func (u *upgradeRunner) current() *upgradeRun {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.run == nil {
		return nil
	}
	r := *u.run
	r.Done = slices.Clone(u.run.Done)
	return &r
}

func (u *upgradeRunner) set(r upgradeRun) error {
	if err := u.save(r); err != nil {
		return err
	}
	u.mu.Lock()
	u.run = &r
	u.mu.Unlock()
	return nil
}

// hold is set without the write (see upgradeRunner).
func (u *upgradeRunner) hold(r upgradeRun) error {
	if u.keep == nil {
		return u.set(r)
	}
	u.keep(r)
	u.mu.Lock()
	u.run = &r
	u.mu.Unlock()
	return nil
}

// runBegin runs the steps for begin b, unless they already ran to an end
// under it. It returns when the steps ended (finished or failed), or with
// ctx's error when the daemon stops (the record says where to resume).
func (u *upgradeRunner) runBegin(ctx context.Context, b upgradeBegin) error {
	r := u.current()
	if r != nil && r.Since == b.Since && (r.Finished || r.Failed != "") {
		return nil
	}
	if r == nil || r.Since != b.Since || r.Target != b.Target {
		r = &upgradeRun{Since: b.Since, Target: b.Target}
		if err := u.hold(*r); err != nil {
			return err
		}
		u.log.Info("upgrade began: running its steps", zap.String("target", b.Target), zap.Any("steps", upgrade.Steps(u.role, u.drain)))
	} else {
		u.log.Info("upgrade resumed after a restart", zap.String("target", b.Target), zap.Any("done", r.Done))
	}
	defer u.onStep(b.Target, "")
	steps := upgrade.Steps(u.role, u.drain)
	early := u.installEarly(ctx, b.Target, steps, r.Done)
	defer early.wait()
	for i, s := range steps {
		if slices.Contains(r.Done, s) {
			continue
		}
		u.onStep(b.Target, s)
		u.log.Info("upgrade step", zap.String("step", string(s)), zap.String("target", b.Target))
		var err error
		worked := true
		if s == upgrade.StepInstall && early != nil {
			worked, err = early.wait()
		} else {
			err = withDeadline(ctx, stepDeadline(s), "in upgrade step "+string(s), func(ctx context.Context) error {
				var err error
				worked, err = u.step(ctx, s, b.Target)
				return err
			})
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			early.wait() // the failure is reported once no install runs
			r.Failed = failureReason(s, err)
			u.log.Warn("upgrade step failed: the roll stops until `rke2-hanode upgrade resume`", zap.String("step", string(s)), zap.Error(err))
			return u.set(*r)
		}
		r.Done = append(r.Done, s)
		keep := u.set
		if !worked || i == len(steps)-1 {
			keep = u.hold
		}
		if err := keep(*r); err != nil {
			return err
		}
	}
	r.Finished = true
	u.log.Info("upgrade finished", zap.String("target", b.Target))
	// No step runs any more before the report: the leader, reading its
	// own report at once, counts a host in its restart or health step as
	// not healthy. Reported first, then written: the leader's done waits
	// on the report, and a crash between the two loses nothing (the host
	// is upgraded; a resume waits for its health again and reports it).
	u.onStep(b.Target, "")
	if err := u.hold(*r); err != nil {
		return err
	}
	return u.set(*r)
}

// earlyInstall is the install step's work started before the step's
// turn; wait returns its result once it ended (nil receiver: none runs).
type earlyInstall struct {
	done   chan struct{}
	worked bool
	err    error
}

func (e *earlyInstall) wait() (worked bool, err error) {
	if e == nil {
		return false, nil
	}
	<-e.done
	return e.worked, e.err
}

// installEarly starts the install step's work at once, under its own
// deadline, when the steps still to run begin with the etcd snapshot and
// the install follows it (a server's): installing does not take the host
// out of service (RKE2 keeps running the old binary until the restart),
// so the two run side by side, as an install ahead of the begin does for
// every server after the first. The install step then takes its result.
// The runner waits for it before it returns, also when the snapshot
// fails: an install is never cut off half-written (only the daemon's
// stop cancels it, as it cancels the install step). nil when the steps do
// not call for it.
func (u *upgradeRunner) installEarly(ctx context.Context, target string, steps, done []upgrade.Step) *earlyInstall {
	var todo []upgrade.Step
	for _, s := range steps {
		if !slices.Contains(done, s) {
			todo = append(todo, s)
		}
	}
	if len(todo) < 2 || todo[0] != upgrade.StepSnapshot || todo[1] != upgrade.StepInstall {
		return nil
	}
	e := &earlyInstall{done: make(chan struct{})}
	go func() {
		defer close(e.done)
		e.err = withDeadline(ctx, stepDeadline(upgrade.StepInstall), "in upgrade step "+string(upgrade.StepInstall),
			func(ctx context.Context) error {
				var err error
				e.worked, err = u.step(ctx, upgrade.StepInstall, target)
				return err
			})
	}()
	return e
}

// step runs step s; worked is false when it found nothing to do (an
// install whose target was on disk already).
func (u *upgradeRunner) step(ctx context.Context, s upgrade.Step, target string) (bool, error) {
	worked := true
	err := u.runStep(ctx, s, target, &worked)
	return worked, err
}

func (u *upgradeRunner) runStep(ctx context.Context, s upgrade.Step, target string, worked *bool) error {
	switch s {
	case upgrade.StepSnapshot:
		if err := u.snapMu.lock(ctx); err != nil {
			return fmt.Errorf("waiting for the snapshot ahead: %w", err)
		}
		defer u.snapMu.unlock()
		u.mu.Lock()
		a := u.ahead
		u.mu.Unlock()
		if age := u.clk.Now().Sub(a.at); a.target == target && age >= 0 && age <= snapshotAheadMaxAge {
			u.log.Info("upgrade: the etcd snapshot taken ahead of the begin counts", zap.String("target", target), zap.Duration("age", age))
			*worked = false
			return nil
		}
		return u.ops.Snapshot(ctx, upgrade.SnapshotName(target))
	case upgrade.StepInstall:
		if err := u.installMu.lock(ctx); err != nil {
			return fmt.Errorf("waiting for the install ahead: %w", err)
		}
		defer u.installMu.unlock()
		if u.prepared != nil && u.prepared(ctx, target) {
			u.log.Info("upgrade: installed ahead of its begin; the binary on disk is the target", zap.String("target", target))
			*worked = false
			return nil
		}
		got, err := u.ops.Install(ctx, target)
		if err != nil {
			return err
		}
		if got != target {
			// The versions last: a report keeps the end of the error.
			return fmt.Errorf("in airgap mode artifact-path decides the version (put %s's artifacts there): rke2 on disk is %s, not %s", target, got, target)
		}
		return nil
	case upgrade.StepDrain:
		if err := u.ops.Cordon(ctx, true); err != nil {
			return fmt.Errorf("cordon: %w", err)
		}
		return u.ops.Evict(ctx)
	case upgrade.StepRestart:
		running, err := u.ops.Restart(ctx)
		if err != nil {
			return err
		}
		if running != target {
			return fmt.Errorf("restarted from rke2 %s, want %s", running, target)
		}
		return nil
	case upgrade.StepHealthy:
		return u.ops.WaitHealthy(ctx)
	case upgrade.StepUncordon:
		return u.ops.Cordon(ctx, false)
	}
	return fmt.Errorf("step %q unknown", s)
}

// failureReason is what a host reports of a failed step: the step and as
// much of the error as gossip carries (maxReportedFailure bytes), its end
// kept rather than its start, since a wrapped error ends with its cause
// (the install script's last words, etcd's refusal). The log has it all.
func failureReason(s upgrade.Step, err error) string {
	return upgrade.StepFailed(s, errors.New(tailOf(err.Error(), maxReportedFailure-len(s)-len(": "))))
}

// tailOf is msg within budget bytes: its end, after "...", when longer.
func tailOf(msg string, budget int) string {
	if len(msg) <= budget {
		return msg
	}
	cut := len(msg) - (budget - len("..."))
	for cut < len(msg) && !utf8.RuneStart(msg[cut]) {
		cut++
	}
	return "..." + msg[cut:]
}

// ctxMutex is a mutex whose lock gives up when a context ends (the zero
// value is unlocked).
type ctxMutex struct {
	once sync.Once
	ch   chan struct{}
}

func (m *ctxMutex) lock(ctx context.Context) error {
	m.once.Do(func() { m.ch = make(chan struct{}, 1) })
	select {
	case m.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *ctxMutex) unlock() { <-m.ch }
