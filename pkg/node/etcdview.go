package node

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/etcdview"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	ms "github.com/rke2-hanode/rke2-hanode/pkg/membership"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// The etcd view: every server reads its local etcd every etcdReadInterval
// while RKE2 runs (pkg/etcdview), publishes the view for the others, and
// assesses quorum from its own view, the views the other servers publish
// and, for a server that publishes none, gossip (alive and ready with the
// cluster CA counts as answering). The assessment is pkg/membership's
// Assess; metrics, /status and the leader's removal judgement read it.
const (
	etcdReadInterval = 5 * time.Second
	// etcdRepublish: an unchanged view is published again this often, so
	// that the others see it is current.
	etcdRepublish = time.Minute
	// etcdFresh: a local view older than this is not relied on.
	etcdFresh = 30 * time.Second
	// etcdPeerFresh: another server's view older than this (by this
	// host's clock, against the other's: keep NTP on) is not relied on;
	// it republishes every etcdRepublish.
	etcdPeerFresh = 5 * time.Minute
)

// etcdReader reads the local etcd (*etcdview.Reader).
type etcdReader interface {
	Read(ctx context.Context) (etcdview.View, error)
}

var _ etcdReader = (*etcdview.Reader)(nil)

// etcdCarrier carries servers' etcd views between hosts: this server's
// signed claim (published with gossip's UpdateClaim) and the verified
// claims of the others (MemberInfo.Claim). Views returns, by node name,
// what the given members publish.
type etcdCarrier interface {
	Publish(v etcdview.View) error
	Views(members []gossip.MemberInfo) map[string]etcdview.View
}

// noCarrier is the carriage before gossip is open: nothing is published
// and no server's view is known, so every other server is judged by
// gossip.
type noCarrier struct{}

func (noCarrier) Publish(etcdview.View) error                        { return nil }
func (noCarrier) Views([]gossip.MemberInfo) map[string]etcdview.View { return nil }

// claimCarrier carries the views in the signed server claims
// (claims.Claim.Etcd): this server publishes with UpdateClaim, and only a
// member's verified claim is read. A server whose gossip has no signer
// cannot publish (UpdateClaim says so); the others judge it by gossip.
type claimCarrier struct{ g *gossip.Member }

func (c claimCarrier) Publish(v etcdview.View) error {
	return c.g.UpdateClaim(func(cl *claims.Claim) { cl.Etcd = claimEtcd(v) })
}

func (claimCarrier) Views(members []gossip.MemberInfo) map[string]etcdview.View {
	out := map[string]etcdview.View{}
	for _, m := range members {
		if m.Claim != nil && !m.Claim.Etcd.ObservedAt.IsZero() {
			out[m.Name] = viewOfClaim(m.Claim.Etcd)
		}
	}
	return out
}

// claimEtcd and viewOfClaim convert between the reader's view and the
// claim's (the same fields).
func claimEtcd(v etcdview.View) claims.EtcdView {
	e := claims.EtcdView{ObservedAt: v.ObservedAt, Healthy: v.Healthy, MemberName: v.MemberName, MemberID: v.MemberID,
		Learner: v.Learner, Revision: v.Revision, RaftIndex: v.RaftIndex, Leader: v.Leader}
	for _, m := range v.Members {
		e.Members = append(e.Members, claims.EtcdMember{Name: m.Name, ID: m.ID, PeerURL: m.PeerURL, Learner: m.Learner})
	}
	return e
}

func viewOfClaim(e claims.EtcdView) etcdview.View {
	v := etcdview.View{ObservedAt: e.ObservedAt, Healthy: e.Healthy, MemberName: e.MemberName, MemberID: e.MemberID,
		Learner: e.Learner, Revision: e.Revision, RaftIndex: e.RaftIndex, Leader: e.Leader}
	for _, m := range e.Members {
		v.Members = append(v.Members, etcdview.Member{Name: m.Name, ID: m.ID, PeerURL: m.PeerURL, Learner: m.Learner})
	}
	return v
}

// etcdState is this server's local view and its carriage.
type etcdState struct {
	reader  etcdReader
	carrier etcdCarrier

	// readMu makes a read and its publication one step: the watch and an
	// upgrade's wait-healthy both read, and an older view must not be
	// published after a newer one.
	readMu      sync.Mutex
	mu          sync.Mutex
	local       etcdview.View // zero: none (RKE2 not running, or the last read failed)
	err         string        // why the last read failed ("" none)
	published   etcdview.View
	publishedAt time.Time
}

