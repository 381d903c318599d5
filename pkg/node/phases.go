package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// newServiceManager builds the service manager service-manager names.
func newServiceManager(c *config.Config, log *zap.Logger) (installer.ServiceManager, func(), error) {
	switch c.ServiceManager {
	case "exec":
		bin, err := installer.FindRKE2(c.RKE2Bin, installer.DefaultSearchPaths)
		if err != nil {
			return nil, nil, err
		}
		m, err := installer.NewExecManager(installer.ExecOptions{
			RKE2Bin:    bin,
			ConfigFile: installer.ConfigPath(c.RKE2ConfigDir),
			LogFile:    filepath.Join(c.DataDir, "rke2-"+c.Role+".log"),
			Logger:     log,
		})
		if err != nil {
			return nil, nil, err
		}
		return m, func() { m.Close() }, nil
	default:
		// The D-Bus connection lives as long as the context it is made
		// with: it must outlive this function.
		m, err := installer.NewSystemdManager(context.Background(), installer.SystemdOptions{Logger: log, ConfigFile: installer.ConfigPath(c.RKE2ConfigDir)})
		if err != nil {
			return nil, nil, err
		}
		return m, func() { m.Close() }, nil
	}
}

// runServer takes a server from discovery to ready: as the bootstrap node,
// or as a joiner in its turn.
func (n *Node) runServer(ctx context.Context) error {
	n.t.set(status.PhaseDiscovering, "")
	err := n.retry(ctx, "discover", status.PhaseDiscovering, func(ctx context.Context) error {
		return withDeadline(ctx, discoverDeadline, "waiting to see the expected servers", n.waitServers)
	})
	if err != nil {
		return err
	}
	n.t.set(status.PhaseElecting, "servers are choosing the bootstrap node")
	err = n.retry(ctx, "elect", status.PhaseElecting, func(ctx context.Context) error {
		return withDeadline(ctx, electDeadline, "waiting for the bootstrap node to be chosen", func(ctx context.Context) error {
			_, err := n.el.WaitBootstrap(ctx)
			return err
		})
	})
	if err != nil {
		return err
	}
	for {
		if n.el.IsBootstrap() {
			return n.runBootstrap(ctx)
		}
		err := n.runJoiner(ctx)
		if errors.Is(err, election.ErrBootstrapRole) {
			n.log.Warn("the bootstrap role moved to this host (its holder died before starting RKE2)")
			continue
		}
		return err
	}
}

// waitServers returns once gossip shows expect-servers alive servers, or
// raft already knows the bootstrap (a restart of a formed cluster).
func (n *Node) waitServers(ctx context.Context) error {
	ch, cancel := n.g.Subscribe()
	defer cancel()
	for {
		alive := n.g.NumAlive(gossip.RoleServer)
		if alive >= n.cfg.ExpectServers || n.el.State().Bootstrap != "" {
			return nil
		}
		n.t.setDetail(fmt.Sprintf("%d of %d servers seen", alive, n.cfg.ExpectServers))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-time.After(2 * time.Second):
		}
	}
}

