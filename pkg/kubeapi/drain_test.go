package kubeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// drainAPI serves one Node's cordon patch, its pods and their evictions,
// as the apiserver answers them.
type drainAPI struct {
	mu            sync.Mutex
	unschedulable bool
	annotations   map[string]string
	patches       int
	pods          []string // JSON objects
	evicted       []string
	pdb           map[string]bool // pods whose eviction a budget refuses
	contentTypes  []string
	// rv is the Node's resourceVersion, one more at each write; a patch
	// that carries another is refused 409. meanwhile, when set, is
	// somebody else's write, made once just before the next patch lands.
	rv        int
	meanwhile func(f *drainAPI)
	conflicts int
}

func (f *drainAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPatch && r.URL.Path == "/api/v1/nodes/w1":
		f.contentTypes = append(f.contentTypes, r.Header.Get("Content-Type"))
		if r.Header.Get("Content-Type") != "application/merge-patch+json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		var p struct {
			Metadata struct {
				Annotations     map[string]*string `json:"annotations"`
				ResourceVersion string             `json:"resourceVersion"`
			} `json:"metadata"`
			Spec struct {
				Unschedulable bool `json:"unschedulable"`
			} `json:"spec"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &p); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if m := f.meanwhile; m != nil {
			f.meanwhile = nil
			m(f)
			f.rv++
		}
		if p.Metadata.ResourceVersion != "" && p.Metadata.ResourceVersion != fmt.Sprint(f.rv) {
			f.conflicts++
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"kind":"Status","reason":"Conflict","message":"Operation cannot be fulfilled on nodes \"w1\": the object has been modified; please apply your changes to the latest version and try again"}`)
			return
		}
		f.patches++
		f.rv++
		f.unschedulable = p.Spec.Unschedulable
		for k, v := range p.Metadata.Annotations { // RFC 7386: null deletes
			if f.annotations == nil {
				f.annotations = map[string]string{}
			}
			if v == nil {
				delete(f.annotations, k)
			} else {
				f.annotations[k] = *v
			}
		}
		f.writeNode(w)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes/w1":
		f.writeNode(w)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/pods":
		if r.URL.Query().Get("fieldSelector") != "spec.nodeName=w1" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","items":[%s]}`, joinJSON(f.pods))
	case r.Method == http.MethodPost:
		var ev struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct{ Name, Namespace string }
		}
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &ev) != nil || ev.APIVersion != "policy/v1" || ev.Kind != "Eviction" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		key := ev.Metadata.Namespace + "/" + ev.Metadata.Name
		if r.URL.Path != "/api/v1/namespaces/"+key[:len(ev.Metadata.Namespace)]+"/pods/"+ev.Metadata.Name+"/eviction" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if f.pdb[key] {
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"kind":"Status","reason":"TooManyRequests","message":"Cannot evict pod as it would violate the pod's disruption budget."}`)
			return
		}
		f.evicted = append(f.evicted, key)
		fmt.Fprint(w, `{"kind":"Status","status":"Success"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *drainAPI) writeNode(w io.Writer) {
	ann, _ := json.Marshal(f.annotations)
	fmt.Fprintf(w, `{"kind":"Node","metadata":{"name":"w1","resourceVersion":"%d","annotations":%s},"spec":{"unschedulable":%v}}`, f.rv, ann, f.unschedulable)
}

