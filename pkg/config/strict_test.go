package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
)

// agentTok is an agent token of validServer's token in cluster rke2, as
// `rke2-hanode token generate` makes them: the server-claims fingerprint,
// then a secret.
var agentTok = func() string {
	fp, err := claims.FingerprintFromServerToken("s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "rke2")
	if err != nil {
		panic(err)
	}
	return fp + ".agent-Yq7Rw2Lp9Zk4Xv8Nc3Bm6Hj5Tf1Ds0Ga"
}()

const validAgent = "role: agent\nnode-name: w1\njoin: [10.0.0.1]\nvip: 10.0.0.200\ninterface: eth0\n"

func withToken(body, token string) string {
	return strings.Replace(body, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "token: '"+token+"'", 1)
}

func wantProblem(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a problem containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error does not contain %q:\n%v", p, err)
		}
	}
}

func TestTokenShapeAsK3sReadsIt(t *testing.T) {
	hash := strings.Repeat("0123456789abcdef", 4)
	for _, tok := range []string{
		"plain-s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h",
		"K10" + hash + "::server:s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h",
		"K10::server:s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h",
		"K10" + hash + "::node:s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h:with:colons",
	} {
		if _, err := load(t, withToken(validServer, tok)); err != nil {
			t.Errorf("token %q refused: %v", tok, err)
		}
	}
	for tok, want := range map[string]string{
		"K10abc": "invalid token format",
		"K10abc::server:s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h":                           "invalid token CA hash length",
		"K10" + hash + "0::server:s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h":                 "invalid token CA hash length",
		"K10" + strings.ToUpper(hash) + "::server:s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h": "lower-case hex",
		"K10" + hash + "::server:":                                                     "invalid token format",
		"K10" + hash + "::server":                                                      "invalid token format",
		"K10" + hash + "::abcdef.0123456789abcdef":                                     "bootstrap token",
	} {
		_, err := load(t, withToken(validServer, tok))
		wantProblem(t, err, want, "  - token (", "give the bare secret", "config.yaml:3")
		if strings.Contains(err.Error(), tok) {
			t.Errorf("the error shows the token: %v", err)
		}
	}
	// An agent's bootstrap token has the right shape, but its 16-character
	// secret is too weak to key gossip, which the agent's token also does.
	_, err := load(t, validAgent+"token: K10"+hash+"::abcdef.0123456789abcdef\n")
	wantProblem(t, err, "too weak")
	// A token file is named with its path.
	dir := t.TempDir()
	tf := writeConf(t, dir, "token", "K10abc\n", 0o600)
	_, err = load(t, strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "token-file: "+tf, 1))
	wantProblem(t, err, "token-file = \""+tf+"\"", "the token in "+tf+": invalid token format")
}

