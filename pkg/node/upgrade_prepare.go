package node

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// Installing ahead. The install step does not take a host out of
// service: the running RKE2 keeps serving while the new one is put on
// disk, and the new binary runs only after the restart. So a host that
// will upgrade soon installs the target before its begin, while the hosts
// ahead of it restart, and its install step then only checks the binary
// on disk (Prepared in progress.json). Soon is:
//   - a server: the roll to the target is in its servers' phase and this
//     server is the one upgrading or the next (the first two of the
//     plan's Servers, as this server's own copy of the state decides it);
//   - an agent: every alive server runs the target, or is restarting to
//     it (its claim's upgrade report: every step before its restart is
//     done, the install and a drain, so the old RKE2 is being stopped
//     and only the target is left on its disk to start), and this agent is among the first two batches of the
//     agents still behind, by name, as the plan orders them (its own
//     budget is the guess: the leader's counts; a wrong guess costs an
//     early install or an install in the step, nothing else). So the
//     first agents install while the last server restarts, and none
//     holds a binary newer than a server could start.
// The host's configuration must want the target. A failed install ahead
// is only logged: the step installs again, and fails there if it must.
// An unplanned restart of RKE2 (a crash, a reboot) after an install ahead
// starts the new version before the host's turn, as it would after the
// install step of today's roll: versions one minor apart, which RKE2
// supports while a roll runs.

// prepareTarget is the version this host should install ahead now, ""
// for none.
func (n *Node) prepareTarget(members []gossip.MemberInfo) string {
	f := n.localFacts()
	want, err := rke2version.Parse(f.Wanted)
	if err != nil || f.Wanted == f.Running || n.upg.runner.current() != nil && n.upg.runner.current().Target == f.Wanted {
		return ""
	}
	// Only an upgrade the roll allows: never a downgrade or a skipped
	// minor, which an unplanned restart would then act on.
	if running, err := rke2version.Parse(f.Running); err != nil || !running.Less(want) || running.MinorDistance(want) > 1 {
		return ""
	}
	n.mu.Lock()
	prepared := n.prog.Prepared
	n.mu.Unlock()
	if prepared == want.String() {
		return ""
	}
	if n.cfg.IsServer() {
		n.upg.mu.Lock()
		rep := n.upg.report
		n.upg.mu.Unlock()
		if rep == nil || rep.Phase != upgrade.PhaseServers || rep.Target != want.String() {
			return ""
		}
		if !slices.Contains(rep.Servers[:min(len(rep.Servers), 2)], n.cfg.NodeName) {
			return ""
		}
		return want.String()
	}
	var behind []string
	servers, agents := 0, 0
	for _, mi := range members {
		if mi.MetaErr != nil || mi.State == gossip.StateDead || mi.State == gossip.StateLeft || mi.Meta.ClusterName != n.cfg.ClusterName {
			continue
		}
		if mi.Meta.Role == gossip.RoleServer && mi.Claim == nil && mi.Name != n.cfg.NodeName {
			return "" // a server without a verified claim (an older build): its version is not known
		}
		if mi.Claim != nil {
			sf, ok := n.upg.gossip.Facts(mi)
			if !ok || sf.Running != want.String() && sf.Report.Restarting != want.String() {
				return "" // a server still runs, and will start, another version: not the agents' turn yet
			}
			servers++
			continue
		}
		if mi.Meta.Role == gossip.RoleServer {
			continue
		}
		agents++
		af := f
		if mi.Name != n.cfg.NodeName {
			var ok bool
			if af, ok = n.upg.gossip.Facts(mi); !ok {
				continue
			}
		}
		if af.Wanted == want.String() && af.Running != want.String() {
			behind = append(behind, mi.Name)
		}
	}
	if servers == 0 {
		return ""
	}
	slices.Sort(behind)
	i := slices.Index(behind, n.cfg.NodeName)
	if i < 0 || i >= 2*n.cfg.UpgradeBudget().Of(agents) {
		return ""
	}
	return want.String()
}

// prepareUpgrade installs target ahead of this host's begin, in the
// background; at most one at a time.
func (n *Node) prepareUpgrade(ctx context.Context, target string) {
	n.aheadOnce(ctx, &n.upg.preparing, &n.upg.runner.installMu, target, func() {
		r := n.upg.runner
		log := n.log.Named("upgrade").With(zap.String("target", target))
		log.Info("upgrade: installing ahead of this host's begin (RKE2 keeps running the old version)")
		var got string
		err := withDeadline(ctx, upgradeInstallDeadline, "installing ahead", func(ctx context.Context) error {
			var err error
			got, err = r.ops.Install(ctx, target)
			return err
		})
		if err != nil || got != target {
			log.Warn("upgrade: the install ahead did not put the target on disk; the install step will", zap.String("on_disk", got), zap.Error(err))
			return
		}
		if err := n.savePrepared(target, n.binaryIdentity()); err != nil {
			log.Warn("upgrade: the install ahead is not recorded; the install step will run", zap.Error(err))
			return
		}
		log.Info("upgrade: installed ahead of this host's begin")
	})
}

