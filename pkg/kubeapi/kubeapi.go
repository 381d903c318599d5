// Package kubeapi is the little of the Kubernetes API the daemon needs to
// remove a server the way RKE2 does: list, get and delete Nodes (reading
// the etcd annotations RKE2 puts on them) and delete a node's password
// secret; and to drain a host before its upgrade restart as kubectl drain
// does (drain.go): cordon, evict its pods, uncordon. It speaks net/http with the client certificate of the admin
// kubeconfig RKE2 writes (/etc/rancher/rke2/rke2.yaml, server
// https://127.0.0.1:6443), and needs no Kubernetes client library.
//
// Deleting a server's Node is how RKE2 removes its etcd member: the Node
// carries the finalizer wrangler.cattle.io/managed-etcd-controller and
// stays Terminating until RKE2's etcd controller has removed the member
// named by the annotations etcd.rke2.cattle.io/node-name and
// etcd.rke2.cattle.io/node-address. The caller deletes, then polls GetNode
// until ErrNotFound. The node-password secret <node>.node-password.rke2 in
// kube-system is owned by the Node and normally goes with it; deleting it
// again is harmless (not found counts as done).
//
// Every call has a deadline (the context's, or Timeout) and retries
// idempotent requests on network errors and 5xx/429 answers with backoff.
// Nothing read from the kubeconfig is logged or returned in an error.
package kubeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Names RKE2 uses (see the package doc).
const (
	DefaultKubeconfig  = "/etc/rancher/rke2/rke2.yaml"
	AnnotationEtcdName = "etcd.rke2.cattle.io/node-name"
	AnnotationEtcdAddr = "etcd.rke2.cattle.io/node-address"
	LabelEtcd          = "node-role.kubernetes.io/etcd"
	FinalizerEtcd      = "wrangler.cattle.io/managed-etcd-controller"
	NodePasswordSuffix = ".node-password.rke2"
	NodePasswordNS     = "kube-system"
	maxBody            = 16 << 20 // a NodeList of thousands of nodes fits
	defaultTimeout     = 15 * time.Second
	defaultAttempts    = 4
	defaultBackoff     = 250 * time.Millisecond
)

// ErrNotFound: the object does not exist (a deletion counts it as done).
var ErrNotFound = errors.New("kubeapi: not found")

// ErrConflict: a write carried the resourceVersion it was decided on and
// the object changed since (HTTP 409): read it again and decide anew.
var ErrConflict = errors.New("kubeapi: the object changed since it was read")

// Kubeconfig is what the client needs from a kubeconfig file.
type Kubeconfig struct {
	Server string // https://127.0.0.1:6443
	CA     []byte // PEM
	Cert   []byte // PEM client certificate
	Key    []byte // PEM client key
}

type kubeconfigFile struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
			CAData string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			CertData string `yaml:"client-certificate-data"`
			KeyData  string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// LoadKubeconfig reads the kubeconfig at path (its current context, or
// its only cluster and user). It refuses a file readable by group or
// others: it holds the cluster's admin key.
func LoadKubeconfig(path string) (Kubeconfig, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("kubeapi: kubeconfig: %w (RKE2 writes it when rke2-server starts)", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Kubeconfig{}, fmt.Errorf("kubeapi: kubeconfig %s has mode %#o, readable by group or others: it holds the admin key; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("kubeapi: kubeconfig: %w", err)
	}
	k, err := ParseKubeconfig(b)
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("kubeapi: kubeconfig %s: %w", path, err)
	}
	return k, nil
}

