package rke2sim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

type handlerSet struct {
	supervisor http.Handler // 9345
	api        http.Handler // 6443
}

type userKey struct{}

func (n *node) handlers() handlerSet {
	api := http.NewServeMux()
	health := func(w http.ResponseWriter, r *http.Request) {
		if !n.serving() && r.URL.Path != "/livez" {
			http.Error(w, "[-]etcd failed: not ready", http.StatusServiceUnavailable)
			return
		}
		text(w, "ok")
	}
	api.Handle("GET /readyz", n.auth(http.HandlerFunc(health)))
	api.Handle("GET /livez", n.auth(http.HandlerFunc(health)))
	api.Handle("GET /healthz", n.auth(http.HandlerFunc(health)))
	api.Handle("GET /version", n.auth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"gitVersion": strings.SplitN(n.set.Version, "+", 2)[0] + "+rke2sim", "platform": "linux/amd64"})
	})))
	n.kubeAPI(api)
	api.Handle("/", n.auth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "rke2sim: no Kubernetes API here", http.StatusNotFound)
	})))

	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1-rke2/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.serving() {
			http.Error(w, "runtime core not ready", http.StatusServiceUnavailable)
			return
		}
		text(w, "ok")
	})
	v1.HandleFunc("POST "+joinPath, n.handleJoin)
	v1.HandleFunc("POST /v1-rke2/sim/member", n.handleMemberAdd)
	v1.HandleFunc("GET /v1-rke2/apiservers", func(w http.ResponseWriter, _ *http.Request) {
		var eps []string
		for _, m := range n.members() {
			if u, err := url.Parse(m.URL); err == nil {
				eps = append(eps, net.JoinHostPort(u.Hostname(), strconv.Itoa(n.set.APIPort)))
			}
		}
		writeJSON(w, http.StatusOK, eps)
	})
	v1.HandleFunc("GET /v1-rke2/sim/applied", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, n.applied.snapshot())
	})
	v1.HandleFunc("GET /v1-rke2/sim/vip", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, vipStatus{Node: n.cfg.NodeName, VIP: n.heldVIP()})
	})
	v1.HandleFunc("GET /v1-rke2/sim/members", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, n.members())
	})

	sup := http.NewServeMux()
	sup.Handle("GET /db/info", n.auth(http.HandlerFunc(n.handleDBInfo)))
	sup.Handle("POST /db/snapshot", n.auth(http.HandlerFunc(n.handleSnapshot)))
	sup.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { text(w, "pong") })
	sup.HandleFunc("GET /cacerts", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(n.ca.CertPEM)
	})
	sup.Handle("/v1-rke2/", n.auth(n.limit(v1)))
	sup.Handle("/", api) // everything else falls through to the apiserver
	return handlerSet{supervisor: sup, api: api}
}

// serving: started, and etcd has a quorum (else the apiserver is not ready).
func (n *node) serving() bool { return n.ready.Load() && n.quorum.Load() }

// handleDBInfo lists the etcd members, as k3s's /db/info, for the server user.
func (n *node) handleDBInfo(w http.ResponseWriter, r *http.Request) {
	if r.Context().Value(userKey{}) != "server" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	var out dbInfo
	for _, m := range n.etcd.Server.Cluster().Members() {
		out.Members = append(out.Members, dbInfoMember{ID: uint64(m.ID), Name: m.Name, PeerURLs: m.PeerURLs,
			ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	writeJSON(w, http.StatusOK, out)
}

// hostOf is the host of a URL ("" when it does not parse).
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func text(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, s)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// auth admits basic node:<secret>/server:<secret> or a bearer token (the
// secret or a whole token); the user goes into the request context.
func (n *node) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, secret, ok := r.BasicAuth()
		if !ok {
			if bearer, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
				if tok, err := ParseToken(bearer); err == nil {
					user, secret, ok = tok.Username, tok.Secret, true
					if user == "" {
						user = "server"
					}
				}
			}
		}
		// The node password is the agent-token when the servers have one,
		// else the server token; the server token authenticates as server.
		want := n.secret
		if user == "node" && n.agentSecret != "" {
			want = n.agentSecret
		}
		if !ok || (user != "server" && user != "node") ||
			subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
			if r.Method != http.MethodGet {
				n.log.Warn("unauthorized request refused", zap.String("method", r.Method), zap.String("path", r.URL.Path),
					zap.String("remote", r.RemoteAddr), zap.String("user", user))
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="rke2"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	})
}

