package installer

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const testCAHash = "6bdf0a51aab0e0ec9f5eb3e4f15c1a0d6a8ad9e0d2f8c0ce36a2fca3e8d0b0c1"

func TestRenderConfigGolden(t *testing.T) {
	base := RenderOptions{
		NodeName: "node-1",
		NodeIP:   "192.168.205.11",
		VIP:      "192.168.205.200",
		Token:    "my-shared-secret",
		CAHash:   testCAHash,
		TLSSANs:  []string{"k8s.example.com", "192.168.205.200", "k8s.example.com", "10.0.0.1"},
	}
	tests := []struct {
		golden string
		edit   func(*RenderOptions)
	}{
		{"bootstrap.yaml", func(o *RenderOptions) { o.Case = Bootstrap; o.CAHash = "" }},
		{"join-server.yaml", func(o *RenderOptions) { o.Case = JoinServer }},
		{"agent.yaml", func(o *RenderOptions) { o.Case = Agent; o.TLSSANs = nil }},
		{"bootstrap-full.yaml", func(o *RenderOptions) {
			o.Case = Bootstrap
			o.NodeTaints = []string{"CriticalAddonsOnly=true:NoExecute"}
			o.RKE2DataDir = "/data/rke2/"
			o.AgentToken = "agent-secret"
			o.Extra = map[string]any{
				"cni":                     "canal",
				"write-kubeconfig-mode":   "0644",
				"disable":                 []string{"rke2-ingress-nginx"},
				"kube-apiserver-arg":      []any{"audit-log-maxage=30"},
				"etcd-snapshot-retention": 5,
				"node-label+":             []string{"zone=a"},
			}
		}},
		{"join-default-datadir.yaml", func(o *RenderOptions) {
			o.Case = JoinServer
			o.RKE2DataDir = DefaultRKE2DataDir + "/"
			o.NodeName = ""
			o.Token = SecureToken(testCAHash, "server", "my-shared-secret")
		}},
		// An agent joins as user node with its token (the agent secret).
		{"agent-node-token.yaml", func(o *RenderOptions) {
			o.Case = Agent
			o.TLSSANs = nil
			o.Token = "agent-secret"
			o.NodeTaints = []string{"gpu=true:PreferNoSchedule"}
		}},
		// A server with an agent token writes it as RKE2's agent-token.
		{"join-server-agent-token.yaml", func(o *RenderOptions) {
			o.Case = JoinServer
			o.AgentToken = "agent-secret"
		}},
		{"bootstrap-agent-token.yaml", func(o *RenderOptions) {
			o.Case = Bootstrap
			o.CAHash = ""
			o.AgentToken = "agent-secret"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			opts := base
			tc.edit(&opts)
			got, err := RenderConfig(opts)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := RenderConfig(opts)
			if !bytes.Equal(got, again) {
				t.Fatal("rendering is not deterministic")
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestRenderConfigGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from the golden file:\n--- got\n%s--- want\n%s", tc.golden, got, want)
			}
			var parsed map[string]any
			if err := yaml.Unmarshal(got, &parsed); err != nil {
				t.Fatalf("output is not YAML: %v", err)
			}
			checkSemantics(t, opts, parsed)
		})
	}
}

