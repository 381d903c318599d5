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
	Name     string            `json:"name"`
	URL      string            `json:"url"`
	Mode     string            `json:"mode"` // join (a server) or agent
	Critical map[string]string `json:"critical,omitempty"`
}

// joinResponse hands a new server what it needs to serve as the cluster
// (the CA key travels in it: this is a simulation).
type joinResponse struct {
	ClusterID       string   `json:"cluster_id"`
	CACert          []byte   `json:"ca_cert"`
	CAKey           []byte   `json:"ca_key,omitempty"`
	Members         []Member `json:"members"`
	LearnerStarted  string   `json:"learner_started,omitempty"`
	LearnerFinished string   `json:"learner_finished,omitempty"`
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

// join POSTs the join request, retrying while the server cannot be reached
// or is not ready; a TLS failure, a rejected token or a refusal is final.
func (c *joinClient) join(ctx context.Context, jr joinRequest, retry time.Duration, log *zap.Logger) (*joinResponse, error) {
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
		log.Warn("join: retrying", zap.String("server", c.base), zap.Error(err))
		if sleep(ctx, retry) != nil {
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
	case http.StatusConflict:
		return nil, false, reject("%s", msg)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return nil, true, fmt.Errorf("%s: %s", resp.Status, msg)
	default:
		return nil, false, reject("join via %s: %s: %s", c.base, resp.Status, msg)
	}
}
