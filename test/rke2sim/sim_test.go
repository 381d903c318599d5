package rke2sim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterInitTwiceGivesTwoCAs(t *testing.T) {
	a := startSim(t, simSpec{config: "node-ip: " + addr(1, 1) + "\ntoken: shared-secret\n"})
	b := startSim(t, simSpec{config: "node-ip: " + addr(1, 2) + "\ntoken: shared-secret\n"})
	a.waitReady()
	b.waitReady()
	sa, sb := a.state(), b.state()
	if sa.Mode != ModeClusterInit || sb.Mode != ModeClusterInit {
		t.Fatalf("modes %q %q, want cluster-init twice", sa.Mode, sb.Mode)
	}
	if sa.CAHash == sb.CAHash || sa.CAHash == "" {
		t.Fatalf("two cluster-inits share CA hash %q", sa.CAHash)
	}
	for _, r := range []*simRun{a, b} {
		if fi, err := os.Stat(filepath.Join(r.dataDir, "server", "db", "etcd")); err != nil || !fi.IsDir() {
			t.Fatalf("no datastore folder: %v", err)
		}
		// The secure token's hash is SHA-256 of /cacerts as served.
		ip := addr(1, 1)
		if r == b {
			ip = addr(1, 2)
		}
		code, body, hdr, err := get(supURL(ip)+"/cacerts", nil, "", "")
		if err != nil || code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
			t.Fatalf("/cacerts: %d %v %q", code, err, hdr.Get("Content-Type"))
		}
		tok, err := ParseToken(r.token())
		if err != nil {
			t.Fatal(err)
		}
		if tok.CAHash != HashCACerts([]byte(body)) || tok.Secret != "shared-secret" || tok.Username != "server" {
			t.Fatalf("token %+v does not match /cacerts hash %s", tok, HashCACerts([]byte(body)))
		}
		pool := poolFromPEM(t, []byte(body))
		if code, body, hdr, err := get(supURL(ip)+"/ping", pool, "", ""); err != nil || code != 200 || body != "pong" || hdr.Get("Content-Type") != "text/plain" {
			t.Fatalf("/ping: %d %q %v", code, body, err)
		}
		if code, _, _, err := get(supURL(ip)+"/v1-rke2/readyz", pool, "", ""); err != nil || code != 401 {
			t.Fatalf("readyz without token: %d %v, want 401", code, err)
		}
		if code, _, _, _ := get(supURL(ip)+"/v1-rke2/readyz", pool, "node", "wrong"); code != 401 {
			t.Fatalf("readyz with wrong secret: %d, want 401", code)
		}
		if code, body, _, err := get(supURL(ip)+"/v1-rke2/readyz", pool, "node", "shared-secret"); err != nil || code != 200 || body != "ok" {
			t.Fatalf("readyz: %d %q %v", code, body, err)
		}
		if code, body, _, err := get("https://"+ip+":"+testAPIPort+"/readyz", pool, "server", "shared-secret"); err != nil || code != 200 || body != "ok" {
			t.Fatalf("apiserver readyz: %d %q %v", code, body, err)
		}
		if code, body, _, err := get(supURL(ip)+"/v1-rke2/apiservers", pool, "server", "shared-secret"); err != nil || code != 200 || strings.TrimSpace(body) != `["`+ip+`:`+testAPIPort+`"]` {
			t.Fatalf("apiservers: %d %q %v", code, body, err)
		}
		if fi, err := os.Stat(filepath.Join(filepath.Dir(r.cfgPath), "rke2.yaml")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("kubeconfig beside the config: %v", err)
		}
	}
}