// aheadOnce runs fn in the background, holding mu, unless one it guards
// with busy (under n.upg.mu) still runs, and only while the begin for
// target has not come (then the step does the work).
func (n *Node) aheadOnce(ctx context.Context, busy *bool, mu *ctxMutex, target string, fn func()) {
	n.upg.mu.Lock()
	if *busy {
		n.upg.mu.Unlock()
		return
	}
	*busy = true
	n.upg.mu.Unlock()
	go func() {
		defer func() {
			n.upg.mu.Lock()
			*busy = false
			n.upg.mu.Unlock()
		}()
		if mu.lock(ctx) != nil {
			return
		}
		defer mu.unlock()
		if cur := n.upg.runner.current(); cur != nil && cur.Target == target {
			return // its begin came first: the step does it
		}
		fn()
	}()
}

// savePrepared records that target was installed ahead, as the binary
// identified by file ("" unknown).
func (n *Node) savePrepared(target, file string) error {
	n.upg.saveMu.Lock()
	defer n.upg.saveMu.Unlock()
	n.mu.Lock()
	n.prog.Prepared, n.prog.PreparedFile = target, file
	p := n.prog
	n.mu.Unlock()
	return saveProgress(n.cfg.DataDir, p, n.clk.Now())
}

// binaryIdentity is the rke2 binary's file identity, "" when unknown.
func (n *Node) binaryIdentity() string {
	h, ok := n.host.(interface{ BinaryIdentity() (string, error) })
	if !ok {
		return ""
	}
	id, err := h.BinaryIdentity()
	if err != nil {
		n.log.Debug("upgrade: the rke2 binary's identity is unknown", zap.Error(err))
		return ""
	}
	return id
}

// preparedOnDisk: target was installed ahead, and the binary on disk is
// still the file that install left (its identity unchanged), or, when
// that is not known, still prints target.
func (n *Node) preparedOnDisk(ctx context.Context, target string) bool {
	n.mu.Lock()
	prepared, file := n.prog.Prepared, n.prog.PreparedFile
	n.mu.Unlock()
	if prepared != target {
		return false
	}
	if file != "" {
		return n.binaryIdentity() == file
	}
	v, err := n.installedVersion(ctx)
	return err == nil && v == target
}

// Snapshotting ahead. A server's etcd snapshot does not take it out of
// service either, so the server next in the plan takes it while the one
// upgrading restarts to the target (its claim says restarting): the
// snapshot is then of the datastore just before the server upgrading runs
// the new version, a few seconds before this server's own begin, and the
// snapshot step only checks it. It counts only for the same target and
// when the begin comes within snapshotAheadMaxAge of it (a roll that
// paused or a restart that took long gets a fresh one in the step). It is
// kept in memory: a daemon restarted before its begin takes it again in
// the step.

// snapshotAheadMaxAge bounds how old a snapshot taken ahead may be when
// the snapshot step looks at it.
const snapshotAheadMaxAge = time.Minute

// snapshotAhead is a snapshot taken ahead: for target, at.
type snapshotAhead struct {
	target string
	at     time.Time
}

// snapshotAheadTarget is the version this server should take its
// pre-upgrade snapshot for now, "" for none.
func (n *Node) snapshotAheadTarget(members []gossip.MemberInfo) string {
	if !n.cfg.IsServer() {
		return ""
	}
	f := n.localFacts()
	if f.Wanted == f.Running || f.Wanted == "" {
		return ""
	}
	r := n.upg.runner
	if cur := r.current(); cur != nil && cur.Target == f.Wanted {
		return "" // begun: the step takes it
	}
	r.mu.Lock()
	a := r.ahead
	r.mu.Unlock()
	if a.target == f.Wanted && n.clk.Now().Sub(a.at) <= snapshotAheadMaxAge/2 {
		return "" // taken, and fresh
	}
	n.upg.mu.Lock()
	rep := n.upg.report
	n.upg.mu.Unlock()
	if rep == nil || rep.Phase != upgrade.PhaseServers || rep.Target != f.Wanted || len(rep.Servers) < 2 || rep.Servers[1] != n.cfg.NodeName ||
		!slices.ContainsFunc(rep.Hosts, func(h status.UpgradeHost) bool {
			return h.Name == rep.Servers[0] && h.State == string(upgrade.HostUpgrading)
		}) {
		return ""
	}
	for _, mi := range members {
		if mi.Name != rep.Servers[0] || mi.Claim == nil || mi.State == gossip.StateDead || mi.State == gossip.StateLeft {
			continue
		}
		if sf, ok := n.upg.gossip.Facts(mi); ok && sf.Report.Restarting == f.Wanted {
			return f.Wanted
		}
	}
	return ""
}

// takeSnapshotAhead takes this server's pre-upgrade snapshot for target
// in the background; at most one at a time.
func (n *Node) takeSnapshotAhead(ctx context.Context, target string) {
	n.aheadOnce(ctx, &n.upg.snapshotting, &n.upg.runner.snapMu, target, func() {
		r := n.upg.runner
		log := n.log.Named("upgrade").With(zap.String("target", target))
		err := withDeadline(ctx, upgradeSnapshotDeadline, "taking the etcd snapshot ahead", func(ctx context.Context) error {
			return r.ops.Snapshot(ctx, upgrade.SnapshotName(target))
		})
		if err != nil {
			log.Warn("upgrade: the etcd snapshot ahead of the begin failed; the snapshot step will take it", zap.Error(err))
			return
		}
		r.mu.Lock()
		r.ahead = snapshotAhead{target: target, at: n.clk.Now()}
		r.mu.Unlock()
		log.Info("upgrade: etcd snapshot taken ahead of this server's begin, while the server upgrading restarts")
	})
}
