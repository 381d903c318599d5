package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/kubeapi"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// The leader drains agents. An agent holds no admin kubeconfig (only the
// agent token and its kubelet's own credentials), so with upgrade-drain on
// the leader the roll drains each agent from the leader: it commits
// upgrade-drain (the agent is draining: in flight, not yet begun),
// cordons the agent's Node and evicts its pods through its own
// apiserver with the admin kubeconfig RKE2 writes on servers, and commits
// the agent's begin once that succeeded; after the agent's steps finished
// it uncordons the Node and only then records the agent done. The plan
// (upgrade.Decide) lists these as Jobs; leaderJobs runs each once per
// begin, and a new leader runs them again (cordon, evict and uncordon are
// idempotent). A servers drains itself, as before.

// leaderJobs are the drains and uncordons this server runs as leader,
// and how those that ended went.
type leaderJobs struct {
	mu        sync.Mutex
	running   map[upgrade.Job]bool
	drains    map[string]upgrade.JobResult
	uncordons map[string]upgrade.JobResult
	// term is the context the jobs run under while this server leads,
	// in raft term raftTerm; stop ends it (cancel), and the next start
	// makes a new one, as does a start in another term.
	term     context.Context
	cancel   context.CancelFunc
	raftTerm uint64
}

func newLeaderJobs() *leaderJobs {
	return &leaderJobs{running: map[upgrade.Job]bool{}, drains: map[string]upgrade.JobResult{}, uncordons: map[string]upgrade.JobResult{}}
}

// results are the jobs that ended for the hosts in flight in p, for
// Decide's input. With prune (p is committed), results for hosts no
// longer in flight under the same begin are dropped; a p not committed
// yet drops nothing.
func (j *leaderJobs) results(p upgrade.Progress, prune bool) (drains, uncordons map[string]upgrade.JobResult) {
	j.mu.Lock()
	defer j.mu.Unlock()
	keep := map[string]int64{}
	for _, h := range p.InFlight() {
		keep[h.Name] = h.Since
	}
	drains, uncordons = map[string]upgrade.JobResult{}, map[string]upgrade.JobResult{}
	for _, m := range []struct{ src, dst map[string]upgrade.JobResult }{{j.drains, drains}, {j.uncordons, uncordons}} {
		for name, r := range m.src {
			if since, ok := keep[name]; !ok || since != r.Since {
				if prune {
					delete(m.src, name)
				}
				continue
			}
			m.dst[name] = r
		}
	}
	return drains, uncordons
}

// start runs each job not running and not ended for its begin, in a
// goroutine of its own under ctx and this leadership (until stop); run
// does the work.
func (j *leaderJobs) start(ctx context.Context, raftTerm uint64, jobs []upgrade.Job, run func(context.Context, upgrade.Job) error, ended func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.term != nil && j.raftTerm != raftTerm {
		j.stopLocked() // jobs of an earlier leadership of this server's
	}
	if j.term == nil || j.term.Err() != nil {
		j.term, j.cancel = context.WithCancel(ctx)
		j.raftTerm = raftTerm
	}
	ctx = j.term
	for _, job := range jobs {
		done := j.drains
		if job.Kind == upgrade.JobUncordon {
			done = j.uncordons
		}
		if r, ok := done[job.Node]; j.running[job] || (ok && r.Since == job.Since) {
			continue
		}
		j.running[job] = true
		go func() {
			err := run(ctx, job)
			if ctx.Err() != nil {
				j.mu.Lock()
				delete(j.running, job)
				j.mu.Unlock()
				return
			}
			r := upgrade.JobResult{Since: job.Since}
			if err != nil {
				r.Err = err.Error()
			}
			j.mu.Lock()
			delete(j.running, job)
			if old, ok := done[job.Node]; !ok || old.Since <= r.Since {
				done[job.Node] = r // an older begin's job never replaces a newer one's result
			}
			j.mu.Unlock()
			ended()
		}()
	}
}

// stop ends every job running: this server no longer leads, and the
// new leader runs what is left again (a drain that went on would evict
// pods from a Node the new leader may have upgraded and uncordoned). A
// job stopped records no result.
func (j *leaderJobs) stop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stopLocked()
}

func (j *leaderJobs) stopLocked() {
	if j.cancel != nil {
		j.cancel()
		j.term, j.cancel = nil, nil
	}
}