// checkSemantics reads the rendered config back, as RKE2 would.
func checkSemantics(t *testing.T, opts RenderOptions, cfg map[string]any) {
	t.Helper()
	server, hasServer := cfg["server"]
	switch opts.Case {
	case Bootstrap:
		if hasServer {
			t.Errorf("bootstrap config has server: %v", server)
		}
		if cfg["token"] != opts.Token {
			t.Errorf("bootstrap token = %v, want the short secret", cfg["token"])
		}
	default:
		if server != "https://"+opts.VIP+":9345" {
			t.Errorf("server = %v", server)
		}
		user := "server"
		if opts.Case == Agent {
			user = "node"
		}
		if want := SecureToken(testCAHash, user, opts.Token); cfg["token"] != want {
			t.Errorf("token = %v, want %s", cfg["token"], want)
		}
	}
	if opts.AgentToken != "" && cfg["agent-token"] != opts.AgentToken {
		t.Errorf("agent-token = %v, want %s", cfg["agent-token"], opts.AgentToken)
	}
	sans, _ := cfg["tls-san"].([]any)
	if opts.Case == Agent {
		if sans != nil {
			t.Errorf("agent config has tls-san %v", sans)
		}
	} else if len(sans) == 0 || sans[0] != opts.VIP {
		t.Errorf("tls-san = %v, want the VIP first", sans)
	}
	seen := map[any]bool{}
	for _, s := range sans {
		if seen[s] {
			t.Errorf("tls-san repeats %v", s)
		}
		seen[s] = true
	}
}

func TestRenderConfigErrors(t *testing.T) {
	good := RenderOptions{Case: JoinServer, VIP: "10.0.0.100", NodeIP: "10.0.0.1", Token: "s", CAHash: testCAHash}
	tests := []struct {
		name string
		edit func(*RenderOptions)
		want string
	}{
		{"no case", func(o *RenderOptions) { o.Case = 0 }, "unknown case 0"},
		{"bad vip", func(o *RenderOptions) { o.VIP = "vip.example" }, `vip "vip.example" is not an IP address`},
		{"bad node ip", func(o *RenderOptions) { o.NodeIP = "10.0.0" }, `node-ip "10.0.0" is not an IP address`},
		{"empty token", func(o *RenderOptions) { o.Token = "" }, "token is empty"},
		{"token newline", func(o *RenderOptions) { o.Token = "a\nb" }, "line break"},
		{"relative data dir", func(o *RenderOptions) { o.RKE2DataDir = "rke2" }, `rke2-data-dir "rke2" is not an absolute path`},
		{"owned key server", func(o *RenderOptions) { o.Extra = map[string]any{"server": "https://x:9345"} }, `rke2-config key "server" is set by rke2-hanode`},
		{"owned key append form", func(o *RenderOptions) { o.Extra = map[string]any{"tls-san+": []string{"x"}} }, `rke2-config key "tls-san+" is set by rke2-hanode`},
		{"owned key token-file", func(o *RenderOptions) { o.Extra = map[string]any{"token-file": "/x"} }, `"token-file"`},
		{"owned key data-dir", func(o *RenderOptions) { o.Extra = map[string]any{"data-dir": "/x"} }, `"data-dir"`},
		{"empty key", func(o *RenderOptions) { o.Extra = map[string]any{"": 1} }, "empty key"},
		{"joiner without CA hash", func(o *RenderOptions) { o.CAHash = "" }, "CA hash is required"},
		{"agent without CA hash", func(o *RenderOptions) { o.Case = Agent; o.CAHash = "" }, "render agent config: the cluster CA hash is required"},
		{"bad CA hash", func(o *RenderOptions) { o.CAHash = "abc" }, `CA hash "abc" is not 64 hex digits`},
		{"secure token for another CA", func(o *RenderOptions) {
			o.Token = SecureToken(strings.Repeat("0", 64), "server", "s")
		}, "token pins CA hash 0000"},
		{"owned key agent-token", func(o *RenderOptions) { o.Extra = map[string]any{"agent-token": "x"} }, `rke2-config key "agent-token" is set by rke2-hanode`},
		{"agent-token on an agent", func(o *RenderOptions) { o.Case = Agent; o.AgentToken = "x" }, "agent-token is a server setting"},
		{"malformed K10 token", func(o *RenderOptions) { o.Token = "K10abc" }, "invalid token format"},
		{"K10 token with a short hash", func(o *RenderOptions) { o.Token = "K10abc::server:pw" }, "invalid token CA hash length"},
		{"K10 token without a password", func(o *RenderOptions) { o.Token = "K10" + testCAHash + "::server:" }, "invalid token format"},
		{"unencodable passthrough", func(o *RenderOptions) { o.Extra = map[string]any{"x": func() {}} }, "render x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			_, err := RenderConfig(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if err != nil && o.Token != "" && o.Token != "s" && strings.Contains(err.Error(), "::server:s") {
				t.Fatalf("error leaks the token: %v", err)
			}
		})
	}
}

