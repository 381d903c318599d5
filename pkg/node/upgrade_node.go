package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/rke2version"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// The rolling upgrade's wiring on this host: what it gossips (its wanted
// and running versions and its report), where it learns its begin, the
// leader's duty (Decide over the FSM and the hosts' gossip), and what
// status and metrics show.

// hostFacts is what one host gossips for the roll.
type hostFacts struct {
	Wanted, Running string
	Report          upgradeReport
}

// upgradeGossip is where the roll's facts travel between hosts: servers'
// in their signed claims, agents' in their own metadata (state-contract).
type upgradeGossip interface {
	// Publish spreads this host's facts.
	Publish(f hostFacts) error
	// Facts is what member mi gossips, ok false when it carries none
	// (a build from before the fields, or no verified claim).
	Facts(mi gossip.MemberInfo) (hostFacts, bool)
	// AgentBegin is the committed begin naming agent name, as the
	// servers' verified claims carry it; ok false: none.
	AgentBegin(members []gossip.MemberInfo, name string) (upgradeBegin, bool)
	// PublishBegins spreads the agents' committed begins (servers only);
	// prev is what it spread last.
	PublishBegins(b, prev claims.AgentBegins) error
}

// memberUpgradeGossip is upgradeGossip over this host's gossip member:
// a server's facts in its signed claim (UpdateClaim), an agent's in its
// own metadata; another host's read from its verified claim, or for an
// agent (which never has one) from its metadata. A server publishes the
// agents' committed begins in its claim; an agent takes its own from
// there (agentBegins).
type memberUpgradeGossip struct {
	n *Node
}

// claimUpdater is the part of *gossip.Member that signs this server's
// claim.
type claimUpdater interface {
	UpdateClaim(fn func(*claims.Claim)) error
}

func (g memberUpgradeGossip) Publish(f hostFacts) error {
	n := g.n
	if n.members == nil {
		return errors.New("gossip not open yet")
	}
	failed := clipBytes(f.Report.Failed, maxReportedFailure)
	if n.cfg.IsServer() {
		cu, ok := n.members.(claimUpdater)
		if !ok {
			return errors.New("this member signs no claims")
		}
		return cu.UpdateClaim(func(c *claims.Claim) {
			c.RKE2Wanted, c.RKE2Running = f.Wanted, f.Running
			c.Upgrade = claims.UpgradeReport{Failed: failed, FailedBegin: f.Report.FailedBegin, Finished: f.Report.Finished, Restarting: f.Report.Restarting}
		})
	}
	set := func(m *gossip.Meta) {
		m.RKE2Wanted, m.RKE2Running = f.Wanted, f.Running
		m.UpgradeFailed, m.UpgradeFailedBegin, m.UpgradeFinished = failed, f.Report.FailedBegin, f.Report.Finished
	}
	// A new report (finished, or failed) is what the leader waits for to
	// commit this agent done and begin the next: the servers get it by a
	// direct exchange at once, not a gossip round or two later.
	n.upg.mu.Lock()
	newReport := f.Report != n.upg.published.Report && (f.Report.Finished != 0 || f.Report.Failed != "")
	n.upg.mu.Unlock()
	if s, ok := n.members.(interface {
		UpdateMetaAndSync(func(*gossip.Meta), string) error
	}); ok && newReport {
		return s.UpdateMetaAndSync(set, gossip.RoleServer)
	}
	return n.members.UpdateMeta(set)
}

func (g memberUpgradeGossip) Facts(mi gossip.MemberInfo) (hostFacts, bool) {
	if c := mi.Claim; c != nil {
		return hostFacts{Wanted: c.RKE2Wanted, Running: c.RKE2Running,
			Report: upgradeReport{Failed: c.Upgrade.Failed, FailedBegin: c.Upgrade.FailedBegin, Finished: c.Upgrade.Finished, Restarting: c.Upgrade.Restarting}}, true
	}
	if mi.Meta.Role != gossip.RoleAgent {
		return hostFacts{}, false
	}
	m := mi.Meta
	return hostFacts{Wanted: m.RKE2Wanted, Running: m.RKE2Running,
		Report: upgradeReport{Failed: m.UpgradeFailed, FailedBegin: m.UpgradeFailedBegin, Finished: m.UpgradeFinished}}, true
}

func (g memberUpgradeGossip) AgentBegin(members []gossip.MemberInfo, name string) (upgradeBegin, bool) {
	return g.n.agentBegins.begin(members, name)
}

