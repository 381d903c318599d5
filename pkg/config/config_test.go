package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

const validServer = `role: server
node-name: ha-m1
token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h
expect-servers: 3
join: [10.0.0.11, 10.0.0.12]
vip: 192.168.205.200
interface: ens3
`

func writeConf(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, body string, env ...string) (*Config, error) {
	t.Helper()
	p := writeConf(t, t.TempDir(), "config.yaml", body, 0o600)
	return Load(LoadOptions{File: p, FileRequired: true, Env: env, Hostname: func() string { return "host-a" }})
}

func TestValidServerAndDefaults(t *testing.T) {
	c, err := load(t, validServer)
	if err != nil {
		t.Fatal(err)
	}
	if c.Secret() != "s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h" || c.GossipPort != 9347 || c.RaftPort != 9348 || c.HTTPAddress != ":9349" ||
		c.ClusterName != "rke2" || c.InstallMethod != "script" || c.KubeVIPVersion != "v1.2.3" || c.KubeVIPLease != 15 ||
		c.DataDir != "/var/lib/rke2-hanode" || c.RKE2Channel != "stable" || !reflect.DeepEqual(c.Join, []string{"10.0.0.11", "10.0.0.12"}) {
		t.Errorf("unexpected values: %+v", c)
	}
	if got := c.SourceOf("expect-servers"); got.Kind != SourceFile || got.Line != 4 {
		t.Errorf("source of expect-servers = %v", got)
	}
	if got := c.SourceOf("gossip-port"); got.Kind != SourceDefault {
		t.Errorf("source of gossip-port = %v", got)
	}
}

func TestDefaultsAreValidValues(t *testing.T) {
	for _, k := range keyTable {
		if k.def == "" || k.name == "node-name" {
			continue
		}
		c := &Config{}
		if err := setString(reflect.ValueOf(c).Elem().Field(k.index), k.def); err != nil {
			t.Errorf("default of %s (%q) does not parse: %v", k.name, k.def, err)
		}
	}
}

