package installer

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
)

// FuzzRenderConfigRoundTrip: whatever token and names a config carries,
// RKE2 reads back exactly what was meant.
func FuzzRenderConfigRoundTrip(f *testing.F) {
	f.Add("my-shared-secret", "node-1", "k8s.example.com", "CriticalAddonsOnly=true:NoExecute", "canal")
	f.Add("K10"+testCAHash+"::server:abc", "", "", "", "")
	f.Add("'quoted: yes' # not a comment", "- dash", "*star", "&anchor", "!tag")
	f.Fuzz(func(t *testing.T, token, name, san, taint, cni string) {
		opts := RenderOptions{Case: JoinServer, VIP: "10.0.0.100", Token: token, CAHash: testCAHash,
			NodeName: name, TLSSANs: []string{san}, NodeTaints: []string{taint}, Extra: map[string]any{"cni": cni}}
		out, err := RenderConfig(opts)
		if err != nil {
			return // rejected inputs are fine, panics are not
		}
		var cfg map[string]any
		if err := yaml.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("unparsable output for %q: %v\n%s", token, err, out)
		}
		if want := SecureToken(testCAHash, "server", token); cfg["token"] != want {
			t.Fatalf("token %q read back as %q", want, cfg["token"])
		}
		if name != "" && cfg["node-name"] != name {
			t.Fatalf("node-name %q read back as %v", name, cfg["node-name"])
		}
		if cfg["cni"] != cni {
			t.Fatalf("cni %q read back as %v", cni, cfg["cni"])
		}
	})
}

// FuzzSecureToken: a secure token always splits back into its hash and
// credentials, and is never wrapped twice.
func FuzzSecureToken(f *testing.F) {
	f.Add("secret")
	f.Add("K10abc::server:x")
	f.Add("K10" + testCAHash + "::server:")
	f.Add("K10::node:x")
	f.Fuzz(func(t *testing.T, token string) {
		if token == "" {
			return
		}
		_, _, wasSecure, err := splitSecureToken(token)
		if err != nil {
			return // refused in k3s's words, never wrapped
		}
		secure := SecureToken(testCAHash, "node", token)
		hash, creds, ok, err := splitSecureToken(secure)
		if !ok || err != nil {
			t.Fatalf("SecureToken(%q) = %q does not split: %v", token, secure, err)
		}
		if hash != testCAHash || (!wasSecure && creds != "node:"+token) {
			t.Fatalf("SecureToken(%q) split into %q, %q", token, hash, creds)
		}
		if SecureToken(testCAHash, "node", secure) != secure {
			t.Fatalf("%q wrapped twice", secure)
		}
	})
}

// FuzzParseHostFiles: rke2 --version output and /proc files never panic.
func FuzzParseHostFiles(f *testing.F) {
	f.Add([]byte("rke2 version v1.36.4+rke2r1 (0123abcd)\ngo version go1.26\n"))
	f.Add([]byte(meminfo16G))
	f.Add([]byte("MemTotal: -1 kB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := parseRKE2Version(data); err == nil && v == "" {
			t.Fatal("empty version without an error")
		}
		if n, err := memTotal(data); err == nil && n <= 0 {
			t.Fatalf("MemTotal %d without an error", n)
		}
		readLines(strings.NewReader(string(data)), func(line string) {
			if len(line) > maxLineBytes || strings.ContainsRune(line, '\n') {
				t.Fatalf("bad line %q", line)
			}
		})
	})
}

// FuzzTokenShapeAgrees: the renderer reads a K10 token exactly as config
// load validates it, so a token load accepts never fails to render and one
// it refuses is never written.
func FuzzTokenShapeAgrees(f *testing.F) {
	for _, s := range []string{"secret", "K10abc", "K10::server:x", "K10" + testCAHash + "::node:pw", "K10" + testCAHash + "::abcdef.0123456789abcdef",
		"K10" + strings.ToUpper(testCAHash) + "::server:x", "K10" + testCAHash + "::server:", "K10" + testCAHash + ":::x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		_, cerr := config.CheckTokenShape(token)
		_, _, _, ierr := splitSecureToken(token)
		if (cerr == nil) != (ierr == nil) {
			t.Fatalf("token %q: config says %v, the renderer %v", token, cerr, ierr)
		}
	})
}
