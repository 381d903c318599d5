package rke2sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// The embedded etcd: one member per server, real raft, real membership. The
// sim's own supervisor carries the join request to a voter, which calls
// MemberAddAsLearner; etcd itself then decides "too many learner members",
// quorum and promotion, as it does under RKE2.

// Refusals current k3s retries (every second) instead of exiting on.
// A timeout is retried too: on a loaded test machine a member call can take
// longer than the sim's deadline, which says nothing about the product.
var retriedJoinErrors = []string{"too many learner members", "unhealthy cluster", "request timed out"}

func isRetriedJoinError(msg string) bool {
	for _, s := range retriedJoinErrors {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// reasonDuplicateName is k3s's words for a member whose node-name is taken.
const reasonDuplicateName = "etcd cluster join failed: duplicate node name found, please use a unique name for this node"

// etcdNameFile keeps this member's name, <node-name>-<8 hex>, as RKE2 does.
func etcdNameFile(dataDir string) string { return filepath.Join(datastoreDir(dataDir), "name") }

// etcdWALDir exists once a member has started: then the host has a datastore.
func etcdWALDir(dataDir string) string { return filepath.Join(datastoreDir(dataDir), "member", "wal") }

// memberName reads the stored member name or makes a new one; it is stored
// (writeMemberName) only once the member is added, so that a refused joiner
// leaves no datastore folder behind.
func memberName(dataDir, nodeName string) (string, error) {
	raw, err := os.ReadFile(etcdNameFile(dataDir))
	if err == nil {
		if name := strings.TrimSpace(string(raw)); nodeNameOf(name) == nodeName {
			return name, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("etcd name: %w", err)
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("etcd name: %w", err)
	}
	return nodeName + "-" + hex.EncodeToString(b), nil
}

func writeMemberName(dataDir, name string) error {
	if err := os.MkdirAll(datastoreDir(dataDir), 0o700); err != nil {
		return fmt.Errorf("etcd name: %w", err)
	}
	return writeFileAtomic(etcdNameFile(dataDir), []byte(name+"\n"), 0o600)
}

// nodeNameOf strips the "-<8 hex>" suffix of a member name.
func nodeNameOf(member string) string {
	i := strings.LastIndexByte(member, '-')
	if i < 0 || len(member)-i-1 != 8 {
		return member
	}
	if _, err := hex.DecodeString(member[i+1:]); err != nil {
		return member
	}
	return member[:i]
}

// etcdClientURL is the gRPC client URL on node-ip (https, client-cert-auth).
func (n *node) etcdClientURL() string {
	return "https://" + net.JoinHostPort(n.cfg.NodeIP, strconv.Itoa(n.set.EtcdClientPort))
}

// etcdListenClientURLs are RKE2's listen-client-urls: 127.0.0.1 and node-ip
// (only node-ip where node-ip is itself a loopback address).
func (n *node) etcdListenClientURLs() []url.URL {
	port := strconv.Itoa(n.set.EtcdClientPort)
	hosts := []string{n.cfg.NodeIP}
	if lo := ownLoopback(n.cfg.NodeIP); lo != n.cfg.NodeIP {
		hosts = append([]string{lo}, hosts...)
	}
	var out []url.URL
	for _, h := range hosts {
		out = append(out, url.URL{Scheme: "https", Host: net.JoinHostPort(h, port)})
	}
	return out
}

// etcdHTTPURL is RKE2's listen-client-http-urls: HTTP (/health, the JSON
// gateway) on loopback only; the client URLs then serve gRPC alone.
func (n *node) etcdHTTPURL() string {
	return "https://" + net.JoinHostPort(ownLoopback(n.cfg.NodeIP), strconv.Itoa(n.set.EtcdHTTPPort))
}

func (n *node) etcdPeerURL() string {
	return "http://" + net.JoinHostPort(n.cfg.NodeIP, strconv.Itoa(n.set.EtcdPeerPort))
}

// startEtcd starts this host's member: state "new" for cluster-init,
// "existing" for a joiner (initialCluster lists the started members and this
// one) and for a restart (the WAL knows the cluster; initialCluster is unused).
func (n *node) startEtcd(ctx context.Context, state, initialCluster, clusterToken string) error {
	cfg := embed.NewConfig()
	cfg.Name = n.etcdName
	cfg.Dir = datastoreDir(n.cfg.DataDir)
	peer, err := url.Parse(n.etcdPeerURL())
	if err != nil {
		return err
	}
	client, err := url.Parse(n.etcdClientURL())
	if err != nil {
		return err
	}
	httpURL, err := url.Parse(n.etcdHTTPURL())
	if err != nil {
		return err
	}
	files, err := ensureEtcdTLS(n.cfg.DataDir, n.cfg.NodeIP, n.now())
	if err != nil {
		return err
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = n.etcdListenClientURLs(), []url.URL{*client}
	cfg.ListenClientHttpUrls = []url.URL{*httpURL}
	cfg.ClientTLSInfo = files.serverTLS()
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = initialCluster
	cfg.InitialClusterToken = clusterToken
	cfg.ClusterState = state
	cfg.ForceNewCluster = n.clusterReset
	// Small and quiet: many members share one test machine.
	cfg.SnapshotCount = 1000
	cfg.SnapshotCatchUpEntries = 500
	cfg.QuotaBackendBytes = 64 << 20
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "1000"
	cfg.EnableGRPCGateway = true // etcd's default, which RKE2 leaves alone
	cfg.Logger = "zap"
	cfg.LogLevel = n.set.EtcdLogLevel
	cfg.LogOutputs = []string{"stderr"}
	// A loaded machine misses 100 ms heartbeats; these keep elections rare
	// and a lost quorum still shows within seconds.
	cfg.TickMs = 200
	cfg.ElectionMs = 2000
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd: start member %s: %w", n.etcdName, err)
	}
	clientTLS, err := files.clientTLS()
	if err != nil {
		e.Close()
		return fmt.Errorf("etcd: client certificate: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{n.etcdClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: clientTLS,
	})
	if err != nil {
		e.Close()
		return fmt.Errorf("etcd: client: %w", err)
	}
	n.etcd, n.etcdCli = e, cli
	n.etcdStarted = n.now()
	n.log.Info("etcd member started", zap.String("name", n.etcdName), zap.String("state", state),
		zap.String("peer", n.etcdPeerURL()), zap.String("client", n.etcdClientURL()), zap.String("http", n.etcdHTTPURL()))
	go func() {
		select {
		case <-ctx.Done():
		case err := <-e.Err():
			if err != nil {
				n.log.Error("etcd stopped with an error", zap.Error(err))
			}
		}
	}()
	return nil
}

// waitEtcdReady waits until the member has published itself (it needs a quorum).
func (n *node) waitEtcdReady(ctx context.Context) error {
	select {
	case <-n.etcd.Server.ReadyNotify():
		return nil
	case err := <-n.etcd.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopEtcd closes the client and the member.
func (n *node) stopEtcd() {
	if n.etcdCli != nil {
		_ = n.etcdCli.Close()
	}
	if n.etcd != nil {
		n.etcd.Close()
	}
}

// isVoter says whether this member is a voting member in its own view.
func (n *node) isVoter() bool {
	m := n.etcd.Server.Cluster().Member(n.etcd.Server.MemberID())
	return m != nil && !m.IsLearner
}

// EtcdMember is one member as state.json shows it.
type EtcdMember struct {
	Name    string `json:"name"` // "" until a learner has started
	PeerURL string `json:"peer_url"`
	Learner bool   `json:"learner"`
}

// EtcdState is state.json's etcd section.
type EtcdState struct {
	Members  []EtcdMember `json:"members"`
	Leader   string       `json:"leader"`
	Revision int64        `json:"revision"`
}

// etcdView reads the member list, leader and revision from the local member.
func (n *node) etcdView() EtcdState {
	s := n.etcd.Server
	lead := s.Leader()
	v := EtcdState{Members: []EtcdMember{}, Revision: s.KV().Rev()}
	for _, m := range s.Cluster().Members() {
		em := EtcdMember{Name: m.Name, Learner: m.IsLearner}
		if len(m.PeerURLs) > 0 {
			em.PeerURL = m.PeerURLs[0]
		}
		if m.ID == lead {
			v.Leader = m.Name
		}
		v.Members = append(v.Members, em)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].PeerURL < v.Members[j].PeerURL })
	return v
}

// quorumCheck is etcd's own health test: a linearizable read answers only
// while a quorum of voters agrees on a leader.
func (n *node) quorumCheck(ctx context.Context) bool {
	if n.etcd.Server.Leader() == 0 || !n.isVoter() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := n.etcdCli.Get(ctx, "health")
	return err == nil
}

// watchEtcd keeps n.quorum and state.json's etcd section current, and on the
// etcd leader runs the promotion loop, as k3s's leader does.
func (n *node) watchEtcd(ctx context.Context) {
	var last EtcdState
	learners := map[uint64]*learnerSeen{}
	for {
		n.quorum.Store(n.quorumCheck(ctx))
		if v := n.etcdView(); !reflect.DeepEqual(v, last) {
			if err := n.updateState(func(st *Evidence) { st.Etcd = v }); err != nil {
				n.log.Warn("cannot write state.json", zap.Error(err))
			} else {
				last = v
			}
		}
		if n.memberRemoved(ctx) {
			return
		}
		n.promoteLearners(ctx, learners)
		if n.ready.Load() {
			n.etcdController(ctx)
		}
		if sleep(ctx, 250*time.Millisecond) != nil {
			return
		}
	}
}

// memberRemoved notices that etcd stopped this member because the cluster
// removed it (its Node was deleted, or the remove annotation): RKE2 then
// stops serving its control plane; the sim records it in state.json.
func (n *node) memberRemoved(ctx context.Context) bool {
	select {
	case <-n.etcd.Server.StopNotify():
	default:
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	n.quorum.Store(false)
	reason := fmt.Sprintf("etcd member %s was removed from the cluster: it serves no more", n.etcdName)
	n.log.Error(reason)
	if err := n.updateState(func(st *Evidence) { st.Removed = stamp(n.now()) + " " + reason }); err != nil {
		n.log.Warn("cannot write state.json", zap.Error(err))
	}
	return true
}

// learnerSeen is the leader's note of one learner.
type learnerSeen struct {
	since   time.Time // first seen as a learner
	nextTry time.Time // next MemberPromote
}

// promoteLearners, on the etcd leader only: the first MemberPromote once a
// learner has been one for the join delay (RKE2SIM_JOIN_DELAY, the learner
// phase), then again every promote interval while etcd refuses (it does
// until the learner has caught up); a learner stalled longer than the stall
// limit is removed, as k3s's leader does.
func (n *node) promoteLearners(ctx context.Context, learners map[uint64]*learnerSeen) {
	s := n.etcd.Server
	if s.Leader() != s.MemberID() {
		clear(learners)
		return
	}
	now := n.now()
	present := map[uint64]bool{}
	for _, m := range s.Cluster().Members() {
		if !m.IsLearner {
			continue
		}
		id := uint64(m.ID)
		present[id] = true
		l, ok := learners[id]
		if !ok {
			l = &learnerSeen{since: now, nextTry: now.Add(n.set.JoinDelay)}
			learners[id] = l
		}
		log := n.log.With(zap.String("learner", m.Name), zap.Strings("peer", m.PeerURLs))
		if now.Sub(l.since) >= n.set.LearnerStall {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := n.etcdCli.MemberRemove(cctx, id)
			cancel()
			log.Warn("removing a learner stalled too long", zap.Duration("stalled", now.Sub(l.since)), zap.Error(err))
			continue
		}
		// A learner publishes its name once it runs and has caught up with
		// the log; before that etcd would refuse the promotion anyway.
		if now.Before(l.nextTry) || m.Name == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.etcdCli.MemberPromote(cctx, id)
		cancel()
		if err != nil {
			l.nextTry = n.now().Add(n.set.PromoteInterval)
			log.Debug("learner not promoted yet", zap.Error(err))
			continue
		}
		log.Info("learner promoted to voter", zap.Duration("learner-phase", n.now().Sub(l.since)))
		delete(learners, id)
	}
	for id := range learners {
		if !present[id] {
			delete(learners, id)
		}
	}
}

// dbInfoMember is one member as GET /db/info lists it (etcd's member list).
type dbInfoMember struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

type dbInfo struct {
	Members []dbInfoMember `json:"members"`
}

// addLearner is the serving side of a server join: the duplicate-name check
// k3s makes, then MemberAddAsLearner. It returns the initial-cluster string
// the joiner starts with. A host whose peer URL is already a member (it was
// added, then restarted before its member started) is not added twice.
//
// Two adds at the same moment: raft takes one configuration change at a
// time and drops the other, which then never completes; the call times out
// ("etcdserver: request timed out") and the joiner retries.
func (n *node) addLearner(ctx context.Context, name, peerURL string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	timedOut := func(err error) error {
		if errors.Is(err, context.DeadlineExceeded) {
			return errors.New("etcdserver: request timed out")
		}
		return err
	}
	list, err := n.etcdCli.MemberList(ctx)
	if err != nil {
		return "", timedOut(err)
	}
	already := false
	for _, m := range list.Members {
		isPeer := len(m.PeerURLs) > 0 && m.PeerURLs[0] == peerURL
		if m.Name != "" && !isPeer && nodeNameOf(m.Name) == nodeNameOf(name) {
			return "", errors.New(reasonDuplicateName)
		}
		already = already || isPeer
	}
	if !already {
		resp, err := n.etcdCli.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			return "", timedOut(err)
		}
		list.Members = resp.Members
	}
	parts := []string{name + "=" + peerURL}
	for _, m := range list.Members {
		if m.Name == "" || (len(m.PeerURLs) > 0 && m.PeerURLs[0] == peerURL) {
			continue
		}
		for _, p := range m.PeerURLs {
			parts = append(parts, m.Name+"="+p)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ","), nil
}
