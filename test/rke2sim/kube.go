package rke2sim

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The Kubernetes objects RKE2 keeps for a node, as the product sees them
// through the API on 6443. They live in etcd itself, so every server serves
// the same view.
const (
	nodesPrefix   = "/registry/minions/"
	secretsPrefix = "/registry/secrets/kube-system/"

	labelEtcd         = "node-role.kubernetes.io/etcd"
	labelControlPlane = "node-role.kubernetes.io/control-plane"
	labelMaster       = "node-role.kubernetes.io/master"
	annotNodeName     = "etcd.rke2.cattle.io/node-name"
	annotNodeAddress  = "etcd.rke2.cattle.io/node-address"
	annotRemove       = "etcd.rke2.cattle.io/remove"
	etcdFinalizer     = "wrangler.cattle.io/managed-etcd-controller"
	nodePasswordType  = "rke2.cattle.io/node-password"

	// reasonNodePassword is RKE2's log line for a refused node password.
	reasonNodePassword = "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag"
)

// ObjectMeta is the part of Kubernetes' metadata the sim keeps.
type ObjectMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               string            `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
	DeletionTimestamp string            `json:"deletionTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	Finalizers        []string          `json:"finalizers,omitempty"`
	OwnerReferences   []OwnerReference  `json:"ownerReferences,omitempty"`
}

// OwnerReference is one of metadata.ownerReferences.
type OwnerReference struct {
	APIVersion         string `json:"apiVersion"`
	Kind               string `json:"kind"`
	Name               string `json:"name"`
	UID                string `json:"uid"`
	Controller         bool   `json:"controller,omitempty"`
	BlockOwnerDeletion bool   `json:"blockOwnerDeletion,omitempty"`
}

// KubeNode is a v1 Node.
type KubeNode struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       struct {
		Unschedulable bool `json:"unschedulable,omitempty"`
	} `json:"spec"`
	Status struct {
		Addresses []NodeAddress `json:"addresses,omitempty"`
		NodeInfo  struct {
			KubeletVersion string `json:"kubeletVersion"`
		} `json:"nodeInfo"`
	} `json:"status"`
}

// NodeAddress is one of a Node's status.addresses.
type NodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// KubeSecret is a v1 Secret (data values are base64 in JSON, as []byte).
type KubeSecret struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   ObjectMeta        `json:"metadata"`
	Immutable  bool              `json:"immutable,omitempty"`
	Type       string            `json:"type"`
	Data       map[string][]byte `json:"data"`
}

// nodeRegistration is what a node registers with: its name, address, role,
// for servers its etcd member, its password and version, and the pods it
// runs (RKE2SIM_WORKLOAD_PODS, RKE2SIM_PDB_REFUSALS).
type nodeRegistration struct {
	Name, Address, Member, PeerURL, Password, Version string
	Server                                            bool
	WorkloadPods, PDBRefusals                         int
}

var errNodePassword = errors.New(reasonNodePassword)

// errConflict: a write's resourceVersion precondition does not hold.
var errConflict = errors.New("the object has been modified")

func passwordSecretName(node string) string { return node + ".node-password.rke2" }

