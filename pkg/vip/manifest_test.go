package vip

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the renderer")

// The generator's own output for the seed's flags, copied verbatim.
const (
	generatorRBAC      = "testdata/kube-vip-v1.2.3-rbac.yaml"
	generatorDaemonSet = "testdata/kube-vip-v1.2.3-daemonset-seed.yaml"
)

var seedOptions = ManifestOptions{Interface: "ens3", VIP: "192.168.205.200"}

// decodeObjects parses a multi-document YAML stream into generic objects
// keyed by kind; empty documents are skipped, a kind seen twice fails.
func decodeObjects(t *testing.T, data []byte) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decode YAML: %v", err)
		}
		if obj == nil {
			continue
		}
		kind, _ := obj["kind"].(string)
		if _, dup := objs[kind]; dup {
			t.Fatalf("kind %q appears twice", kind)
		}
		objs[kind] = obj
	}
}

func readGenerator(t *testing.T) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for _, path := range []string{generatorRBAC, generatorDaemonSet} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for kind, obj := range decodeObjects(t, data) {
			objs[kind] = obj
		}
	}
	if len(objs) != 4 {
		t.Fatalf("generator output holds %d objects, want 4", len(objs))
	}
	return objs
}

// compareObjects fails for every object that differs, showing both sides.
func compareObjects(t *testing.T, got, want map[string]map[string]any) {
	t.Helper()
	for kind, w := range want {
		g, ok := got[kind]
		if !ok {
			t.Errorf("rendered output lacks %s", kind)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			gy, _ := yaml.Marshal(g)
			wy, _ := yaml.Marshal(w)
			t.Errorf("%s differs from the generator's\n--- rendered\n%s\n--- generator\n%s", kind, gy, wy)
		}
	}
	for kind := range got {
		if _, ok := want[kind]; !ok {
			t.Errorf("rendered output has an extra %s", kind)
		}
	}
}

func TestRenderMatchesGeneratorForSeed(t *testing.T) {
	out, err := RenderManifests(seedOptions)
	if err != nil {
		t.Fatal(err)
	}
	compareObjects(t, decodeObjects(t, out), readGenerator(t))
}

// generatorFor derives what the generator prints for other flag values from
// its seed output: the flags we vary only ever change these fields.
func generatorFor(t *testing.T, o ManifestOptions) map[string]map[string]any {
	t.Helper()
	o = o.withDefaults()
	objs := readGenerator(t)
	ds := objs["DaemonSet"]
	set := func(path ...string) func(any) {
		return func(v any) {
			m := ds
			for _, p := range path[:len(path)-1] {
				m = m[p].(map[string]any)
			}
			m[path[len(path)-1]] = v
		}
	}
	set("metadata", "labels", "app.kubernetes.io/version")(o.Version)
	tmpl := ds["spec"].(map[string]any)["template"].(map[string]any)
	tmpl["metadata"].(map[string]any)["labels"].(map[string]any)["app.kubernetes.io/version"] = o.Version
	c := tmpl["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	c["image"] = o.Image + ":" + o.Version
	values := map[string]string{
		"vip_interface":     o.Interface,
		"address":           o.VIP,
		"vip_leaseduration": strconv.Itoa(o.LeaseDuration),
		"vip_renewdeadline": strconv.Itoa(o.RenewDeadline),
		"vip_retryperiod":   strconv.Itoa(o.RetryPeriod),
	}
	for _, e := range c["env"].([]any) {
		env := e.(map[string]any)
		if v, ok := values[env["name"].(string)]; ok {
			env["value"] = v
		}
	}
	return objs
}

var goldenCases = []struct {
	name string
	opts ManifestOptions
}{
	{"seed", seedOptions},
	{"eth0-10.0.0.10", ManifestOptions{Interface: "eth0", VIP: "10.0.0.10"}},
	{"bond0.100-172.16.4.250-timings-30-20-4", ManifestOptions{Interface: "bond0.100", VIP: "172.16.4.250", LeaseDuration: 30, RenewDeadline: 20, RetryPeriod: 4}},
	{"lo-127.0.0.200-timings-5-3-1", ManifestOptions{Interface: "lo", VIP: "127.0.0.200", LeaseDuration: 5, RenewDeadline: 3, RetryPeriod: 1}},
	{"enp1s0f1-192.168.1.5-mirror", ManifestOptions{Interface: "enp1s0f1", VIP: "192.168.1.5", Image: "registry.local:5000/kube-vip/kube-vip", Version: "v1.2.3"}},
}

// TestRenderGolden checks each case twice: its objects against what the
// generator prints for those flags, and its exact bytes against a golden file
// so that any change to the rendering is seen in review. Regenerate with
// `go test ./pkg/vip -run TestRenderGolden -update`.
func TestRenderGolden(t *testing.T) {
	seedObjects := readGenerator(t)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := RenderManifests(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeObjects(t, out)
			compareObjects(t, got, generatorFor(t, tc.opts))
			if tc.opts != seedOptions && reflect.DeepEqual(got, seedObjects) {
				t.Error("rendering ignores its options: output equals the seed's")
			}

			path := filepath.Join("testdata", "render-"+tc.name+".yaml")
			if *update {
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("rendered manifest differs from %s (run with -update if intended):\n%s", path, out)
			}
		})
	}
}

