package rke2sim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// kubeClient is an API client built from the admin kubeconfig a server
// wrote, aimed at host (the kubeconfig says 127.0.0.1, shared by the tests).
type kubeClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func adminClient(t *testing.T, kubeconfig, host string) *kubeClient {
	t.Helper()
	raw, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				CA     string `yaml:"certificate-authority-data"`
				Server string `yaml:"server"`
			} `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User struct {
				Cert string `yaml:"client-certificate-data"`
				Key  string `yaml:"client-key-data"`
			} `yaml:"user"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal(raw, &kc); err != nil || len(kc.Clusters) != 1 || len(kc.Users) != 1 {
		t.Fatalf("kubeconfig %s: %v\n%s", kubeconfig, err, raw)
	}
	if want := "https://127.0.0.1:" + testAPIPort; kc.Clusters[0].Cluster.Server != want {
		t.Fatalf("kubeconfig server %q, want %q", kc.Clusters[0].Cluster.Server, want)
	}
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pair, err := tls.X509KeyPair(dec(kc.Users[0].User.Cert), dec(kc.Users[0].User.Key))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "system:admin" || strings.Join(leaf.Subject.Organization, ",") != "system:masters" {
		t.Fatalf("client cert subject %v, want system:admin in system:masters", leaf.Subject)
	}
	pool := poolFromPEM(t, dec(kc.Clusters[0].Cluster.CA))
	return &kubeClient{t: t, base: "https://" + net.JoinHostPort(host, testAPIPort), c: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}}
}

func (k *kubeClient) do(method, path, contentType, body string) (int, string) {
	k.t.Helper()
	req, err := http.NewRequest(method, k.base+path, strings.NewReader(body))
	if err != nil {
		k.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := k.c.Do(req)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func (k *kubeClient) node(name string) (int, KubeNode) {
	k.t.Helper()
	code, body := k.do(http.MethodGet, "/api/v1/nodes/"+name, "", "")
	var kn KubeNode
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &kn); err != nil {
			k.t.Fatal(err)
		}
	}
	return code, kn
}

func memberNamed(st Evidence, node string) string {
	for _, m := range st.Etcd.Members {
		if nodeNameOf(m.Name) == node {
			return m.Name
		}
	}
	return ""
}

func hasRejection(st Evidence, reason string) bool {
	for _, r := range st.Rejections {
		if r.Reason == reason {
			return true
		}
	}
	return false
}

