package rke2sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// joinRequest is the body of POST /v1-rke2/sim/join.
type joinRequest struct {
	Name     string            `json:"name"`               // node-name
	Member   string            `json:"member,omitempty"`   // etcd member name (servers)
	URL      string            `json:"url"`                // supervisor URL
	PeerURL  string            `json:"peer_url,omitempty"` // etcd peer URL (servers)
	Mode     string            `json:"mode"`               // join (a server) or agent
	Critical map[string]string `json:"critical,omitempty"`
	Password string            `json:"password,omitempty"` // the node password (agents)
	Version  string            `json:"version,omitempty"`  // the RKE2 version it runs
	// An agent's pods (its RKE2SIM_WORKLOAD_PODS and RKE2SIM_PDB_REFUSALS).
	WorkloadPods int `json:"workload_pods,omitempty"`
	PDBRefusals  int `json:"pdb_refusals,omitempty"`
}

// joinResponse hands a new server what it needs to serve as the cluster
// (the CA key travels in it: this is a simulation).
type joinResponse struct {
	ClusterID      string   `json:"cluster_id"`
	CACert         []byte   `json:"ca_cert"`
	CAKey          []byte   `json:"ca_key,omitempty"`
	Members        []Member `json:"members"`
	InitialCluster string   `json:"initial_cluster,omitempty"` // etcd's, for a joining server
	// ServerVersions: the versions the cluster's servers run (for an agent's skew check).
	ServerVersions map[string]string `json:"server_versions,omitempty"`
}

const joinPath = "/v1-rke2/sim/join"

// fetchCACerts GETs /cacerts without verification, as a joiner does first.
func fetchCACerts(ctx context.Context, base string) ([]byte, error) {
	c := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the hash check follows
	}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/cacerts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/cacerts: %s", base, resp.Status)
	}
	return body, nil
}

// joinClient talks to a server verified against the CA it served.
type joinClient struct {
	base   string
	token  Token
	caHash string
	http   *http.Client
}

func newJoinClient(base string, caPEM []byte, tok Token) (*joinClient, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("/cacerts holds no certificate")
	}
	return &joinClient{base: base, token: tok, http: verifiedClient(pool, 5*time.Minute)}, nil
}

func verifiedClient(pool *x509.CertPool, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

// isTLSVerifyError tells a certificate problem (refused) from a network one (retried).
func isTLSVerifyError(err error) bool {
	var cv *tls.CertificateVerificationError
	var hn x509.HostnameError
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &hn) || errors.As(err, &ua) || errors.As(err, &ci)
}

// refusedRetry is a refusal current k3s retries (too many learners, an
// unhealthy cluster): recorded, then tried again.
type refusedRetry struct {
	reason string
	wait   time.Duration // 0: the join retry period
}

func (e *refusedRetry) Error() string { return e.reason }

// join POSTs the join request, retrying while the server cannot be reached
// or is not ready, and every refusedEvery after a refusal k3s retries (each
// one recorded through record); a TLS failure, a rejected token or any other
// refusal is final.
func (c *joinClient) join(ctx context.Context, jr joinRequest, retry, refusedEvery time.Duration, log *zap.Logger, record func(string) error) (*joinResponse, error) {
	defer c.http.CloseIdleConnections()
	body, err := json.Marshal(jr)
	if err != nil {
		return nil, err
	}
	for {
		out, retryable, err := c.joinOnce(ctx, body)
		if err == nil || !retryable {
			return out, err
		}
		wait := retry
		var rr *refusedRetry
		if errors.As(err, &rr) {
			wait = refusedEvery
			if rr.wait > 0 {
				wait = rr.wait
			}
			log.Warn("join refused, retrying as k3s does", zap.String("server", c.base), zap.String("reason", rr.reason))
			if rerr := record(rr.reason); rerr != nil {
				log.Error("cannot record rejection", zap.Error(rerr))
			}
		} else {
			log.Warn("join: retrying", zap.String("server", c.base), zap.Error(err))
		}
		if sleep(ctx, wait) != nil {
			return nil, ctx.Err()
		}
	}
}

func (c *joinClient) joinOnce(ctx context.Context, body []byte) (*joinResponse, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+joinPath, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	req.SetBasicAuth(c.token.Username, c.token.Secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if isTLSVerifyError(err) {
			return nil, false, reject("TLS verification of %s failed: %v", c.base, err)
		}
		return nil, true, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, true, err
	}
	msg := strings.TrimSpace(string(raw))
	switch resp.StatusCode {
	case http.StatusOK:
		var out joinResponse
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, false, fmt.Errorf("join response: %w", err)
		}
		return &out, false, nil
	case http.StatusUnauthorized:
		return nil, false, reject("token rejected by %s: %s", c.base, resp.Status)
	case http.StatusForbidden:
		if msg == reasonNodePassword {
			return nil, true, &refusedRetry{reason: msg, wait: passwordRetry()}
		}
		return nil, false, reject("join via %s: %s: %s", c.base, resp.Status, msg)
	case http.StatusConflict:
		if resp.Header.Get("Retry-After") != "" {
			return nil, true, &refusedRetry{reason: msg}
		}
		return nil, false, reject("%s", msg)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return nil, true, fmt.Errorf("%s: %s", resp.Status, msg)
	default:
		return nil, false, reject("join via %s: %s: %s", c.base, resp.Status, msg)
	}
}