func TestBadConfigsNameKeyAndValue(t *testing.T) {
	cases := []struct {
		name, body string
		key, want  string
	}{
		{"typo", validServer + "expect-server: 3\n", "expect-server", `unknown key (did you mean "expect-servers"?)`},
		{"no role", strings.Replace(validServer, "role: server\n", "", 1), "role", "required: server or agent"},
		{"bad role", strings.Replace(validServer, "role: server", "role: master", 1), "role", "accepted values are server, agent"},
		{"even servers", strings.Replace(validServer, "expect-servers: 3", "expect-servers: 4", 1), "expect-servers", "must be odd"},
		{"nine servers", strings.Replace(validServer, "expect-servers: 3", "expect-servers: 9", 1), "expect-servers", "must be odd"},
		{"servers missing", strings.Replace(validServer, "expect-servers: 3\n", "", 1), "expect-servers", "required for servers"},
		{"not a number", strings.Replace(validServer, "expect-servers: 3", "expect-servers: three", 1), "expect-servers", "want a whole number"},
		{"even max-servers", validServer + "max-servers: 4\n", "max-servers", "must be odd"},
		{"max-servers below expect-servers", validServer + "max-servers: 1\n", "max-servers", "at least expect-servers (3)"},
		{"max-servers nine", validServer + "max-servers: 9\n", "max-servers", "one of 1, 3, 5, 7"},
		{"removal timeout unit", validServer + "server-removal-timeout: 30\n", "server-removal-timeout", "must be a duration"},
		{"removal timeout short", validServer + "server-removal-timeout: 2s\n", "server-removal-timeout", "at least 10s"},
		{"removal timeout negative", validServer + "server-removal-timeout: -5m\n", "server-removal-timeout", "at least 10s"},
		{"no join", strings.Replace(validServer, "join: [10.0.0.11, 10.0.0.12]\n", "", 1), "join", "required unless expect-servers is 1"},
		{"bad join", strings.Replace(validServer, "10.0.0.12]", "10.0.0.12:99999]", 1), "join", "port must be from 1 to 65535"},
		{"no token", strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h\n", "", 1), "token", "set token or token-file"},
		{"weak token", strings.Replace(validServer, "s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "my-shared-secret", 1), "token", "too weak: about 94 bits, at least 128 are required (e.g. 28 random lower-case letters, 22 mixed letters and digits, or 64 hex digits); make one with `rke2-hanode token generate`"},
		{"both tokens", validServer + "token-file: /etc/shadow-token\n", "token-file", "set exactly one"},
		{"bad vip", strings.Replace(validServer, "192.168.205.200", "192.168.205.300", 1), "vip", "must be an IPv4 address"},
		{"v6 vip", strings.Replace(validServer, "192.168.205.200", "fd00::200", 1), "vip", "IPv6 VIPs are not supported yet"},
		{"no interface", strings.Replace(validServer, "interface: ens3\n", "", 1), "interface", "required"},
		{"port range", validServer + "gossip-port: 70000\n", "gossip-port", "from 1 to 65535"},
		{"port clash", validServer + "raft-port: 9347\n", "raft-port", "must be distinct"},
		{"rke2 port", validServer + "http-address: :9345\n", "http-address", "the RKE2 supervisor"},
		{"bad san", validServer + "tls-san: [ok.example.com, \"bad name\"]\n", "tls-san", "must be a DNS name or an IP address"},
		{"taint effect", validServer + "node-taint: [CriticalAddonsOnly=true:NoExec]\n", "node-taint", "accepted effects are NoSchedule, PreferNoSchedule, NoExecute"},
		{"taint form", validServer + "node-taint: [CriticalAddonsOnly]\n", "node-taint", "must be key=value:Effect"},
		{"install method", validServer + "install-method: rpm\n", "install-method", "accepted values are script, none"},
		{"service manager", validServer + "service-manager: upstart\n", "service-manager", "accepted values are systemd, exec"},
		{"log level", validServer + "log-level: loud\n", "log-level", "accepted values are debug, info, warn, error"},
		{"log format", validServer + "log-format: xml\n", "log-format", "accepted values are console, json"},
		{"channel", validServer + "rke2-channel: nightly\n", "rke2-channel", "accepted values are stable, latest, testing"},
		{"version", validServer + "rke2-version: 1.36\n", "rke2-version", "must look like v1.36.4+rke2r1"},
		{"lease order", validServer + "kube-vip-renew-deadline: 20\n", "kube-vip-renew-deadline", "lease > renew > 1.2 × retry"}, {"retry jitter", validServer + "kube-vip-renew-deadline: 3\nkube-vip-retry-period: 3\n", "kube-vip-renew-deadline", "lease > renew > 1.2 × retry"},
		{"relative data-dir", validServer + "data-dir: var/lib\n", "data-dir", "must be an absolute path"},
		{"node name", strings.Replace(validServer, "ha-m1", "HA_M1", 1), "node-name", "lower-case DNS name"},
		{"list for scalar", validServer + "cluster-name: [a, b]\n", "cluster-name", "want a single value"},
		{"duplicate key", validServer + "vip: 10.0.0.1\n", "vip", "key given twice"},
		{"rke2-config scalar", validServer + "rke2-config: cilium\n", "rke2-config", "want a mapping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.body)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want *config.Error", err)
			}
			found := false
			for _, p := range cerr.Problems {
				if p.Key == tc.key && strings.Contains(p.Msg, tc.want) {
					found = true
					if p.Source.Kind != SourceFile && p.Source.Kind != SourceDefault {
						t.Errorf("source = %v", p.Source)
					}
				}
			}
			if !found {
				t.Fatalf("no problem for key %q containing %q in:\n%v", tc.key, tc.want, err)
			}
			if strings.Contains(err.Error(), "s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h") {
				t.Errorf("error text shows the token: %v", err)
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := load(t, "role: boss\nexpect-servers: 2\nvip: nope\ngossip-port: 0\n")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, p := range cerr.Problems {
		keys[p.Key] = true
	}
	for _, k := range []string{"role", "expect-servers", "vip", "gossip-port", "token", "interface", "join"} {
		if !keys[k] {
			t.Errorf("no problem reported for %s:\n%v", k, err)
		}
	}
	if !strings.Contains(err.Error(), `vip = "nope" (`) || !strings.Contains(err.Error(), "config.yaml:3)") {
		t.Errorf("error does not name value and file:line:\n%v", err)
	}
}

func TestPrecedenceFileDropInEnvFlag(t *testing.T) {
	dir := t.TempDir()
	main := writeConf(t, dir, "config.yaml", validServer+"log-level: debug\ncluster-name: one\n", 0o600)
	writeConf(t, dir, "config.yaml.d/20-b.yaml", "cluster-name: three\n", 0o644)
	writeConf(t, dir, "config.yaml.d/10-a.yaml", "cluster-name: two\ngossip-port: 7000\nraft-port: 7001\n", 0o644)
	writeConf(t, dir, "config.yaml.d/ignored.yml", "cluster-name: never\n", 0o644)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--raft-port", "7002", "--tls-san", "a.example.com,b.example.com", "--tls-san", "10.0.0.9"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{File: main, Env: []string{"RKE2_HANODE_GOSSIP_PORT=7100", "RKE2_HANODE_RAFT_PORT=7200", "PATH=/bin"}, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterName != "three" || c.GossipPort != 7100 || c.RaftPort != 7002 || c.LogLevel != "debug" {
		t.Errorf("cluster-name %q gossip %d raft %d log %q", c.ClusterName, c.GossipPort, c.RaftPort, c.LogLevel)
	}
	if !reflect.DeepEqual(c.TLSSAN, []string{"a.example.com", "b.example.com", "10.0.0.9"}) {
		t.Errorf("tls-san = %v", c.TLSSAN)
	}
	for key, want := range map[string]string{"cluster-name": "config.yaml.d/20-b.yaml:1", "gossip-port": "env RKE2_HANODE_GOSSIP_PORT", "raft-port": "flag --raft-port"} {
		if got := c.SourceOf(key).String(); !strings.HasSuffix(got, want) {
			t.Errorf("source of %s = %q, want suffix %q", key, got, want)
		}
	}
}

func TestTokenFilePermissions(t *testing.T) {
	dir := t.TempDir()
	tokenFile := writeConf(t, dir, "token", "from-file-Xk8pQ2mZ7rT4vN9wB3yL6h\n", 0o644)
	body := strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "token-file: "+tokenFile, 1)
	_, err := load(t, body)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+tokenFile) {
		t.Fatalf("group-readable token file accepted: %v", err)
	}
	os.Chmod(tokenFile, 0o600)
	c, err := load(t, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.Secret() != "from-file-Xk8pQ2mZ7rT4vN9wB3yL6h" {
		t.Errorf("secret not read from token-file")
	}
	_, err = load(t, strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "token-file: "+filepath.Join(dir, "missing"), 1))
	if err == nil || !strings.Contains(err.Error(), "cannot read the token file") {
		t.Errorf("missing token file: %v", err)
	}
}

func TestConfigFileHoldingTokenMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	p := writeConf(t, dir, "config.yaml", validServer, 0o640)
	_, err := Load(LoadOptions{File: p})
	if err == nil || !strings.Contains(err.Error(), p+" holds the cluster token") {
		t.Fatalf("readable config with token accepted: %v", err)
	}
	// The same file without the token may be world-readable.
	p2 := writeConf(t, dir, "c2.yaml", strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h\n", "", 1), 0o644)
	if _, err := Load(LoadOptions{File: p2, Env: []string{"RKE2_HANODE_TOKEN=env-Xk8pQ2mZ7rT4vN9wB3yL6h"}}); err != nil {
		t.Errorf("config without token refused: %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(LoadOptions{File: "/nonexistent/config.yaml", FileRequired: true})
	if err == nil || !strings.Contains(err.Error(), "cannot read config file") {
		t.Errorf("missing --config file: %v", err)
	}
	// The default file may be absent when flags and env say everything.
	_, err = Load(LoadOptions{File: "/nonexistent/config.yaml", Env: []string{
		"RKE2_HANODE_ROLE=server", "RKE2_HANODE_TOKEN=env-Xk8pQ2mZ7rT4vN9wB3yL6h", "RKE2_HANODE_EXPECT_SERVERS=1",
		"RKE2_HANODE_VIP=10.0.0.200", "RKE2_HANODE_INTERFACE=eth0"}, Hostname: func() string { return "h" }})
	if err != nil {
		t.Errorf("env-only config: %v", err)
	}
}

func TestAgentNeedsNoExpectServers(t *testing.T) {
	_, err := load(t, "role: agent\ntoken: x-Xk8pQ2mZ7rT4vN9wB3yL6h\njoin: [10.0.0.1]\nvip: 10.0.0.200\ninterface: eth0\nnode-name: w1\n")
	if err != nil {
		t.Fatal(err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c, err := load(t, validServer+"tls-san: [k8s.example.com]\nnode-taint: [CriticalAddonsOnly=true:NoExecute]\nrke2-config:\n  cni: cilium\n  disable: [rke2-ingress-nginx]\n")
	if err != nil {
		t.Fatal(err)
	}
	data, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := load(t, string(data))
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	c.sources, c2.sources = nil, nil
	if !reflect.DeepEqual(c, c2) {
		t.Errorf("round trip differs:\n%+v\n%+v\n%s", c, c2, data)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(validServer))
	f.Add([]byte("role: agent\njoin: a\nrke2-config: {a: [1, {b: c}]}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("tls-san: &a [*a]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(LoadOptions{File: p, Hostname: func() string { return "h" }})
		if err == nil {
			// Whatever loads must render and load again to the same values.
			out, err := Marshal(c)
			if err != nil {
				t.Fatalf("marshal of a valid config: %v", err)
			}
			if err := os.WriteFile(p, out, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(LoadOptions{File: p, Hostname: func() string { return "h" }}); err != nil {
				t.Fatalf("re-load of a marshalled config: %v\n%s", err, out)
			}
		}
	})
}

func TestMembershipKeys(t *testing.T) {
	c, err := load(t, validServer)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxServers != 7 || c.ServerRemovalTimeout() != 30*time.Minute {
		t.Errorf("defaults: max-servers %d, server-removal-timeout %s", c.MaxServers, c.ServerRemovalTimeout())
	}
	c, err = load(t, validServer+"max-servers: 5\nserver-removal-timeout: 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxServers != 5 || c.ServerRemovalTimeout() != 0 {
		t.Errorf("set: max-servers %d, server-removal-timeout %s", c.MaxServers, c.ServerRemovalTimeout())
	}
}