// runBootstrap makes this host the cluster's first server.
func (n *Node) runBootstrap(ctx context.Context) error {
	c := n.cfg
	st := n.el.State()
	n.setBootstrap()
	if !st.Started {
		err := n.retry(ctx, "bootstrap-checks", status.PhaseElecting, func(ctx context.Context) error {
			n.mu.Lock()
			mine := n.prog.StartedRKE2 && n.prog.Bootstrap
			n.mu.Unlock()
			if err := installer.GuardDatastore(installer.GuardOptions{Case: installer.Bootstrap, RKE2DataDir: c.RKE2DataDir, Resuming: mine}); err != nil {
				return &permanentError{err: err}
			}
			// Nobody may answer for the VIP before the cluster exists.
			checks := vip.Preflight(ctx, vip.PreflightOptions{Interface: c.Interface, VIP: c.VIP, CheckARP: true, Logger: n.log})
			return vip.Failed(checks)
		})
		if err != nil {
			return err
		}
	}
	if err := n.retry(ctx, "write-config", status.PhaseElecting, func(context.Context) error {
		return n.writeRKE2Config(installer.Bootstrap, "")
	}); err != nil {
		return err
	}
	n.t.setDetail("committing that this host starts RKE2")
	if err := n.retry(ctx, "mark-started", status.PhaseElecting, func(ctx context.Context) error {
		return withDeadline(ctx, markDeadline, "waiting for raft to commit that the bootstrap starts", n.el.MarkStarted)
	}); err != nil {
		return err
	}
	if err := n.rememberStart(true, ""); err != nil {
		return err
	}
	n.t.set(status.PhaseStarting, "starting "+installer.UnitName(n.role)+" with cluster-init")
	if err := n.retry(ctx, "start", status.PhaseStarting, n.startService); err != nil {
		return err
	}
	n.t.set(status.PhaseWaitingVIP, "waiting for the VIP to answer on 9345 with this cluster's CA")
	var ca string
	err := n.retry(ctx, "waiting-vip", status.PhaseWaitingVIP, func(ctx context.Context) error {
		return withDeadline(ctx, vipDeadline, "waiting for "+c.VIP+":9345 to answer with this cluster's CA", func(ctx context.Context) error {
			local := n.prober.Probe(ctx, n.advertise, "")
			if !local.Reachable {
				return fmt.Errorf("the local supervisor %s:9345 does not answer: %v", n.advertise, local.Err)
			}
			ca = local.CAHash
			n.setCA(ca)
			_, err := n.prober.WaitReachable(ctx, c.VIP, ca)
			if err == nil {
				n.setVIPReachable(true)
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	n.reportReady(true)
	n.t.setDetail("committing cluster ready")
	err = n.retry(ctx, "cluster-ready", status.PhaseWaitingVIP, func(ctx context.Context) error {
		return withDeadline(ctx, markDeadline, "waiting for raft to commit cluster ready", func(ctx context.Context) error {
			_, err := n.el.WaitClusterReady(ctx)
			return err
		})
	})
	if err != nil {
		return err
	}
	n.markReady(ctx)
	return nil
}

func (n *Node) setBootstrap() {
	n.mu.Lock()
	n.prog.Bootstrap = true
	n.mu.Unlock()
}

// runJoiner joins this server through the VIP when its slot comes.
func (n *Node) runJoiner(ctx context.Context) error {
	c := n.cfg
	n.t.set(status.PhaseWaitingCluster, "waiting for the bootstrap node's cluster to be ready")
	var cr election.ClusterReady
	err := n.retry(ctx, "waiting-cluster", status.PhaseWaitingCluster, func(ctx context.Context) error {
		return withDeadline(ctx, clusterDeadline, "waiting for the cluster to be ready", func(ctx context.Context) error {
			var err error
			if cr, err = n.el.WaitClusterReady(ctx); err != nil {
				return err
			}
			n.setCA(cr.CAHash)
			return n.waitVIP(ctx, cr.CAHash)
		})
	})
	if err != nil {
		return err
	}
	self := c.NodeName
	joined := slices.Contains(n.el.State().Joined, self)
	err = n.retry(ctx, "datastore", status.PhaseWaitingCluster, func(context.Context) error {
		n.mu.Lock()
		mine := n.prog.StartedRKE2 && n.prog.CAHash == cr.CAHash
		n.mu.Unlock()
		err := installer.GuardDatastore(installer.GuardOptions{Case: installer.JoinServer, RKE2DataDir: c.RKE2DataDir, CAHash: cr.CAHash, Resuming: joined || mine})
		if err != nil {
			return &permanentError{err: err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !joined {
		n.t.set(status.PhaseWaitingJoinSlot, n.slotDetail())
		err = n.retry(ctx, "join-slot", status.PhaseWaitingJoinSlot, func(ctx context.Context) error {
			return withDeadline(ctx, slotDeadline, "waiting for a join slot", func(ctx context.Context) error {
				_, err := n.el.AcquireJoinSlot(ctx)
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	if err := n.retry(ctx, "write-config", status.PhaseWaitingJoinSlot, func(context.Context) error {
		return n.writeRKE2Config(installer.JoinServer, cr.CAHash)
	}); err != nil {
		return err
	}
	if err := n.rememberStart(false, cr.CAHash); err != nil {
		return err
	}
	n.t.set(status.PhaseStarting, "joining through "+installer.ServerURL(c.VIP))
	err = n.retry(ctx, "start", status.PhaseStarting, func(ctx context.Context) error {
		if err := n.startService(ctx); err != nil {
			return err
		}
		if r := n.prober.Probe(ctx, n.advertise, cr.CAHash); !r.Reachable {
			return fmt.Errorf("the local supervisor %s:9345 does not answer with the cluster's CA: %v", n.advertise, r.Err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.reportReady(true)
	if !joined {
		n.t.setDetail("waiting for the leader to record the join")
		err = n.retry(ctx, "mark-joined", status.PhaseStarting, func(ctx context.Context) error {
			return withDeadline(ctx, markDeadline, "waiting for raft to record the join", n.el.MarkJoined)
		})
		if err != nil && !errors.Is(err, election.ErrJoined) {
			return err
		}
	}
	n.markReady(ctx)
	return nil
}

// slotDetail is the words of waiting-join-slot, e.g.
// "1 of 2 servers joined, slot held by ha-m2".
func (n *Node) slotDetail() string {
	st := n.el.State()
	holder := "nobody"
	if st.SlotHolder != "" {
		holder = st.SlotHolder
	}
	return fmt.Sprintf("%d of %s joined, slot held by %s", len(st.Joined), plural(n.cfg.ExpectServers-1, "server"), holder)
}

// waitVIP waits until the VIP answers with caHash; a different CA is an
// alarm that retrying cannot fix.
func (n *Node) waitVIP(ctx context.Context, caHash string) error {
	// Every host that waits for the VIP shares the supervisor's capacity:
	// each probes in turns dealt by its rank among the members alive.
	_, err := n.prober.WaitReachableAmong(ctx, n.cfg.VIP, caHash, n.vipSlot)
	if errors.Is(err, vip.ErrCAMismatch) {
		return permanent("%w: something other than this cluster answers on the VIP; check who holds %s", err, n.cfg.VIP)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		holder, local, herr := n.prober.Holder(n.cfg.VIP, n.memberMACs())
		return &hinted{err: err, hint: silentVIPHint(n.cfg.VIP, holder, local, herr)}
	}
	if err == nil {
		n.setVIPReachable(true)
	}
	return err
}

// silentVIPHint says where to look when the VIP does not answer on 9345
// with the cluster's CA, from what the neighbour table says of its holder.
// A stopped rke2-server can leave its kube-vip holding the VIP (the
// container keeps running until rke2-killall.sh).
func silentVIPHint(addr, holder string, local bool, holderErr error) string {
	switch {
	case holderErr == nil && local:
		return fmt.Sprintf("this host holds %s but nothing here answers on 9345 with the cluster's CA: "+
			"is rke2-server running here? (a stopped rke2-server can leave kube-vip holding the VIP; rke2-killall.sh releases it)", addr)
	case holderErr == nil:
		return fmt.Sprintf("%s holds %s (by ARP) but does not answer on 9345 with the cluster's CA: "+
			"if rke2-server is stopped on %s, its kube-vip can keep the VIP; start rke2-server there, or run rke2-killall.sh there", holder, addr, holder)
	default:
		return fmt.Sprintf("no member is known to hold %s (%v): is kube-vip running on the servers (its manifest in the bootstrap server's manifests folder)?", addr, holderErr)
	}
}

// vipSlot is this host's turn among the members gossip shows alive; a host
// that does not see itself yet counts itself last.
func (n *Node) vipSlot() vip.Slot {
	rank, of := n.g.AliveRank(n.cfg.NodeName)
	if rank < 0 {
		return vip.Slot{Rank: of, Of: of + 1}
	}
	return vip.Slot{Rank: rank, Of: of}
}

// runAgent joins this agent as soon as the cluster is ready.
func (n *Node) runAgent(ctx context.Context) error {
	n.t.set(status.PhaseDiscovering, "looking for a server")
	err := n.retry(ctx, "discover", status.PhaseDiscovering, func(ctx context.Context) error {
		return withDeadline(ctx, discoverDeadline, "waiting to see a server", func(ctx context.Context) error {
			return n.waitGossip(ctx, func() bool { return n.g.NumAlive(gossip.RoleServer) > 0 })
		})
	})
	if err != nil {
		return err
	}
	n.t.set(status.PhaseWaitingCluster, "waiting for the cluster to be ready")
	var ca string
	err = n.retry(ctx, "waiting-cluster", status.PhaseWaitingCluster, func(ctx context.Context) error {
		return withDeadline(ctx, clusterDeadline, "waiting for the cluster to be ready", func(ctx context.Context) error {
			if err := n.waitGossip(ctx, func() bool { ca = n.clusterCAFromGossip(); return ca != "" }); err != nil {
				return err
			}
			n.setCA(ca)
			return n.waitVIP(ctx, ca)
		})
	})
	if err != nil {
		return err
	}
	if n.agentReady != nil {
		n.agentReady.Set(1)
	}
	if err := n.retry(ctx, "write-config", status.PhaseWaitingCluster, func(context.Context) error {
		return n.writeRKE2Config(installer.Agent, ca)
	}); err != nil {
		return err
	}
	if err := n.rememberStart(false, ca); err != nil {
		return err
	}
	n.t.set(status.PhaseStarting, "joining through "+installer.ServerURL(n.cfg.VIP))
	if err := n.retry(ctx, "start", status.PhaseStarting, n.startService); err != nil {
		return err
	}
	n.markReady(ctx)
	return nil
}

// clusterCAFromGossip is the CA hash the servers advertise once raft
// committed cluster ready; servers that disagree are not trusted.
func (n *Node) clusterCAFromGossip() string {
	seen := map[string]int{}
	for _, m := range n.g.Members() {
		if m.State == gossip.StateAlive && m.MetaErr == nil && m.Meta.Role == gossip.RoleServer && m.Meta.ClusterReady && m.Meta.CAHash != "" {
			seen[m.Meta.CAHash]++
		}
	}
	if len(seen) != 1 {
		if len(seen) > 1 {
			n.log.Warn("servers advertise different cluster CAs; waiting until they agree", zap.Int("cas", len(seen)))
		}
		return ""
	}
	for ca := range seen {
		return ca
	}
	return ""
}

// waitGossip returns once cond holds, re-checking on every gossip change.
func (n *Node) waitGossip(ctx context.Context, cond func() bool) error {
	ch, cancel := n.g.Subscribe()
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-time.After(2 * time.Second):
		}
	}
	return nil
}