func hashPassword(pw string) string {
	sum := sha256.Sum256([]byte(pw))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// nodePassword reads the node's own password, creating a random one (0600)
// on the first start, as RKE2's agent does.
func nodePassword(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		if pw := strings.TrimSpace(string(raw)); pw != "" {
			return pw, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("node password %s: %w", path, err)
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("node password: %w", err)
	}
	if err := writeFileAtomic(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node password: %w", err)
	}
	return pw, nil
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// kv is the etcd access the API needs.
type kv struct{ cli *clientv3.Client }

func (k kv) get(ctx context.Context, key string, into any) (int64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := k.cli.Get(ctx, key)
	if err != nil {
		return 0, false, err
	}
	if len(resp.Kvs) == 0 {
		return 0, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, into); err != nil {
		return 0, false, fmt.Errorf("%s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, true, nil
}

// put writes v if the key's mod revision is still rev (0: absent); false
// means someone else wrote first.
func (k kv) put(ctx context.Context, key string, rev int64, v any) (int64, bool, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return 0, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := k.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(raw))).Commit()
	if err != nil {
		return 0, false, err
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

func (k kv) del(ctx context.Context, keys ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ops := make([]clientv3.Op, 0, len(keys))
	for _, key := range keys {
		ops = append(ops, clientv3.OpDelete(key))
	}
	_, err := k.cli.Txn(ctx).Then(ops...).Commit()
	return err
}

func (k kv) nodes(ctx context.Context) ([]KubeNode, int64, error) {
	out, rev, err := listObjects(ctx, k, nodesPrefix, func(kn *KubeNode, rv string) { kn.Metadata.ResourceVersion = rv })
	if err != nil {
		return nil, 0, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Metadata.Name < out[j].Metadata.Name })
	return out, rev, nil
}

// updateNode applies change to the stored Node under compare-and-swap,
// retrying on a concurrent write.
func (k kv) updateNode(ctx context.Context, name string, change func(*KubeNode) error) (KubeNode, bool, error) {
	for range 20 {
		var kn KubeNode
		rev, ok, err := k.get(ctx, nodesPrefix+name, &kn)
		if err != nil || !ok {
			return kn, ok, err
		}
		kn.Metadata.ResourceVersion = strconv.FormatInt(rev, 10)
		if err := change(&kn); err != nil {
			return kn, true, err
		}
		kn.Metadata.ResourceVersion = ""
		newRev, done, err := k.put(ctx, nodesPrefix+name, rev, kn)
		if err != nil {
			return kn, true, err
		}
		if done {
			kn.Metadata.ResourceVersion = strconv.FormatInt(newRev, 10)
			return kn, true, nil
		}
	}
	return KubeNode{}, true, fmt.Errorf("node %s: too many concurrent writes", name)
}

// registerNode checks the node password against its secret (making the
// secret on the first registration) and creates or refreshes the Node:
// servers carry the etcd labels, annotations and finalizer, agents none.
// Then the node's pods are made where absent (ensurePods).
func (k kv) registerNode(ctx context.Context, reg nodeRegistration, now time.Time) error {
	var sec KubeSecret
	secKey := secretsPrefix + passwordSecretName(reg.Name)
	_, found, err := k.get(ctx, secKey, &sec)
	if err != nil {
		return err
	}
	if found {
		if string(sec.Data["hash"]) != hashPassword(reg.Password) {
			return errNodePassword
		}
	} else {
		sec = KubeSecret{APIVersion: "v1", Kind: "Secret", Immutable: true, Type: nodePasswordType,
			Metadata: ObjectMeta{Name: passwordSecretName(reg.Name), Namespace: "kube-system", UID: newUID(), CreationTimestamp: now.UTC().Format(time.RFC3339)},
			Data:     map[string][]byte{"hash": []byte(hashPassword(reg.Password))}}
		if _, ok, err := k.put(ctx, secKey, 0, sec); err != nil {
			return err
		} else if !ok {
			return k.registerNode(ctx, reg, now) // made meanwhile: check against it
		}
	}
	fill := func(kn *KubeNode) {
		kn.Status.Addresses = []NodeAddress{{Type: "InternalIP", Address: reg.Address}, {Type: "Hostname", Address: reg.Name}}
		kn.Status.NodeInfo.KubeletVersion = reg.Version
		if !reg.Server {
			return
		}
		if kn.Metadata.Labels == nil {
			kn.Metadata.Labels = map[string]string{}
		}
		for _, l := range []string{labelEtcd, labelControlPlane, labelMaster} {
			kn.Metadata.Labels[l] = "true"
		}
		if kn.Metadata.Annotations == nil {
			kn.Metadata.Annotations = map[string]string{}
		}
		kn.Metadata.Annotations[annotNodeName] = reg.Member
		kn.Metadata.Annotations[annotNodeAddress] = reg.Address
		if !containsString(kn.Metadata.Finalizers, etcdFinalizer) {
			kn.Metadata.Finalizers = append(kn.Metadata.Finalizers, etcdFinalizer)
		}
	}
	kn, exists, err := k.updateNode(ctx, reg.Name, func(kn *KubeNode) error { fill(kn); return nil })
	if err != nil {
		return err
	}
	if exists {
		return k.ensurePods(ctx, reg, kn.Metadata.UID, now)
	}
	kn = KubeNode{APIVersion: "v1", Kind: "Node", Metadata: ObjectMeta{Name: reg.Name, UID: newUID(),
		CreationTimestamp: now.UTC().Format(time.RFC3339),
		Labels:            map[string]string{"kubernetes.io/hostname": reg.Name, "kubernetes.io/os": "linux"}}}
	fill(&kn)
	if _, ok, err := k.put(ctx, nodesPrefix+reg.Name, 0, kn); err != nil {
		return err
	} else if !ok {
		return k.registerNode(ctx, reg, now)
	}
	return k.ensurePods(ctx, reg, kn.Metadata.UID, now)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// registerSelf registers this server's Node, retrying a refused password
// every 5-10 s (each refusal recorded) as RKE2's agent does, and any etcd
// error every second, until ctx ends.
func (n *node) registerSelf(ctx context.Context) error {
	pw, err := nodePassword(n.cfg.NodePasswordFile)
	if err != nil {
		return err
	}
	reg := nodeRegistration{Name: n.cfg.NodeName, Address: n.cfg.NodeIP, Member: n.etcdName, PeerURL: n.etcdPeerURL(),
		Password: pw, Version: n.set.Version, Server: true, WorkloadPods: n.set.WorkloadPods, PDBRefusals: n.set.PDBRefusals}
	for {
		err := kv{n.etcdCli}.registerNode(ctx, reg, n.now())
		if err == nil {
			return nil
		}
		wait := time.Second
		if errors.Is(err, errNodePassword) {
			wait = passwordRetry()
			n.log.Error(reasonNodePassword, zap.String("node", n.cfg.NodeName))
			if rerr := n.recordRejection(reasonNodePassword); rerr != nil {
				n.log.Error("cannot record rejection", zap.Error(rerr))
			}
		} else {
			n.log.Warn("cannot register node, retrying", zap.Error(err))
		}
		if sleep(ctx, wait) != nil {
			return ctx.Err()
		}
	}
}

// passwordRetry is RKE2's agent's wait after a refused node password: 5-10 s.
func passwordRetry() time.Duration {
	return 5*time.Second + time.Duration(mrand.Int64N(int64(5*time.Second)))
}

// status writes a Kubernetes Status object.
func status(w http.ResponseWriter, code int, reason, message string, details map[string]string) {
	var d any
	if details != nil {
		d = details
	}
	statusDetails(w, code, reason, message, d)
}

// statusDetails writes a failure Status with any details (nil: none).
func statusDetails(w http.ResponseWriter, code int, reason, message string, details any) {
	body := map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": message, "reason": reason, "code": code}
	if details != nil {
		body["details"] = details
	}
	writeJSON(w, code, body)
}

func notFound(w http.ResponseWriter, kind, name string) {
	status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %q not found", kind, name), map[string]string{"name": name, "kind": kind})
}

// kubeAuth admits the admin kubeconfig's client certificate: verified
// against the cluster CA (the TLS layer) and in group system:masters.
// Without a verified certificate: 401; another user: 403.
func (n *node) kubeAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			n.log.Warn("kubernetes API: unauthenticated request refused", zap.String("method", r.Method),
				zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			status(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized", nil)
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		if !containsString(leaf.Subject.Organization, "system:masters") {
			n.log.Warn("kubernetes API: forbidden", zap.String("user", leaf.Subject.CommonName), zap.String("path", r.URL.Path))
			status(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("User %q cannot %s resource at %s", leaf.Subject.CommonName, strings.ToLower(r.Method), r.URL.Path), nil)
			return
		}
		if !n.serving() {
			status(w, http.StatusServiceUnavailable, "ServiceUnavailable", "etcd: no quorum", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// kubeAPI registers the Kubernetes API subset on mux.
func (n *node) kubeAPI(mux *http.ServeMux) {
	h := func(pattern string, f http.HandlerFunc) { mux.Handle(pattern, n.kubeAuth(f)) }
	h("GET /api/v1/nodes", n.handleNodeList)
	h("GET /api/v1/nodes/{name}", n.handleNodeGet)
	h("DELETE /api/v1/nodes/{name}", n.handleNodeDelete)
	h("PATCH /api/v1/nodes/{name}", n.handleNodePatch)
	h("GET /api/v1/namespaces/kube-system/secrets/{name}", n.handleSecret)
	h("DELETE /api/v1/namespaces/kube-system/secrets/{name}", n.handleSecret)
	h("GET /api/v1/pods", n.handlePodList)
	h("GET /api/v1/namespaces/{ns}/pods", n.handlePodList)
	h("POST /api/v1/namespaces/{ns}/pods/{name}/eviction", n.handleEviction)
}

func (n *node) kv() kv { return kv{n.etcdCli} }

func apiError(w http.ResponseWriter, err error) {
	status(w, http.StatusInternalServerError, "InternalError", err.Error(), nil)
}

// matchLabels applies a labelSelector of key, !key, key=value, key!=value terms.
func matchLabels(sel string, labels map[string]string) bool {
	for _, term := range strings.Split(sel, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		if k, v, ok := strings.Cut(term, "!="); ok {
			if got, has := labels[k]; has && got == v {
				return false
			}
			continue
		}
		if k, v, ok := strings.Cut(term, "="); ok {
			if labels[strings.TrimSuffix(k, "=")] != strings.TrimPrefix(v, "=") {
				return false
			}
			continue
		}
		if k, ok := strings.CutPrefix(term, "!"); ok {
			if _, has := labels[k]; has {
				return false
			}
			continue
		}
		if _, has := labels[term]; !has {
			return false
		}
	}
	return true
}

func (n *node) handleNodeList(w http.ResponseWriter, r *http.Request) {
	nodes, rev, err := n.kv().nodes(r.Context())
	if err != nil {
		apiError(w, err)
		return
	}
	items := []KubeNode{}
	for _, kn := range nodes {
		if matchLabels(r.URL.Query().Get("labelSelector"), kn.Metadata.Labels) {
			items = append(items, kn)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": "NodeList", "apiVersion": "v1",
		"metadata": map[string]string{"resourceVersion": strconv.FormatInt(rev, 10)}, "items": items})
}

func (n *node) handleNodeGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var kn KubeNode
	rev, ok, err := n.kv().get(r.Context(), nodesPrefix+name, &kn)
	switch {
	case err != nil:
		apiError(w, err)
	case !ok:
		notFound(w, "nodes", name)
	default:
		kn.Metadata.ResourceVersion = strconv.FormatInt(rev, 10)
		writeJSON(w, http.StatusOK, kn)
	}
}

// handleNodeDelete: a Node with finalizers turns Terminating (the etcd
// controller finishes it); one without goes at once, with its node-password
// secret.
func (n *node) handleNodeDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	kn, ok, err := n.kv().updateNode(r.Context(), name, func(kn *KubeNode) error {
		if kn.Metadata.DeletionTimestamp == "" {
			kn.Metadata.DeletionTimestamp = n.now().UTC().Format(time.RFC3339)
		}
		return nil
	})
	switch {
	case err != nil:
		apiError(w, err)
		return
	case !ok:
		notFound(w, "nodes", name)
		return
	}
	n.log.Info("kubernetes API: node deleted", zap.String("node", name), zap.Strings("finalizers", kn.Metadata.Finalizers))
	if len(kn.Metadata.Finalizers) == 0 {
		if err := n.deleteNode(r.Context(), name); err != nil {
			apiError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, kn)
}

// handleNodePatch applies a JSON merge patch (or a strategic merge patch,
// which is the same for these fields); name, uid and the timestamps stay.
func (n *node) handleNodePatch(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ct := r.Header.Get("Content-Type")
	if ct != "application/merge-patch+json" && ct != "application/strategic-merge-patch+json" {
		status(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got %q)", ct), nil)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var patch map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &patch)
	}
	if err != nil {
		status(w, http.StatusBadRequest, "BadRequest", "error decoding patch: "+errString(err), nil)
		return
	}
	kn, ok, err := n.kv().updateNode(r.Context(), name, func(kn *KubeNode) error {
		keep := kn.Metadata
		var doc map[string]any
		b, _ := json.Marshal(kn)
		_ = json.Unmarshal(b, &doc)
		b, _ = json.Marshal(mergePatch(doc, patch))
		var out KubeNode
		if err := json.Unmarshal(b, &out); err != nil {
			return err
		}
		// A resourceVersion in the patch is a precondition, as the
		// apiserver makes it: the patch applies to that version only.
		if rv := out.Metadata.ResourceVersion; rv != "" && rv != keep.ResourceVersion {
			return errConflict
		}
		out.APIVersion, out.Kind = "v1", "Node"
		out.Metadata.Name, out.Metadata.UID = keep.Name, keep.UID
		out.Metadata.CreationTimestamp, out.Metadata.DeletionTimestamp = keep.CreationTimestamp, keep.DeletionTimestamp
		*kn = out
		return nil
	})
	switch {
	case errors.Is(err, errConflict):
		n.log.Info("kubernetes API: node patch refused: its resourceVersion is not the Node's", zap.String("node", name))
		conflict("nodes", name).write(w)
	case err != nil:
		status(w, http.StatusUnprocessableEntity, "Invalid", fmt.Sprintf("Node %q is invalid: %v", name, err), nil)
	case !ok:
		notFound(w, "nodes", name)
	default:
		n.log.Info("kubernetes API: node patched", zap.String("node", name), zap.Bool("unschedulable", kn.Spec.Unschedulable))
		writeJSON(w, http.StatusOK, kn)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// mergePatch is RFC 7386: null deletes, objects merge, anything else replaces.
func mergePatch(doc, patch map[string]any) map[string]any {
	if doc == nil {
		doc = map[string]any{}
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			sub, _ := doc[k].(map[string]any)
			doc[k] = mergePatch(sub, pv)
		default:
			doc[k] = v
		}
	}
	return doc
}

func (n *node) handleSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var sec KubeSecret
	rev, ok, err := n.kv().get(r.Context(), secretsPrefix+name, &sec)
	switch {
	case err != nil:
		apiError(w, err)
		return
	case !ok:
		notFound(w, "secrets", name)
		return
	}
	sec.Metadata.ResourceVersion = strconv.FormatInt(rev, 10)
	if r.Method == http.MethodDelete {
		if err := n.kv().del(r.Context(), secretsPrefix+name); err != nil {
			apiError(w, err)
			return
		}
		n.log.Info("kubernetes API: secret deleted", zap.String("secret", name))
	}
	writeJSON(w, http.StatusOK, sec)
}

// etcdController is RKE2's rke2-etcd controller, on the etcd leader: a
// Terminating Node with the finalizer, or one annotated remove=true, has
// the member whose name and peer host match removed (not-found is done);
// then a Terminating Node loses the finalizer and goes, with its
// node-password secret.
func (n *node) etcdController(ctx context.Context) {
	s := n.etcd.Server
	if s.Leader() != s.MemberID() {
		return
	}
	nodes, _, err := n.kv().nodes(ctx)
	if err != nil {
		n.log.Debug("etcd controller: cannot list nodes", zap.Error(err))
		return
	}
	for _, kn := range nodes {
		deleting := kn.Metadata.DeletionTimestamp != "" && containsString(kn.Metadata.Finalizers, etcdFinalizer)
		if !deleting && kn.Metadata.Annotations[annotRemove] != "true" {
			continue
		}
		if kn.Metadata.Labels[labelEtcd] != "true" {
			continue
		}
		log := n.log.With(zap.String("node", kn.Metadata.Name))
		if err := n.removeMemberOf(ctx, kn); err != nil {
			log.Warn("etcd controller: cannot remove member", zap.Error(err))
			continue
		}
		if !deleting {
			continue
		}
		_, _, err := n.kv().updateNode(ctx, kn.Metadata.Name, func(x *KubeNode) error {
			var keep []string
			for _, f := range x.Metadata.Finalizers {
				if f != etcdFinalizer {
					keep = append(keep, f)
				}
			}
			x.Metadata.Finalizers = keep
			return nil
		})
		if err != nil {
			log.Warn("etcd controller: cannot drop finalizer", zap.Error(err))
			continue
		}
		var now KubeNode
		if _, ok, err := n.kv().get(ctx, nodesPrefix+kn.Metadata.Name, &now); err == nil && ok && len(now.Metadata.Finalizers) == 0 {
			if err := n.deleteNode(ctx, kn.Metadata.Name); err != nil {
				log.Warn("etcd controller: cannot delete node", zap.Error(err))
				continue
			}
			log.Info("etcd controller: node and its node-password secret deleted")
		}
	}
}

// removeMemberOf removes the etcd member named by the Node's annotations
// whose peer host is its node-address; absent counts as removed.
func (n *node) removeMemberOf(ctx context.Context, kn KubeNode) error {
	name, addr := kn.Metadata.Annotations[annotNodeName], kn.Metadata.Annotations[annotNodeAddress]
	if name == "" || addr == "" {
		return fmt.Errorf("node %s lacks the %s/%s annotations", kn.Metadata.Name, annotNodeName, annotNodeAddress)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := n.etcdCli.MemberList(ctx)
	if err != nil {
		return err
	}
	for _, m := range list.Members {
		if m.Name != name || len(m.PeerURLs) == 0 {
			continue
		}
		u, err := url.Parse(m.PeerURLs[0])
		if err != nil || u.Hostname() != addr {
			continue
		}
		if _, err := n.etcdCli.MemberRemove(ctx, m.ID); err != nil {
			return err
		}
		n.log.Info("etcd controller: member removed", zap.String("member", name), zap.String("peer", m.PeerURLs[0]))
	}
	return nil
}

// apiLoopback says whether the API needs a second listener on 127.0.0.1
// (where the kubeconfig points): when node-ip is not a loopback address.
func apiLoopback(nodeIP string) bool {
	ip := net.ParseIP(nodeIP)
	return ip != nil && !ip.IsLoopback()
}

// listObjects reads every object stored under prefix, in etcd's key
// order, each with its resourceVersion (its key's mod revision) set by
// setRV, and the store's revision.
func listObjects[T any](ctx context.Context, k kv, prefix string, setRV func(*T, string)) ([]T, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := k.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	out := []T{}
	for _, e := range resp.Kvs {
		var o T
		if err := json.Unmarshal(e.Value, &o); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", e.Key, err)
		}
		setRV(&o, strconv.FormatInt(e.ModRevision, 10))
		out = append(out, o)
	}
	return out, resp.Header.Revision, nil
}