func TestAgentToken(t *testing.T) {
	c, err := load(t, validServer+"agent-token: "+agentTok+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Secret() != "s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h" || c.AgentSecret() != agentTok || c.GossipSecret() != agentTok {
		t.Errorf("secret %q agent %q gossip %q", c.Secret(), c.AgentSecret(), c.GossipSecret())
	}
	for _, w := range c.Warnings() {
		if strings.Contains(w, "single-token") {
			t.Errorf("warned of the single-token set-up with an agent token: %s", w)
		}
	}

	// The single-token set-up: gossip from the token, and a plain warning.
	c, err = load(t, validServer)
	if err != nil {
		t.Fatal(err)
	}
	if c.AgentSecret() != "" || c.GossipSecret() != "s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h" {
		t.Errorf("single token: agent %q gossip %q", c.AgentSecret(), c.GossipSecret())
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "every agent holds the server token") || !strings.Contains(w, "set agent-token") {
		t.Errorf("warnings = %q, want the single-token warning", w)
	}

	// An agent's token is its agent secret; agent-token is a server key.
	c, err = load(t, validAgent+"token: agent-Yq7Rw2Lp9Zk4Xv8Nc3Bm6Hj5Tf1Ds0Ga\n")
	if err != nil || c.GossipSecret() != "agent-Yq7Rw2Lp9Zk4Xv8Nc3Bm6Hj5Tf1Ds0Ga" || len(c.Warnings()) != 0 {
		t.Fatalf("agent: %v, gossip %q, warnings %q", err, c.GossipSecret(), c.Warnings())
	}
	_, err = load(t, validAgent+"token: agent-Yq7Rw2Lp9Zk4Xv8Nc3Bm6Hj5Tf1Ds0Ga\nagent-token: x\n")
	wantProblem(t, err, "agent-token", "on an agent, token (or token-file) holds the agent token")

	// The agent-token file follows the token file's rules.
	dir := t.TempDir()
	af := writeConf(t, dir, "agent", agentTok+"\n", 0o644)
	_, err = load(t, validServer+"agent-token-file: "+af+"\n")
	wantProblem(t, err, "agent-token-file", "chmod 600 "+af)
	os.Chmod(af, 0o600)
	if c, err = load(t, validServer+"agent-token-file: "+af+"\n"); err != nil || c.AgentSecret() != agentTok {
		t.Fatalf("agent-token-file: %v, %q", err, c.AgentSecret())
	}
	_, err = load(t, validServer+"agent-token-file: "+af+"\nagent-token: y\n")
	wantProblem(t, err, "agent-token and agent-token-file are both set")
	_, err = load(t, validServer+"agent-token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h\n")
	wantProblem(t, err, "agent-token", "same secret as the token")
	_, err = load(t, validServer+"agent-token: K10abc\n")
	wantProblem(t, err, "  - agent-token (", "invalid token format")

	// A config file holding the agent token must be private.
	p := writeConf(t, dir, "config.yaml", strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h\n", "agent-token: a\n", 1), 0o640)
	_, err = Load(LoadOptions{File: p, Env: []string{"RKE2_HANODE_TOKEN=s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h"}})
	wantProblem(t, err, p+" holds the cluster token", "chmod 600")
}

func TestPassthroughThatBreaksTheContractIsRefused(t *testing.T) {
	for body, want := range map[string]string{
		"rke2-config:\n  agent-token: x\n":                                 "use rke2-hanode's agent-token key",
		"rke2-config:\n  cluster-reset: true\n":                            "cluster-reset breaks what rke2-hanode guarantees",
		"rke2-config:\n  cluster-reset-restore-path: /s\n":                 "cluster-reset-restore-path breaks",
		"rke2-config:\n  cluster-init: true\n":                             "raft elects it",
		"rke2-config:\n  server: https://x:9345\n":                         "RKE2 key server breaks",
		"rke2-config:\n  token: x\n":                                       "RKE2 key token breaks",
		"rke2-config:\n  tls-san+: [x]\n":                                  "RKE2 key tls-san+ breaks",
		"rke2-config:\n  data-dir: /d\n":                                   "rke2-data-dir",
		"rke2-config:\n  disable: [rke2-ingress-nginx, kube-vip]\n":        "RKE2 deletes a disabled manifest's objects",
		"rke2-config:\n  disable: kube-vip.yaml\n":                         "disables kube-vip.yaml",
		"rke2-config:\n  profile: cis\n  protect-kernel-defaults: false\n": "RKE2 refuses to start a CIS profile",
	} {
		_, err := load(t, validServer+body)
		wantProblem(t, err, "rke2-config", want)
	}
	c, err := load(t, validServer+"rke2-config:\n  disable: [rke2-ingress-nginx]\n  cni: cilium\n  profile: cis\n")
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "etcd user and group") || !strings.Contains(w, "60-rke2-cis.conf") || !strings.Contains(w, "protect-kernel-defaults") {
		t.Errorf("profile warning = %q", w)
	}
}

func TestInstallScriptURL(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for body, want := range map[string]string{
		"install-script-url: http://mirror/install.sh\n":                      "install-script-sha256",
		"install-script-url: /opt/install.sh\n":                               "set install-script-sha256",
		"install-script-url: ftp://x/install.sh\n":                            "must be an https URL",
		"install-script-url: https://x/i.sh\ninstall-script-sha256: nothex\n": "must be a SHA-256",
	} {
		_, err := load(t, validServer+body)
		wantProblem(t, err, want)
	}
	for _, body := range []string{"", "install-script-url: http://mirror/install.sh\ninstall-script-sha256: " + sum + "\n",
		"install-script-url: /opt/install.sh\ninstall-script-sha256: " + strings.ToUpper(sum) + "\n"} {
		if _, err := load(t, validServer+body); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}

func TestConfigIntegrity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file another owner")
	}
	dir := t.TempDir()
	noToken := strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h\n", "", 1)
	env := []string{"RKE2_HANODE_TOKEN=s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h"}
	// World-writable, though it holds no token.
	p := writeConf(t, dir, "config.yaml", noToken, 0o646)
	_, err := Load(LoadOptions{File: p, Env: env})
	wantProblem(t, err, p+" has mode 0646, writable by group or others", "chmod go-w "+p)
	// Owned by another user.
	os.Chmod(p, 0o644)
	os.Chown(p, 4321, 4321)
	_, err = Load(LoadOptions{File: p, Env: env})
	wantProblem(t, err, p+" is owned by uid 4321", "chown root:root "+p)
	os.Chown(p, 0, 0)
	if _, err := Load(LoadOptions{File: p, Env: env}); err != nil {
		t.Fatal(err)
	}
	// A group-writable drop-in that would set install-script-url.
	drop := writeConf(t, dir, "config.yaml.d/50-x.yaml", "install-script-url: https://evil/x.sh\n", 0o664)
	c, err := Load(LoadOptions{File: p, Env: env})
	wantProblem(t, err, drop+" has mode 0664")
	if c.InstallScriptURL != "https://get.rke2.io" {
		t.Errorf("the refused drop-in was read: install-script-url %s", c.InstallScriptURL)
	}
	os.Chmod(drop, 0o644)
	// A drop-in folder others may add files to.
	os.Chmod(filepath.Join(dir, "config.yaml.d"), 0o777)
	_, err = Load(LoadOptions{File: p, Env: env})
	wantProblem(t, err, filepath.Join(dir, "config.yaml.d")+" has mode 0777")
	os.Chmod(filepath.Join(dir, "config.yaml.d"), 0o755)
	// A config folder others may write to (sticky, as /tmp, is fine).
	os.Chmod(dir, 0o777)
	_, err = Load(LoadOptions{File: p, Env: env})
	wantProblem(t, err, "the folder of the config file has mode 0777", "chmod go-w "+dir)
	os.Chmod(dir, 0o777|os.ModeSticky)
	if _, err := Load(LoadOptions{File: p, Env: env}); err != nil {
		t.Errorf("sticky folder: %v", err)
	}
	os.Chmod(dir, 0o700)
	// A token file owned by another user.
	tf := writeConf(t, dir, "token", "secret\n", 0o600)
	os.Chown(tf, 4321, 4321)
	_, err = Load(LoadOptions{File: p, Env: []string{"RKE2_HANODE_TOKEN_FILE=" + tf}})
	wantProblem(t, err, "token-file", tf+" is owned by uid 4321")
}

