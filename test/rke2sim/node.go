package rke2sim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// node is one running rke2sim process (server or agent).
type node struct {
	cfg          NodeConfig
	set          Settings
	log          *zap.Logger
	now          func() time.Time
	notifySocket string

	// Server side, set once the cluster identity is known.
	ca          *CA
	secret      string
	agentSecret string // agent-token's password, "" without one
	ready       atomic.Bool
	mu          sync.Mutex
	ds          Datastore
	agents      map[string]string // agent name → its address, as registered here
	vipHeld     string            // the VIP this node serves, "" for none (under mu)
	applied     *appliedStore     // the cluster's auto-deployed objects, as known here
	// joinedNow: this run joined the cluster (no start delay after it).
	joinedNow bool
	// resumedJoin: this run restarted a joiner's datastore; serve waits
	// for its member (a quorum, its promotion) once it listens.
	resumedJoin bool
	// clusterReset (--cluster-reset) and restorePath
	// (--cluster-reset-restore-path): reset the datastore to one member.
	clusterReset bool
	restorePath  string
	// snapshotName: etcd-snapshot save --name ("" on-demand).
	snapshotName string
	// afterReset: this normal start found reset-flag (and removed it).
	afterReset bool
	// rootCtx ends when the process is told to stop.
	rootCtx context.Context

	// The embedded etcd member (servers only).
	etcd        *embed.Etcd
	etcdCli     *clientv3.Client
	etcdName    string
	etcdStarted time.Time
	quorum      atomic.Bool // a linearizable read succeeds (etcd's health test)
	stateMu     sync.Mutex  // state.json's read-modify-write
}

// supervisorURL is how other members reach this node.
func (n *node) supervisorURL() string {
	return "https://" + net.JoinHostPort(n.cfg.NodeIP, strconv.Itoa(n.set.SupervisorPort))
}

func tokenPaths(dataDir string) (token, nodeToken string) {
	dir := filepath.Join(dataDir, "server")
	return filepath.Join(dir, "token"), filepath.Join(dir, "node-token")
}

// runServer decides between resuming a datastore, cluster-init and join.
func (n *node) runServer(ctx context.Context) error {
	defer n.stopEtcd()
	if n.cfg.AgentToken != "" {
		tok, err := ParseToken(n.cfg.AgentToken)
		if err != nil {
			return reject("agent-token: %v", err)
		}
		n.agentSecret = tok.Secret
	}
	switch {
	case n.clusterReset:
		return n.resetCluster(ctx)
	case HasDatastore(n.cfg.DataDir):
		if err := n.resume(ctx); err != nil {
			return err
		}
	case n.cfg.Server == "":
		if err := n.clusterInit(ctx); err != nil {
			return err
		}
	default:
		if err := n.joinCluster(ctx); err != nil {
			return err
		}
	}
	return n.serve(ctx)
}

// clusterInit creates a new cluster: CA, token files, datastore.
func (n *node) clusterInit(ctx context.Context) error {
	secret := ""
	if n.cfg.Token != "" {
		tok, err := ParseToken(n.cfg.Token)
		if err != nil {
			return reject("%v", err)
		}
		if tok.CAHash != "" {
			// The first server's CA does not exist yet, so no secure token can match it.
			return reject("token CA hash does not match the Cluster CA certificate hash: a new cluster's CA cannot match %s (give the first server a short token)", tok.CAHash)
		}
		secret = tok.Secret
	} else {
		var err error
		if secret, err = randomSecret(); err != nil {
			return err
		}
		n.log.Warn("no token configured: generated one (see server/token)")
	}
	newCA := NewCA
	if n.set.CABundle {
		newCA = NewBundleCA
	}
	ca, err := newCA(n.now())
	if err != nil {
		return err
	}
	if err := SaveCA(n.cfg.DataDir, ca); err != nil {
		return err
	}
	n.ca, n.secret = ca, secret
	if err := n.writeTokens(); err != nil {
		return err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("cluster id: %w", err)
	}
	n.ds = Datastore{
		ClusterID: hex.EncodeToString(id), CAHash: ca.Hash(), Mode: ModeClusterInit, Self: n.cfg.NodeName,
		Members: []Member{{Name: n.cfg.NodeName, URL: n.supervisorURL()}},
	}
	if err := WriteDatastore(n.cfg.DataDir, n.ds); err != nil {
		return err
	}
	if err := n.updateState(func(st *Evidence) {
		*st = Evidence{Mode: ModeClusterInit, CAHash: ca.Hash(), Rejections: st.Rejections, Skew: st.Skew, Evictions: st.Evictions, Resets: st.Resets}
	}); err != nil {
		return err
	}
	if n.etcdName, err = memberName(n.cfg.DataDir, n.cfg.NodeName); err != nil {
		return err
	}
	if err := writeMemberName(n.cfg.DataDir, n.etcdName); err != nil {
		return err
	}
	if err := n.startEtcd(ctx, embed.ClusterStateFlagNew, n.etcdName+"="+n.etcdPeerURL(), n.ds.ClusterID); err != nil {
		return err
	}
	if err := n.waitEtcdReady(ctx); err != nil {
		return err
	}
	n.log.Info("cluster-init: new cluster", zap.String("ca-hash", ca.Hash()), zap.String("cluster-id", n.ds.ClusterID),
		zap.String("etcd-member", n.etcdName), zap.Duration("etcd-start", n.now().Sub(n.etcdStarted)))
	return nil
}

