package rke2sim

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// What RKE2 refuses, rke2sim refuses, in RKE2's words, recorded in state.json.
func TestStrictTokenAndAgentTokenRefusals(t *testing.T) {
	a := startSim(t, simSpec{config: "node-ip: " + addr(7, 1) + "\nnode-name: first\ntoken: right\nagent-token: agent-secret\n"})
	a.waitReady()
	tok, _ := ParseToken(a.token())
	raw, err := os.ReadFile(filepath.Join(a.dataDir, "server", "agent-token"))
	if err != nil || strings.TrimSpace(string(raw)) != SecureToken(tok.CAHash, "node", "agent-secret") {
		t.Fatalf("server/agent-token %q %v", raw, err)
	}
	server := supURL(addr(7, 1))
	cases := []struct {
		name, role, token string
		want              string // "" : it gets in; else the exact start of the one rejection
	}{
		{"hash of the wrong length", "server", "K10abc::server:right", "invalid token CA hash length"},
		{"K10 without credentials", "server", "K10abc", "invalid token format"},
		{"empty password", "server", "K10" + tok.CAHash + "::server:", "invalid token format"},
		{"upper-case hash", "server", "K10" + strings.ToUpper(tok.CAHash) + "::server:right",
			"token CA hash does not match the Cluster CA certificate hash: " + strings.ToUpper(tok.CAHash) + " != " + tok.CAHash},
		{"agent with the server token", "agent", SecureToken(tok.CAHash, "server", "right"), "token rejected by " + server + ": 401 Unauthorized"},
		{"agent with the bare server password", "agent", "right", "token rejected by " + server + ": 401 Unauthorized"},
		{"agent with the agent-token", "agent", "agent-secret", ""},
		{"agent with the secure agent-token", "agent", SecureToken(tok.CAHash, "node", "agent-secret"), ""},
		{"server with the server token", "server", a.token(), ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf("node-ip: %s\nnode-name: j%d\nserver: %s\ntoken: %q\n", addr(7, 10+i), i, server, tc.token)
			if tc.role == "server" {
				cfg += "agent-token: agent-secret\n"
			}
			j := startSim(t, simSpec{role: tc.role, config: cfg})
			if tc.want == "" {
				j.waitReady()
				if r := j.state().Rejections; len(r) != 0 {
					t.Fatalf("rejections %+v", r)
				}
				return
			}
			if code := j.waitExit(); code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			r := j.state().Rejections
			if len(r) != 1 || !strings.HasPrefix(r[0].Reason, tc.want) {
				t.Fatalf("rejections %+v, want one starting %q", r, tc.want)
			}
		})
	}
}

func TestClusterInitRefusesAMalformedToken(t *testing.T) {
	for i, tc := range []struct{ token, want string }{
		{"K10abc", "invalid token format"},
		{"K10" + strings.Repeat("a", 63) + "::server:x", "invalid token CA hash length"},
		{"K10" + strings.Repeat("ab", 32) + "::server:x", "token CA hash does not match the Cluster CA certificate hash"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			s := startSim(t, simSpec{config: fmt.Sprintf("node-ip: %s\ntoken: %q\n", addr(8, 1+i), tc.token)})
			if code := s.waitExit(); code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			if r := s.state().Rejections; len(r) != 1 || !strings.HasPrefix(r[0].Reason, tc.want) {
				t.Fatalf("rejections %+v, want %q", r, tc.want)
			}
			if HasDatastore(s.dataDir) {
				t.Fatal("a refused cluster-init left a datastore")
			}
		})
	}
}