func (g memberUpgradeGossip) PublishBegins(b, prev claims.AgentBegins) error {
	n := g.n
	if n.members == nil {
		return errors.New("gossip not open yet")
	}
	cu, ok := n.members.(claimUpdater)
	if !ok {
		return errors.New("this member signs no claims")
	}
	if err := cu.UpdateClaim(func(c *claims.Claim) { c.AgentBegins = b }); err != nil {
		return err
	}
	// The agents newly named must see it soon: a claim with many begins
	// can be too big for a broadcast packet, and push/pull's interval is
	// long. Only those: each push is a full state exchange, and the
	// agents already begun have their begin (it is in every claim since).
	if p, ok := n.members.(interface{ PushTo(names []string) }); ok {
		if names := newBegins(b, prev); len(names) > 0 {
			p.PushTo(names)
		}
	}
	return nil
}

// newBegins are the agents b begins that prev did not (another begin, or
// to another target, counts as new).
func newBegins(b, prev claims.AgentBegins) []string {
	var out []string
	for _, a := range b.Agents {
		if prev.Target != b.Target || !slices.Contains(prev.Agents, a) {
			out = append(out, a.Node)
		}
	}
	return out
}

// maxReportedFailure is what the claim and the metadata carry of a
// failure's reason (state-contract: ≤ 96 bytes).
const maxReportedFailure = 96

// clipBytes cuts s to at most n bytes on a rune boundary.
func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// upgradeState is the node's part of the roll.
type upgradeState struct {
	runner  *upgradeRunner
	gossip  upgradeGossip
	metrics *upgrade.Metrics

	mu        sync.Mutex
	published hostFacts
	// begins is the agents' begins this server published last (nil: none
	// yet).
	begins *claims.AgentBegins
	step   upgrade.Step // the step running now ("" none)
	target string
	report *status.Upgrade // the last plan's report (servers)
	// jobs are the drains and uncordons of agents this server runs as
	// leader (upgrade_jobs.go), under ctx, runUpgrades' context.
	jobs *leaderJobs
	ctx  context.Context
	// preparing: an install ahead of the begin runs (upgrade_prepare.go);
	// saveMu orders the runner's and the install ahead's progress.json
	// writes.
	preparing bool
	// snapshotting: a snapshot ahead of the begin runs.
	snapshotting bool
	saveMu       sync.Mutex
}

// initUpgrade builds the runner over ops (nil: this host's real steps).
func (n *Node) initUpgrade(ops upgradeOps, g upgradeGossip) error {
	m, err := upgrade.NewMetrics(n.reg)
	if err != nil {
		return err
	}
	if ops == nil {
		ops = &hostUpgradeOps{n: n}
	}
	if g == nil {
		g = memberUpgradeGossip{n: n}
	}
	role := upgrade.RoleAgent
	if n.cfg.IsServer() {
		role = upgrade.RoleServer
	}
	n.upg = &upgradeState{gossip: g, metrics: m, jobs: newLeaderJobs()}
	n.agentBegins = newAgentBeginSource(n)
	n.upg.runner = &upgradeRunner{
		// An agent is drained by the leader (upgrade_jobs.go), never by
		// itself: it holds no admin kubeconfig.
		role: role, drain: n.cfg.UpgradeDrain && role == upgrade.RoleServer, ops: ops, clk: n.clk, log: n.log.Named("upgrade"),
		save:     n.saveUpgradeRun,
		keep:     n.keepUpgradeRun,
		onStep:   n.upgradeStep,
		prepared: n.preparedOnDisk,
	}
	n.mu.Lock()
	if r := n.prog.Upgrade; r != nil {
		cp := *r
		n.upg.runner.run = &cp
	}
	n.mu.Unlock()
	return nil
}

// saveUpgradeRun records r in progress.json and publishes the report.
func (n *Node) saveUpgradeRun(r upgradeRun) error {
	n.upg.saveMu.Lock()
	defer n.upg.saveMu.Unlock()
	n.mu.Lock()
	n.prog.Upgrade = &r
	p := n.prog
	n.mu.Unlock()
	if err := saveProgress(n.cfg.DataDir, p, n.clk.Now()); err != nil {
		return err
	}
	n.publishUpgradeFacts()
	return nil
}

// keepUpgradeRun is saveUpgradeRun without the write: r is in the node's
// progress (the next write of progress.json carries it) and published.
func (n *Node) keepUpgradeRun(r upgradeRun) {
	n.upg.saveMu.Lock()
	n.mu.Lock()
	n.prog.Upgrade = &r
	n.mu.Unlock()
	n.upg.saveMu.Unlock()
	n.publishUpgradeFacts()
}

