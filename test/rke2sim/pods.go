package rke2sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The pods a node runs, as a drain sees them through the API: stored in
// etcd beside the Nodes, under /registry/pods/<namespace>/<name> as
// Kubernetes keeps them. Each node has its canal pod (a DaemonSet's), the
// mirror of its kube-proxy static pod, and RKE2SIM_WORKLOAD_PODS pods of a
// ReplicaSet in default, all Running on it. Each workload pod has a record
// under budgetsPrefix (not an API object): the evictions its
// PodDisruptionBudget stand-in refuses (RKE2SIM_PDB_REFUSALS of its node),
// how many it refused, and when it was evicted.
const (
	podsPrefix    = "/registry/pods/"
	budgetsPrefix = "/rke2sim/pod-budgets/"

	annotMirror = "kubernetes.io/config.mirror"

	// The kinds of pod an eviction records.
	PodKindDaemonSet = "daemonset"
	PodKindMirror    = "mirror"
	PodKindWorkload  = "workload"

	// maxPodCount bounds RKE2SIM_WORKLOAD_PODS and RKE2SIM_PDB_REFUSALS.
	maxPodCount = 1000

	// reasonBudget is the apiserver's message when a PodDisruptionBudget
	// refuses an eviction (429).
	reasonBudget = "Cannot evict pod as it would violate the pod's disruption budget."
	// workloadBudget names the budget covering the workload pods.
	workloadBudget = "workload"
	// workloadHash is the workload ReplicaSet's pod-template-hash.
	workloadHash = "5c6d8f7b9"
)

// KubePod is a v1 Pod, the part the sim keeps.
type KubePod struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       PodSpec    `json:"spec"`
	Status     PodStatus  `json:"status"`
}

// PodSpec is a Pod's spec: where it runs and its containers.
type PodSpec struct {
	NodeName   string      `json:"nodeName"`
	Containers []Container `json:"containers"`
}

// Container is one of a PodSpec's containers.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// PodStatus is a Pod's status.
type PodStatus struct {
	Phase string `json:"phase"`
}

// podBudget is the sim's record of one workload pod.
type podBudget struct {
	Node     string `json:"node"`
	Refusals int    `json:"refusals"`
	Refused  int    `json:"refused"`
	Evicted  string `json:"evicted,omitempty"`
}

func podKey(ns, name string) string    { return podsPrefix + ns + "/" + name }
func budgetKey(ns, name string) string { return budgetsPrefix + ns + "/" + name }

// stableUID is a UID that is the same wherever it is made: for objects the
// sim does not store but pods point to (their DaemonSet, ReplicaSet).
func stableUID(of string) string {
	sum := sha256.Sum256([]byte(of))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// podKind classifies a pod as a drain must: a mirror pod carries the
// annotation (its controller is its Node), a DaemonSet's pod has the
// DaemonSet as controller, the rest are workloads.
func podKind(p KubePod) string {
	if _, ok := p.Metadata.Annotations[annotMirror]; ok {
		return PodKindMirror
	}
	for _, ref := range p.Metadata.OwnerReferences {
		if ref.Controller && ref.Kind == "DaemonSet" {
			return PodKindDaemonSet
		}
	}
	return PodKindWorkload
}

// nodePods are the pods a node runs, freshly made (uid, creation time).
func nodePods(reg nodeRegistration, nodeUID string, now time.Time) []KubePod {
	created := now.UTC().Format(time.RFC3339)
	pod := func(ns, name string, labels map[string]string, owner OwnerReference, containers ...Container) KubePod {
		return KubePod{APIVersion: "v1", Kind: "Pod",
			Metadata: ObjectMeta{Name: name, Namespace: ns, UID: newUID(), CreationTimestamp: created,
				Labels: labels, OwnerReferences: []OwnerReference{owner}},
			Spec:   PodSpec{NodeName: reg.Name, Containers: containers},
			Status: PodStatus{Phase: "Running"}}
	}
	canal := pod("kube-system", "rke2-canal-"+reg.Name, map[string]string{"k8s-app": "canal"},
		OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "rke2-canal",
			UID: stableUID("DaemonSet/kube-system/rke2-canal"), Controller: true, BlockOwnerDeletion: true},
		Container{Name: "calico-node", Image: "rancher/hardened-calico"}, Container{Name: "kube-flannel", Image: "rancher/hardened-flannel"})
	proxy := pod("kube-system", "kube-proxy-"+reg.Name, map[string]string{"component": "kube-proxy", "tier": "control-plane"},
		OwnerReference{APIVersion: "v1", Kind: "Node", Name: reg.Name, UID: nodeUID, Controller: true},
		Container{Name: "kube-proxy", Image: "rancher/hardened-kubernetes:" + strings.ReplaceAll(reg.Version, "+", "-")})
	hash := stableUID("static/kube-proxy/" + reg.Name)
	hash = strings.ReplaceAll(hash, "-", "")
	proxy.Metadata.Annotations = map[string]string{annotMirror: hash, "kubernetes.io/config.hash": hash, "kubernetes.io/config.source": "file"}
	out := []KubePod{canal, proxy}
	for i := 1; i <= reg.WorkloadPods; i++ {
		out = append(out, pod("default", fmt.Sprintf("workload-%s-%d", reg.Name, i),
			map[string]string{"app": "workload", "pod-template-hash": workloadHash},
			OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "workload-" + workloadHash,
				UID: stableUID("ReplicaSet/default/workload-" + workloadHash), Controller: true, BlockOwnerDeletion: true},
			Container{Name: "app", Image: "registry.k8s.io/pause:3.10"}))
	}
	return out
}