// Three servers started at once, as an operator who ignores RKE2's advice
// would: etcd admits one learner at a time, the second joiner is refused by
// etcd itself, records it, retries every second as current k3s does, and the
// cluster ends with three voters and no learner.
func TestServersStartedAtOnceMakeOneEtcdOfThreeVoters(t *testing.T) {
	// A learner phase longer than a timed-out add (two adds at the same
	// moment), so that the retry meets the other learner.
	env := map[string]string{"RKE2SIM_JOIN_DELAY": "8s"}
	cfg := func(host int, name string, join bool) string {
		c := []string{"node-ip: " + addr(2, host), "node-name: " + name, "token: s3cret"}
		if join {
			c = append(c, "server: "+supURL(addr(2, 1)))
		}
		return strings.Join(c, "\n")
	}
	a := startSim(t, simSpec{config: cfg(1, "a", false), env: env})
	b := startSim(t, simSpec{config: cfg(2, "b", true), env: env})
	c := startSim(t, simSpec{config: cfg(3, "c", true), env: env})
	for _, r := range []*simRun{a, b, c} {
		r.waitReady()
	}
	sa, sb, sc := a.state(), b.state(), c.state()
	if sa.Mode != ModeClusterInit || sb.Mode != ModeJoin || sc.Mode != ModeJoin || sb.CAHash != sa.CAHash || sc.CAHash != sa.CAHash {
		t.Fatalf("states a=%+v b=%+v c=%+v", sa, sb, sc)
	}
	// Every member's state.json ends with the same three voters.
	for _, r := range []*simRun{a, b, c} {
		eventually(t, 30*time.Second, "three voters in "+r.dataDir, func() bool {
			e := r.state().Etcd
			if len(e.Members) != 3 || e.Leader == "" || e.Revision < 1 {
				return false
			}
			for _, m := range e.Members {
				if m.Learner || m.Name == "" || !strings.HasPrefix(m.PeerURL, "http://127.42.2.") {
					return false
				}
			}
			return true
		})
	}
	for _, m := range a.state().Etcd.Members {
		if nodeNameOf(m.Name) == m.Name || len(m.Name) != len(nodeNameOf(m.Name))+9 {
			t.Fatalf("member name %q is not <node-name>-<8 hex>", m.Name)
		}
	}
	// Exactly one joiner was turned away by etcd, with etcd's words, and got in later.
	var refused []Rejection
	var first, second Evidence
	for _, st := range []Evidence{b.state(), c.state()} {
		if len(st.Rejections) > 0 {
			refused, second = st.Rejections, st
		} else {
			first = st
		}
	}
	if len(refused) == 0 {
		t.Fatalf("no joiner recorded a refusal: b=%+v c=%+v", b.state().Rejections, c.state().Rejections)
	}
	// etcd says "too many learner members" while the first is a learner, may
	// say "unhealthy cluster" for a few seconds after its promotion, and two
	// adds at the very same moment leave one to time out (in either of
	// etcd's two words for a timed-out proposal).
	tooMany := 0
	for _, r := range refused {
		switch r.Reason {
		case "etcdserver: too many learner members in cluster":
			tooMany++
		case "etcdserver: unhealthy cluster", "etcdserver: request timed out", "etcdserver: request timed out, possibly due to connection lost":
		default:
			t.Fatalf("rejection %q, want only refusals k3s retries", r.Reason)
		}
	}
	if tooMany == 0 {
		t.Fatalf("no \"too many learner members\" from etcd among %+v", refused)
	}
	if first.JoinFinished == "" || second.JoinStarted == "" {
		t.Fatalf("join times missing: %+v %+v", first, second)
	}
	firstEnd, _ := time.Parse(time.RFC3339Nano, first.JoinFinished)
	secondStart, _ := time.Parse(time.RFC3339Nano, second.JoinStarted)
	lastRefusal, _ := time.Parse(time.RFC3339Nano, refused[len(refused)-1].At)
	if secondStart.Before(lastRefusal) {
		t.Fatalf("second learner added at %s before its last refusal at %s", second.JoinStarted, refused[len(refused)-1].At)
	}
	if secondStart.Before(firstEnd.Add(-time.Second)) {
		t.Fatalf("learner phases overlap: first promoted %s, second added %s", first.JoinFinished, second.JoinStarted)
	}

	// Two of three gone: no quorum, and both readyz answer 503.
	pool := poolFromPEM(t, mustGet(t, supURL(addr(2, 1))+"/cacerts"))
	if code, _, _, err := get(supURL(addr(2, 1))+"/v1-rke2/readyz", pool, "node", "s3cret"); err != nil || code != 200 {
		t.Fatalf("readyz with quorum: %d %v", code, err)
	}
	b.stop()
	c.stop()
	eventually(t, 30*time.Second, "readyz 503 without quorum", func() bool {
		code, _, _, err := get(supURL(addr(2, 1))+"/v1-rke2/readyz", pool, "node", "s3cret")
		return err == nil && code == 503
	})
	if code, _, _, err := get("https://"+addr(2, 1)+":"+testAPIPort+"/readyz", pool, "server", "s3cret"); err != nil || code != 503 {
		t.Fatalf("apiserver readyz without quorum: %d %v, want 503", code, err)
	}
	// One back: quorum again.
	b2 := startSim(t, simSpec{dataDir: b.dataDir, config: cfg(2, "b", true), env: env})
	b2.waitReady()
	eventually(t, 30*time.Second, "readyz 200 with quorum back", func() bool {
		code, _, _, err := get(supURL(addr(2, 1))+"/v1-rke2/readyz", pool, "node", "s3cret")
		return err == nil && code == 200
	})

	// A cold start: every server down, then a joined server boots alone.
	// As k3s does (its supervisor listens before the managed etcd starts),
	// it answers /ping and /cacerts at once while its etcd waits for a
	// quorum: readyz 503, no READY=1, and server: is not used to join again.
	a.stop()
	b2.stop()
	c2 := startSim(t, simSpec{dataDir: c.dataDir, config: cfg(3, "c", true), env: env})
	eventually(t, 30*time.Second, "the lone restarted joiner answers /ping", func() bool {
		code, body, _, err := get(supURL(addr(2, 3))+"/ping", nil, "", "")
		return err == nil && code == 200 && body == "pong"
	})
	if got := mustGet(t, supURL(addr(2, 3))+"/cacerts"); HashCACerts(got) != sa.CAHash {
		t.Fatalf("the lone restarted joiner serves CA hash %s, the cluster's is %s", HashCACerts(got), sa.CAHash)
	}
	if code, _, _, err := get(supURL(addr(2, 3))+"/v1-rke2/readyz", pool, "node", "s3cret"); err != nil || code != 503 {
		t.Fatalf("the lone restarted joiner's readyz: %d %v, want 503 without quorum", code, err)
	}
	select {
	case <-c2.ready:
		t.Fatal("the lone restarted joiner sent READY=1 without an etcd quorum")
	case <-time.After(2 * time.Second):
	}
	// A second server back: quorum, both ready, the same cluster.
	a2 := startSim(t, simSpec{dataDir: a.dataDir, config: cfg(1, "a", false), env: env})
	a2.waitReady()
	c2.waitReady()
	if got := c2.state(); got.Mode != ModeJoin || got.JoinStarted != sc.JoinStarted || got.JoinFinished != sc.JoinFinished {
		t.Fatalf("joiner after the cold start %+v, before %+v", got, sc)
	}
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	code, body, _, err := get(url, nil, "", "")
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v", url, code, err)
	}
	return []byte(body)
}