// upgradeStep shows the step running in the phase's detail; while the
// service restarts the watch of keepReady stands aside (the host is not
// ready meanwhile, and says so to the leader).
func (n *Node) upgradeStep(target string, s upgrade.Step) {
	n.upg.mu.Lock()
	n.upg.step, n.upg.target = s, target
	n.upg.mu.Unlock()
	if phase, _, _ := n.t.get(); phase == status.PhaseReady || phase == status.PhaseFailed {
		if s == "" {
			n.t.set(status.PhaseReady, n.readyDetail())
		} else {
			n.t.setDetail(fmt.Sprintf("upgrading to %s: %s", target, s))
		}
	}
}

// upgradeRestarting: the runner stops or waits for the service now.
func (n *Node) upgradeRestarting() bool {
	if n.upg == nil {
		return false
	}
	n.upg.mu.Lock()
	defer n.upg.mu.Unlock()
	return n.upg.step == upgrade.StepRestart || n.upg.step == upgrade.StepHealthy
}

// localFacts is this host's wanted and running versions and report.
// Wanted is rke2-version; without one, the version it runs: a channel is
// resolved once, at the first install, and rolled upgrades follow
// rke2-version only (docs/operations.md, "Upgrades").
func (n *Node) localFacts() hostFacts {
	n.mu.Lock()
	running := n.prog.RKE2Running
	var rep upgradeReport
	if n.prog.Upgrade != nil {
		rep = n.prog.Upgrade.report()
		// Only a server's is read (an agent's metadata has no field for it).
		if n.cfg.IsServer() && n.upg != nil && n.upg.runner != nil {
			rep.Restarting = n.prog.Upgrade.restarting(upgrade.Steps(n.upg.runner.role, n.upg.runner.drain))
		}
	}
	n.mu.Unlock()
	wanted := n.cfg.RKE2Version
	if v, err := rke2version.Parse(wanted); err == nil {
		wanted = v.String()
	} else {
		wanted = running
	}
	return hostFacts{Wanted: wanted, Running: running, Report: rep}
}

func (n *Node) publishUpgradeFacts() {
	if n.upg == nil {
		return
	}
	f := n.localFacts()
	n.upg.mu.Lock()
	same := f == n.upg.published
	n.upg.mu.Unlock()
	if same {
		return
	}
	if err := n.upg.gossip.Publish(f); err != nil {
		n.log.Debug("publish upgrade facts", zap.Error(err))
		return
	}
	n.upg.mu.Lock()
	n.upg.published = f
	n.upg.mu.Unlock()
	// The leader reads its own report when it decides: it decides now
	// (its loop's tick is a second once the cluster settled), as a peer's
	// report wakes it through gossip.
	n.wakeCoordinator()
}

// agentBeginsOf is what a server's claim carries of progress p: the
// agents upgrading now, by name, at most claims.MaxAgentBegins (the plan
// never has more at once: upgrade.MaxAgentsAtOnce).
func agentBeginsOf(p *upgrade.Progress) claims.AgentBegins {
	b := claims.AgentBegins{Published: true}
	if p == nil {
		return b
	}
	for _, h := range p.Hosts {
		if h.Role == upgrade.RoleAgent && h.State == upgrade.HostUpgrading && h.Since > 0 && len(b.Agents) < claims.MaxAgentBegins {
			b.Agents = append(b.Agents, claims.AgentBegin{Node: h.Name, Since: h.Since})
		}
	}
	if len(b.Agents) > 0 {
		b.Target = p.Target
	}
	slices.SortFunc(b.Agents, func(x, y claims.AgentBegin) int { return strings.Compare(x.Node, y.Node) })
	return b
}

// publishAgentBegins puts the agents' committed begins, as this server's
// copy of the replicated state holds them, in its signed claim: agents are
// not in raft, and take their begin from a verified server claim only.
func (n *Node) publishAgentBegins() {
	c := n.coordinator()
	if n.upg == nil || c == nil {
		return
	}
	b := agentBeginsOf(c.State().Upgrade)
	var prev claims.AgentBegins
	n.upg.mu.Lock()
	same := n.upg.begins != nil && reflect.DeepEqual(*n.upg.begins, b)
	if n.upg.begins != nil {
		prev = *n.upg.begins
	}
	n.upg.mu.Unlock()
	if same {
		return
	}
	if err := n.upg.gossip.PublishBegins(b, prev); err != nil {
		n.log.Debug("publish the agents' begins", zap.Error(err))
		return
	}
	n.upg.mu.Lock()
	n.upg.begins = &b
	n.upg.mu.Unlock()
}