// stopJobsUnlessLeader stops the leader's jobs once this server is no
// longer the raft leader, or leads in another term than the one they
// started in: it lost the leadership meanwhile, and another leader may
// have run the roll on (a drain of its would go on evicting pods from a
// Node the other leader upgraded and uncordoned).
func (n *Node) stopJobsUnlessLeader() {
	c := n.coordinator()
	if c == nil {
		n.upg.jobs.stop()
		return
	}
	if v := c.State(); v.RaftState != "leader" || !n.upg.jobs.inTerm(v.Term) {
		n.upg.jobs.stop()
	}
}

// inTerm: no jobs run, or they run in raftTerm.
func (j *leaderJobs) inTerm(raftTerm uint64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.term == nil || j.raftTerm == raftTerm
}

// drainAgents: the leader drains agents before their begin, when its own
// upgrade-drain says so and every voter's build reads upgrade-drain; an
// older voter would refuse the command, so agents then begin undrained.
func (n *Node) drainAgents(st election.ClusterState, members []gossip.MemberInfo) bool {
	if !n.cfg.UpgradeDrain {
		return false
	}
	for _, v := range st.EtcdVoters() {
		if r, ok := commandReaders(members, v); !ok || r < election.DrainCommandVersion {
			return false
		}
	}
	return true
}

// runLeaderJob drains or uncordons another host's Node through this
// server's apiserver, under the step's deadline.
func (n *Node) runLeaderJob(ctx context.Context, job upgrade.Job) error {
	log := n.log.Named("upgrade").With(zap.String("agent", job.Node), zap.String("job", string(job.Kind)))
	log.Info("upgrade: the leader drains an agent's Node for it")
	o := &hostUpgradeOps{n: n}
	var err error
	switch job.Kind {
	case upgrade.JobDrain:
		err = withDeadline(ctx, upgradeDrainDeadline, "draining agent "+job.Node, func(ctx context.Context) error {
			if err := n.checkAgentNode(ctx, job.Node); err != nil {
				return err
			}
			if err := o.cordonNode(ctx, job.Node, true); err != nil {
				return fmt.Errorf("cordon: %w", err)
			}
			return o.evictNode(ctx, job.Node)
		})
	case upgrade.JobUncordon:
		err = withDeadline(ctx, upgradeUncordonDeadline, "uncordoning agent "+job.Node, func(ctx context.Context) error {
			if err := o.cordonNode(ctx, job.Node, false); !errors.Is(err, kubeapi.ErrNotFound) {
				return err
			}
			return nil // no Node left to uncordon
		})
	default:
		err = fmt.Errorf("job %q unknown", job.Kind)
	}
	if err != nil {
		log.Warn("upgrade: the leader's job for an agent failed", zap.Error(err))
		return errors.New(tailOf(err.Error(), 180))
	}
	log.Info("upgrade: the leader's job for an agent ended")
	return nil
}

// checkAgentNode: the Node the leader is about to drain is the agent's:
// its InternalIP (RKE2's node-ip, which the agent's daemon sets to its
// advertise address) is the address the agent gossips. A name is owned in
// gossip only among the daemons, so without this an agent-token holder
// could join under the name of a Node no daemon runs on (a node joined by
// hand) and have the leader drain it.
func (n *Node) checkAgentNode(ctx context.Context, name string) error {
	addr := agentAddress(n.members.Members(), name, n.cfg.ClusterName)
	if addr == "" {
		return fmt.Errorf("agent %s is not alive in gossip at the address it advertises: its Node is not drained", name)
	}
	o := &hostUpgradeOps{n: n}
	return o.withKube(func(c *kubeapi.Client) error {
		kn, err := c.GetNode(ctx, name)
		if err != nil {
			return fmt.Errorf("read Node %s: %w", name, err)
		}
		return agentNodeMatches(kn, addr)
	})
}

// agentNodeMatches: Node kn is the agent's that gossips addr.
func agentNodeMatches(kn kubeapi.Node, addr string) error {
	if !slices.Contains(kn.InternalIPs, addr) {
		return fmt.Errorf("the Node %s lists InternalIPs %v, not %s, the address agent %s gossips: not the agent's Node, not drained", kn.Name, kn.InternalIPs, addr, kn.Name)
	}
	return nil
}

// agentAddress is the address memberlist reaches agent name on, alive in
// cluster, which its own metadata must not contradict; "" when none.
func agentAddress(members []gossip.MemberInfo, name, cluster string) string {
	for _, mi := range members {
		if mi.Name == name && mi.MetaErr == nil && mi.State == gossip.StateAlive && mi.Meta.ClusterName == cluster &&
			(mi.Meta.AdvertiseAddr == "" || mi.Meta.AdvertiseAddr == mi.Addr) {
			return mi.Addr
		}
	}
	return ""
}
