package rke2sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test addresses live in 127.42.0.0/16 and use their own ports so that they
// never meet another package's tests (which keep 9345/6443).
const (
	testSupPort = "29345"
	testAPIPort = "26443"
)

func addr(test, host int) string { return fmt.Sprintf("127.42.%d.%d", test, host) }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// simRun is one in-process sim.
type simRun struct {
	t       *testing.T
	dataDir string
	cfgPath string
	log     *syncBuffer
	cancel  context.CancelFunc
	done    chan int
	ready   chan struct{}
	spec    simSpec // as started (dataDir filled in), for a restart
}

type simSpec struct {
	role    string // server (default) or agent
	dataDir string // reuse for restarts; "" makes one
	config  string // YAML; data-dir is added
	env     map[string]string
	// configEnv: no --config; RKE2_CONFIG_FILE names the file (as a unit's
	// environment file would).
	configEnv bool
}

func baseEnv() map[string]string {
	return map[string]string{
		"RKE2SIM_SUPERVISOR_PORT":  testSupPort,
		"RKE2SIM_API_PORT":         testAPIPort,
		"RKE2SIM_ETCD_CLIENT_PORT": "22379",
		"RKE2SIM_ETCD_PEER_PORT":   "22380",
		"RKE2SIM_ETCD_HTTP_PORT":   "22382",
		"RKE2SIM_PROMOTE_INTERVAL": "200ms",
		"RKE2SIM_JOIN_RETRY":       "1s",
		"RKE2SIM_START_DELAY":      "100ms",
		"RKE2SIM_JOIN_DELAY":       "200ms",
		"RKE2SIM_AGENT_DELAY":      "100ms",
		"RKE2SIM_CONNECT_RETRY":    "100ms",
		"RKE2SIM_MANIFEST_POLL":    "100ms",
		"RKE2SIM_VIP_RETRY":        "100ms",
		"RKE2SIM_LOG_LEVEL":        "debug",
	}
}

func startSim(t *testing.T, s simSpec) *simRun {
	t.Helper()
	if s.role == "" {
		s.role = "server"
	}
	if s.dataDir == "" {
		s.dataDir = t.TempDir()
	}
	cfgDir := t.TempDir()
	cfgPath := filepath.Join(cfgDir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(s.config+"\ndata-dir: "+s.dataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := baseEnv()
	// The node password outlives restarts with the data-dir (a test may
	// give its own path, to model a reinstalled host).
	env["RKE2SIM_NODE_PASSWORD_FILE"] = filepath.Join(s.dataDir, "etc-rancher-node", "password")
	for k, v := range s.env {
		env[k] = v
	}
	r := &simRun{t: t, dataDir: s.dataDir, cfgPath: cfgPath, log: &syncBuffer{}, done: make(chan int, 1), ready: make(chan struct{}), spec: s}
	sock := filepath.Join(cfgDir, "notify.sock")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	env["NOTIFY_SOCKET"] = sock
	args := []string{s.role, "--config", cfgPath}
	if s.configEnv {
		args = []string{s.role}
		env["RKE2_CONFIG_FILE"] = cfgPath
	}
	go func() {
		defer pc.Close()
		buf := make([]byte, 256)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(2 * time.Minute))
			n, err := pc.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				close(r.ready)
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- Main(ctx, Options{
			Args:   args,
			Getenv: func(k string) string { return env[k] },
			Stdout: io.Discard,
			Stderr: r.log,
		})
	}()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			l := r.log.String()
			if len(l) > 6000 {
				l = "…" + l[len(l)-6000:]
			}
			t.Logf("log of the sim at %s:\n%s", s.config, l)
		}
	})
	return r
}

// stop cancels the sim and waits for it; it returns the exit code.
func (r *simRun) stop() int {
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(30 * time.Second):
		r.t.Errorf("sim did not stop; log:\n%s", r.log.String())
		return -1
	}
}

func (r *simRun) waitReady() {
	r.t.Helper()
	select {
	case <-r.ready:
	case code := <-r.done:
		r.done <- code
		r.t.Fatalf("sim exited %d before READY=1; log:\n%s", code, r.log.String())
	case <-time.After(60 * time.Second):
		r.t.Fatalf("no READY=1 within 60s; log:\n%s", r.log.String())
	}
}

// waitExit waits for the sim to exit on its own.
func (r *simRun) waitExit() int {
	r.t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(60 * time.Second):
		r.t.Fatalf("sim still running after 60s; log:\n%s", r.log.String())
		return -1
	}
}

func (r *simRun) state() Evidence {
	r.t.Helper()
	st, err := ReadState(r.dataDir)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *simRun) token() string {
	r.t.Helper()
	raw, err := os.ReadFile(filepath.Join(r.dataDir, "server", "token"))
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func supURL(ip string) string { return "https://" + net.JoinHostPort(ip, testSupPort) }

// get does a GET with optional basic auth and an optional CA to verify with
// (nil: no verification).
func get(url string, pool *x509.CertPool, user, pass string) (int, string, http.Header, error) {
	tc := &tls.Config{RootCAs: pool, InsecureSkipVerify: pool == nil} //nolint:gosec // tests
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header, nil
}

func poolFromPEM(t *testing.T, pemBytes []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in PEM")
	}
	return p
}