// recordRunning notes the version of the rke2 binary the service was just
// started from (or found running).
func (n *Node) recordRunning(ctx context.Context) string {
	v, err := n.installedVersion(ctx)
	if err != nil {
		n.log.Warn("the version of the rke2 started is unknown", zap.Error(err))
		return ""
	}
	n.mu.Lock()
	changed := n.prog.RKE2Running != v
	n.prog.RKE2Running = v
	p := n.prog
	n.mu.Unlock()
	if changed && p.StartedRKE2 {
		if err := saveProgress(n.cfg.DataDir, p, n.clk.Now()); err != nil {
			n.log.Warn("could not save progress", zap.Error(err))
		}
	}
	n.publishUpgradeFacts()
	return v
}

// installedVersion is what the rke2 binary on disk prints.
func (n *Node) installedVersion(ctx context.Context) (string, error) {
	if v, ok := n.host.(interface {
		InstalledVersion(context.Context) (string, error)
	}); ok {
		return v.InstalledVersion(ctx)
	}
	return "", fmt.Errorf("no rke2 binary known")
}

// myBegin is the committed begin naming this host, if any.
func (n *Node) myBegin() (upgradeBegin, bool) {
	if c := n.coordinator(); c != nil {
		st := c.State()
		if st.Upgrade == nil {
			return upgradeBegin{}, false
		}
		h, ok := st.Upgrade.Host(n.cfg.NodeName)
		if !ok || h.State != upgrade.HostUpgrading {
			return upgradeBegin{}, false
		}
		return upgradeBegin{Since: h.Since, Target: st.Upgrade.Target}, true
	}
	if n.members == nil {
		return upgradeBegin{}, false
	}
	return n.upg.gossip.AgentBegin(n.members.Members(), n.cfg.NodeName)
}

// agentWake is the least time between an agent's looks for its begin:
// shorter once it installed the target ahead and still runs another.
func (n *Node) agentWake() time.Duration {
	f := n.localFacts()
	n.mu.Lock()
	prepared := n.prog.Prepared
	n.mu.Unlock()
	if prepared != "" && prepared == f.Wanted && f.Running != f.Wanted {
		return agentUpgradeWakeSoon
	}
	return agentUpgradeWake
}

// runUpgrades is the host's upgrade loop, until ctx ends: publish the
// facts, run the steps of a begin naming this host, and on servers keep
// the plan shown in status and metrics fresh.
func (n *Node) runUpgrades(ctx context.Context) {
	n.upg.mu.Lock()
	n.upg.ctx = ctx
	n.upg.mu.Unlock()
	// An agent learns its begin from the servers' signed claims: it looks
	// again whenever gossip reports a change (a claim accepted among
	// them), not only at its tick, and at most every agentUpgradeWake.
	var gossipChanges <-chan struct{}
	if !n.cfg.IsServer() && n.members != nil {
		ch, unsubscribe := n.members.Subscribe()
		defer unsubscribe()
		gossipChanges = ch
	}
	for {
		// Taken before reading the state, so that a change while this
		// pass runs ends the wait below at once: a server starts its steps,
		// and refreshes the plan its status shows, at the commit of a begin
		// or done instead of up to a tick later.
		changed := n.coordChanges()
		if changed == nil {
			changed = gossipChanges
		}
		if phase, _, _ := n.t.get(); phase == status.PhaseReady || n.upg.runner.current() != nil {
			n.mu.Lock()
			unknown := n.prog.RKE2Running == ""
			n.mu.Unlock()
			if unknown && phase == status.PhaseReady {
				// Started before the field existed, or adopted: the
				// binary on disk is the one running, as no upgrade ran.
				n.recordRunning(ctx)
			}
			n.publishUpgradeFacts()
			if b, ok := n.myBegin(); ok {
				if err := n.upg.runner.runBegin(ctx, b); err != nil && ctx.Err() == nil {
					n.log.Warn("upgrade: progress not saved; trying again", zap.Error(err))
				}
			}
		}
		if n.cfg.IsServer() {
			// The begins first: an agent waits on them, on the roll's
			// critical chain; the plan is for status and metrics.
			n.publishAgentBegins()
			n.stopJobsUnlessLeader()
			n.refreshUpgradePlan()
		}
		if phase, _, _ := n.t.get(); phase == status.PhaseReady && n.members != nil {
			members := n.members.Members()
			if target := n.prepareTarget(members); target != "" {
				n.prepareUpgrade(ctx, target)
			}
			if target := n.snapshotAheadTarget(members); target != "" {
				n.takeSnapshotAhead(ctx, target)
			}
		}
		if gossipChanges != nil && n.clk.Sleep(ctx, n.agentWake()) != nil {
			return
		}
		if n.waitTickOrChange(ctx, changed, upgradeTick) != nil {
			return
		}
	}
}