// ownLoopback is the loopback address this host's own loopback-only
// listeners are reached on: 127.0.0.1, or the advertise address where that
// is itself a loopback address (several hosts on one machine, each on its
// own 127.0.0.x: the loopback cluster, the demo). RKE2's etcd HTTP client
// URL binds loopback only. (The admin kubeconfig's 127.0.0.1:6443 is
// reached at the advertise address instead, see removeServer: the
// apiserver listens on every address.)
func ownLoopback(advertise string) string {
	if ip := net.ParseIP(advertise); ip != nil && ip.IsLoopback() {
		return advertise
	}
	return "127.0.0.1"
}

// newEtcdState is a server's reader of RKE2's etcd on this host.
func (n *Node) newEtcdState() *etcdState {
	r := etcdview.New(n.cfg.RKE2DataDir, ownLoopback(n.advertise))
	r.Now = n.clk.Now
	return &etcdState{reader: r, carrier: noCarrier{}}
}

// watchEtcd reads the local etcd until ctx ends (servers).
func (n *Node) watchEtcd(ctx context.Context) {
	for {
		n.readEtcd(ctx)
		n.recordQuorumAssessment(n.etcdStatus())
		if n.clk.Sleep(ctx, etcdReadInterval) != nil {
			return
		}
	}
}

// readEtcd takes one view of the local etcd while RKE2 runs, keeps it and
// publishes it when it changed (or is due again). It returns the view
// (zero: RKE2 not running or the read failed).
func (n *Node) readEtcd(ctx context.Context) etcdview.View {
	e := n.etcd
	e.readMu.Lock()
	defer e.readMu.Unlock()
	var v etcdview.View
	why := ""
	if active, err := n.svc.Active(ctx, n.role); err == nil && active {
		if v, err = e.reader.Read(ctx); err != nil {
			v, why = etcdview.View{}, err.Error()
		}
	}
	if ctx.Err() != nil {
		return etcdview.View{}
	}
	e.mu.Lock()
	before := e.err
	e.local, e.err = v, why
	publish := !sameEtcdView(v, e.published) || n.clk.Now().Sub(e.publishedAt) >= etcdRepublish
	e.mu.Unlock()
	switch {
	case why != "" && before == "":
		n.log.Warn("the local etcd does not answer", zap.String("error", why))
	case why == "" && before != "":
		n.log.Info("the local etcd answers again", zap.Bool("healthy", v.Healthy))
	}
	if !publish {
		return v
	}
	if err := e.carrier.Publish(v); err != nil {
		n.log.Debug("publish etcd view", zap.Error(err))
		return v
	}
	e.mu.Lock()
	e.published, e.publishedAt = v, n.clk.Now()
	e.mu.Unlock()
	return v
}

// waitEtcdVoter reads the local etcd until it is a healthy voter and that
// view is this server's own and published (servers; nil on agents). A
// server back from a restart otherwise shows, for up to etcdReadInterval,
// the view it read while RKE2 was down: its own status then counts it out
// of quorum, and the others judge it by gossip alone.
func (n *Node) waitEtcdVoter(ctx context.Context) error {
	if n.etcd == nil {
		return nil
	}
	b := n.retryPolicy.Start()
	why := "not read yet"
	for {
		if v := n.readEtcd(ctx); ctx.Err() == nil {
			if v.Healthy && v.MemberName != "" && !v.Learner {
				return nil
			}
			n.etcd.mu.Lock()
			why = n.etcd.err
			n.etcd.mu.Unlock()
			switch {
			case why != "":
			case v.ObservedAt.IsZero():
				why = "RKE2 is not running"
			case v.Learner:
				why = "its member " + v.MemberName + " is still a learner"
			default:
				why = fmt.Sprintf("healthy %v, member %q", v.Healthy, v.MemberName)
			}
		}
		if err := b.Wait(ctx, n.clk); err != nil {
			return fmt.Errorf("the local etcd is not a healthy voter (%s): %w", why, err)
		}
	}
}

// sameEtcdView compares what others act on in two views: membership,
// health and leader. The revision and raft index move with every write
// (Kubernetes writes every few seconds), so they go out with the next
// change or with the minute's republication; once quorum is lost, writes
// stop and the health change publishes the revision the survivor holds.
func sameEtcdView(a, b etcdview.View) bool {
	return a.ObservedAt.IsZero() == b.ObservedAt.IsZero() && slices.Equal(a.Members, b.Members) &&
		a.Healthy == b.Healthy && a.MemberName == b.MemberName && a.MemberID == b.MemberID && a.Learner == b.Learner && a.Leader == b.Leader
}

