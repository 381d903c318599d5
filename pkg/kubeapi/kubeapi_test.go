package kubeapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type pki struct {
	caPEM            []byte
	ca               *x509.Certificate
	caKey            *ecdsa.PrivateKey
	clientCert, cKey []byte
	pool             *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rke2-server-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.clientCert, p.cKey = p.leaf(t, "system:admin", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *pki) leaf(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// fakeAPI is an API server that holds nodes and node-password secrets and
// requires a client certificate from the cluster CA with CN system:admin.
type fakeAPI struct {
	mu      sync.Mutex
	nodes   map[string]string // name → JSON object
	secrets map[string]bool
	fail503 atomic.Int32 // answer 503 this many times first
	calls   atomic.Int32
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "system:admin" {
		http.Error(w, `{"kind":"Status","reason":"Unauthorized","message":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if f.fail503.Load() > 0 {
		f.fail503.Add(-1)
		http.Error(w, `{"kind":"Status","reason":"ServiceUnavailable","message":"etcdserver: leader changed"}`, http.StatusServiceUnavailable)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	notFound := func(what string) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"kind":"Status","reason":"NotFound","message":"%s not found"}`, what)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes":
		var items []string
		for _, n := range sortedKeys(f.nodes) {
			items = append(items, f.nodes[n])
		}
		fmt.Fprintf(w, `{"kind":"NodeList","apiVersion":"v1","items":[%s]}`, strings.Join(items, ","))
	case strings.HasPrefix(r.URL.Path, "/api/v1/nodes/"):
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/nodes/")
		obj, ok := f.nodes[name]
		if !ok {
			notFound("nodes " + name)
			return
		}
		if r.Method == http.MethodDelete {
			delete(f.nodes, name)
			delete(f.secrets, name+NodePasswordSuffix)
		}
		fmt.Fprint(w, obj)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/kube-system/secrets/"):
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/kube-system/secrets/")
		if name == "forbidden.node-password.rke2" {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"kind":"Status","reason":"Forbidden","message":"secrets is forbidden"}`)
			return
		}
		if !f.secrets[name] {
			notFound("secrets " + name)
			return
		}
		delete(f.secrets, name)
		fmt.Fprint(w, `{"kind":"Status","status":"Success"}`)
	default:
		notFound(r.URL.Path)
	}
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	for i := range k {
		for j := i + 1; j < len(k); j++ {
			if k[j] < k[i] {
				k[i], k[j] = k[j], k[i]
			}
		}
	}
	return k
}

func nodeJSON(name string, etcd bool) string {
	labels := `"kubernetes.io/hostname":"` + name + `"`
	ann := ""
	if etcd {
		labels += `,"node-role.kubernetes.io/etcd":"true"`
		ann = fmt.Sprintf(`"annotations":{"etcd.rke2.cattle.io/node-name":"%s-1a2b3c4d","etcd.rke2.cattle.io/node-address":"10.0.0.%d"},`, name, len(name))
	}
	return fmt.Sprintf(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"%s","labels":{%s},%s"finalizers":["%s"]},"status":{"addresses":[{"type":"InternalIP","address":"10.0.1.%d"},{"type":"Hostname","address":"%s"}]}}`, name, labels, ann, FinalizerEtcd, len(name), name)
}

func start(t *testing.T) (*fakeAPI, *pki, string) {
	t.Helper()
	p := newPKI(t)
	f := &fakeAPI{nodes: map[string]string{"h1": nodeJSON("h1", true), "h2": nodeJSON("h2", true), "w1": nodeJSON("w1", false)},
		secrets: map[string]bool{"h1.node-password.rke2": true, "h2.node-password.rke2": true, "w1.node-password.rke2": true}}
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
	return f, p, kubeconfigYAML(srv.URL, p.caPEM, p.clientCert, p.cKey)
}

func kubeconfigYAML(server string, ca, cert, key []byte) string {
	b := base64.StdEncoding.EncodeToString
	return fmt.Sprintf(`apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: %s
    server: %s
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: %s
    client-key-data: %s
`, b(ca), server, b(cert), b(key))
}

func client(t *testing.T, yamlText string) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rke2.yaml")
	if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	c.backoff = time.Millisecond
	t.Cleanup(c.Close)
	return c
}

func TestNodesAndRemoval(t *testing.T) {
	f, _, kc := start(t)
	c := client(t, kc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	nodes, err := c.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 || nodes[0].Name != "h1" || !nodes[0].Etcd || nodes[0].EtcdName != "h1-1a2b3c4d" || nodes[0].EtcdAddress != "10.0.0.2" ||
		nodes[2].Etcd || nodes[2].EtcdName != "" || len(nodes[0].Finalizers) != 1 || nodes[0].Finalizers[0] != FinalizerEtcd {
		t.Fatalf("ListNodes = %+v", nodes)
	}
	n, err := c.GetNode(ctx, "h2")
	if err != nil || n.Name != "h2" || n.EtcdName != "h2-1a2b3c4d" || len(n.InternalIPs) != 1 || n.InternalIPs[0] != "10.0.1.2" {
		t.Fatalf("GetNode = %+v, %v", n, err)
	}
	if err := c.DeleteNode(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetNode(ctx, "h2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetNode after delete: %v, want ErrNotFound", err)
	}
	// Gone already: done, not an error; the secret went with the Node.
	if err := c.DeleteNode(ctx, "h2"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := c.DeleteNodePassword(ctx, "h2"); err != nil {
		t.Fatalf("delete of a secret already gone: %v", err)
	}
	if err := c.DeleteNodePassword(ctx, "w1"); err != nil || f.secrets["w1.node-password.rke2"] {
		t.Fatalf("delete secret: %v, still there: %v", err, f.secrets["w1.node-password.rke2"])
	}
	var se *StatusError
	if err := c.DeleteNodePassword(ctx, "forbidden"); !errors.As(err, &se) || se.Code != 403 || se.Reason != "Forbidden" {
		t.Fatalf("forbidden: %v", err)
	}
	if _, err := c.GetNode(ctx, "../secrets"); err == nil {
		t.Fatal("a path as a node name was sent")
	}
}

func TestRetriesAndGivesUp(t *testing.T) {
	f, _, kc := start(t)
	c := client(t, kc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.fail503.Store(2)
	if _, err := c.GetNode(ctx, "h1"); err != nil {
		t.Fatalf("two 503s then success: %v", err)
	}
	f.fail503.Store(100)
	before := f.calls.Load()
	_, err := c.ListNodes(ctx)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || !strings.Contains(err.Error(), "leader changed") || !strings.Contains(err.Error(), "after 4 attempts") {
		t.Fatalf("persistent 503: %v", err)
	}
	if got := f.calls.Load() - before; got != 4 {
		t.Fatalf("%d attempts, want 4", got)
	}
}

func TestWrongClientCertificateIsRefused(t *testing.T) {
	f, p, kc := start(t)
	other := newPKI(t) // a client certificate from another CA
	bad := kubeconfigYAML(strings.Split(strings.Split(kc, "server: ")[1], "\n")[0], p.caPEM, other.clientCert, other.cKey)
	c := client(t, bad)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := f.calls.Load()
	if _, err := c.ListNodes(ctx); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	if f.calls.Load() != before {
		t.Fatal("a request with a client certificate of another CA reached the handler")
	}
	// And a server certificate of another CA is refused by the client.
	c2 := client(t, kubeconfigYAML(strings.Split(strings.Split(kc, "server: ")[1], "\n")[0], other.caPEM, p.clientCert, p.cKey))
	if _, err := c2.ListNodes(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("server of another CA: %v", err)
	}
}

func TestKubeconfigChecks(t *testing.T) {
	_, _, kc := start(t)
	path := filepath.Join(t.TempDir(), "rke2.yaml")
	if err := os.WriteFile(path, []byte(kc), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKubeconfig(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("mode 0644: %v", err)
	}
	for name, text := range map[string]string{
		"not yaml":  "\t:::",
		"http":      strings.Replace(kc, "server: https://", "server: http://", 1),
		"no key":    strings.Replace(kc, "client-key-data:", "client-key:", 1),
		"bad ca":    strings.Replace(kc, "certificate-authority-data: ", "certificate-authority-data: !!", 1),
		"no user":   strings.Replace(kc, "    user: default", "    user: other", 1),
		"wrong ctx": strings.Replace(kc, "current-context: default", "current-context: nope", 1),
	} {
		if _, err := ParseKubeconfig([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "PRIVATE") || strings.Contains(err.Error(), "LS0t") {
			t.Errorf("%s: error shows key material: %v", name, err)
		}
	}
}