// upgradeHosts is every host of the cluster as the roll sees it: alive
// or suspect members of this cluster (a dead one is absent), their facts
// from gossip, this host's own from itself.
func (n *Node) upgradeHosts(members []gossip.MemberInfo) []upgrade.Host {
	var out []upgrade.Host
	for _, mi := range members {
		if mi.MetaErr != nil || mi.State == gossip.StateDead || mi.State == gossip.StateLeft || mi.Meta.ClusterName != n.cfg.ClusterName {
			continue
		}
		// An agent's readiness is its phase: Ready is a server's field,
		// which gossip clears for a member without a verified claim.
		h := upgrade.Host{Name: mi.Name, Role: upgrade.RoleAgent, Healthy: mi.Meta.Phase == status.PhaseReady}
		if mi.Meta.Role == gossip.RoleServer {
			h.Role, h.Healthy = upgrade.RoleServer, mi.Meta.Ready
		}
		var f hostFacts
		var ok bool
		if mi.Name == n.cfg.NodeName {
			f, ok = n.localFacts(), true
			phase, _, _ := n.t.get()
			h.Healthy = phase == status.PhaseReady && !n.upgradeRestarting()
		} else {
			f, ok = n.upg.gossip.Facts(mi)
		}
		if c := mi.Claim; c != nil && mi.Name != n.cfg.NodeName && h.Role == upgrade.RoleServer {
			// Its own etcd's word: a healthy voter, not a learner. A
			// server that publishes views but whose last one is empty
			// read its etcd while RKE2 was down (or could not read it):
			// not healthy until it reads a healthy voter again, which a
			// server's wait-healthy does before it reports finished.
			h.Healthy = h.Healthy && !c.Etcd.ObservedAt.IsZero() && c.Etcd.Healthy && !c.Etcd.Learner
		}
		if ok {
			h.Wanted, _ = rke2version.Parse(f.Wanted)
			h.Running, _ = rke2version.Parse(f.Running)
			h.Failed, h.FailedBegin, h.Finished = f.Report.Failed, f.Report.FailedBegin, f.Report.Finished
		}
		out = append(out, h)
	}
	return out
}

// upgradeInput is Decide's input from the FSM and gossip, leader the
// host that decides.
func (n *Node) upgradeInput(st election.ClusterState, members []gossip.MemberInfo, leader string, now time.Time) upgrade.Input {
	in := upgrade.Input{
		Hosts: n.upgradeHosts(members), Leader: leader, ServerJoining: st.Slot != nil,
		MaxUnavailable: n.cfg.UpgradeBudget(), Now: now, HostTimeout: upgradeHostTimeout,
	}
	if st.Upgrade != nil {
		in.Progress = st.Upgrade.Clone()
	}
	in.QuorumAtRisk = quorumAtRisk(st.EtcdVoters(), in.Hosts)
	if st.Removal.Active() {
		in.Removing = st.Removal.Node
	}
	// An etcd learner, as any server's etcd lists it, is a server joining.
	for _, mi := range members {
		if mi.Claim == nil || mi.State == gossip.StateDead || mi.State == gossip.StateLeft {
			continue
		}
		for _, em := range mi.Claim.Etcd.Members {
			in.ServerJoining = in.ServerJoining || em.Learner
		}
	}
	return in
}

// quorumAtRisk: losing one more voter would lose quorum. A single voter
// has no quorum to keep: its upgrade is an outage whatever the plan
// (the snapshot is taken first), so it is not held back for ever.
func quorumAtRisk(voters []string, hosts []upgrade.Host) bool {
	if len(voters) <= 1 {
		return false
	}
	healthy := 0
	for _, v := range voters {
		for _, h := range hosts {
			if h.Name == v && h.Role == upgrade.RoleServer && h.Healthy {
				healthy++
			}
		}
	}
	return healthy-1 < len(voters)/2+1
}