// localEtcd is the local view when it is current.
func (n *Node) localEtcd() (etcdview.View, string, bool) {
	if n.etcd == nil {
		return etcdview.View{}, "", false
	}
	e := n.etcd
	e.mu.Lock()
	defer e.mu.Unlock()
	ok := !e.local.ObservedAt.IsZero() && n.clk.Now().Sub(e.local.ObservedAt) < etcdFresh
	return e.local, e.err, ok
}

// etcdInputs gathers what the assessment needs: gossip's members, the
// views they publish, the FSM's voters and the cluster CA.
func (n *Node) etcdInputs() (members []gossip.MemberInfo, peers map[string]etcdview.View, voters []string, caHash string) {
	n.mu.Lock()
	view := n.members
	n.mu.Unlock()
	if view != nil {
		members = view.Members()
		if n.etcd != nil {
			peers = n.etcd.carrier.Views(members)
			now := n.clk.Now()
			for name, v := range peers {
				if now.Sub(v.ObservedAt) > etcdPeerFresh {
					delete(peers, name)
				}
			}
		}
	}
	if c := n.coordinator(); c != nil {
		st := c.State()
		voters = st.EtcdVoters()
		if st.ClusterReady != nil {
			caHash = st.ClusterReady.CAHash
		}
	}
	return members, peers, voters, caHash
}

// etcdStatus is /status's cluster.etcd (nil on agents and before anything
// is known).
func (n *Node) etcdStatus() *status.Etcd {
	if n.etcd == nil {
		return nil
	}
	local, why, ok := n.localEtcd()
	if !ok {
		local = etcdview.View{}
	}
	members, peers, voters, ca := n.etcdInputs()
	st, _, known := assessEtcd(n.cfg.NodeName, local, peers, members, voters, ca)
	if !known {
		if why == "" {
			return nil
		}
		st = status.Etcd{Members: []status.EtcdMember{}}
	}
	st.ObservedAt, st.Error = local.ObservedAt, why
	return &st
}

// assessEtcd is the quorum picture from this server's local view (zero:
// none), the views others publish, gossip, the FSM's voters and the
// cluster CA. The member list is the local etcd's, else the newest
// published one, else the FSM's voters; known is false when none exists.
func assessEtcd(self string, local etcdview.View, peers map[string]etcdview.View, members []gossip.MemberInfo, fsmVoters []string, caHash string) (status.Etcd, ms.Assessment, bool) {
	alive := map[string]gossip.MemberInfo{}
	for _, m := range members {
		if m.State == gossip.StateAlive && m.MetaErr == nil && m.Name != self {
			alive[m.Name] = m
		}
	}
	// The member list: the local one, else the newest an alive server
	// published (equal times: the lowest name).
	list := local
	if list.ObservedAt.IsZero() {
		newest := ""
		for name, v := range peers {
			if _, ok := alive[name]; !ok || v.ObservedAt.IsZero() {
				continue
			}
			if newest == "" || v.ObservedAt.After(list.ObservedAt) || v.ObservedAt.Equal(list.ObservedAt) && name < newest {
				list, newest = v, name
			}
		}
	}
	var out []status.EtcdMember
	var voters []string
	if !list.ObservedAt.IsZero() {
		for _, m := range list.Members {
			node := etcdNodeName(m.Name)
			out = append(out, status.EtcdMember{Name: m.Name, ID: fmt.Sprintf("%x", m.ID), Learner: m.Learner, Node: node})
			if !m.Learner && node != "" {
				voters = append(voters, node)
			}
		}
	} else {
		for _, v := range fsmVoters {
			out = append(out, status.EtcdMember{Name: v, Node: v})
			voters = append(voters, v)
		}
	}
	if len(out) == 0 {
		return status.Etcd{}, ms.Assessment{}, false
	}
	// read are the views taken from an etcd (this server's, published
	// ones): only they know a revision, so only they name the survivor.
	var views, read []ms.EtcdView
	add := func(name string, v etcdview.View) {
		ev := ms.EtcdView{Server: name, Member: v.MemberName != "" && !v.Learner, Revision: v.Revision, Healthy: v.Healthy}
		views, read = append(views, ev), append(read, ev)
	}
	if !local.ObservedAt.IsZero() {
		add(self, local)
	}
	for name, m := range alive {
		if v, ok := peers[name]; ok && !v.ObservedAt.IsZero() {
			add(name, v)
		} else if m.Meta.Role == gossip.RoleServer && m.Meta.Ready && caHash != "" && m.Meta.CAHash == caHash {
			// No published view: alive and ready with the cluster CA is
			// the gossip fallback (its revision is not known).
			views = append(views, ms.EtcdView{Server: name, Member: true, Healthy: true})
		}
	}
	a := ms.Assess(voters, views)
	r := ms.Assess(voters, read)
	a.Survivor, a.SurvivorRevision = r.Survivor, r.SurvivorRevision
	healthy := map[string]bool{}
	for _, v := range views {
		healthy[v.Server] = v.Member && v.Healthy
	}
	for i := range out {
		out[i].Healthy = out[i].Node != "" && healthy[out[i].Node]
	}
	slices.SortFunc(out, func(a, b status.EtcdMember) int { return strings.Compare(a.Name, b.Name) })
	st := status.Etcd{Members: out, Voters: a.Voters, Healthy: a.Healthy, QuorumMargin: a.Margin, QuorumAtRisk: a.AtRisk, MajorityGone: !a.Majority}
	if local.Healthy && local.MemberName != "" && !local.Learner {
		// This server's etcd answered a linearizable read as a voter: a
		// quorum answers, by etcd's own word, whatever this server can
		// tell of the others (just after its start, before raft gives it
		// the cluster CA, an older build's servers publish no view).
		st.MajorityGone = false
	}
	if a.Survivor != "" {
		st.NewestSurvivor = &status.EtcdSurvivor{Name: a.Survivor, Revision: a.SurvivorRevision}
	}
	return st, a, true
}