func joinJSON(items []string) string {
	out := ""
	for i, s := range items {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func podJSON(ns, name, owner string, mirror bool, phase string) string {
	refs, ann := "[]", "{}"
	if owner != "" {
		refs = fmt.Sprintf(`[{"kind":%q,"name":"x","controller":true}]`, owner)
	}
	if mirror {
		ann = `{"kubernetes.io/config.mirror":"abc"}`
	}
	return fmt.Sprintf(`{"metadata":{"namespace":%q,"name":%q,"annotations":%s,"ownerReferences":%s},"status":{"phase":%q}}`, ns, name, ann, refs, phase)
}

func startDrain(t *testing.T, f *drainAPI) *Client {
	t.Helper()
	p := newPKI(t)
	srv := httptest.NewUnstartedServer(f)
	sc, sk := p.leaf(t, "kube-apiserver", x509.ExtKeyUsageServerAuth)
	pair, err := tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return client(t, kubeconfigYAML(srv.URL, p.caPEM, p.clientCert, p.cKey))
}

func TestDrainCalls(t *testing.T) {
	f := &drainAPI{pods: []string{
		podJSON("default", "web-1", "ReplicaSet", false, "Running"),
		podJSON("kube-system", "kube-vip-ds-x", "DaemonSet", false, "Running"),
		podJSON("kube-system", "kube-apiserver-w1", "", true, "Running"),
		podJSON("default", "job-1", "Job", false, "Succeeded"),
		podJSON("default", "db-0", "StatefulSet", false, "Running"),
	}, pdb: map[string]bool{"default/db-0": true}}
	c := startDrain(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ours, err := c.CordonForUpgrade(ctx, "w1"); err != nil || !ours || !f.unschedulable || f.annotations[AnnotationUpgradeCordon] == "" {
		t.Fatalf("cordon: ours %v, %v, unschedulable %v, annotations %v", ours, err, f.unschedulable, f.annotations)
	}
	if ours, err := c.CordonForUpgrade(ctx, "w1"); err != nil || !ours {
		t.Fatalf("the upgrade's own cordon again (a resumed roll): ours %v, %v", ours, err)
	}
	pods, err := c.PodsOn(ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	var evictable []string
	for _, p := range pods {
		if p.Evictable() {
			evictable = append(evictable, p.Namespace+"/"+p.Name)
		}
	}
	if !slices.Equal(evictable, []string{"default/web-1", "default/db-0"}) {
		t.Fatalf("evictable %v (DaemonSet, mirror and finished pods stay)", evictable)
	}
	if err := c.Evict(ctx, "default", "web-1"); err != nil || !slices.Equal(f.evicted, []string{"default/web-1"}) {
		t.Fatalf("evict: %v, evicted %v", err, f.evicted)
	}
	if err := c.Evict(ctx, "default", "db-0"); !errors.Is(err, ErrEvictionRefused) {
		t.Fatalf("evict under a budget: %v, want ErrEvictionRefused", err)
	}
	if err := c.Evict(ctx, "default", "gone"); err != nil {
		t.Fatalf("evict a pod already gone: %v", err)
	}
	if kept, err := c.UncordonAfterUpgrade(ctx, "w1"); err != nil || kept || f.unschedulable || len(f.annotations) != 0 {
		t.Fatalf("uncordon: kept %v, %v, unschedulable %v, annotations %v", kept, err, f.unschedulable, f.annotations)
	}
	if _, err := c.PodsOn(ctx, "w1&x=1"); err == nil {
		t.Fatal("a query in a node name was sent")
	}
}

// A Node somebody cordoned before the roll (no upgrade mark) is drained
// but never uncordoned by it: neither call patches it.
func TestCordonSomebodyElses(t *testing.T) {
	f := &drainAPI{unschedulable: true, annotations: map[string]string{"team": "maintenance"}}
	c := startDrain(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ours, err := c.CordonForUpgrade(ctx, "w1"); err != nil || ours {
		t.Fatalf("cordon of a cordoned Node: ours %v, %v", ours, err)
	}
	if kept, err := c.UncordonAfterUpgrade(ctx, "w1"); err != nil || !kept || !f.unschedulable {
		t.Fatalf("uncordon of somebody else's cordon: kept %v, %v, unschedulable %v", kept, err, f.unschedulable)
	}
	if f.patches != 0 || f.annotations["team"] != "maintenance" || len(f.annotations) != 1 {
		t.Fatalf("the Node was patched (%d) or its annotations changed: %v", f.patches, f.annotations)
	}
	// Uncordoned by hand during the roll: nothing to undo.
	f.unschedulable = false
	if kept, err := c.UncordonAfterUpgrade(ctx, "w1"); err != nil || kept || f.patches != 0 {
		t.Fatalf("uncordon of an uncordoned Node: kept %v, %v, patches %d", kept, err, f.patches)
	}
}

// The race CordonForUpgrade closes: the Node is schedulable when it is
// read, and somebody cordons it for maintenance before the roll's patch
// lands. The patch carries the version read, is refused, and the Node
// read again is somebody else's cordon: left as it is, never marked, so
// the roll's uncordon leaves it too. An uncordon racing a write is read
// again the same way.
func TestCordonRacesSomebodyElses(t *testing.T) {
	f := &drainAPI{annotations: map[string]string{}}
	f.meanwhile = func(f *drainAPI) { f.unschedulable, f.annotations["team"] = true, "maintenance" }
	c := startDrain(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ours, err := c.CordonForUpgrade(ctx, "w1"); err != nil || ours {
		t.Fatalf("cordon racing somebody else's: ours %v, %v", ours, err)
	}
	if f.conflicts != 1 || f.patches != 0 || f.annotations[AnnotationUpgradeCordon] != "" || !f.unschedulable {
		t.Fatalf("conflicts %d, patches %d, annotations %v, unschedulable %v", f.conflicts, f.patches, f.annotations, f.unschedulable)
	}
	if kept, err := c.UncordonAfterUpgrade(ctx, "w1"); err != nil || !kept || !f.unschedulable {
		t.Fatalf("uncordon of somebody else's cordon: kept %v, %v, unschedulable %v", kept, err, f.unschedulable)
	}

	// Ours, and an unrelated write lands before the uncordon's patch: it
	// is read again, and the uncordon still made.
	f = &drainAPI{annotations: map[string]string{}}
	c = startDrain(t, f)
	if ours, err := c.CordonForUpgrade(ctx, "w1"); err != nil || !ours {
		t.Fatalf("cordon: ours %v, %v", ours, err)
	}
	f.meanwhile = func(f *drainAPI) { f.annotations["other"] = "x" }
	if kept, err := c.UncordonAfterUpgrade(ctx, "w1"); err != nil || kept || f.unschedulable || f.conflicts != 1 {
		t.Fatalf("uncordon racing a write: kept %v, %v, unschedulable %v, conflicts %d", kept, err, f.unschedulable, f.conflicts)
	}

	// A Node that changes under every patch: an error naming it, after
	// a bounded number of tries.
	f = &drainAPI{annotations: map[string]string{}}
	c = startDrain(t, f)
	var churn func(f *drainAPI)
	churn = func(f *drainAPI) { f.meanwhile = churn }
	f.meanwhile = churn
	_, err := c.CordonForUpgrade(ctx, "w1")
	if !errors.Is(err, ErrConflict) || !strings.Contains(fmt.Sprint(err), "the object has been modified") || f.conflicts != patchTries || f.patches != 0 {
		t.Fatalf("a Node changing under every patch: %v after %d conflicts, %d patches", err, f.conflicts, f.patches)
	}
}