// ensurePods makes the node's pods that are absent, each in one
// transaction: a DaemonSet's or mirror pod whenever it is missing (its
// controller or the kubelet would make it again), a workload pod only if it
// was never made: one evicted (or gone with its Node) stays gone, as its
// ReplicaSet's replacement would run elsewhere.
func (k kv) ensurePods(ctx context.Context, reg nodeRegistration, nodeUID string, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, p := range nodePods(reg, nodeUID, now) {
		key := podKey(p.Metadata.Namespace, p.Metadata.Name)
		raw, err := json.Marshal(p)
		if err != nil {
			return err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
		ops := []clientv3.Op{clientv3.OpPut(key, string(raw))}
		if podKind(p) == PodKindWorkload {
			bk := budgetKey(p.Metadata.Namespace, p.Metadata.Name)
			b, _ := json.Marshal(podBudget{Node: reg.Name, Refusals: reg.PDBRefusals})
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(bk), "=", 0))
			ops = append(ops, clientv3.OpPut(bk, string(b)))
		}
		if _, err := k.cli.Txn(ctx).If(cmps...).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("pod %s/%s: %w", p.Metadata.Namespace, p.Metadata.Name, err)
		}
	}
	return nil
}

// pods lists every stored pod, by namespace and name (etcd's key order),
// and the store's revision.
func (k kv) pods(ctx context.Context) ([]KubePod, int64, error) {
	return listObjects(ctx, k, podsPrefix, func(p *KubePod, rv string) { p.Metadata.ResourceVersion = rv })
}