// upgradeDuty is the leader's step of the roll (election's
// MembershipDuties.Upgrade): Decide on the committed state and the
// hosts' gossip; status and metrics show its plan, and the leader's jobs
// it lists start.
func (n *Node) upgradeDuty(st election.ClusterState, now time.Time, term uint64) (upgrade.Command, bool) {
	return n.upgradeDecide(st, now, true, term)
}

// upgradeDutyAhead is upgradeDuty on a state not committed yet
// (MembershipDuties.UpgradeAhead): the decision alone. It neither starts
// a job nor drops a job's result: a drain's result dropped on a copy
// whose begin then never commits would have the agent drained again.
func (n *Node) upgradeDutyAhead(st election.ClusterState, now time.Time, term uint64) (upgrade.Command, bool) {
	return n.upgradeDecide(st, now, false, term)
}

// upgradeDecide decides the roll's next command on st in raft term term;
// committed: st is the committed state (see upgradeDutyAhead).
func (n *Node) upgradeDecide(st election.ClusterState, now time.Time, committed bool, term uint64) (upgrade.Command, bool) {
	if n.members == nil || n.upg == nil {
		return upgrade.Command{}, false
	}
	members := n.members.Members()
	in := n.upgradeInput(st, members, n.cfg.NodeName, now)
	in.DrainAgents = n.drainAgents(st, members)
	in.Drains, in.Uncordons = n.upg.jobs.results(in.Progress, committed)
	plan := upgrade.Decide(in)
	if committed {
		n.showUpgradePlan(in, plan)
		n.upg.mu.Lock()
		ctx := n.upg.ctx
		n.upg.mu.Unlock()
		if ctx != nil && len(plan.Jobs) > 0 {
			// The decision's term, not the one the election shows now:
			// leadership lost and won again in between would otherwise
			// run this term's decision as the next term's jobs.
			n.upg.jobs.start(ctx, term, plan.Jobs, n.runLeaderJob, n.wakeCoordinator)
		}
	}
	if plan.Command == nil {
		return upgrade.Command{}, false
	}
	c := *plan.Command
	n.log.Info("upgrade: committing", zap.String("op", c.Op), zap.String("node", c.Node), zap.String("target", c.Target), zap.String("reason", c.Reason))
	return c, true
}

// refreshUpgradePlan is the plan as the raft leader would decide it now,
// for this server's status and metrics (every server shows the same).
func (n *Node) refreshUpgradePlan() {
	c := n.coordinator()
	if c == nil || n.members == nil {
		return
	}
	es := c.State()
	if es.ClusterReady == nil {
		return
	}
	leader := es.Leader
	if leader == "" {
		leader = n.cfg.NodeName
	}
	in := n.upgradeInput(es.ClusterState, n.members.Members(), leader, n.clk.Now())
	n.showUpgradePlan(in, upgrade.Decide(in))
}

func (n *Node) showUpgradePlan(in upgrade.Input, plan upgrade.Plan) {
	rep := upgrade.Report(in, plan)
	n.upg.metrics.Update(in, plan)
	n.upg.mu.Lock()
	prev := n.upg.report
	n.upg.report = &rep
	n.upg.mu.Unlock()
	if prev == nil || prev.Phase != rep.Phase || prev.Blocked != rep.Blocked || prev.Target != rep.Target {
		n.log.Info("upgrade plan", zap.String("phase", rep.Phase), zap.String("target", rep.Target), zap.String("blocked", rep.Blocked))
	}
}

// upgradeStatus is the status object of the roll: on servers the last
// plan; on agents their own wanted and running versions and state.
func (n *Node) upgradeStatus() *status.Upgrade {
	if n.upg == nil {
		return nil
	}
	n.upg.mu.Lock()
	rep := n.upg.report
	step, target := n.upg.step, n.upg.target
	n.upg.mu.Unlock()
	if rep != nil {
		cp := *rep
		return &cp
	}
	if n.cfg.IsServer() {
		return nil
	}
	f := n.localFacts()
	h := status.UpgradeHost{Name: n.cfg.NodeName, Role: n.cfg.Role, Wanted: f.Wanted, Running: f.Running, Reason: f.Report.Failed}
	u := &status.Upgrade{Phase: upgrade.PhaseIdle, Target: target, Servers: []string{}, Agents: []string{}, Hosts: []status.UpgradeHost{h}}
	switch {
	case step != "":
		u.Hosts[0].State = string(upgrade.HostUpgrading)
		u.Phase = upgrade.PhaseAgents
	case f.Report.Failed != "":
		u.Hosts[0].State = string(upgrade.HostFailed)
	}
	return u
}
