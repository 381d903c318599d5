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
	"sync"
	"testing"
	"time"
)

// drainAPI serves one Node's cordon patch, its pods and their evictions,
// as the apiserver answers them.
type drainAPI struct {
	mu            sync.Mutex
	unschedulable bool
	pods          []string // JSON objects
	evicted       []string
	pdb           map[string]bool // pods whose eviction a budget refuses
	contentTypes  []string
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
			Spec struct {
				Unschedulable bool `json:"unschedulable"`
			} `json:"spec"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &p); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.unschedulable = p.Spec.Unschedulable
		fmt.Fprintf(w, `{"kind":"Node","metadata":{"name":"w1"},"spec":{"unschedulable":%v}}`, f.unschedulable)
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
	if err := c.SetUnschedulable(ctx, "w1", true); err != nil || !f.unschedulable {
		t.Fatalf("cordon: %v, unschedulable %v", err, f.unschedulable)
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
	if err := c.SetUnschedulable(ctx, "w1", false); err != nil || f.unschedulable {
		t.Fatalf("uncordon: %v, unschedulable %v", err, f.unschedulable)
	}
	if _, err := c.PodsOn(ctx, "w1&x=1"); err == nil {
		t.Fatal("a query in a node name was sent")
	}
}