// deleteNode deletes a Node with its node-password secret and, as
// Kubernetes' pod garbage collector does for pods bound to a Node that is
// gone, its pods (workload pods' records stay: they are not made again).
func (n *node) deleteNode(ctx context.Context, name string) error {
	if err := n.kv().del(ctx, nodesPrefix+name, secretsPrefix+passwordSecretName(name)); err != nil {
		return err
	}
	pods, _, err := n.kv().pods(ctx)
	if err != nil {
		return err
	}
	var keys []string
	for _, p := range pods {
		if p.Spec.NodeName == name {
			keys = append(keys, podKey(p.Metadata.Namespace, p.Metadata.Name))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	n.log.Info("pods of a deleted node deleted", zap.String("node", name), zap.Int("pods", len(keys)))
	return n.kv().del(ctx, keys...)
}

// fieldTerm is one term of a fieldSelector: field=value, field==value or
// field!=value.
type fieldTerm struct {
	field, value string
	not          bool
}

// podFields are the field labels a pod list may select on (the ones the
// sim keeps; the apiserver knows a few more).
var podFields = map[string]func(KubePod) string{
	"metadata.name":      func(p KubePod) string { return p.Metadata.Name },
	"metadata.namespace": func(p KubePod) string { return p.Metadata.Namespace },
	"spec.nodeName":      func(p KubePod) string { return p.Spec.NodeName },
	"status.phase":       func(p KubePod) string { return p.Status.Phase },
}

// parseFieldSelector parses a pod list's fieldSelector; the error is the
// apiserver's message for a term without an operator or an unknown field.
func parseFieldSelector(sel string) ([]fieldTerm, error) {
	var out []fieldTerm
	for _, term := range strings.Split(sel, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		var t fieldTerm
		if f, v, ok := strings.Cut(term, "!="); ok {
			t = fieldTerm{field: f, value: v, not: true}
		} else if f, v, ok := strings.Cut(term, "=="); ok {
			t = fieldTerm{field: f, value: v}
		} else if f, v, ok := strings.Cut(term, "="); ok {
			t = fieldTerm{field: f, value: v}
		} else {
			return nil, fmt.Errorf("invalid selector: '%s'; can't understand '%s'", sel, term)
		}
		t.field = strings.TrimSpace(t.field)
		if _, ok := podFields[t.field]; !ok {
			return nil, fmt.Errorf("field label not supported: %s", t.field)
		}
		out = append(out, t)
	}
	return out, nil
}

func matchFields(terms []fieldTerm, p KubePod) bool {
	for _, t := range terms {
		if (podFields[t.field](p) == t.value) == t.not {
			return false
		}
	}
	return true
}

// handlePodList serves the stored pods, of every namespace or of the
// path's, filtered by fieldSelector (podFields, =, ==, !=) and
// labelSelector.
func (n *node) handlePodList(w http.ResponseWriter, r *http.Request) {
	terms, err := parseFieldSelector(r.URL.Query().Get("fieldSelector"))
	if err != nil {
		status(w, http.StatusBadRequest, "BadRequest", err.Error(), nil)
		return
	}
	pods, rev, err := n.kv().pods(r.Context())
	if err != nil {
		apiError(w, err)
		return
	}
	ns := r.PathValue("ns")
	items := []KubePod{}
	for _, p := range pods {
		if (ns == "" || p.Metadata.Namespace == ns) && matchFields(terms, p) && matchLabels(r.URL.Query().Get("labelSelector"), p.Metadata.Labels) {
			items = append(items, p)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": "PodList", "apiVersion": "v1",
		"metadata": map[string]string{"resourceVersion": strconv.FormatInt(rev, 10)}, "items": items})
}

// apiStatus is an answer in a Status object.
type apiStatus struct {
	code            int
	reason, message string
	details         any
}

func (s apiStatus) write(w http.ResponseWriter) {
	if s.code == http.StatusCreated {
		writeJSON(w, s.code, map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
			"status": "Success", "code": s.code})
		return
	}
	statusDetails(w, s.code, s.reason, s.message, s.details)
}

func badRequest(msg string) apiStatus {
	return apiStatus{code: http.StatusBadRequest, reason: "BadRequest", message: msg}
}

// summarize is how the apiserver quotes a body it cannot decode: up to 30
// bytes of a JSON object, else hex.
func summarize(body []byte) string {
	const limit = 30
	switch {
	case len(body) == 0:
		return "<empty>"
	case body[0] == '{' && len(body) > limit:
		return string(body[:limit]) + " ..."
	case body[0] == '{':
		return string(body)
	case len(body) > limit:
		return hex.EncodeToString(body[:limit]) + " ..."
	default:
		return hex.EncodeToString(body)
	}
}

// decodeEviction checks the body of an eviction as the apiserver's create
// handler and the eviction subresource do: JSON; apiVersion and kind
// default to policy/v1 Eviction when absent, and must otherwise be
// policy/v1 or policy/v1beta1 Eviction (field names are case-sensitive);
// metadata.namespace, when set, must be the path's; metadata.name must be
// the path's. deleteOptions' dryRun and preconditions are not simulated
// and refused.
func decodeEviction(contentType string, body []byte, ns, name string) *apiStatus {
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
			return &apiStatus{code: http.StatusUnsupportedMediaType, reason: "UnsupportedMediaType",
				message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json (got %q)", contentType)}
		}
	}
	unrecognized := func(err error) *apiStatus {
		s := badRequest(fmt.Sprintf("the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; json parse error: %v (%s)", err, summarize(body)))
		return &s
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return unrecognized(err)
	}
	if top == nil {
		return unrecognized(fmt.Errorf("the body is null"))
	}
	str := func(raw json.RawMessage, field string) (string, error) {
		var v *string
		if raw == nil {
			return "", nil
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", fmt.Errorf("json: cannot unmarshal %s into Go struct field %s of type string", jsonType(raw), field)
		}
		if v == nil {
			return "", nil
		}
		return *v, nil
	}
	apiVersion, err := str(top["apiVersion"], ".apiVersion")
	if err != nil {
		return unrecognized(err)
	}
	kind, err := str(top["kind"], ".kind")
	if err != nil {
		return unrecognized(err)
	}
	if kind == "" {
		kind = "Eviction"
	}
	if apiVersion == "" {
		apiVersion = "policy/v1"
	}
	version := apiVersion[strings.LastIndex(apiVersion, "/")+1:]
	if kind != "Eviction" || (apiVersion != "policy/v1" && apiVersion != "policy/v1beta1") {
		s := badRequest(fmt.Sprintf("%s in version %q cannot be handled as a Eviction: no kind %q is registered for version %q in scheme %q",
			kind, version, kind, apiVersion, "pkg/api/legacyscheme/scheme.go:30"))
		return &s
	}
	undecodable := func(err error) *apiStatus {
		s := badRequest(fmt.Sprintf("%s in version %q cannot be handled as a Eviction: %v", kind, version, err))
		return &s
	}
	var meta map[string]json.RawMessage
	if raw := top["metadata"]; raw != nil {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return undecodable(fmt.Errorf("json: cannot unmarshal %s into Go struct field Eviction.metadata of type v1.ObjectMeta", jsonType(raw)))
		}
	}
	objName, err := str(meta["name"], "ObjectMeta.metadata.name")
	if err != nil {
		return undecodable(err)
	}
	objNS, err := str(meta["namespace"], "ObjectMeta.metadata.namespace")
	if err != nil {
		return undecodable(err)
	}
	if objNS != "" && objNS != ns {
		s := badRequest("the namespace of the provided object does not match the namespace sent on the request")
		return &s
	}
	if objName != name {
		s := badRequest("name in URL does not match name in Eviction object")
		return &s
	}
	if raw := top["deleteOptions"]; raw != nil && string(raw) != "null" {
		var opts struct {
			DryRun        []string        `json:"dryRun"`
			Preconditions json.RawMessage `json:"preconditions"`
		}
		if err := json.Unmarshal(raw, &opts); err != nil {
			return undecodable(fmt.Errorf("json: cannot unmarshal %s into Go struct field Eviction.deleteOptions of type v1.DeleteOptions", jsonType(raw)))
		}
		if len(opts.DryRun) > 0 || (opts.Preconditions != nil && string(opts.Preconditions) != "null") {
			s := badRequest("rke2sim: deleteOptions.dryRun and deleteOptions.preconditions are not simulated")
			return &s
		}
	}
	return nil
}