// Under systemd the units run `rke2 server` without --config: only the
// default file or RKE2_CONFIG_FILE is read.
func TestUnderSystemdOnlyTheUnitsConfigIsRead(t *testing.T) {
	unitData := t.TempDir()
	unitCfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(unitCfg, []byte("data-dir: "+unitData+"\nnode-ip: "+addr(9, 1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RKE2SIM_UNDER_SYSTEMD": "1", "RKE2_CONFIG_FILE": unitCfg}
	refused := startSim(t, simSpec{config: "node-ip: " + addr(9, 2) + "\ntoken: t\n", env: env})
	if code := refused.waitExit(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	st, err := ReadState(unitData)
	if err != nil {
		t.Fatal(err)
	}
	want := "--config " + refused.cfgPath + ": the rke2-server unit runs `rke2 server` without --config, so under systemd RKE2 reads only " + unitCfg
	if len(st.Rejections) != 1 || !strings.HasPrefix(st.Rejections[0].Reason, want) {
		t.Fatalf("rejections in the unit's data-dir %+v, want %q", st.Rejections, want)
	}
	if HasDatastore(refused.dataDir) || HasDatastore(unitData) {
		t.Fatal("a refused start made a datastore")
	}
	// The file RKE2_CONFIG_FILE names is read, under systemd too.
	ok := startSim(t, simSpec{config: "node-ip: " + addr(9, 3) + "\ntoken: t\n", env: map[string]string{"RKE2SIM_UNDER_SYSTEMD": "1"}, configEnv: true})
	ok.waitReady()
	// Outside systemd --config is fine (as `rke2 server --config` by hand).
	byHand := startSim(t, simSpec{config: "node-ip: " + addr(9, 4) + "\ntoken: t\n"})
	byHand.waitReady()
}

// RKE2SIM_CA=bundle: /cacerts serves intermediate + root, the hash is k3s's
// hashCA (the root's DER), and joiners and agents check it by that rule.
func TestBundleCAHashedAsK3s(t *testing.T) {
	env := map[string]string{"RKE2SIM_CA": "bundle"}
	a := startSim(t, simSpec{config: "node-ip: " + addr(10, 1) + "\nnode-name: a\ntoken: b-secret\n", env: env})
	a.waitReady()
	body := mustGet(t, supURL(addr(10, 1))+"/cacerts")
	// By hand: the self-signed certificate of the bundle, SHA-256 of its DER.
	var blocks []*x509.Certificate
	for rest := body; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, c)
	}
	if len(blocks) != 2 || blocks[0].Subject.String() == blocks[0].Issuer.String() || blocks[1].Subject.String() != blocks[1].Issuer.String() {
		t.Fatalf("/cacerts: want intermediate then root, got %d certificates", len(blocks))
	}
	sum := sha256.Sum256(blocks[1].Raw)
	want := hex.EncodeToString(sum[:])
	raw := sha256.Sum256(body)
	if want == hex.EncodeToString(raw[:]) {
		t.Fatal("root hash equals the raw hash")
	}
	tok, err := ParseToken(a.token())
	if err != nil || tok.CAHash != want || a.state().CAHash != want {
		t.Fatalf("token hash %s, state %s, hand-computed %s", tok.CAHash, a.state().CAHash, want)
	}
	b := startSim(t, simSpec{env: env, config: "node-ip: " + addr(10, 2) + "\nnode-name: b\ntoken: " + a.token() + "\nserver: " + supURL(addr(10, 1))})
	ag := startSim(t, simSpec{role: "agent", config: "node-ip: " + addr(10, 3) + "\nnode-name: w\ntoken: " + a.token() + "\nserver: " + supURL(addr(10, 1))})
	b.waitReady()
	ag.waitReady()
	if b.state().CAHash != want || ag.state().CAHash != want {
		t.Fatalf("joiner %s, agent %s, want %s", b.state().CAHash, ag.state().CAHash, want)
	}
	// The raw-bytes hash, which a one-certificate rule would give, is refused.
	bad := startSim(t, simSpec{role: "agent", config: "node-ip: " + addr(10, 4) + "\nnode-name: x\ntoken: " +
		SecureToken(hex.EncodeToString(raw[:]), "node", "b-secret") + "\nserver: " + supURL(addr(10, 1))})
	if code := bad.waitExit(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if r := bad.state().Rejections; len(r) != 1 || !strings.HasPrefix(r[0].Reason, "token CA hash does not match the Cluster CA certificate hash") {
		t.Fatalf("rejections %+v", r)
	}
}

func TestHashCACertsRule(t *testing.T) {
	single, err := NewCA(nowForTest())
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := NewBundleCA(nowForTest())
	if err != nil {
		t.Fatal(err)
	}
	rawSum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	root := bundle.certs[1]
	rootSum := sha256.Sum256(root.Raw)
	// A bundle whose first certificate does not verify against the rest: raw bytes.
	broken := append(append([]byte(nil), single.CertPEM...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})...)
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"one certificate", single.CertPEM, rawSum(single.CertPEM)},
		{"one certificate with a trailing newline", append(append([]byte(nil), single.CertPEM...), '\n'), rawSum(append(append([]byte(nil), single.CertPEM...), '\n'))},
		{"intermediate and root", bundle.CertPEM, hex.EncodeToString(rootSum[:])},
		{"unverifiable bundle", broken, rawSum(broken)},
		{"no certificate", []byte("garbage"), rawSum([]byte("garbage"))},
	} {
		if got := HashCACerts(tc.body); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func nowForTest() time.Time { return time.Now() }

// A learner that never catches up (here: added by hand, never started) is
// removed by the leader after RKE2SIM_LEARNER_STALL, as k3s removes one
// stalled for 5 minutes; meanwhile etcd turns a real joiner away.
func TestStalledLearnerIsRemoved(t *testing.T) {
	env := map[string]string{"RKE2SIM_LEARNER_STALL": "4s"}
	a := startSim(t, simSpec{config: "node-ip: " + addr(11, 1) + "\nnode-name: a\ntoken: st\n", env: env})
	a.waitReady()
	clientTLS, err := etcdTLSIn(a.dataDir).clientTLS()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + addr(11, 1) + ":22379"}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.MemberAddAsLearner(ctx, []string{"http://" + addr(11, 9) + ":22380"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the stalled learner in state.json", func() bool {
		e := a.state().Etcd
		return len(e.Members) == 2 && (e.Members[0].Learner || e.Members[1].Learner)
	})
	b := startSim(t, simSpec{config: "node-ip: " + addr(11, 2) + "\nnode-name: b\ntoken: st\nserver: " + supURL(addr(11, 1)), env: env})
	b.waitReady()
	if !strings.Contains(a.log.String(), "removing a learner stalled too long") {
		t.Fatal("the leader did not log the removal")
	}
	r := b.state().Rejections
	if len(r) == 0 || r[0].Reason != "etcdserver: too many learner members in cluster" {
		t.Fatalf("b's rejections %+v, want etcd's too many learner members first", r)
	}
	eventually(t, 10*time.Second, "two voters", func() bool {
		e := a.state().Etcd
		return len(e.Members) == 2 && !e.Members[0].Learner && !e.Members[1].Learner && e.Members[0].Name != "" && e.Members[1].Name != ""
	})
}