func TestRenderValidation(t *testing.T) {
	tests := []struct {
		name    string
		opts    ManifestOptions
		wantErr string
	}{
		{"no interface", ManifestOptions{VIP: "10.0.0.1"}, "interface is empty"},
		{"long interface", ManifestOptions{Interface: "averyverylongname0", VIP: "10.0.0.1"}, "longer than 15 bytes"},
		{"slash in interface", ManifestOptions{Interface: "eth/0", VIP: "10.0.0.1"}, `contains '/'`},
		{"space in interface", ManifestOptions{Interface: "eth 0", VIP: "10.0.0.1"}, `contains ' '`},
		{"dot interface", ManifestOptions{Interface: "..", VIP: "10.0.0.1"}, "not a valid interface name"},
		{"no vip", ManifestOptions{Interface: "eth0"}, "vip is empty"},
		{"bad vip", ManifestOptions{Interface: "eth0", VIP: "10.0.0"}, `vip "10.0.0" is not an IP address`},
		{"cidr vip", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1/24"}, "is not an IP address"},
		{"ipv6 vip", ManifestOptions{Interface: "eth0", VIP: "fd00::10"}, "IPv6 VIPs are not supported yet"},
		{"mapped vip", ManifestOptions{Interface: "eth0", VIP: "::ffff:10.0.0.1"}, "write it as 10.0.0.1"},
		{"unspecified vip", ManifestOptions{Interface: "eth0", VIP: "0.0.0.0"}, "cannot be held by a host"},
		{"multicast vip", ManifestOptions{Interface: "eth0", VIP: "224.0.0.5"}, "cannot be held by a host"},
		{"broadcast vip", ManifestOptions{Interface: "eth0", VIP: "255.255.255.255"}, "cannot be held by a host"},
		{"image with tag", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", Image: "ghcr.io/kube-vip/kube-vip:v1"}, "without a tag"},
		{"image with digest", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", Image: "ghcr.io/kube-vip/kube-vip@sha256:00"}, "without spaces or digest"},
		{"bad version", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", Version: "v1.2.3+build"}, `version "v1.2.3+build": must be a valid label value`},
		{"negative lease", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", LeaseDuration: -1}, "kube-vip-lease-duration -1: must be a positive"},
		{"negative retry", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", RetryPeriod: -2}, "kube-vip-retry-period -2"},
		{"lease equals renew", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", LeaseDuration: 10, RenewDeadline: 10}, "lease-duration 10 must be greater than kube-vip-renew-deadline 10"},
		{"renew too close to retry", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", LeaseDuration: 15, RenewDeadline: 6, RetryPeriod: 5}, "renew-deadline 6 must be greater than 1.2 × kube-vip-retry-period 5"},
		{"ok tight timings", ManifestOptions{Interface: "eth0", VIP: "10.0.0.1", LeaseDuration: 4, RenewDeadline: 3, RetryPeriod: 2}, ""},
		{"ok vlan interface", ManifestOptions{Interface: "eth0.4094", VIP: "10.0.0.1"}, ""},
		{"ok loopback", ManifestOptions{Interface: "lo", VIP: "127.0.0.200"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RenderManifests(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestWriteManifest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server", "manifests")
	if err := WriteManifest(dir, []byte("first\n")); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(dir, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ManifestFile)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "second\n" {
		t.Errorf("content = %q, want the second write", got)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", st.Mode().Perm())
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("folder mode = %v, want 0700", dst.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only %s (no temporary files left)", len(entries), ManifestFile)
	}
}

func TestWriteManifestErrors(t *testing.T) {
	if err := WriteManifest("", nil); err == nil || !strings.Contains(err.Error(), "manifests folder is empty") {
		t.Errorf("empty folder: error = %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(filepath.Join(file, "manifests"), []byte("x")); err == nil || !strings.Contains(err.Error(), "write kube-vip manifest") {
		t.Errorf("folder under a file: error = %v", err)
	}
}

func BenchmarkRenderManifests(b *testing.B) {
	for b.Loop() {
		if _, err := RenderManifests(seedOptions); err != nil {
			b.Fatal(err)
		}
	}
}
