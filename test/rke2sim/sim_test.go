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

func TestSecondJoinerDuringLearnerPhaseIsTurnedAway(t *testing.T) {
	env := map[string]string{"RKE2SIM_JOIN_DELAY": "3s"}
	a := startSim(t, simSpec{config: "node-ip: " + addr(2, 1) + "\ntoken: s3cret\nnode-name: a\n", env: env})
	a.waitReady()
	secure := a.token()
	join := func(host int, name string, dataDir string) *simRun {
		return startSim(t, simSpec{dataDir: dataDir, env: env, config: strings.Join([]string{
			"node-ip: " + addr(2, host), "node-name: " + name, "token: " + secure, "server: " + supURL(addr(2, 1)),
		}, "\n")})
	}
	b := join(2, "b", "")
	eventually(t, 30*time.Second, "b's learner phase", func() bool { return strings.Contains(a.log.String(), "learner phase started") })
	c := join(3, "c", "")
	if code := c.waitExit(); code == 0 {
		t.Fatal("second joiner exited 0 during another's learner phase")
	}
	if !strings.Contains(c.log.String(), reasonTooManyLearners) {
		t.Fatalf("joiner log does not say why:\n%s", c.log.String())
	}
	st := c.state()
	if len(st.Rejections) != 1 || st.Rejections[0].Reason != reasonTooManyLearners {
		t.Fatalf("rejections %+v, want one %q", st.Rejections, reasonTooManyLearners)
	}
	if HasDatastore(c.dataDir) {
		t.Fatal("a refused joiner left a datastore behind")
	}
	b.waitReady()
	// systemd would restart c: now it gets in, and the learner phases do not overlap.
	c2 := join(3, "c", c.dataDir)
	c2.waitReady()
	sb, sc := b.state(), c2.state()
	if sb.Mode != ModeJoin || sc.Mode != ModeJoin || sb.CAHash != a.state().CAHash || sc.CAHash != sb.CAHash {
		t.Fatalf("states b=%+v c=%+v", sb, sc)
	}
	if sb.JoinedVia != supURL(addr(2, 1)) {
		t.Fatalf("joined_via %q", sb.JoinedVia)
	}
	bEnd, _ := time.Parse(time.RFC3339Nano, sb.JoinFinished)
	cStart, _ := time.Parse(time.RFC3339Nano, sc.JoinStarted)
	if !cStart.After(bEnd) {
		t.Fatalf("learner phases overlap: b finished %s, c started %s", sb.JoinFinished, sc.JoinStarted)
	}
	if len(sc.Rejections) != 1 {
		t.Fatalf("rejections did not survive the restart: %+v", sc.Rejections)
	}
	ds, err := ReadDatastore(c2.dataDir)
	if err != nil || len(ds.Members) != 3 {
		t.Fatalf("c's members %+v %v, want a, b, c", ds.Members, err)
	}
	// A join served by a member other than the init server, while it is down.
	a.stop()
	d := startSim(t, simSpec{env: env, config: strings.Join([]string{
		"node-ip: " + addr(2, 4), "node-name: d", "token: " + secure, "server: " + supURL(addr(2, 2)),
	}, "\n")})
	d.waitReady()
	if d.state().CAHash != sb.CAHash {
		t.Fatal("d joined another CA")
	}
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
		{"duplicate node name", "server", "token: right\ncluster-cidr: 10.42.0.0/16\nnode-name: first", "duplicate node name found: first"},
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
	write(filepath.Join(dir, "config.yaml.d", "ignored.yml"), "token: nope\n")
	cfg, err := LoadConfig(main, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "c" || strings.Join(cfg.TLSSAN, ",") != "one,two,three" || cfg.NodeIP != "10.0.0.1" ||
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
		{in: "short", want: Token{Username: "server", Secret: "short"}},
		{in: "K10" + hash + "::server:sec", want: Token{CAHash: hash, Username: "server", Secret: "sec"}},
		{in: "K10" + hash + "::node:sec", want: Token{CAHash: hash, Username: "node", Secret: "sec"}},
		{in: "", wantErr: "empty"},
		{in: "K10abc::server:sec", wantErr: "64"},
		{in: "K10" + hash + "::server", wantErr: "secure form"},
		{in: "K10" + strings.Repeat("zz", 32) + "::server:x", wantErr: "not hex"},
	}
	for _, tc := range cases {
		got, err := ParseToken(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
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
		if err != nil || tok.CAHash == "" {
			return
		}
		again, err := ParseToken(SecureToken(tok.CAHash, tok.Username, tok.Secret))
		if err != nil || again != tok {
			t.Fatalf("round trip of %q: %+v %v, want %+v", s, again, err, tok)
		}
	})
}