// resume starts from an existing datastore; server: is ignored, as in RKE2,
// except that a server: belonging to another cluster is refused loudly.
func (n *node) resume(ctx context.Context) error {
	ds, err := ReadDatastore(n.cfg.DataDir)
	if err != nil {
		return err
	}
	// A normal start after a reset removes reset-flag, as RKE2 does.
	if !n.clusterReset {
		switch err := os.Remove(resetFlagPath(n.cfg.DataDir)); {
		case err == nil:
			n.afterReset = true
			n.log.Info("removed reset-flag: first start after a cluster-reset")
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("reset-flag: %w", err)
		}
	}
	ca, err := LoadCA(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if ca.Hash() != ds.CAHash {
		return fmt.Errorf("datastore: CA on disk hashes to %s, datastore says %s", ca.Hash(), ds.CAHash)
	}
	tokPath, _ := tokenPaths(n.cfg.DataDir)
	raw, err := os.ReadFile(tokPath)
	if err != nil {
		return fmt.Errorf("datastore exists but token file is unreadable: %w", err)
	}
	stored, err := ParseToken(string(raw))
	if err != nil {
		return fmt.Errorf("%s: %w", tokPath, err)
	}
	if n.cfg.Token != "" {
		tok, err := ParseToken(n.cfg.Token)
		if err != nil {
			return reject("%v", err)
		}
		if tok.CAHash != "" && tok.CAHash != ca.Hash() {
			return reject("token CA hash does not match the Cluster CA certificate hash: %s != %s", tok.CAHash, ca.Hash())
		}
		if tok.Secret != stored.Secret {
			return reject("bootstrap data already found and encrypted with different token")
		}
	}
	n.ca, n.secret, n.ds = ca, stored.Secret, ds
	if n.cfg.Server != "" {
		if other, err := n.probeCAHash(ctx, n.cfg.Server); err == nil && other != ca.Hash() {
			return reject("this host has a datastore of another cluster (ca hash %s), server %s belongs to cluster %s", ca.Hash(), n.cfg.Server, other)
		}
		n.log.Info("datastore exists: server: is ignored", zap.String("server", n.cfg.Server))
	}
	if err := n.updateState(func(st *Evidence) {
		if st.Mode == "" {
			st.Mode = ds.Mode
		}
		st.CAHash = ca.Hash()
	}); err != nil {
		return err
	}
	raw, err = os.ReadFile(etcdNameFile(n.cfg.DataDir))
	if err != nil {
		return fmt.Errorf("datastore exists but its etcd member name is unreadable: %w", err)
	}
	n.etcdName = strings.TrimSpace(string(raw))
	// The WAL knows the cluster; the initial cluster is not used on a restart.
	if err := n.startEtcd(ctx, embed.ClusterStateFlagExisting, n.etcdName+"="+n.etcdPeerURL(), ds.ClusterID); err != nil {
		return err
	}
	n.log.Info("resuming cluster from datastore", zap.String("ca-hash", ca.Hash()), zap.String("mode", ds.Mode),
		zap.String("etcd-member", n.etcdName))
	// The supervisor listens before etcd has a quorum (k3s starts its
	// HTTPS listener before the managed database): serve waits for the
	// member.
	n.resumedJoin = ds.Mode == ModeJoin
	return nil
}

// finishResumedJoin: a joiner stopped during its learner phase comes back
// as a learner: as on its first start it is ready only once promoted, and
// only then is its join finished. A member of a cluster whose other
// members are down waits here for a quorum, serving /ping and /cacerts.
func (n *node) finishResumedJoin(ctx context.Context) error {
	if err := n.waitEtcdReady(ctx); err != nil {
		return err
	}
	if err := n.waitVoter(ctx); err != nil {
		return err
	}
	return n.updateState(func(st *Evidence) {
		if st.JoinStarted != "" && st.JoinFinished == "" {
			st.JoinFinished = stamp(n.now())
		}
	})
}

func (n *node) writeTokens() error {
	tokPath, nodeTokPath := tokenPaths(n.cfg.DataDir)
	secure := SecureToken(n.ca.Hash(), "server", n.secret) + "\n"
	if err := writeFileAtomic(tokPath, []byte(secure), 0o600); err != nil {
		return err
	}
	// As in RKE2, node-token holds the server token too.
	if err := writeFileAtomic(nodeTokPath, []byte(secure), 0o600); err != nil {
		return err
	}
	if n.agentSecret == "" {
		return nil
	}
	agent := SecureToken(n.ca.Hash(), "node", n.agentSecret) + "\n"
	return writeFileAtomic(filepath.Join(n.cfg.DataDir, "server", "agent-token"), []byte(agent), 0o600)
}

func (n *node) updateState(change func(*Evidence)) error {
	n.stateMu.Lock()
	defer n.stateMu.Unlock()
	st, err := ReadState(n.cfg.DataDir)
	if err != nil {
		return err
	}
	change(&st)
	return WriteState(n.cfg.DataDir, st)
}

// joinCluster asks the server: URL to add this host as an etcd learner,
// starts the member and waits until the etcd leader has promoted it: READY=1
// comes only for a voter, as with k3s.
func (n *node) joinCluster(ctx context.Context) error {
	jc, err := n.connect(ctx, ModeJoin)
	if err != nil {
		return err
	}
	if n.etcdName, err = memberName(n.cfg.DataDir, n.cfg.NodeName); err != nil {
		return err
	}
	req := joinRequest{Name: n.cfg.NodeName, Member: n.etcdName, URL: n.supervisorURL(), PeerURL: n.etcdPeerURL(),
		Mode: ModeJoin, Critical: n.cfg.Critical}
	resp, err := jc.join(ctx, req, n.set.ConnectRetry, n.set.JoinRetry, n.log, n.recordRejection)
	if err != nil {
		return err
	}
	started := n.now()
	ca, err := ParseCA(resp.CACert, resp.CAKey)
	if err != nil {
		return fmt.Errorf("join response: %w", err)
	}
	if ca.Hash() != jc.caHash {
		return reject("join response carries CA %s, server served %s", ca.Hash(), jc.caHash)
	}
	n.ca, n.secret = ca, jc.token.Secret
	if err := SaveCA(n.cfg.DataDir, ca); err != nil {
		return err
	}
	if err := n.writeTokens(); err != nil {
		return err
	}
	if err := writeMemberName(n.cfg.DataDir, n.etcdName); err != nil {
		return err
	}
	n.ds = Datastore{ClusterID: resp.ClusterID, CAHash: ca.Hash(), Mode: ModeJoin, Self: n.cfg.NodeName, Members: resp.Members}
	n.ds.Members = mergeMembers(n.ds.Members, []Member{{Name: n.cfg.NodeName, URL: n.supervisorURL()}})
	if err := WriteDatastore(n.cfg.DataDir, n.ds); err != nil {
		return err
	}
	if err := n.updateState(func(st *Evidence) {
		*st = Evidence{Mode: ModeJoin, CAHash: ca.Hash(), JoinedVia: n.cfg.Server, JoinStarted: stamp(started), Rejections: st.Rejections, Skew: st.Skew, Evictions: st.Evictions}
	}); err != nil {
		return err
	}
	n.log.Info("added as etcd learner", zap.String("via", n.cfg.Server), zap.String("initial-cluster", resp.InitialCluster))
	if err := n.startEtcd(ctx, embed.ClusterStateFlagExisting, resp.InitialCluster, resp.ClusterID); err != nil {
		return err
	}
	if err := n.waitEtcdReady(ctx); err != nil {
		return err
	}
	if err := n.waitVoter(ctx); err != nil {
		return err
	}
	finished := n.now()
	if err := n.updateState(func(st *Evidence) { st.JoinFinished = stamp(finished) }); err != nil {
		return err
	}
	n.joinedNow = true
	n.log.Info("joined cluster: etcd member is a voter", zap.String("via", n.cfg.Server), zap.String("ca-hash", ca.Hash()),
		zap.Duration("learner-phase", finished.Sub(started)))
	return nil
}

// waitVoter waits until the etcd leader promotes this member; a learner
// removed for stalling makes etcd stop, which ends the wait.
func (n *node) waitVoter(ctx context.Context) error {
	deadline := n.now().Add(n.set.LearnerStall + time.Minute)
	for !n.isVoter() {
		if n.now().After(deadline) {
			return fmt.Errorf("etcd: member %s still a learner after %s", n.etcdName, n.set.LearnerStall+time.Minute)
		}
		select {
		case err := <-n.etcd.Err():
			return fmt.Errorf("etcd: member %s stopped while a learner: %w", n.etcdName, err)
		case <-n.etcd.Server.StopNotify():
			return fmt.Errorf("etcd: member %s stopped while a learner (removed from the cluster?)", n.etcdName)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// runAgent: the same checks as a joining server, then registration.
func (n *node) runAgent(ctx context.Context) error {
	if n.cfg.Server == "" {
		return reject("agent: server is required (config key server)")
	}
	jc, err := n.connect(ctx, ModeAgent)
	if err != nil {
		return err
	}
	started := n.now()
	pw, err := nodePassword(n.cfg.NodePasswordFile)
	if err != nil {
		return err
	}
	req := joinRequest{Name: n.cfg.NodeName, URL: n.supervisorURL(), Mode: ModeAgent, Password: pw, Version: n.set.Version,
		WorkloadPods: n.set.WorkloadPods, PDBRefusals: n.set.PDBRefusals}
	resp, err := jc.join(ctx, req, n.set.ConnectRetry, n.set.JoinRetry, n.log, n.recordRejection)
	if err != nil {
		return err
	}
	if err := sleep(ctx, n.set.AgentDelay); err != nil {
		return nil
	}
	if err := n.updateState(func(st *Evidence) {
		*st = Evidence{Mode: ModeAgent, CAHash: jc.caHash, JoinedVia: n.cfg.Server,
			JoinStarted: stamp(started), JoinFinished: stamp(n.now()), Rejections: st.Rejections,
			Version: n.set.Version, Skew: append(st.Skew, n.agentSkew(resp.ServerVersions)...)}
	}); err != nil {
		return err
	}
	n.log.Info("agent registered", zap.String("via", n.cfg.Server), zap.String("ca-hash", jc.caHash))
	n.notifyReady()
	<-ctx.Done()
	return nil
}

// connect runs the joiner's checks: fetch /cacerts unverified, compare the
// secure token's hash, then talk TLS verified against that CA with the token.
// role is server or agent: an agent always authenticates as node (with the
// agent-token, or the server token's password when the servers have none);
// a server as the token's user, server for a bare password.
func (n *node) connect(ctx context.Context, role string) (*joinClient, error) {
	if n.cfg.Token == "" {
		return nil, reject("token is required to join a cluster (config key token or token-file)")
	}
	tok, err := ParseToken(n.cfg.Token)
	if err != nil {
		return nil, reject("%v", err)
	}
	switch {
	case role == ModeAgent:
		tok.Username = "node"
	case tok.Username == "":
		tok.Username = "server"
	}
	base := strings.TrimRight(n.cfg.Server, "/")
	if !strings.HasPrefix(base, "https://") {
		return nil, reject("server %q: must be an https:// URL", n.cfg.Server)
	}
	var body []byte
	for {
		body, err = fetchCACerts(ctx, base)
		if err == nil {
			break
		}
		n.log.Warn("cannot fetch CA certificates, retrying", zap.String("server", base), zap.Error(err))
		if sleep(ctx, n.set.ConnectRetry) != nil {
			return nil, ctx.Err()
		}
	}
	caHash := HashCACerts(body)
	if tok.CAHash == "" {
		n.log.Warn("short token: the server's CA cannot be checked against the token (use the secure K10 token)")
	} else if tok.CAHash != caHash {
		return nil, reject("token CA hash does not match the Cluster CA certificate hash: %s != %s", tok.CAHash, caHash)
	}
	jc, err := newJoinClient(base, body, tok)
	if err != nil {
		return nil, reject("server %s: %v", base, err)
	}
	jc.caHash = caHash
	return jc, nil
}

// probeCAHash fetches a server's /cacerts once and hashes it.
func (n *node) probeCAHash(ctx context.Context, server string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	body, err := fetchCACerts(ctx, strings.TrimRight(server, "/"))
	if err != nil {
		return "", err
	}
	return HashCACerts(body), nil
}

func (n *node) notifyReady() {
	if err := sdNotify(n.notifySocket, "READY=1"); err != nil {
		n.log.Warn("cannot notify systemd", zap.Error(err))
	}
}

// serve runs the supervisor and API listeners, turns ready after the start
// delay, and runs the kube-vip stand-in until ctx ends.
func (n *node) serve(ctx context.Context) error {
	cert, err := n.ca.ServingCert(n.cfg.NodeName, servingSANs(n.cfg.NodeIP, n.cfg.TLSSAN), n.now())
	if err != nil {
		return err
	}
	applied, err := loadAppliedStore(filepath.Join(n.cfg.DataDir, "sim", "applied-manifests.json"))
	if err != nil {
		return err
	}
	n.applied = applied
	handlers := n.handlers()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, l := range []struct {
		port int
		h    http.Handler
	}{{n.set.SupervisorPort, handlers.supervisor}, {n.set.APIPort, handlers.api}} {
		addr := net.JoinHostPort(n.cfg.NodeIP, strconv.Itoa(l.port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveTLS(ctx, ln, l.h, n.serverTLS(cert), n.log)
		}()
	}
	// RKE2 listens on every address: the kubeconfig and etcd-snapshot use
	// 127.0.0.1, so a node-ip that is not a loopback address gets a second
	// listener there.
	if apiLoopback(n.cfg.NodeIP) {
		for _, l := range []struct {
			port int
			h    http.Handler
		}{{n.set.SupervisorPort, handlers.supervisor}, {n.set.APIPort, handlers.api}} {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(l.port))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				n.log.Warn("cannot listen on 127.0.0.1", zap.String("listen", addr), zap.Error(err))
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveTLS(ctx, ln, l.h, n.serverTLS(cert), n.log)
			}()
		}
	}
	n.log.Info("serving", zap.String("supervisor", n.supervisorURL()), zap.Strings("sans", servingSANs(n.cfg.NodeIP, n.cfg.TLSSAN)))
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.syncMembers(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.watchEtcd(ctx)
	}()
	if n.resumedJoin {
		if err := n.finishResumedJoin(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	// Cluster-init and restarts wait the start delay (etcd and the apiserver
	// coming up); a fresh join is ready at the end of its learner phase.
	if !n.joinedNow {
		if sleep(ctx, n.set.StartDelay) != nil {
			return nil
		}
	}
	// The apiserver (and so READY=1) needs an etcd quorum.
	for !n.quorum.Load() {
		if sleep(ctx, 100*time.Millisecond) != nil {
			return nil
		}
	}
	skew := n.skewRecords(serverSkew(n.cfg.NodeName, n.set.Version, n.serverVersions(ctx)))
	if err := n.updateState(func(st *Evidence) {
		st.Version = n.set.Version
		st.Skew = append(st.Skew, skew...)
	}); err != nil {
		return err
	}
	// After a reset RKE2 deletes this node's password secret first.
	if n.afterReset {
		if err := n.kv().del(ctx, secretsPrefix+passwordSecretName(n.cfg.NodeName)); err != nil {
			n.log.Warn("cannot delete the node-password secret after a reset", zap.Error(err))
		}
	}
	// RKE2's agent side: the node password, then the Node.
	if err := n.registerSelf(ctx); err != nil {
		return nil
	}
	if err := n.writeKubeconfig(); err != nil {
		return err
	}
	n.ready.Store(true)
	n.log.Info("ready")
	n.notifyReady()
	n.rootCtx = ctx
	n.takeBackVIP()
	vip := &vipStandIn{n: n, handlers: handlers, cert: cert, applied: applied}
	vip.run(ctx)
	return nil
}

// writeKubeconfig writes the admin kubeconfig as RKE2 does once the
// apiserver is up: server https://127.0.0.1:<API port>, the cluster CA, and
// a system:admin client certificate in group system:masters.
func (n *node) writeKubeconfig() error {
	certPEM, keyPEM, err := n.ca.ClientCert("system:admin", []string{"system:masters"}, n.now())
	if err != nil {
		return err
	}
	b64 := base64.StdEncoding.EncodeToString
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: %s
    server: https://127.0.0.1:%d
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {}
users:
- user:
    client-certificate-data: %s
    client-key-data: %s
  name: default
`, b64(n.ca.CertPEM), n.set.APIPort, b64(certPEM), b64(keyPEM))
	if err := writeFileAtomic(n.cfg.Kubeconfig, []byte(kc), n.cfg.KubeconfigMode); err != nil {
		return fmt.Errorf("write-kubeconfig: %w", err)
	}
	return nil
}