func TestJoinRefusals(t *testing.T) {
	a := startSim(t, simSpec{config: "node-ip: " + addr(3, 1) + "\nnode-name: first\ntoken: right\ncluster-cidr: 10.42.0.0/16\n"})
	a.waitReady()
	tok, _ := ParseToken(a.token())
	wrongHash := strings.Repeat("ab", 32)
	cases := []struct {
		name, role, extra, wantReason string
	}{
		{"wrong short token", "server", "token: wrong\ncluster-cidr: 10.42.0.0/16", "token rejected by"},
		{"CA hash mismatch", "server", "token: " + SecureToken(wrongHash, "server", "right") + "\ncluster-cidr: 10.42.0.0/16", "token CA hash does not match the Cluster CA certificate hash"},
		{"critical config mismatch", "server", "token: right\ncluster-cidr: 10.99.0.0/16", "critical configuration value mismatch between servers: cluster-cidr"},
		{"no token", "server", "cluster-cidr: 10.42.0.0/16", "token is required"},
		{"duplicate node name", "server", "token: right\ncluster-cidr: 10.42.0.0/16\nnode-name: first", reasonDuplicateName},
		{"node token joins a server", "server", "token: " + SecureToken(tok.CAHash, "node", tok.Secret) + "\ncluster-cidr: 10.42.0.0/16", "token rejected by"},
		{"agent wrong token", "agent", "token: wrong", "token rejected by"},
		{"agent CA hash mismatch", "agent", "token: " + SecureToken(wrongHash, "node", tok.Secret), "token CA hash does not match"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := "node-ip: " + addr(3, 10+i) + "\nserver: " + supURL(addr(3, 1)) + "\n" + tc.extra
			if !strings.Contains(tc.extra, "node-name") {
				cfg += fmt.Sprintf("\nnode-name: j%d", i)
			}
			j := startSim(t, simSpec{role: tc.role, config: cfg})
			if code := j.waitExit(); code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			st := j.state()
			if len(st.Rejections) != 1 || !strings.Contains(st.Rejections[0].Reason, tc.wantReason) {
				t.Fatalf("rejections %+v, want one containing %q", st.Rejections, tc.wantReason)
			}
			if !strings.Contains(j.log.String(), tc.wantReason) {
				t.Fatalf("log does not say %q:\n%s", tc.wantReason, j.log.String())
			}
			if HasDatastore(j.dataDir) {
				t.Fatal("refused joiner has a datastore")
			}
		})
	}
}