// jsonType names a JSON value's type as Go's decoder does in its errors.
func jsonType(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "":
		return "value"
	case s[0] == '{':
		return "object"
	case s[0] == '[':
		return "array"
	case s[0] == '"':
		return "string"
	case s == "true" || s == "false":
		return "bool"
	default:
		return "number"
	}
}

// handleEviction is the pods/eviction subresource. A pod that exists is
// deleted (201, a Success Status) unless it is a Running workload pod
// whose budget still refuses (429, the apiserver's words); a DaemonSet's or
// mirror pod is evicted like any other, as the apiserver allows it (leaving
// them is the client's part). Every request is recorded in this server's
// state.json: the pod's node and kind, whether its Node was cordoned, the
// answer.
func (n *node) handleEviction(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	ev := Eviction{At: stamp(n.now()), Namespace: ns, Pod: name}
	res := n.evict(r, ns, name, &ev)
	ev.Code, ev.Refused = res.code, res.code == http.StatusTooManyRequests
	if err := n.updateState(func(st *Evidence) { st.Evictions = append(st.Evictions, ev) }); err != nil {
		n.log.Warn("cannot record eviction", zap.Error(err))
	}
	n.log.Info("kubernetes API: eviction", zap.String("namespace", ns), zap.String("pod", name), zap.String("node", ev.Node),
		zap.String("kind", ev.Kind), zap.Bool("node-cordoned", ev.NodeCordoned), zap.Int("code", res.code), zap.String("message", res.message))
	res.write(w)
}

