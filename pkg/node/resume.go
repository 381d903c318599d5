package node

import (
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
)

// A restarted host decides what to redo from three witnesses: its progress
// file (what only it knows), its disk (a running RKE2, a datastore), and raft
// (what the cluster committed). planResume is that decision, with no I/O;
// the role paths gather the facts and follow the plan.

// path is the way a host takes to ready.
type path string

const (
	pathBootstrap path = "bootstrap" // the server raft committed as the bootstrap node
	pathJoiner    path = "joiner"    // any other server
	pathAgent     path = "agent"
)

// datastoreOnDisk is RKE2's etcd datastore as found on this host.
type datastoreOnDisk struct {
	Present bool
	Path    string
	// CAHash is the hash of the cluster CA beside the datastore, "" when
	// there is none to read; CAErr says why a CA file that is there could
	// not be hashed.
	CAHash string
	CAPath string
	CAErr  error
}

// raftFacts is what raft committed that concerns this host.
type raftFacts struct {
	// Started: the bootstrap node's start of RKE2 is committed.
	Started bool
	// Joined: this server's join is recorded.
	Joined bool
	// ClusterCA is the committed cluster-ready CA hash, "" before.
	ClusterCA string
}

// resumeFacts is everything planResume decides from.
type resumeFacts struct {
	Path          path
	Progress      progress
	ServiceActive bool
	Datastore     datastoreOnDisk
	Raft          raftFacts
}

// resumePlan is what the role path does.
type resumePlan struct {
	// Adopt: RKE2 already runs here; take the host as ready with AdoptCA
	// and never restart or reconfigure it.
	Adopt   bool
	AdoptCA string
	// ProbeLocalCA: adopting a server whose CA nobody recorded; ask the
	// local supervisor for it.
	ProbeLocalCA bool
	// Refuse is set when the datastore on disk must not be started over:
	// a permanent failure the operator resolves.
	Refuse error
	// CheckVIPFree: the bootstrap node has not started; nobody may answer
	// for the VIP yet.
	CheckVIPFree bool
	// AcquireSlot and MarkJoined: the joiner's join is not recorded yet.
	AcquireSlot bool
	MarkJoined  bool
}

// planResume decides, from the facts, what a role path redoes.
func planResume(f resumeFacts) resumePlan {
	p := f.Progress
	if f.ServiceActive {
		ca := p.CAHash
		if ca == "" {
			ca = f.Raft.ClusterCA
		}
		return resumePlan{Adopt: true, AdoptCA: ca, ProbeLocalCA: ca == "" && f.Path != pathAgent}
	}
	switch f.Path {
	case pathBootstrap:
		// This host saves "started as the bootstrap" only once raft committed
		// the start, so either witness says the datastore is the cluster's
		// (and kube-vip may hold the VIP): a raft view that has not caught up
		// after a restart must not send it back through the checks.
		if f.Raft.Started || p.StartedRKE2 && p.Bootstrap {
			return resumePlan{}
		}
		plan := resumePlan{CheckVIPFree: true}
		if f.Datastore.Present {
			plan.Refuse = fmt.Errorf("this host already holds an RKE2 datastore (%s) that this cluster never started: "+
				"bootstrapping on it would bring back an old cluster instead of creating a new one; remove it (rke2-uninstall.sh)", f.Datastore.Path)
		}
		return plan
	case pathJoiner:
		plan := resumePlan{AcquireSlot: !f.Raft.Joined, MarkJoined: !f.Raft.Joined}
		mine := f.Raft.Joined || (p.StartedRKE2 && p.CAHash != "" && p.CAHash == f.Raft.ClusterCA)
		ours := f.Datastore.CAHash != "" && f.Datastore.CAHash == f.Raft.ClusterCA
		if f.Datastore.Present && !mine && !ours {
			owner := "of an unknown cluster (no " + f.Datastore.CAPath + ")"
			if f.Datastore.CAErr != nil {
				owner = fmt.Sprintf("whose CA %s cannot be read (%v)", f.Datastore.CAPath, f.Datastore.CAErr)
			}
			if f.Datastore.CAHash != "" {
				owner = "of another cluster (CA hash " + f.Datastore.CAHash + ", this cluster's is " + f.Raft.ClusterCA + ")"
			}
			plan.Refuse = fmt.Errorf("this host already holds an RKE2 datastore (%s) %s: RKE2 would ignore server: and resume it; "+
				"remove it (rke2-uninstall.sh) or make it the bootstrap node", f.Datastore.Path, owner)
		}
		return plan
	default:
		return resumePlan{} // an agent keeps no datastore
	}
}

// resumeFacts gathers the facts for path; the raft facts are the caller's.
func (n *Node) gatherFacts(ctx context.Context, p path, raft raftFacts) (resumeFacts, error) {
	f := resumeFacts{Path: p, Raft: raft}
	n.mu.Lock()
	f.Progress = n.prog
	n.mu.Unlock()
	active, err := n.svc.Active(ctx, n.role)
	if err != nil {
		n.log.Debug("service state unknown; taking it as not active", zap.Error(err))
	}
	f.ServiceActive = err == nil && active
	if p != pathAgent {
		if f.Datastore, err = n.host.Datastore(); err != nil {
			return f, err
		}
	}
	return f, nil
}

// adoptIfRunning takes a host whose RKE2 already runs as ready: it never
// restarts or reconfigures a running RKE2. It reports whether it adopted.
func (n *Node) adoptIfRunning(ctx context.Context) bool {
	p := pathAgent
	var raft raftFacts
	if n.cfg.IsServer() {
		p = pathJoiner // adopting does not depend on which server this is
		if n.coord != nil {
			raft = n.raftFacts()
		}
	}
	f, err := n.gatherFacts(ctx, p, raft)
	if err != nil {
		return false
	}
	plan := planResume(f)
	if !plan.Adopt {
		return false
	}
	n.adopt(ctx, plan)
	return true
}

// adopt takes the running RKE2 as ready, as plan says.
func (n *Node) adopt(ctx context.Context, plan resumePlan) {
	ca := plan.AdoptCA
	if plan.ProbeLocalCA {
		if r := n.prober.Probe(ctx, n.advertise, ""); r.Reachable {
			ca = r.CAHash
		}
	}
	n.log.Info("RKE2 is already running here: adopting it as ready", zap.String("service", installer.UnitName(n.role)))
	n.setCA(ca)
	n.markReady()
}

// raftFacts reads what raft committed about this host. A bootstrap node
// that was removed (or left behind by a quorum-loss recovery on another
// server) and joined again through the slot is not in Joined: its join
// took it off the removed servers, and it is an etcd voter as the
// bootstrap node again; its own progress says it did not bootstrap the
// datastore it runs on. It counts as joined, so that a restart resumes it
// as the joiner it was, never with cluster-init.
func (n *Node) raftFacts() raftFacts {
	st := n.coord.State()
	self := n.cfg.NodeName
	n.mu.Lock()
	bootstrapped := n.prog.Bootstrap
	n.mu.Unlock()
	f := raftFacts{Started: st.Started}
	f.Joined = slices.Contains(st.Joined, self) ||
		st.Bootstrap == self && !bootstrapped && slices.Contains(st.EtcdVoters(), self)
	if st.ClusterReady != nil {
		f.ClusterCA = st.ClusterReady.CAHash
	}
	return f
}