// etcdNodeName is the node an etcd member name belongs to: RKE2 names
// members <node-name>-<8 hex>. A learner not started yet has no name.
func etcdNodeName(member string) string {
	i := strings.LastIndexByte(member, '-')
	if i < 0 || len(member)-i-1 != 8 {
		return member
	}
	if _, err := hex.DecodeString(member[i+1:]); err != nil {
		return member
	}
	return member[:i]
}

// membershipExtra is what the leader's duties know of server name beyond
// gossip: for this server its own fields (selfExtra); for another, whether
// its etcd answers by the view it publishes. ok false: nothing published,
// the duties judge it by gossip (alive and ready with the cluster CA).
func (n *Node) membershipExtra(name string) (election.MembershipExtra, bool) {
	if name == n.cfg.NodeName {
		return n.selfExtra(name)
	}
	_, peers, _, _ := n.etcdInputs()
	v, ok := peers[name]
	if !ok || v.ObservedAt.IsZero() {
		return election.MembershipExtra{}, false
	}
	return election.MembershipExtra{EtcdHealthy: v.Healthy && v.MemberName != "", HasDatastore: true}, true
}

// selfEtcdHealthy is whether this server's etcd answers: by its own
// current view, else (no view yet) by its phase being ready.
func (n *Node) selfEtcdHealthy(phase string) bool {
	if v, _, ok := n.localEtcd(); ok {
		return v.Healthy && v.MemberName != ""
	}
	return phase == status.PhaseReady
}

// etcdCollector exports the assessment; nothing while none is known.
type etcdCollector struct {
	n                                             *Node
	members, voters, learners, margin, risk, lost *prometheus.Desc
}

func newEtcdCollector(n *Node) *etcdCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &etcdCollector{n: n,
		members:  d("rke2_hanode_etcd_members", "etcd members (voters and learners), as this server sees the member list."),
		voters:   d("rke2_hanode_etcd_voters", "etcd voting members, as this server sees the member list."),
		learners: d("rke2_hanode_etcd_learners", "etcd learners (members not yet promoted to voters)."),
		margin:   d("rke2_hanode_quorum_margin", "How many more etcd voters may fail before quorum is lost (healthy voters minus quorum; negative once lost)."),
		risk:     d("rke2_hanode_quorum_at_risk", "1 when one more failure, or none, loses etcd quorum (margin 0 or less)."),
		lost:     d("rke2_hanode_quorum_lost", "1 when a majority of the etcd voters is gone: quorum is lost, recovery is an operator's decision."),
	}
}

func (c *etcdCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.voters, c.learners, c.margin, c.risk, c.lost} {
		ch <- d
	}
}

func (c *etcdCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.etcdStatus()
	if st == nil || len(st.Members) == 0 {
		return
	}
	learners := 0
	for _, m := range st.Members {
		if m.Learner {
			learners++
		}
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(c.members, float64(len(st.Members)))
	g(c.voters, float64(st.Voters))
	g(c.learners, float64(learners))
	g(c.margin, float64(st.QuorumMargin))
	g(c.risk, b(st.QuorumAtRisk))
	g(c.lost, b(st.MajorityGone))
}