// ParseKubeconfig reads the embedded-data form RKE2 writes.
func ParseKubeconfig(b []byte) (Kubeconfig, error) {
	var f kubeconfigFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return Kubeconfig{}, errors.New("not a YAML kubeconfig")
	}
	cluster, user := "", ""
	for _, c := range f.Contexts {
		if c.Name == f.CurrentContext {
			cluster, user = c.Context.Cluster, c.Context.User
		}
	}
	if f.CurrentContext == "" && len(f.Clusters) == 1 && len(f.Users) == 1 {
		cluster, user = f.Clusters[0].Name, f.Users[0].Name
	}
	var k Kubeconfig
	found := 0
	for _, c := range f.Clusters {
		if c.Name == cluster {
			k.Server = c.Cluster.Server
			ca, err := base64.StdEncoding.DecodeString(c.Cluster.CAData)
			if err != nil || len(ca) == 0 {
				return Kubeconfig{}, fmt.Errorf("cluster %q: certificate-authority-data missing or not base64", c.Name)
			}
			k.CA = ca
			found++
		}
	}
	for _, u := range f.Users {
		if u.Name == user {
			cert, err1 := base64.StdEncoding.DecodeString(u.User.CertData)
			key, err2 := base64.StdEncoding.DecodeString(u.User.KeyData)
			if err1 != nil || err2 != nil || len(cert) == 0 || len(key) == 0 {
				return Kubeconfig{}, fmt.Errorf("user %q: client-certificate-data or client-key-data missing or not base64", u.Name)
			}
			k.Cert, k.Key = cert, key
			found++
		}
	}
	if found != 2 {
		return Kubeconfig{}, fmt.Errorf("no cluster and user for context %q", f.CurrentContext)
	}
	if u, err := url.Parse(k.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		return Kubeconfig{}, fmt.Errorf("server %q: want an https URL", k.Server)
	}
	return k, nil
}

// Client talks to one API server.
type Client struct {
	base     string
	http     *http.Client
	attempts int
	backoff  time.Duration
}