// limit caps requests in flight like k3s's supervisor (about 20 reads and
// 10 writes); beyond that it answers 429 and clients retry.
func (n *node) limit(next http.Handler) http.Handler {
	reads, writes := make(chan struct{}, 20), make(chan struct{}, 10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sem := reads
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			sem = writes
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Too Many Requests", http.StatusTooManyRequests)
		}
	})
}

// duplicateName says whether name is already a member or an agent at
// another address: k3s refuses a second node with the same name.
func (n *node) duplicateName(name, url string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.ds.Members {
		if m.Name == name && m.URL != url {
			return true
		}
	}
	if a, ok := n.agents[name]; ok && a != url {
		return true
	}
	return false
}

func (n *node) handleJoin(w http.ResponseWriter, r *http.Request) {
	if !n.ready.Load() {
		http.Error(w, "server is not ready", http.StatusServiceUnavailable)
		return
	}
	var jr joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&jr); err != nil || jr.Name == "" || !strings.HasPrefix(jr.URL, "https://") {
		http.Error(w, "bad join request", http.StatusBadRequest)
		return
	}
	log := n.log.With(zap.String("joiner", jr.Name), zap.String("joiner-url", jr.URL), zap.String("mode", jr.Mode))
	resp := joinResponse{ClusterID: n.ds.ClusterID, CACert: n.ca.CertPEM}
	// A server's name is checked against the etcd members (k3s's words, in
	// addLearner); an agent by its node password (RKE2's check), then
	// against the nodes known here.
	switch jr.Mode {
	case ModeAgent:
		reg := nodeRegistration{Name: jr.Name, Address: hostOf(jr.URL), Password: jr.Password, Version: jr.Version,
			WorkloadPods: min(max(jr.WorkloadPods, 0), maxPodCount), PDBRefusals: min(max(jr.PDBRefusals, 0), maxPodCount)}
		if err := n.kv().registerNode(r.Context(), reg, n.now()); errors.Is(err, errNodePassword) {
			log.Warn("agent refused", zap.String("reason", reasonNodePassword))
			http.Error(w, reasonNodePassword, http.StatusForbidden)
			return
		} else if err != nil {
			log.Warn("cannot register agent node", zap.Error(err))
			http.Error(w, "cannot register node: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if n.duplicateName(jr.Name, jr.URL) {
			reason := fmt.Sprintf("duplicate node name found: %s is already a node of this cluster at another address", jr.Name)
			log.Warn("join refused", zap.String("reason", reason))
			http.Error(w, reason, http.StatusConflict)
			return
		}
		resp.ServerVersions = n.serverVersions(r.Context())
		n.mu.Lock()
		if n.agents == nil {
			n.agents = map[string]string{}
		}
		n.agents[jr.Name] = jr.URL
		n.mu.Unlock()
		resp.Members = n.members()
		log.Info("agent registered")
		writeJSON(w, http.StatusOK, resp)
		return
	case ModeJoin:
	default:
		http.Error(w, "bad join mode", http.StatusBadRequest)
		return
	}
	if r.Context().Value(userKey{}) != "server" {
		log.Warn("join refused: a node token cannot join a server")
		http.Error(w, "Unauthorized: a node token cannot join a server", http.StatusUnauthorized)
		return
	}
	for _, k := range criticalKeys {
		if mine, theirs := n.cfg.Critical[k], jr.Critical[k]; mine != theirs {
			reason := fmt.Sprintf("critical configuration value mismatch between servers: %s is %q on %s, %q on %s", k, mine, n.cfg.NodeName, theirs, jr.Name)
			log.Warn("join refused", zap.String("reason", reason))
			http.Error(w, reason, http.StatusConflict)
			return
		}
	}
	if jr.Member == "" || nodeNameOf(jr.Member) != jr.Name || !strings.HasPrefix(jr.PeerURL, "http") {
		http.Error(w, "bad join request: member name <node-name>-<8 hex> and etcd peer URL required", http.StatusBadRequest)
		return
	}
	var initial string
	var err error
	if !n.quorum.Load() {
		err = errors.New("etcdserver: unhealthy cluster")
	} else {
		initial, err = n.addLearner(r.Context(), jr.Member, jr.PeerURL)
	}
	if err != nil {
		reason := err.Error()
		if isRetriedJoinError(reason) {
			log.Info("join refused by etcd (the joiner retries)", zap.String("reason", reason))
			w.Header().Set("Retry-After", "1")
		} else {
			if !strings.HasPrefix(reason, "etcd cluster join failed") {
				reason = "etcd cluster join failed: " + reason
			}
			log.Warn("join refused", zap.String("reason", reason))
		}
		http.Error(w, reason, http.StatusConflict)
		return
	}
	log.Info("etcd learner added", zap.String("member", jr.Member), zap.String("peer", jr.PeerURL))
	members := n.addMember(Member{Name: jr.Name, URL: jr.URL})
	for _, m := range members {
		if m.Name == n.cfg.NodeName || m.Name == jr.Name {
			continue
		}
		if err := n.memberCall(r.Context(), m, http.MethodPost, "/v1-rke2/sim/member", Member{Name: jr.Name, URL: jr.URL}, nil); err != nil {
			log.Warn("cannot tell member about the new member (it learns on sync)", zap.String("member", m.Name), zap.Error(err))
		}
	}
	resp.CAKey = n.ca.KeyPEM
	resp.Members = members
	resp.InitialCluster = initial
	writeJSON(w, http.StatusOK, resp)
}