func TestAgentRegisters(t *testing.T) {
	a := startSim(t, simSpec{config: "node-ip: " + addr(4, 1) + "\ntoken: tok\n"})
	a.waitReady()
	ag := startSim(t, simSpec{role: "agent", config: "node-ip: " + addr(4, 2) + "\nnode-name: w1\nserver: " + supURL(addr(4, 1)) + "\ntoken: " + a.token()})
	ag.waitReady()
	st := ag.state()
	if st.Mode != ModeAgent || st.CAHash != a.state().CAHash || st.JoinedVia != supURL(addr(4, 1)) || st.JoinFinished == "" {
		t.Fatalf("agent state %+v", st)
	}
	if !strings.Contains(a.log.String(), "agent registered") {
		t.Fatal("server did not log the agent")
	}
}

func TestStateAfterRestarts(t *testing.T) {
	ip := addr(5, 1)
	a := startSim(t, simSpec{config: "node-ip: " + ip + "\ntoken: one\n"})
	a.waitReady()
	first := a.state()
	a.stop()
	// A different token against the existing datastore is refused and recorded.
	bad := startSim(t, simSpec{dataDir: a.dataDir, config: "node-ip: " + ip + "\ntoken: two\n"})
	if code := bad.waitExit(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	// The secure token and server: pointing at itself are fine: server: is ignored.
	again := startSim(t, simSpec{dataDir: a.dataDir, config: "node-ip: " + ip + "\ntoken: " + a.token() + "\nserver: " + supURL(addr(5, 9)) + "\n"})
	again.waitReady()
	st := again.state()
	if st.Mode != ModeClusterInit || st.CAHash != first.CAHash || st.JoinedVia != "" {
		t.Fatalf("after restart %+v, first %+v", st, first)
	}
	if len(st.Rejections) != 1 || !strings.Contains(st.Rejections[0].Reason, "different token") {
		t.Fatalf("rejections %+v", st.Rejections)
	}
	if _, err := time.Parse(time.RFC3339Nano, st.Rejections[0].At); err != nil {
		t.Fatalf("rejection time: %v", err)
	}
	// A host with its own datastore pointed at another cluster is refused.
	other := startSim(t, simSpec{config: "node-ip: " + addr(5, 2) + "\ntoken: other\n"})
	other.waitReady()
	other.stop()
	moved := startSim(t, simSpec{dataDir: other.dataDir, config: "node-ip: " + addr(5, 2) + "\ntoken: other\nserver: " + supURL(ip) + "\n"})
	if code := moved.waitExit(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if r := moved.state().Rejections; len(r) != 1 || !strings.Contains(r[0].Reason, "datastore of another cluster") {
		t.Fatalf("rejections %+v", r)
	}
	if moved.state().Mode != ModeClusterInit {
		t.Fatal("mode changed")
	}
	// A joined server restarts as a member of the same cluster.
	j := startSim(t, simSpec{config: "node-ip: " + addr(5, 3) + "\nnode-name: j\ntoken: " + again.token() + "\nserver: " + supURL(ip) + "\n"})
	j.waitReady()
	js := j.state()
	j.stop()
	j2 := startSim(t, simSpec{dataDir: j.dataDir, config: "node-ip: " + addr(5, 3) + "\nnode-name: j\ntoken: " + again.token() + "\nserver: " + supURL(ip) + "\n"})
	j2.waitReady()
	if got := j2.state(); got.Mode != ModeJoin || got.CAHash != js.CAHash || got.JoinStarted != js.JoinStarted || got.JoinedVia != js.JoinedVia {
		t.Fatalf("joined server after restart %+v, before %+v", got, js)
	}
}

func TestConfigDropInsAndAppend(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "config.yaml")
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(main, "token: a\ntls-san: [one]\nnode-ip: 10.0.0.1\nwrite-kubeconfig-mode: \"0644\"\n")
	write(filepath.Join(dir, "config.yaml.d", "20-b.yaml"), "tls-san+: [three]\ntoken: c\n")
	write(filepath.Join(dir, "config.yaml.d", "10-a.yaml"), "tls-san+: two\ntoken: b\nnode-taint: [\"CriticalAddonsOnly=true:NoExecute\"]\n")
	// RKE2 reads .yml drop-ins too, in one alphabetical order with .yaml.
	write(filepath.Join(dir, "config.yaml.d", "15-c.yml"), "tls-san+: [two-and-half]\ntoken: d\n")
	write(filepath.Join(dir, "config.yaml.d", "ignored.txt"), "token: nope\n")
	cfg, err := LoadConfig(main, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "c" || strings.Join(cfg.TLSSAN, ",") != "one,two,two-and-half,three" || cfg.NodeIP != "10.0.0.1" ||
		cfg.DataDir != DefaultDataDir || len(cfg.NodeTaint) != 1 || cfg.KubeconfigMode != 0o644 ||
		cfg.Kubeconfig != filepath.Join(dir, "rke2.yaml") {
		t.Fatalf("%+v", cfg)
	}
	bad := []struct{ name, body, want string }{
		{"not yaml", "token: [", "config:"},
		{"token list", "token: [a, b]", "token: want a string"},
		{"san number", "tls-san: [1]", "tls-san: want strings"},
		{"taint effect", "node-taint: [\"CriticalAddonsOnly=true:NoExec\"]", `invalid taint effect "NoExec"`},
		{"kubeconfig mode", "write-kubeconfig-mode: \"0999\"", "write-kubeconfig-mode"},
		{"taint without effect", "node-taint: CriticalAddonsOnly=true", "invalid taint spec"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			write(p, tc.body)
			if _, err := LoadConfig(p, true); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml"), true); err == nil {
		t.Fatal("an explicit missing --config must fail")
	}
}

func TestParseToken(t *testing.T) {
	hash := strings.Repeat("0f", 32)
	cases := []struct {
		in, wantErr string
		want        Token
	}{
		// Not K10: a bare password, whatever it holds.
		{in: "short", want: Token{Secret: "short"}},
		{in: "my:secret::x", want: Token{Secret: "my:secret::x"}},
		{in: "abcdef.0123456789abcdef", want: Token{Secret: "abcdef.0123456789abcdef", Bootstrap: true}},
		{in: "K10" + hash + "::server:sec", want: Token{CAHash: hash, Username: "server", Secret: "sec"}},
		{in: "K10" + hash + "::node:sec", want: Token{CAHash: hash, Username: "node", Secret: "sec"}},
		{in: "K10::server:sec", want: Token{Username: "server", Secret: "sec"}},
		{in: "K10" + hash + "::abcdef.0123456789abcdef", want: Token{CAHash: hash, Secret: "abcdef.0123456789abcdef", Bootstrap: true}},
		// The hash is kept as written (compared exactly later), not lower-cased.
		{in: "K10" + strings.ToUpper(hash) + "::server:sec", want: Token{CAHash: strings.ToUpper(hash), Username: "server", Secret: "sec"}},
		{in: "", wantErr: "token must not be empty"},
		{in: "K10abc::server:sec", wantErr: "invalid token CA hash length"},
		{in: "K10" + hash + "0::server:sec", wantErr: "invalid token CA hash length"},
		{in: "K10abc", wantErr: "invalid token format"},
		{in: "K10" + hash + "::server", wantErr: "invalid token format"},
		{in: "K10" + hash + "::server:", wantErr: "invalid token format"},
	}
	for _, tc := range cases {
		got, err := ParseToken(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("K10" + strings.Repeat("ab", 32) + "::server:x")
	f.Add("short")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil || tok.CAHash == "" || tok.Bootstrap {
			return
		}
		again, err := ParseToken(SecureToken(tok.CAHash, tok.Username, tok.Secret))
		if err != nil || again != tok {
			t.Fatalf("round trip of %q: %+v %v, want %+v", s, again, err, tok)
		}
	})
}