// TestKubeAPINodesPasswordsAndRemoval: the admin kubeconfig's certificate
// reads the Nodes RKE2 keeps; deleting a server's Node holds it Terminating
// until the leader's etcd controller has removed its member, then the Node
// and its node-password secret go; the removed server records it; the
// remove annotation removes a member and keeps the Node; a second agent
// with a taken name is refused in RKE2's words.
func TestKubeAPINodesPasswordsAndRemoval(t *testing.T) {
	cfg := func(host int, name string, join bool) string {
		c := []string{"node-ip: " + addr(12, host), "node-name: " + name, "token: s3cret"}
		if join {
			c = append(c, "server: "+supURL(addr(12, 1)))
		}
		return strings.Join(c, "\n")
	}
	a := startSim(t, simSpec{config: cfg(1, "a", false)})
	a.waitReady()
	b := startSim(t, simSpec{config: cfg(2, "b", true)})
	b.waitReady()
	c := startSim(t, simSpec{config: cfg(3, "c", true)})
	c.waitReady()
	w := startSim(t, simSpec{role: "agent", config: cfg(4, "w1", true)})
	w.waitReady()

	kubeconfig := filepath.Join(filepath.Dir(a.cfgPath), "rke2.yaml")
	if fi, err := os.Stat(kubeconfig); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: %v %v, want mode 0600", kubeconfig, fi, err)
	}
	k := adminClient(t, kubeconfig, addr(12, 2)) // any server serves the same view

	// Authentication: none → 401, a cluster-signed cert outside system:masters → 403.
	code, body, _, err := get("https://"+net.JoinHostPort(addr(12, 1), testAPIPort)+"/api/v1/nodes", nil, "", "")
	if err != nil || code != http.StatusUnauthorized || strings.TrimSpace(body) != `{"apiVersion":"v1","code":401,"kind":"Status","message":"Unauthorized","metadata":{},"reason":"Unauthorized","status":"Failure"}` {
		t.Fatalf("no cert: %d %s %v", code, body, err)
	}
	ca, err := LoadCA(a.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.ClientCert("someone", []string{"system:authenticated"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	other := &kubeClient{t: t, base: k.base, c: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair}}}}}
	if code, body := other.do(http.MethodGet, "/api/v1/nodes", "", ""); code != http.StatusForbidden || !strings.Contains(body, `"reason":"Forbidden"`) {
		t.Fatalf("non-admin: %d %s", code, body)
	}

	// The Nodes: servers with the etcd labels, annotations and finalizer; the agent without.
	code, body = k.do(http.MethodGet, "/api/v1/nodes", "", "")
	var list struct {
		Kind  string     `json:"kind"`
		Items []KubeNode `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || list.Kind != "NodeList" {
		t.Fatalf("list: %d %s %v", code, body, err)
	}
	var names []string
	for _, kn := range list.Items {
		names = append(names, kn.Metadata.Name)
		md := kn.Metadata
		server := kn.Metadata.Name != "w1"
		for _, l := range []string{labelEtcd, labelControlPlane, labelMaster} {
			if (md.Labels[l] == "true") != server {
				t.Errorf("%s: label %s = %q", md.Name, l, md.Labels[l])
			}
		}
		if server {
			host := map[string]string{"a": addr(12, 1), "b": addr(12, 2), "c": addr(12, 3)}[md.Name]
			if md.Annotations[annotNodeName] != memberNamed(a.state(), md.Name) || md.Annotations[annotNodeAddress] != host ||
				strings.Join(md.Finalizers, ",") != etcdFinalizer {
				t.Errorf("%s: annotations %v finalizers %v (etcd members %+v)", md.Name, md.Annotations, md.Finalizers, a.state().Etcd.Members)
			}
		} else if len(md.Annotations) != 0 || len(md.Finalizers) != 0 {
			t.Errorf("agent: annotations %v finalizers %v", md.Annotations, md.Finalizers)
		}
	}
	if strings.Join(names, ",") != "a,b,c,w1" {
		t.Fatalf("nodes %v", names)
	}
	code, body = k.do(http.MethodGet, "/api/v1/nodes?labelSelector=node-role.kubernetes.io/etcd%3Dtrue", "", "")
	if code != http.StatusOK || strings.Contains(body, `"w1"`) || !strings.Contains(body, `"c"`) {
		t.Fatalf("labelSelector list: %d %s", code, body)
	}
	code, body = k.do(http.MethodGet, "/api/v1/namespaces/kube-system/secrets/w1.node-password.rke2", "", "")
	var sec KubeSecret
	if err := json.Unmarshal([]byte(body), &sec); code != http.StatusOK || err != nil || sec.Type != nodePasswordType || len(sec.Data["hash"]) == 0 {
		t.Fatalf("secret: %d %s", code, body)
	}

	// A second agent with w1's name and its own password: 403, RKE2's words, retried.
	w2 := startSim(t, simSpec{role: "agent", config: cfg(5, "w1", true)})
	eventually(t, 30*time.Second, "the node password refusal", func() bool { return hasRejection(w2.state(), reasonNodePassword) })
	if !strings.Contains(w2.log.String(), reasonNodePassword) {
		t.Fatal("refused agent did not log RKE2's words")
	}
	select {
	case code := <-w2.done:
		t.Fatalf("refused agent exited %d; RKE2 retries for ever", code)
	default:
	}

	// Cordon and uncordon.
	_, before := k.node("b")
	if code, body := k.do(http.MethodPatch, "/api/v1/nodes/b", "application/merge-patch+json", `{"spec":{"unschedulable":true}}`); code != http.StatusOK {
		t.Fatalf("cordon: %d %s", code, body)
	}
	_, kn := k.node("b")
	if !kn.Spec.Unschedulable || kn.Metadata.Finalizers[0] != etcdFinalizer {
		t.Fatalf("cordoned node %+v", kn)
	}
	// A resourceVersion in a patch is a precondition: the version read
	// before the cordon is refused in the apiserver's words, the current
	// one taken.
	if before.Metadata.ResourceVersion == "" || before.Metadata.ResourceVersion == kn.Metadata.ResourceVersion {
		t.Fatalf("resourceVersion %q before the cordon, %q after", before.Metadata.ResourceVersion, kn.Metadata.ResourceVersion)
	}
	stale := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"spec":{"unschedulable":false}}`, before.Metadata.ResourceVersion)
	if code, body := k.do(http.MethodPatch, "/api/v1/nodes/b", "application/merge-patch+json", stale); code != http.StatusConflict ||
		!strings.Contains(body, `Operation cannot be fulfilled on nodes \"b\": the object has been modified`) {
		t.Fatalf("patch on a stale resourceVersion: %d %s", code, body)
	}
	if _, kn := k.node("b"); !kn.Spec.Unschedulable {
		t.Fatal("a patch refused for its resourceVersion was applied")
	}
	current := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"spec":{"unschedulable":true}}`, kn.Metadata.ResourceVersion)
	if code, body := k.do(http.MethodPatch, "/api/v1/nodes/b", "application/merge-patch+json", current); code != http.StatusOK {
		t.Fatalf("patch on the current resourceVersion: %d %s", code, body)
	}
	if code, _ := k.do(http.MethodPatch, "/api/v1/nodes/b", "application/json", `{}`); code != http.StatusUnsupportedMediaType {
		t.Fatalf("patch with application/json: %d, want 415", code)
	}
	// No pods on a node that does not exist: an empty list; the eviction
	// of a missing pod is recorded and answered 404.
	if code, body := k.do(http.MethodGet, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnosuch", "", ""); code != http.StatusOK || !strings.Contains(body, `"items":[]`) {
		t.Fatalf("pods: %d %s", code, body)
	}
	if code, body := k.do(http.MethodPost, "/api/v1/namespaces/default/pods/p1/eviction", "application/json", `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p1","namespace":"default"}}`); code != http.StatusNotFound || !strings.Contains(body, `pods \"p1\" not found`) {
		t.Fatalf("eviction: %d %s", code, body)
	}
	if ev := b.state().Evictions; len(ev) != 1 || ev[0].Pod != "p1" || ev[0].Namespace != "default" || ev[0].Code != http.StatusNotFound || ev[0].Kind != "" {
		t.Fatalf("evictions %+v", ev)
	}

	// Deleting c: Terminating under the finalizer, then member, Node and secret gone.
	code, body = k.do(http.MethodDelete, "/api/v1/nodes/c", "", "")
	var term KubeNode
	if err := json.Unmarshal([]byte(body), &term); code != http.StatusOK || err != nil || term.Metadata.DeletionTimestamp == "" || len(term.Metadata.Finalizers) != 1 {
		t.Fatalf("delete c: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "c's Node and member gone", func() bool {
		code, _ := k.node("c")
		return code == http.StatusNotFound && memberNamed(a.state(), "c") == "" && len(a.state().Etcd.Members) == 2
	})
	if code, body := k.do(http.MethodGet, "/api/v1/namespaces/kube-system/secrets/c.node-password.rke2", "", ""); code != http.StatusNotFound ||
		!strings.Contains(body, `"message":"secrets \"c.node-password.rke2\" not found"`) {
		t.Fatalf("c's secret: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "c records its removal", func() bool { return strings.Contains(c.state().Removed, "was removed from the cluster") })

	w2.stop()
	// An agent's Node has no finalizer: it goes at once, with its secret.
	if code, _ := k.do(http.MethodDelete, "/api/v1/nodes/w1", "", ""); code != http.StatusOK {
		t.Fatalf("delete w1: %d", code)
	}
	if code, _ := k.node("w1"); code != http.StatusNotFound {
		t.Fatalf("w1 after delete: %d", code)
	}
	if code, body := k.do(http.MethodDelete, "/api/v1/nodes/nosuch", "", ""); code != http.StatusNotFound ||
		strings.TrimSpace(body) != `{"apiVersion":"v1","code":404,"details":{"kind":"nodes","name":"nosuch"},"kind":"Status","message":"nodes \"nosuch\" not found","metadata":{},"reason":"NotFound","status":"Failure"}` {
		t.Fatalf("delete missing: %d %s", code, body)
	}

	// remove=true on b: its member goes, its Node stays.
	k = adminClient(t, kubeconfig, addr(12, 1))
	if code, body := k.do(http.MethodPatch, "/api/v1/nodes/b", "application/merge-patch+json", `{"metadata":{"annotations":{"etcd.rke2.cattle.io/remove":"true"}}}`); code != http.StatusOK {
		t.Fatalf("annotate b: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "b's member removed", func() bool { return memberNamed(a.state(), "b") == "" && len(a.state().Etcd.Members) == 1 })
	if code, kn := k.node("b"); code != http.StatusOK || kn.Metadata.DeletionTimestamp != "" {
		t.Fatalf("b after remove annotation: %d %+v", code, kn)
	}
	eventually(t, 30*time.Second, "b records its removal", func() bool { return b.state().Removed != "" })
}

// TestNodePasswordOfAReinstalledServer: a server whose Node exists with
// another password (same name, new password file) is refused and retries;
// once the old Node and secret are deleted it registers and turns ready.
func TestNodePasswordOfAReinstalledServer(t *testing.T) {
	a := startSim(t, simSpec{config: "node-ip: " + addr(13, 1) + "\nnode-name: a\ntoken: s3cret"})
	a.waitReady()
	k := adminClient(t, filepath.Join(filepath.Dir(a.cfgPath), "rke2.yaml"), addr(13, 1))
	// Pretend a host b existed before: its agent registered under b.
	pw := filepath.Join(t.TempDir(), "password")
	old := startSim(t, simSpec{role: "agent", config: "node-ip: " + addr(13, 2) + "\nnode-name: b\ntoken: s3cret\nserver: " + supURL(addr(13, 1)),
		env: map[string]string{"RKE2SIM_NODE_PASSWORD_FILE": pw}})
	old.waitReady()
	if fi, err := os.Stat(pw); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node password file: %v %v, want 0600", fi, err)
	}
	old.stop()
	// Reinstalled: same name, a fresh password file.
	b := startSim(t, simSpec{config: "node-ip: " + addr(13, 2) + "\nnode-name: b\ntoken: s3cret\nserver: " + supURL(addr(13, 1))})
	eventually(t, 60*time.Second, "b's node password refused", func() bool { return hasRejection(b.state(), reasonNodePassword) })
	select {
	case <-b.ready:
		t.Fatal("a server with a refused node password sent READY=1")
	default:
	}
	if code, _ := k.do(http.MethodDelete, "/api/v1/nodes/b", "", ""); code != http.StatusOK {
		t.Fatalf("delete old b: %d", code)
	}
	if code, _ := k.do(http.MethodGet, "/api/v1/namespaces/kube-system/secrets/b.node-password.rke2", "", ""); code != http.StatusNotFound {
		t.Fatalf("old b's secret still there: %d", code)
	}
	b.waitReady()
	if code, kn := k.node("b"); code != http.StatusOK || kn.Metadata.Labels[labelEtcd] != "true" {
		t.Fatalf("b after reinstall: %d %+v", code, kn)
	}
}

func TestMergePatch(t *testing.T) {
	cases := []struct{ doc, patch, want string }{
		{`{"spec":{}}`, `{"spec":{"unschedulable":true}}`, `{"spec":{"unschedulable":true}}`},
		{`{"spec":{"unschedulable":true}}`, `{"spec":{"unschedulable":null}}`, `{"spec":{}}`},
		{`{"metadata":{"annotations":{"x":"1"}}}`, `{"metadata":{"annotations":{"y":"2"}}}`, `{"metadata":{"annotations":{"x":"1","y":"2"}}}`},
		{`{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`},
	}
	for _, tc := range cases {
		var doc, patch map[string]any
		_ = json.Unmarshal([]byte(tc.doc), &doc)
		_ = json.Unmarshal([]byte(tc.patch), &patch)
		got, _ := json.Marshal(mergePatch(doc, patch))
		if !bytes.Equal(got, []byte(tc.want)) {
			t.Errorf("%s + %s = %s, want %s", tc.doc, tc.patch, got, tc.want)
		}
	}
}

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{labelEtcd: "true", "kubernetes.io/os": "linux"}
	cases := []struct {
		sel  string
		want bool
	}{
		{"", true}, {labelEtcd, true}, {labelEtcd + "=true", true}, {labelEtcd + "==true", true},
		{labelEtcd + "=false", false}, {"!" + labelEtcd, false}, {labelMaster, false},
		{labelEtcd + "!=true", false}, {labelMaster + "!=true", true}, {labelEtcd + ",kubernetes.io/os=linux", true},
	}
	for _, tc := range cases {
		if got := matchLabels(tc.sel, labels); got != tc.want {
			t.Errorf("matchLabels(%q) = %v, want %v", tc.sel, got, tc.want)
		}
	}
}

func TestVersionSkewRules(t *testing.T) {
	cases := []struct {
		name, mine string
		others     map[string]string
		want       []string
	}{
		{"same", "v1.36.4+rke2r1", map[string]string{"b": "v1.36.1+rke2r1"}, nil},
		{"one minor", "v1.36.4+rke2r1", map[string]string{"b": "v1.35.9+rke2r1", "c": "v1.37.0+rke2r1"}, nil},
		{"datastore two minors older", "v1.37.0+rke2r1", map[string]string{"b": "v1.35.2+rke2r1"},
			[]string{"server a v1.37.0+rke2r1 started on a datastore whose server b runs v1.35.2+rke2r1: more than one minor older"}},
		{"apiservers apart", "v1.34.0+rke2r1", map[string]string{"b": "v1.36.0+rke2r1", "a": "v1.30.0+rke2r1"},
			[]string{"apiservers more than one minor apart: a runs v1.34.0+rke2r1, b runs v1.36.0+rke2r1"}},
	}
	for _, tc := range cases {
		if got := serverSkew("a", tc.mine, tc.others); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	agents := []struct {
		mine    string
		servers map[string]string
		want    []string
	}{
		{"v1.36.0+rke2r1", map[string]string{"a": "v1.36.4+rke2r1"}, nil},
		{"v1.35.0+rke2r1", map[string]string{"a": "v1.36.4+rke2r1"}, nil},
		{"v1.37.0+rke2r1", map[string]string{"a": "v1.36.4+rke2r1", "b": "v1.37.1+rke2r1"},
			[]string{"agent w v1.37.0+rke2r1 is newer than server a v1.36.4+rke2r1"}},
	}
	for _, tc := range agents {
		if got := agentSkew("w", tc.mine, tc.servers); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("agent %s: %q, want %q", tc.mine, got, tc.want)
		}
	}
}

// TestVersionsRecordedAndSkew: each sim records its version in state.json
// and in etcd (its Node's kubeletVersion); a server two minors newer than
// the datastore's and an agent newer than a server are recorded, not refused.
func TestVersionsRecordedAndSkew(t *testing.T) {
	cfg := func(host int, name string, join bool) string {
		c := []string{"node-ip: " + addr(16, host), "node-name: " + name, "token: s3cret"}
		if join {
			c = append(c, "server: "+supURL(addr(16, 1)))
		}
		return strings.Join(c, "\n")
	}
	a := startSim(t, simSpec{config: cfg(1, "a", false), env: map[string]string{"RKE2SIM_VERSION": "v1.34.2+rke2r1"}})
	a.waitReady()
	b := startSim(t, simSpec{config: cfg(2, "b", true), env: map[string]string{"RKE2SIM_VERSION": "v1.36.1+rke2r1"}})
	b.waitReady()
	w := startSim(t, simSpec{role: "agent", config: cfg(3, "w", true), env: map[string]string{"RKE2SIM_VERSION": "v1.35.0+rke2r1"}})
	w.waitReady()
	if st := a.state(); st.Version != "v1.34.2+rke2r1" || len(st.Skew) != 0 {
		t.Fatalf("a: version %q skew %+v", st.Version, st.Skew)
	}
	if st := b.state(); st.Version != "v1.36.1+rke2r1" || len(st.Skew) != 1 ||
		st.Skew[0].Reason != "server b v1.36.1+rke2r1 started on a datastore whose server a runs v1.34.2+rke2r1: more than one minor older" {
		t.Fatalf("b: version %q skew %+v", st.Version, st.Skew)
	}
	if st := w.state(); st.Version != "v1.35.0+rke2r1" || len(st.Skew) != 1 || st.Skew[0].Reason != "agent w v1.35.0+rke2r1 is newer than server a v1.34.2+rke2r1" {
		t.Fatalf("w: version %q skew %+v", st.Version, st.Skew)
	}
	k := adminClient(t, filepath.Join(filepath.Dir(a.cfgPath), "rke2.yaml"), addr(16, 1))
	for name, v := range map[string]string{"a": "v1.34.2+rke2r1", "b": "v1.36.1+rke2r1", "w": "v1.35.0+rke2r1"} {
		if code, kn := k.node(name); code != http.StatusOK || kn.Status.NodeInfo.KubeletVersion != v {
			t.Errorf("%s: %d kubeletVersion %q, want %q", name, code, kn.Status.NodeInfo.KubeletVersion, v)
		}
	}
}

func (k *kubeClient) pods(path string) []KubePod {
	k.t.Helper()
	code, body := k.do(http.MethodGet, path, "", "")
	var list struct {
		Kind  string    `json:"kind"`
		Items []KubePod `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || list.Kind != "PodList" {
		k.t.Fatalf("GET %s: %d %s %v", path, code, body, err)
	}
	return list.Items
}

func podNames(pods []KubePod) string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Metadata.Namespace+"/"+p.Metadata.Name)
	}
	return strings.Join(names, ",")
}

// evict posts an Eviction of ns/name (body "": the one kubectl sends).
func (k *kubeClient) evict(ns, name, body string) (int, string) {
	k.t.Helper()
	if body == "" {
		body = fmt.Sprintf(`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":%q,"namespace":%q}}`, name, ns)
	}
	code, got := k.do(http.MethodPost, "/api/v1/namespaces/"+ns+"/pods/"+name+"/eviction", "application/json", body)
	return code, strings.TrimSpace(got)
}

const (
	evictedBody = `{"apiVersion":"v1","code":201,"kind":"Status","metadata":{},"status":"Success"}`
	refusedBody = `{"apiVersion":"v1","code":429,"details":{"causes":[{"message":"The disruption budget workload needs 1 healthy pods and has 1 currently","reason":"DisruptionBudget"}]},"kind":"Status","message":"Cannot evict pod as it would violate the pod's disruption budget.","metadata":{},"reason":"TooManyRequests","status":"Failure"}`
)

// TestKubeAPIPodsAndEvictions: each node registers with its canal pod (a
// DaemonSet's), its kube-proxy mirror pod and RKE2SIM_WORKLOAD_PODS
// workload pods; lists filter by fieldSelector and namespace; an eviction
// deletes the pod and is recorded with its node, kind and whether the Node
// was cordoned; a workload pod's first RKE2SIM_PDB_REFUSALS evictions are
// refused 429 in the apiserver's words; DaemonSet and mirror pods can be
// evicted and are recorded as such; a restart brings back the DaemonSet
// and mirror pods but no evicted workload pod, and duplicates none; a
// deleted Node takes its pods with it.
func TestKubeAPIPodsAndEvictions(t *testing.T) {
	a := startSim(t, simSpec{config: "node-ip: " + addr(18, 1) + "\nnode-name: a\ntoken: s3cret",
		env: map[string]string{"RKE2SIM_WORKLOAD_PODS": "1"}})
	a.waitReady()
	w := startSim(t, simSpec{role: "agent", config: "node-ip: " + addr(18, 2) + "\nnode-name: w\ntoken: s3cret\nserver: " + supURL(addr(18, 1)),
		env: map[string]string{"RKE2SIM_WORKLOAD_PODS": "3", "RKE2SIM_PDB_REFUSALS": "2"}})
	w.waitReady()
	k := adminClient(t, filepath.Join(filepath.Dir(a.cfgPath), "rke2.yaml"), addr(18, 1))

	// The pods, every one whole.
	all := k.pods("/api/v1/pods")
	if got := podNames(all); got != "default/workload-a-1,default/workload-w-1,default/workload-w-2,default/workload-w-3,"+
		"kube-system/kube-proxy-a,kube-system/kube-proxy-w,kube-system/rke2-canal-a,kube-system/rke2-canal-w" {
		t.Fatalf("pods %s", got)
	}
	_, wNode := k.node("w")
	uids := map[string]string{}
	for _, p := range all {
		md := p.Metadata
		if p.APIVersion != "v1" || p.Kind != "Pod" || md.UID == "" || md.ResourceVersion == "" || md.CreationTimestamp == "" ||
			p.Status.Phase != "Running" || len(p.Spec.Containers) == 0 || len(md.OwnerReferences) != 1 || !md.OwnerReferences[0].Controller {
			t.Errorf("pod %+v", p)
		}
		if want := map[bool]string{true: "w", false: "a"}[strings.Contains(md.Name+"-", "-w-")]; p.Spec.NodeName != want {
			t.Errorf("%s: nodeName %q", md.Name, p.Spec.NodeName)
		}
		uids[md.Name] = md.UID
		ref := md.OwnerReferences[0]
		_, mirror := md.Annotations["kubernetes.io/config.mirror"]
		switch {
		case strings.HasPrefix(md.Name, "rke2-canal-"):
			if ref.Kind != "DaemonSet" || ref.APIVersion != "apps/v1" || ref.Name != "rke2-canal" || mirror {
				t.Errorf("%s: owner %+v annotations %v", md.Name, ref, md.Annotations)
			}
		case strings.HasPrefix(md.Name, "kube-proxy-"):
			if ref.Kind != "Node" || ref.Name != p.Spec.NodeName || !mirror {
				t.Errorf("%s: owner %+v annotations %v", md.Name, ref, md.Annotations)
			}
			if md.Name == "kube-proxy-w" && ref.UID != wNode.Metadata.UID {
				t.Errorf("kube-proxy-w: owner uid %s, Node w's %s", ref.UID, wNode.Metadata.UID)
			}
		default:
			if ref.Kind != "ReplicaSet" || md.Namespace != "default" || mirror {
				t.Errorf("%s: owner %+v annotations %v", md.Name, ref, md.Annotations)
			}
		}
	}

	// Filters.
	for path, want := range map[string]string{
		"/api/v1/pods?fieldSelector=spec.nodeName%3Dw":                                      "default/workload-w-1,default/workload-w-2,default/workload-w-3,kube-system/kube-proxy-w,kube-system/rke2-canal-w",
		"/api/v1/pods?fieldSelector=spec.nodeName%3D%3Dw,metadata.namespace!%3Dkube-system": "default/workload-w-1,default/workload-w-2,default/workload-w-3",
		"/api/v1/namespaces/kube-system/pods?fieldSelector=spec.nodeName%3Dw":               "kube-system/kube-proxy-w,kube-system/rke2-canal-w",
		"/api/v1/namespaces/kube-system/pods":                                               "kube-system/kube-proxy-a,kube-system/kube-proxy-w,kube-system/rke2-canal-a,kube-system/rke2-canal-w",
		"/api/v1/pods?fieldSelector=metadata.name%3Dkube-proxy-a":                           "kube-system/kube-proxy-a",
		"/api/v1/pods?fieldSelector=status.phase!%3DRunning":                                "",
		"/api/v1/pods?fieldSelector=spec.nodeName%3Da&labelSelector=app%3Dworkload":         "default/workload-a-1",
		"/api/v1/namespaces/nosuch/pods":                                                    "",
	} {
		if got := podNames(k.pods(path)); got != want {
			t.Errorf("GET %s: %s, want %s", path, got, want)
		}
	}
	for sel, want := range map[string]string{"spec.hostname%3Dw": "field label not supported: spec.hostname", "w": "invalid selector: 'w'; can't understand 'w'"} {
		if code, body := k.do(http.MethodGet, "/api/v1/pods?fieldSelector="+sel, "", ""); code != http.StatusBadRequest || !strings.Contains(body, `"message":"`+want+`"`) {
			t.Errorf("fieldSelector %s: %d %s", sel, code, body)
		}
	}

	// Before any cordon: w's budget refuses twice, then the pod goes.
	for range 2 {
		if code, body := k.evict("default", "workload-w-1", ""); code != http.StatusTooManyRequests || body != refusedBody {
			t.Fatalf("evict workload-w-1: %d %s", code, body)
		}
	}
	if podNames(k.pods("/api/v1/pods?fieldSelector=metadata.name%3Dworkload-w-1")) != "default/workload-w-1" {
		t.Fatal("a refused eviction deleted the pod")
	}
	if code, body := k.evict("default", "workload-w-1", ""); code != http.StatusCreated || body != evictedBody {
		t.Fatalf("third eviction of workload-w-1: %d %s", code, body)
	}
	if got := podNames(k.pods("/api/v1/pods?fieldSelector=metadata.name%3Dworkload-w-1")); got != "" {
		t.Fatalf("evicted pod still listed: %s", got)
	}
	// Cordoned: recorded so.
	if code, body := k.do(http.MethodPatch, "/api/v1/nodes/w", "application/merge-patch+json", `{"spec":{"unschedulable":true}}`); code != http.StatusOK {
		t.Fatalf("cordon: %d %s", code, body)
	}
	for _, want := range []int{429, 429, 201} {
		if code, _ := k.evict("default", "workload-w-2", ""); code != want {
			t.Fatalf("evict workload-w-2: %d, want %d", code, want)
		}
	}
	// a's pods: no refusals (a's own setting); policy/v1beta1, and a body
	// without apiVersion and kind (the apiserver defaults them), are taken.
	if code, body := k.evict("default", "workload-a-1", `{"apiVersion":"policy/v1beta1","kind":"Eviction","metadata":{"name":"workload-a-1"}}`); code != http.StatusCreated {
		t.Fatalf("evict workload-a-1: %d %s", code, body)
	}
	// The API evicts DaemonSet and mirror pods too (leaving them is the client's part).
	if code, body := k.evict("kube-system", "rke2-canal-w", `{"metadata":{"name":"rke2-canal-w","namespace":"kube-system"}}`); code != http.StatusCreated {
		t.Fatalf("evict rke2-canal-w: %d %s", code, body)
	}
	if code, body := k.evict("kube-system", "kube-proxy-w", ""); code != http.StatusCreated {
		t.Fatalf("evict kube-proxy-w: %d %s", code, body)
	}
	// Gone: 404.
	if code, body := k.evict("default", "workload-w-1", ""); code != http.StatusNotFound ||
		body != `{"apiVersion":"v1","code":404,"details":{"kind":"pods","name":"workload-w-1"},"kind":"Status","message":"pods \"workload-w-1\" not found","metadata":{},"reason":"NotFound","status":"Failure"}` {
		t.Fatalf("evict an evicted pod: %d %s", code, body)
	}
	// Bad requests: refused, nothing deleted.
	for body, want := range map[string]string{
		`{"apiVersion":"v1","kind":"Eviction","metadata":{"name":"workload-w-3"}}`:                                           `Eviction in version \"v1\" cannot be handled as a Eviction: no kind \"Eviction\" is registered for version \"v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"`,
		`{"apiVersion":"policy/v1","kind":"Pod","metadata":{"name":"workload-w-3"}}`:                                         `Pod in version \"v1\" cannot be handled as a Eviction: no kind \"Pod\" is registered for version \"policy/v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"`,
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"workload-w-2"}}`:                                    "name in URL does not match name in Eviction object",
		`{"apiVersion":"policy/v1","kind":"Eviction"}`:                                                                       "name in URL does not match name in Eviction object",
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"workload-w-3","namespace":"kube-system"}}`:          "the namespace of the provided object does not match the namespace sent on the request",
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"workload-w-3"},"deleteOptions":{"dryRun":["All"]}}`: "rke2sim: deleteOptions.dryRun and deleteOptions.preconditions are not simulated",
		`workload-w-3`: "the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; json parse error: invalid character 'w' looking for beginning of value (776f726b6c6f61642d772d33)",
	} {
		if code, got := k.evict("default", "workload-w-3", body); code != http.StatusBadRequest || !strings.Contains(got, `"reason":"BadRequest"`) || !strings.Contains(got, `"message":"`+want+`"`) {
			t.Errorf("eviction %s: %d %s, want 400 %s", body, code, got, want)
		}
	}
	if code, got := k.do(http.MethodPost, "/api/v1/namespaces/default/pods/workload-w-3/eviction", "text/plain", `{"metadata":{"name":"workload-w-3"}}`); code != http.StatusUnsupportedMediaType {
		t.Errorf("eviction as text/plain: %d %s", code, got)
	}

	// The evidence, on the server whose API was called.
	type rec struct {
		pod, node, kind   string
		cordoned, refused bool
		code              int
	}
	want := []rec{
		{"workload-w-1", "w", PodKindWorkload, false, true, 429}, {"workload-w-1", "w", PodKindWorkload, false, true, 429},
		{"workload-w-1", "w", PodKindWorkload, false, false, 201},
		{"workload-w-2", "w", PodKindWorkload, true, true, 429}, {"workload-w-2", "w", PodKindWorkload, true, true, 429},
		{"workload-w-2", "w", PodKindWorkload, true, false, 201},
		{"workload-a-1", "a", PodKindWorkload, false, false, 201},
		{"rke2-canal-w", "w", PodKindDaemonSet, true, false, 201},
		{"kube-proxy-w", "w", PodKindMirror, true, false, 201},
		{"workload-w-1", "", "", false, false, 404},
	}
	for range 7 {
		want = append(want, rec{"workload-w-3", "", "", false, false, 400})
	}
	want = append(want, rec{"workload-w-3", "", "", false, false, 415})
	ev := a.state().Evictions
	var got []rec
	for _, e := range ev {
		if e.At == "" || e.Namespace == "" {
			t.Errorf("eviction record %+v", e)
		}
		got = append(got, rec{e.Pod, e.Node, e.Kind, e.NodeCordoned, e.Refused, e.Code})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("evictions\n%v\nwant\n%v", got, want)
	}
	if len(w.state().Evictions) != 0 {
		t.Fatalf("the agent recorded evictions: %+v", w.state().Evictions)
	}

	// Restarts re-register: the DaemonSet and mirror pods come back, no
	// evicted workload pod does, nothing is duplicated or remade.
	w3 := k.pods("/api/v1/pods?fieldSelector=metadata.name%3Dworkload-w-3")
	w.stop()
	w = startSim(t, w.spec)
	w.waitReady()
	a.stop()
	a = startSim(t, a.spec)
	a.waitReady()
	k = adminClient(t, filepath.Join(filepath.Dir(a.cfgPath), "rke2.yaml"), addr(18, 1))
	after := k.pods("/api/v1/pods")
	if got := podNames(after); got != "default/workload-w-3,kube-system/kube-proxy-a,kube-system/kube-proxy-w,kube-system/rke2-canal-a,kube-system/rke2-canal-w" {
		t.Fatalf("pods after restarts: %s", got)
	}
	for _, p := range after {
		switch p.Metadata.Name {
		case "workload-w-3":
			if p.Metadata.UID != w3[0].Metadata.UID || p.Metadata.ResourceVersion != w3[0].Metadata.ResourceVersion {
				t.Errorf("workload-w-3 rewritten by the restart: %+v, was %+v", p.Metadata, w3[0].Metadata)
			}
		case "rke2-canal-w", "kube-proxy-w":
			if p.Metadata.UID == uids[p.Metadata.Name] {
				t.Errorf("%s: the evicted pod's uid came back", p.Metadata.Name)
			}
		default:
			if p.Metadata.UID != uids[p.Metadata.Name] {
				t.Errorf("%s: remade by the restart", p.Metadata.Name)
			}
		}
	}

	// A deleted Node takes its pods; registered again, it gets its canal
	// and kube-proxy pods, not its old workload pods.
	w.stop()
	if code, body := k.do(http.MethodDelete, "/api/v1/nodes/w", "", ""); code != http.StatusOK {
		t.Fatalf("delete w: %d %s", code, body)
	}
	if got := podNames(k.pods("/api/v1/pods?fieldSelector=spec.nodeName%3Dw")); got != "" {
		t.Fatalf("pods of the deleted node: %s", got)
	}
	w = startSim(t, w.spec)
	w.waitReady()
	if got := podNames(k.pods("/api/v1/pods?fieldSelector=spec.nodeName%3Dw")); got != "kube-system/kube-proxy-w,kube-system/rke2-canal-w" {
		t.Fatalf("pods of w registered again: %s", got)
	}
}

func TestPodFieldSelector(t *testing.T) {
	p := KubePod{Metadata: ObjectMeta{Name: "x", Namespace: "default"}, Spec: PodSpec{NodeName: "w"}, Status: PodStatus{Phase: "Running"}}
	for sel, want := range map[string]bool{
		"": true, "spec.nodeName=w": true, "spec.nodeName==w": true, "spec.nodeName!=w": false, "spec.nodeName=v": false,
		"spec.nodeName=w,metadata.namespace=default": true, "spec.nodeName=w,metadata.namespace!=default": false,
		"metadata.name=x,status.phase=Running": true, "status.phase!=Succeeded": true, " spec.nodeName = w": false,
	} {
		terms, err := parseFieldSelector(sel)
		if err != nil || matchFields(terms, p) != want {
			t.Errorf("%q: %v %v, want %v", sel, matchFields(terms, p), err, want)
		}
	}
	for sel, want := range map[string]string{"spec.unknown=x": "field label not supported: spec.unknown", "spec.nodeName": "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"} {
		if _, err := parseFieldSelector(sel); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", sel, err, want)
		}
	}
}

func TestDecodeEviction(t *testing.T) {
	ok := []string{
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p","namespace":"ns"}}`,
		`{"apiVersion":"policy/v1beta1","kind":"Eviction","metadata":{"name":"p"}}`,
		`{"metadata":{"name":"p"}}`,
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"},"deleteOptions":{"gracePeriodSeconds":0}}`,
	}
	for _, body := range ok {
		if s := decodeEviction("application/json; charset=utf-8", []byte(body), "ns", "p"); s != nil {
			t.Errorf("%s: refused %+v", body, *s)
		}
	}
	bad := map[string]string{
		``:           "the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; json parse error: unexpected end of JSON input (<empty>)",
		`[]`:         "the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; json parse error: json: cannot unmarshal array into Go value of type map[string]json.RawMessage (5b5d)",
		`{"kind":5}`: "the object provided is unrecognized (must be of type Eviction): couldn't get version/kind; json parse error: json: cannot unmarshal number into Go struct field .kind of type string ({\"kind\":5})",
		`{"apiVersion":"policy/v2","kind":"Eviction","metadata":{"name":"p"}}`:                                               `Eviction in version "v2" cannot be handled as a Eviction: no kind "Eviction" is registered for version "policy/v2" in scheme "pkg/api/legacyscheme/scheme.go:30"`,
		`{"apiVersion":"policy/v1","kind":"eviction","metadata":{"name":"p"}}`:                                               `eviction in version "v1" cannot be handled as a Eviction: no kind "eviction" is registered for version "policy/v1" in scheme "pkg/api/legacyscheme/scheme.go:30"`,
		`{"apiVersion":"policy/v1","kind":"Eviction","Metadata":{"name":"p"}}`:                                               "name in URL does not match name in Eviction object",
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"Name":"p"}}`:                                               "name in URL does not match name in Eviction object",
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":7}}`:                                                 `Eviction in version "v1" cannot be handled as a Eviction: json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string`,
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p","namespace":"other"}}`:                           "the namespace of the provided object does not match the namespace sent on the request",
		`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"},"deleteOptions":{"preconditions":{"uid":"u"}}}`: "rke2sim: deleteOptions.dryRun and deleteOptions.preconditions are not simulated",
	}
	for body, want := range bad {
		s := decodeEviction("application/json", []byte(body), "ns", "p")
		if s == nil || s.code != http.StatusBadRequest || s.reason != "BadRequest" || s.message != want {
			t.Errorf("%s: %+v, want 400 %s", body, s, want)
		}
	}
	if s := decodeEviction("application/yaml", []byte(ok[0]), "ns", "p"); s == nil || s.code != http.StatusUnsupportedMediaType {
		t.Errorf("yaml: %+v, want 415", s)
	}
}