func TestSecureToken(t *testing.T) {
	secure := SecureToken(strings.ToUpper(testCAHash), "server", "secret")
	if secure != "K10"+testCAHash+"::server:secret" {
		t.Fatalf("SecureToken = %q", secure)
	}
	if again := SecureToken(testCAHash, "node", secure); again != secure {
		t.Fatalf("secure token wrapped twice: %q", again)
	}
	if got := SecureToken(testCAHash, "node", "agent-secret"); got != "K10"+testCAHash+"::node:agent-secret" {
		t.Fatalf("node token = %q", got)
	}
	// A secure token without a hash gets the cluster's.
	if got := SecureToken(testCAHash, "node", "K10::server:pw"); got != "K10"+testCAHash+"::server:pw" {
		t.Fatalf("SecureToken(K10::server:pw) = %q", got)
	}
	// The bootstrap server gets the bare secret out of a secure token.
	out, err := RenderConfig(RenderOptions{Case: Bootstrap, VIP: "10.0.0.100", Token: secure})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "token: secret\n") {
		t.Fatalf("bootstrap config:\n%s", out)
	}
}

// An agent joins as user node in both set-ups: k3s's node password is the
// agent-token when the servers have one, else the server token.
func TestAgentJoinsAsNode(t *testing.T) {
	for _, token := range []string{"agent-secret", "the-only-secret"} {
		out, err := RenderConfig(RenderOptions{Case: Agent, VIP: "10.0.0.100", Token: token, CAHash: testCAHash})
		if err != nil {
			t.Fatal(err)
		}
		if want := "token: K10" + testCAHash + "::node:" + token + "\n"; !strings.Contains(string(out), want) {
			t.Errorf("agent config:\n%s\nwant %s", out, want)
		}
		if strings.Contains(string(out), "::server:") || strings.Contains(string(out), "agent-token") {
			t.Errorf("agent config holds server credentials:\n%s", out)
		}
	}
	out, err := RenderConfig(RenderOptions{Case: JoinServer, VIP: "10.0.0.100", Token: "server-secret", AgentToken: "agent-secret", CAHash: testCAHash})
	if err != nil {
		t.Fatal(err)
	}
	if want := "token: K10" + testCAHash + "::server:server-secret\nagent-token: agent-secret\n"; !strings.Contains(string(out), want) {
		t.Errorf("join-server config:\n%s\nwant %s", out, want)
	}
}

func TestWriteConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "rancher", "rke2")
	if err := WriteConfig(dir, []byte("token: a\n")); err != nil {
		t.Fatal(err)
	}
	if err := WriteConfig(dir, []byte("token: b\n")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(ConfigPath(dir))
	if err != nil || string(data) != "token: b\n" {
		t.Fatalf("config = %q, %v", data, err)
	}
	fi, _ := os.Stat(ConfigPath(dir))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode = %v, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v, want 0700", di.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftover files: %v", entries)
	}
	// A file where the folder should be.
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o600)
	if err := WriteConfig(blocker, []byte("x")); err == nil || !strings.Contains(err.Error(), "installer: rke2 config") {
		t.Fatalf("err = %v", err)
	}
}

func BenchmarkRenderConfig(b *testing.B) {
	opts := RenderOptions{Case: JoinServer, NodeName: "node-1", NodeIP: "10.0.0.11", VIP: "10.0.0.100",
		Token: "my-shared-secret", CAHash: testCAHash, TLSSANs: []string{"k8s.example.com"},
		Extra: map[string]any{"cni": "canal", "disable": []string{"rke2-ingress-nginx"}}}
	for b.Loop() {
		if _, err := RenderConfig(opts); err != nil {
			b.Fatal(err)
		}
	}
}