func TestTokenOnTheCommandLineWarns(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--token", "s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h"}); err != nil {
		t.Fatal(err)
	}
	p := writeConf(t, t.TempDir(), "config.yaml", strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h\n", "", 1), 0o600)
	c, err := Load(LoadOptions{File: p, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "--token") || !strings.Contains(w, "token-file") || !strings.Contains(w, "RKE2_HANODE_TOKEN") || strings.Contains(w, "s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h") {
		t.Errorf("warnings = %q", w)
	}
}

func TestAgentTaintWarns(t *testing.T) {
	c, err := load(t, validAgent+"token: agent-Yq7Rw2Lp9Zk4Xv8Nc3Bm6Hj5Tf1Ds0Ga\nnode-taint: [CriticalAddonsOnly=true:NoExecute]\n")
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "CriticalAddonsOnly=true:NoExecute on an agent") || !strings.Contains(w, "no schedulable workers") {
		t.Errorf("warnings = %q", w)
	}
	c, err = load(t, validAgent+"token: agent-Yq7Rw2Lp9Zk4Xv8Nc3Bm6Hj5Tf1Ds0Ga\nnode-taint: [gpu=true:PreferNoSchedule]\n")
	if err != nil || len(c.Warnings()) != 0 {
		t.Errorf("PreferNoSchedule: %v, %q", err, c.Warnings())
	}
	c, err = load(t, validServer+"agent-token: "+agentTok+"\nnode-taint: [CriticalAddonsOnly=true:NoExecute]\n")
	if err != nil || len(c.Warnings()) != 0 {
		t.Errorf("server taint: %v, %q", err, c.Warnings())
	}
}

// TestAgentTokenCarriesTheFingerprint: agents verify the servers' claims
// with the fingerprint in their agent token, so a server refuses an agent
// token without one, or with another key's, and a single token shaped like
// an agent token.
func TestAgentTokenCarriesTheFingerprint(t *testing.T) {
	_, err := load(t, validServer+"agent-token: hand-made-Yq7Rw2Lp9Zk4Xv8Nc3Bm6Hj5Tf1Ds0Ga\n")
	wantProblem(t, err, "agent-token", "carries no server-claims fingerprint", "rke2-hanode token generate --cluster-name rke2")
	other, err := claims.Generate("rke2")
	if err != nil {
		t.Fatal(err)
	}
	_, err = load(t, validServer+"agent-token: "+other.Agent+"\n")
	wantProblem(t, err, "agent-token", "does not belong to the token", "rke2-hanode token generate")
	if strings.Contains(err.Error(), other.Agent) {
		t.Errorf("the error shows the agent token: %v", err)
	}
	// the same tokens in another cluster: the fingerprint depends on its name
	_, err = load(t, validServer+"cluster-name: prod\nagent-token: "+agentTok+"\n")
	wantProblem(t, err, "agent-token", "does not belong to the token", "--cluster-name prod")
	_, err = load(t, withToken(validServer, other.Agent))
	wantProblem(t, err, "token", "looks like an agent token")
	// an agent holds only the agent token: nothing to compare it with
	if _, err := load(t, validAgent+"token: "+other.Agent+"\n"); err != nil {
		t.Fatalf("agent: %v", err)
	}
}

func TestWeakAgentTokenRefused(t *testing.T) {
	_, err := load(t, validServer+"agent-token: agent-secret\n")
	wantProblem(t, err, "agent-token", "too weak", "rke2-hanode token generate")
	if strings.Contains(err.Error(), "agent-secret") {
		t.Errorf("the error shows the agent token: %v", err)
	}
}
