package node

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// A cold start: every host lost power and boots again, in any order. A
// server that was ready in this cluster has its own datastore: RKE2 resumes
// it and ignores server:, and its etcd waits until a quorum of the members
// is back. Nothing the cluster decides (the bootstrap node, cluster ready,
// a join slot) is waited for again, and nobody can wait for the VIP first:
// kube-vip runs as a pod that needs the Kubernetes API, which needs an etcd
// quorum, so the VIP comes up only after enough servers started RKE2. Each
// server therefore starts its RKE2 on its own datastore at once, then waits
// for the VIP, and is ready once it answers.

// restartOwnDatastore decides, with no I/O, whether a server restarts RKE2
// on its own datastore without waiting for raft: it ran RKE2 to ready here,
// for the CA beside the datastore on disk, and raft, when it has caught up
// with cluster ready, does not contradict it (a joiner whose join raft does
// not hold, a removed server for example, takes the ordinary path). The
// bootstrap node is known by its progress file; a raft view that has not
// caught up after a restart (no leader yet, no cluster ready) decides
// nothing.
func restartOwnDatastore(f resumeFacts) bool {
	p, d := f.Progress, f.Datastore
	if f.Path == pathAgent || f.ServiceActive || !p.StartedRKE2 || !p.Ready || p.CAHash == "" {
		return false
	}
	if !d.Present || d.CAHash == "" || d.CAHash != p.CAHash {
		return false
	}
	if f.Raft.ClusterCA == "" {
		return true
	}
	if f.Raft.ClusterCA != p.CAHash {
		return false
	}
	return p.Bootstrap || f.Raft.Joined
}

// resumeOwnDatastore restarts a server that was ready in this cluster on its
// own datastore (see restartOwnDatastore); it reports false, having done
// nothing, when the host is not such a server.
func (n *Node) resumeOwnDatastore(ctx context.Context) (bool, error) {
	var raft raftFacts
	if n.coord != nil {
		raft = n.raftFacts()
	}
	p := pathJoiner
	n.mu.Lock()
	if n.prog.Bootstrap {
		p = pathBootstrap
	}
	ca := n.prog.CAHash
	n.mu.Unlock()
	f, err := n.gatherFacts(ctx, p, raft)
	if err != nil || !restartOwnDatastore(f) {
		return false, nil
	}
	kind := installer.JoinServer
	if p == pathBootstrap {
		kind, ca = installer.Bootstrap, ""
		n.setBootstrap()
	}
	if err := n.retry(ctx, "datastore", func(ctx context.Context) error {
		return n.checkNotLeftBehind(ctx, f.Datastore.Path)
	}); err != nil {
		return true, err
	}
	n.log.Info("this server was ready in this cluster and its datastore is on disk: starting RKE2 on it (etcd waits for a quorum of the servers)",
		zap.String("datastore", f.Datastore.Path))
	if err := n.retry(ctx, "write-config", func(context.Context) error {
		return n.host.WriteConfig(kind, ca)
	}); err != nil {
		return true, err
	}
	n.setStarting(n.quorumDetail())
	err = n.retry(ctx, "start", func(ctx context.Context) error {
		// The deadline covers a wait for the other servers: the step is
		// tried again after it, with the count of servers seen in status.
		if err := n.startService(ctx); err != nil {
			return fmt.Errorf("%w (%s)", err, n.quorumDetail())
		}
		if r := n.prober.Probe(ctx, n.advertise, f.Progress.CAHash); !r.Reachable {
			return fmt.Errorf("the local supervisor %s:9345 does not answer with the cluster's CA: %v", n.advertise, r.Err)
		}
		return nil
	})
	if err != nil {
		return true, err
	}
	n.setCA(f.Progress.CAHash)
	n.reportReady()
	n.t.set(status.PhaseWaitingVIP, "RKE2 is active; waiting for kube-vip to bring up "+n.cfg.VIP+" (it does once the Kubernetes API answers)")
	err = n.retryWithin(ctx, "waiting-vip", vipDeadline, "waiting for "+n.cfg.VIP+":9345 to answer with this cluster's CA", func(ctx context.Context) error {
		return n.waitVIP(ctx, f.Progress.CAHash)
	})
	if err != nil {
		return true, err
	}
	n.markReady()
	return true, nil
}

// quorumDetail is the words of starting on an own datastore: etcd needs a
// majority of its members, which this host counts among the servers gossip
// shows alive (itself included).
func (n *Node) quorumDetail() string {
	alive := n.members.NumAlive(gossip.RoleServer)
	voters := n.cfg.ExpectServers
	if c := n.coordinator(); c != nil {
		if st := c.State(); st.Bootstrap != "" {
			voters = len(st.Joined) + 1 // raft caught up: the servers of this cluster
		}
	}
	want := voters/2 + 1
	if alive >= want {
		return fmt.Sprintf("starting %s on its own datastore; %d servers up, etcd needs %d", installer.UnitName(n.role), alive, want)
	}
	return fmt.Sprintf("starting %s on its own datastore; etcd waits for a quorum: %d of the %d servers it needs are up", installer.UnitName(n.role), alive, want)
}