func (n *node) evict(r *http.Request, ns, name string, ev *Eviction) apiStatus {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return badRequest("error reading the request body: " + err.Error())
	}
	if s := decodeEviction(r.Header.Get("Content-Type"), body, ns, name); s != nil {
		return *s
	}
	if r.URL.Query().Has("dryRun") {
		return badRequest("rke2sim: deleteOptions.dryRun and deleteOptions.preconditions are not simulated")
	}
	ctx := r.Context()
	k := n.kv()
	key, bk := podKey(ns, name), budgetKey(ns, name)
	for range 20 {
		var pod KubePod
		podRev, ok, err := k.get(ctx, key, &pod)
		if err != nil {
			return apiStatus{code: http.StatusInternalServerError, reason: "InternalError", message: err.Error()}
		}
		if !ok {
			ev.Node, ev.Kind, ev.NodeCordoned = "", "", false
			return apiStatus{code: http.StatusNotFound, reason: "NotFound", message: fmt.Sprintf("pods %q not found", name),
				details: map[string]string{"name": name, "kind": "pods"}}
		}
		ev.Node, ev.Kind = pod.Spec.NodeName, podKind(pod)
		var kn KubeNode
		_, found, err := k.get(ctx, nodesPrefix+pod.Spec.NodeName, &kn)
		if err != nil {
			return apiStatus{code: http.StatusInternalServerError, reason: "InternalError", message: err.Error()}
		}
		ev.NodeCordoned = found && kn.Spec.Unschedulable
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", podRev)}
		ops := []clientv3.Op{clientv3.OpDelete(key)}
		// A finished, pending or terminating pod goes without asking its
		// budget, as the apiserver does.
		budgeted := ev.Kind == PodKindWorkload && pod.Status.Phase == "Running" && pod.Metadata.DeletionTimestamp == ""
		var b podBudget
		brev, bok, err := k.get(ctx, bk, &b)
		if err != nil {
			return apiStatus{code: http.StatusInternalServerError, reason: "InternalError", message: err.Error()}
		}
		if budgeted && bok && b.Refused < b.Refusals {
			b.Refused++
			if _, done, err := k.put(ctx, bk, brev, b); err != nil {
				return apiStatus{code: http.StatusInternalServerError, reason: "InternalError", message: err.Error()}
			} else if !done {
				continue
			}
			return apiStatus{code: http.StatusTooManyRequests, reason: "TooManyRequests", message: reasonBudget,
				details: map[string]any{"causes": []map[string]string{{"reason": "DisruptionBudget",
					"message": fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", workloadBudget, 1, 1)}}}}
		}
		if bok {
			b.Evicted = stamp(n.now())
			raw, _ := json.Marshal(b)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(bk), "=", brev))
			ops = append(ops, clientv3.OpPut(bk, string(raw)))
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := k.cli.Txn(tctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return apiStatus{code: http.StatusInternalServerError, reason: "InternalError", message: err.Error()}
		}
		if resp.Succeeded {
			return apiStatus{code: http.StatusCreated}
		}
	}
	return conflict("pods", name)
}

// conflict is the apiserver's answer to a write whose object changed
// under it (an optimistic lock lost).
func conflict(resource, name string) apiStatus {
	return apiStatus{code: http.StatusConflict, reason: "Conflict",
		message: fmt.Sprintf("Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again", resource, name)}
}