// New builds a client that verifies the server against the kubeconfig's CA
// and presents its client certificate.
func New(k Kubeconfig) (*Client, error) {
	pair, err := tls.X509KeyPair(k.Cert, k.Key)
	if err != nil {
		return nil, errors.New("kubeapi: the kubeconfig's client certificate and key do not form a pair")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(k.CA) {
		return nil, errors.New("kubeapi: the kubeconfig's certificate-authority-data holds no PEM certificate")
	}
	tr := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
	}
	return &Client{base: strings.TrimRight(k.Server, "/"), http: &http.Client{Transport: tr, Timeout: defaultTimeout},
		attempts: defaultAttempts, backoff: defaultBackoff}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Node is what the daemon reads of a Kubernetes Node.
type Node struct {
	Name        string
	Etcd        bool   // labelled node-role.kubernetes.io/etcd
	EtcdName    string // etcd.rke2.cattle.io/node-name: its etcd member name
	EtcdAddress string // etcd.rke2.cattle.io/node-address
	Finalizers  []string
	Deleting    bool     // deletionTimestamp set: Terminating
	InternalIPs []string // status.addresses of type InternalIP (RKE2's node-ip)
	// Unschedulable: cordoned (spec.unschedulable); UpgradeCordon is the
	// rolling upgrade's mark on a cordon it made (AnnotationUpgradeCordon).
	Unschedulable bool
	UpgradeCordon string
	// ResourceVersion is the version read: a patch that carries it
	// applies to that version only (ErrConflict otherwise).
	ResourceVersion string
}

type nodeObject struct {
	Metadata struct {
		Name              string            `json:"name"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
		Finalizers        []string          `json:"finalizers"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
		ResourceVersion   string            `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		Unschedulable bool `json:"unschedulable"`
	} `json:"spec"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

func (o nodeObject) node() Node {
	m := o.Metadata
	_, etcd := m.Labels[LabelEtcd]
	n := Node{Name: m.Name, Etcd: etcd, EtcdName: m.Annotations[AnnotationEtcdName], EtcdAddress: m.Annotations[AnnotationEtcdAddr],
		Finalizers: m.Finalizers, Deleting: m.DeletionTimestamp != nil,
		Unschedulable: o.Spec.Unschedulable, UpgradeCordon: m.Annotations[AnnotationUpgradeCordon], ResourceVersion: m.ResourceVersion}
	for _, a := range o.Status.Addresses {
		if a.Type == "InternalIP" {
			n.InternalIPs = append(n.InternalIPs, a.Address)
		}
	}
	return n
}

// ListNodes returns every Node.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	var list struct {
		Kind  string       `json:"kind"`
		Items []nodeObject `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/nodes", &list); err != nil {
		return nil, err
	}
	if list.Kind != "NodeList" {
		return nil, fmt.Errorf("kubeapi: list nodes: got kind %q, want NodeList", list.Kind)
	}
	out := make([]Node, 0, len(list.Items))
	for _, o := range list.Items {
		out = append(out, o.node())
	}
	return out, nil
}

// GetNode returns one Node, or ErrNotFound.
func (c *Client) GetNode(ctx context.Context, name string) (Node, error) {
	if err := checkName(name); err != nil {
		return Node{}, err
	}
	var o nodeObject
	if err := c.do(ctx, http.MethodGet, "/api/v1/nodes/"+name, &o); err != nil {
		return Node{}, err
	}
	if o.Metadata.Name != name {
		return Node{}, fmt.Errorf("kubeapi: get node %s: the API answered with node %q", name, o.Metadata.Name)
	}
	return o.node(), nil
}

// DeleteNode asks for the Node's deletion (RKE2's finalizer then removes
// its etcd member before the Node goes). A Node already gone is not an
// error. It never force-deletes: that would leave the etcd member behind.
func (c *Client) DeleteNode(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := c.do(ctx, http.MethodDelete, "/api/v1/nodes/"+name, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// DeleteNodePassword deletes the secret <node>.node-password.rke2 in
// kube-system; one already gone is not an error.
func (c *Client) DeleteNodePassword(ctx context.Context, node string) error {
	if err := checkName(node); err != nil {
		return err
	}
	err := c.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+NodePasswordNS+"/secrets/"+node+NodePasswordSuffix, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func checkName(name string) error {
	if name == "" || len(name) > 253 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
		return fmt.Errorf("kubeapi: %q is not a node name (lower-case letters, digits, '-' and '.')", name)
	}
	return nil
}

// StatusError is an API error answer.
type StatusError struct {
	Method, Path string
	Code         int
	Reason       string // the Status object's reason, e.g. Forbidden
	Message      string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("kubeapi: %s %s: HTTP %d %s: %s", e.Method, e.Path, e.Code, e.Reason, e.Message)
}

func (e *StatusError) retryable() bool { return e.Code >= 500 || e.Code == http.StatusTooManyRequests }

// do sends one request, retrying network errors and 5xx/429 with
// exponential backoff within the context's deadline, and decodes the JSON
// answer into out (nil: discarded).
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	return c.send(ctx, method, path, "", nil, out)
}

// send is do with a request body of contentType.
func (c *Client) send(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout*time.Duration(c.attempts))
		defer cancel()
	}
	wait := c.backoff
	var last error
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, method, path, contentType, body, out)
		var se *StatusError
		if err == nil || errors.Is(err, ErrNotFound) || (errors.As(err, &se) && !se.retryable()) || ctx.Err() != nil || trustError(err) {
			if err != nil && ctx.Err() != nil && last != nil {
				return fmt.Errorf("%w (after %d attempts; last: %v)", ctx.Err(), attempt, last)
			}
			return err
		}
		last = err
		if attempt >= c.attempts {
			return fmt.Errorf("%w (after %d attempts)", err, attempt)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kubeapi: %s %s: %w (last: %v)", method, path, ctx.Err(), last)
		case <-t.C:
		}
		wait *= 2
	}
}

// trustError: the TLS handshake failed on a certificate, which retrying
// does not mend.
func trustError(err error) bool {
	var ve *tls.CertificateVerificationError
	var ae tls.AlertError
	return errors.As(err, &ve) || errors.As(err, &ae)
}

func (c *Client) once(ctx context.Context, method, path, contentType string, reqBody []byte, out any) error {
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("kubeapi: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("kubeapi: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("kubeapi: %s %s: reading the answer: %w", method, path, err)
	}
	if len(body) > maxBody {
		return fmt.Errorf("kubeapi: %s %s: answer larger than %d bytes", method, path, maxBody)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{Method: method, Path: path, Code: resp.StatusCode}
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &st) == nil {
			se.Reason, se.Message = st.Reason, st.Message
		}
		if se.Message == "" {
			se.Message = strings.TrimSpace(string(bytes.ToValidUTF8(body[:min(len(body), 200)], nil)))
		}
		if se.Code == http.StatusConflict {
			return fmt.Errorf("%w: %w", ErrConflict, se)
		}
		return se
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("kubeapi: %s %s: the answer is not the JSON expected: %w", method, path, err)
	}
	return nil
}