// decodeMemberRequest admits only the server user (members talk with the
// server token) and decodes the JSON body into v; false means it answered.
func decodeMemberRequest(w http.ResponseWriter, r *http.Request, v any, valid func() bool) bool {
	if r.Context().Value(userKey{}) != "server" {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return false
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(v); err != nil || !valid() {
		http.Error(w, "bad request", http.StatusBadRequest)
		return false
	}
	return true
}

func (n *node) handleMemberAdd(w http.ResponseWriter, r *http.Request) {
	var m Member
	if !decodeMemberRequest(w, r, &m, func() bool { return m.Name != "" && strings.HasPrefix(m.URL, "https://") }) {
		return
	}
	n.addMember(m)
	writeJSON(w, http.StatusOK, n.members())
}

func (n *node) members() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Member(nil), n.ds.Members...)
}

// addMember merges members into the list and persists it when it changed.
func (n *node) addMember(ms ...Member) []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	merged := mergeMembers(n.ds.Members, ms)
	if !equalMembers(merged, n.ds.Members) {
		n.ds.Members = merged
		if err := WriteDatastore(n.cfg.DataDir, n.ds); err != nil {
			n.log.Error("cannot persist member list", zap.Error(err))
		}
	}
	return append([]Member(nil), n.ds.Members...)
}

// mergeMembers is the union by name; a later entry's URL wins.
func mergeMembers(a, b []Member) []Member {
	byName := map[string]Member{}
	for _, m := range append(append([]Member(nil), a...), b...) {
		byName[m.Name] = m
	}
	out := make([]Member, 0, len(byName))
	for _, m := range byName {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func equalMembers(a, b []Member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// syncMembers pulls every member's list now and then, so a member that
// missed an add (it was down) catches up.
func (n *node) syncMembers(ctx context.Context) {
	for {
		for _, m := range n.members() {
			if m.Name == n.cfg.NodeName {
				continue
			}
			var theirs []Member
			if err := n.memberCall(ctx, m, http.MethodGet, "/v1-rke2/sim/members", nil, &theirs); err == nil {
				n.addMember(theirs...)
			}
		}
		if sleep(ctx, 5*time.Second) != nil {
			return
		}
	}
}

// memberCall is one authenticated, CA-verified request to another member.
func (n *node) memberCall(ctx context.Context, m Member, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, m.URL+path, body)
	if err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	req.SetBasicAuth("server", n.secret)
	c := verifiedClient(n.ca.Pool(), 3*time.Second)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("member %s: %s %s: %s", m.Name, method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	return nil
}

// serverTLS is the listeners' TLS: the serving certificate, and client
// certificates signed by the cluster CA verified when given (the admin
// kubeconfig's); token clients give none.
func (n *node) serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: n.ca.Pool()}
}

// serveTLS serves h on ln until ctx ends; request contexts end with it.
func serveTLS(ctx context.Context, ln net.Listener, h http.Handler, tc *tls.Config, log *zap.Logger) {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          stdLogger(log.Named("http").With(zap.String("listen", ln.Addr().String()))),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve", zap.String("listen", ln.Addr().String()), zap.Error(err))
		}
	}()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = srv.Close()
	<-done
}
