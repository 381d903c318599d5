package installer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// testInstallScript stands in for get.rke2.io: it records its
// INSTALL_RKE2_* environment, fails the first $FAIL_TIMES runs, and lays out
// the tarball's tree under the prefix with an rke2 that prints its version.
const testInstallScript = `#!/bin/sh
set -e
n=$(cat "$RECORD_DIR/runs" 2>/dev/null || echo 0)
n=$((n+1))
echo $n > "$RECORD_DIR/runs"
env | grep '^INSTALL_RKE2_' | sort > "$RECORD_DIR/env"
if [ "$n" -le "${FAIL_TIMES:-0}" ]; then
	echo "[ERROR] download sha256 does not match" >&2
	exit 1
fi
[ -n "$SLEEP" ] && sleep "$SLEEP"
version="${INSTALL_RKE2_VERSION:-v1.36.4+rke2r1}"
mkdir -p "$INSTALL_RKE2_TAR_PREFIX/bin" "$INSTALL_RKE2_TAR_PREFIX/lib/systemd/system"
printf '#!/bin/sh\necho "rke2 version %s (0123abcd)"\necho "go version go1.26"\n' "$version" > "$INSTALL_RKE2_TAR_PREFIX/bin/rke2"
chmod 755 "$INSTALL_RKE2_TAR_PREFIX/bin/rke2"
touch "$INSTALL_RKE2_TAR_PREFIX/lib/systemd/system/rke2-server.service"
echo "[INFO] Installing rke2 $version"
`

type installFixture struct {
	opts   InstallOptions
	record string
	logs   *observer.ObservedLogs
}

func newInstallFixture(t *testing.T, scriptURL string, env ...string) *installFixture {
	t.Helper()
	root := t.TempDir()
	record := filepath.Join(root, "record")
	os.Mkdir(record, 0o700)
	core, logs := observer.New(zap.InfoLevel)
	return &installFixture{
		record: record,
		logs:   logs,
		opts: InstallOptions{
			Method:    MethodScript,
			Role:      RoleServer,
			ScriptURL: scriptURL,
			// The test servers speak plain http: the script is pinned.
			ScriptSHA256: testScriptSum(),
			TarPrefix:    filepath.Join(root, "usr", "local"),
			SearchPaths:  []string{}, // never find the machine's own rke2
			RKE2DataDir:  filepath.Join(root, "var", "lib", "rancher", "rke2"),
			Env:          append([]string{"RECORD_DIR=" + record}, env...),
			RetryDelay:   time.Millisecond,
			Jitter:       func(d time.Duration) time.Duration { return d },
			Timeout:      time.Minute,
			Logger:       zap.New(core),
		},
	}
}

func testScriptSum() string {
	sum := sha256.Sum256([]byte(testInstallScript))
	return hex.EncodeToString(sum[:])
}

func (f *installFixture) runs(t *testing.T) string {
	data, _ := os.ReadFile(filepath.Join(f.record, "runs"))
	return strings.TrimSpace(string(data))
}

func (f *installFixture) env(t *testing.T) string {
	data, err := os.ReadFile(filepath.Join(f.record, "env"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func serveScript(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(testInstallScript))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestInstallScriptOverHTTP(t *testing.T) {
	srv := serveScript(t)
	f := newInstallFixture(t, srv.URL)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	f.opts.Metrics = m
	f.opts.Role = RoleAgent
	f.opts.Version = "v1.36.4+rke2r1"
	f.opts.Channel = "latest" // the version wins

	res, err := Install(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Attempts != 1 || res.Version != "v1.36.4+rke2r1" || res.Bin != filepath.Join(f.opts.TarPrefix, "bin", "rke2") {
		t.Fatalf("result = %+v", res)
	}
	want := "INSTALL_RKE2_AGENT_IMAGES_DIR=" + filepath.Join(f.opts.RKE2DataDir, "agent", "images") +
		"\nINSTALL_RKE2_TAR_PREFIX=" + f.opts.TarPrefix + "\nINSTALL_RKE2_TYPE=agent\nINSTALL_RKE2_VERSION=v1.36.4+rke2r1\n"
	if got := f.env(t); got != want {
		t.Fatalf("script environment:\n%s\nwant:\n%s", got, want)
	}
	if f.logs.FilterField(zap.String("line", "[INFO] Installing rke2 v1.36.4+rke2r1")).Len() != 1 {
		t.Fatalf("script output not streamed into the log: %v", f.logs.All())
	}
	if v := gaugeValue(t, reg, "rke2_hanode_install_duration_seconds"); v <= 0 {
		t.Fatalf("install duration = %v", v)
	}

	// Installed at the wanted version: skipped, the script does not run.
	res, err = Install(context.Background(), f.opts)
	if err != nil || !res.Skipped || f.runs(t) != "1" {
		t.Fatalf("second install: %+v, %v, runs %s", res, err, f.runs(t))
	}
	// Another version is wanted: the script runs again.
	f.opts.Version = "v1.37.0+rke2r1"
	res, err = Install(context.Background(), f.opts)
	if err != nil || res.Skipped || res.Version != "v1.37.0+rke2r1" || f.runs(t) != "2" {
		t.Fatalf("upgrade: %+v, %v, runs %s", res, err, f.runs(t))
	}
	// Running RKE2 is adopted whatever its version.
	f.opts.Version = "v1.38.0+rke2r1"
	f.opts.Running = true
	if res, err = Install(context.Background(), f.opts); err != nil || !res.Skipped || res.Version != "v1.37.0+rke2r1" || f.runs(t) != "2" {
		t.Fatalf("running rke2: %+v, %v, runs %s", res, err, f.runs(t))
	}
	f.opts.Running = false
	// No version wanted and rke2 present: skipped.
	f.opts.Version = ""
	if res, err = Install(context.Background(), f.opts); err != nil || !res.Skipped {
		t.Fatalf("no version wanted: %+v, %v", res, err)
	}
}

func TestInstallChannelAndLocalScript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "install.sh")
	os.WriteFile(path, []byte(testInstallScript), 0o600)
	f := newInstallFixture(t, path)
	f.opts.Channel = "testing"
	if _, err := Install(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	env := f.env(t)
	if !strings.Contains(env, "INSTALL_RKE2_CHANNEL=testing\n") || strings.Contains(env, "INSTALL_RKE2_VERSION") ||
		!strings.Contains(env, "INSTALL_RKE2_TYPE=server\n") {
		t.Fatalf("script environment:\n%s", env)
	}
}

func TestInstallAirgapCopiesKubeVIPImage(t *testing.T) {
	srv := serveScript(t)
	f := newInstallFixture(t, srv.URL)
	artifacts := t.TempDir()
	for name, data := range map[string]string{
		"rke2.linux-amd64.tar.gz":         "tarball",
		"sha256sum-amd64.txt":             "sums",
		"kube-vip-v1.2.3.tar.zst":         "kube-vip image",
		"rke2-images.linux-amd64.tar.zst": "rke2 images",
	} {
		os.WriteFile(filepath.Join(artifacts, name), []byte(data), 0o644)
	}
	f.opts.ArtifactPath = artifacts
	f.opts.Version = "v1.36.4+rke2r1"
	res, err := Install(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.env(t), "INSTALL_RKE2_ARTIFACT_PATH="+artifacts+"\n") {
		t.Fatalf("script environment:\n%s", f.env(t))
	}
	images := filepath.Join(f.opts.RKE2DataDir, "agent", "images")
	want := filepath.Join(images, "kube-vip-v1.2.3.tar.zst")
	if len(res.Images) != 1 || res.Images[0] != want {
		t.Fatalf("images = %v", res.Images)
	}
	if data, _ := os.ReadFile(want); string(data) != "kube-vip image" {
		t.Fatalf("copied image = %q", data)
	}
	if entries, _ := os.ReadDir(images); len(entries) != 1 {
		t.Fatalf("agent/images holds %v, want only the kube-vip archive (the script copies RKE2's own)", entries)
	}
	// Up to date: nothing copied again.
	if res, err = Install(context.Background(), f.opts); err != nil || len(res.Images) != 0 || !res.Skipped {
		t.Fatalf("second install: %+v, %v", res, err)
	}
}

func TestInstallRetriesWithBackoff(t *testing.T) {
	srv := serveScript(t)
	f := newInstallFixture(t, srv.URL, "FAIL_TIMES=2")
	var delays []time.Duration
	f.opts.RetryDelay = 2 * time.Millisecond
	f.opts.Jitter = func(d time.Duration) time.Duration { delays = append(delays, d); return d }
	res, err := Install(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 3 || len(delays) != 2 || delays[0] != 2*time.Millisecond || delays[1] != 4*time.Millisecond {
		t.Fatalf("attempts %d, delays %v", res.Attempts, delays)
	}

	f = newInstallFixture(t, srv.URL, "FAIL_TIMES=99")
	_, err = Install(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "failed 3 times") || !strings.Contains(err.Error(), "download sha256 does not match") {
		t.Fatalf("err = %v", err)
	}
}

func TestInstallDeadlineKillsScript(t *testing.T) {
	srv := serveScript(t)
	f := newInstallFixture(t, srv.URL, "SLEEP=60")
	f.opts.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := Install(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("install took %v after its deadline", took)
	}
}

func TestInstallErrors(t *testing.T) {
	srv := serveScript(t)
	tests := []struct {
		name string
		edit func(*InstallOptions)
		want string
	}{
		{"http 404", func(o *InstallOptions) { o.ScriptURL = srv.URL + "/missing"; o.Attempts = 1 }, "HTTP 404"},
		{"missing local script", func(o *InstallOptions) { o.ScriptURL = "/nonexistent/install.sh"; o.Attempts = 1 }, "read install script"},
		{"unknown method", func(o *InstallOptions) { o.Method = "rpm" }, `install-method "rpm" unknown`},
		{"bad role", func(o *InstallOptions) { o.Role = "master" }, `role "master"`},
		{"none without rke2", func(o *InstallOptions) { o.Method = MethodNone }, "no rke2 executable in"},
		{"none with missing rke2-bin", func(o *InstallOptions) { o.Method = MethodNone; o.RKE2Bin = "/nonexistent/rke2" }, "rke2-bin /nonexistent/rke2 is not an executable file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newInstallFixture(t, srv.URL)
			tc.edit(&f.opts)
			_, err := Install(context.Background(), f.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestInstallMethodNone(t *testing.T) {
	f := newInstallFixture(t, "unused")
	f.opts.Method = MethodNone
	_, err := Install(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "install RKE2 first, set rke2-bin, or use install-method: script") {
		t.Fatalf("err = %v", err)
	}
	bin := writeFakeRKE2(t, f.opts.TarPrefix, "v1.35.2+rke2r1")
	res, err := Install(context.Background(), f.opts)
	if err != nil || !res.Skipped || res.Version != "v1.35.2+rke2r1" || res.Bin != bin {
		t.Fatalf("result %+v, %v", res, err)
	}
}

// writeFakeRKE2 puts an rke2 that prints version under prefix/bin.
func writeFakeRKE2(t *testing.T, prefix, version string) string {
	t.Helper()
	bin := filepath.Join(prefix, "bin", "rke2")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	script := "#!/bin/sh\necho 'rke2 version " + version + " (0123abcd)'\necho 'go version go1.26'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestParseRKE2Version(t *testing.T) {
	tests := []struct {
		out, want, err string
	}{
		{"rke2 version v1.36.4+rke2r1 (0123abcd)\ngo version go1.26\n", "v1.36.4+rke2r1", ""},
		{"rke2 version v1.31.0-rc1+rke2r1 (x)", "v1.31.0-rc1+rke2r1", ""},
		{"warning: something\nrke2 version v1.30.1+rke2r2 (x)\n", "v1.30.1+rke2r2", ""},
		{"k3s version v1.30.1+k3s1 (x)", "", `printed "k3s version`},
		{"", "", "want \"rke2 version"},
	}
	for _, tc := range tests {
		got, err := parseRKE2Version([]byte(tc.out))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parse(%q) err = %v, want %q", tc.out, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parse(%q) = %q, %v", tc.out, got, err)
		}
	}
	if !sameVersion("1.36.4+rke2r1", "v1.36.4+rke2r1") || sameVersion("v1.36.4+rke2r1", "v1.36.4+rke2r2") {
		t.Fatal("sameVersion")
	}
}

func TestBackoffDelay(t *testing.T) {
	b := backoff{base: time.Second, max: 5 * time.Second, jitter: func(d time.Duration) time.Duration { return d }}
	var got []time.Duration
	for i := range 5 {
		got = append(got, b.delay(i))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	b.jitter = nil
	for range 100 {
		if d := b.delay(0); d < time.Second || d > 1500*time.Millisecond {
			t.Fatalf("jittered delay %v outside [1s, 1.5s]", d)
		}
	}
}

func TestReadLines(t *testing.T) {
	var got []string
	long := strings.Repeat("x", 3*maxLineBytes)
	readLines(strings.NewReader("a\r\n\nb\n"+long+"\nlast"), func(l string) { got = append(got, l) })
	if len(got) != 4 || got[0] != "a" || got[1] != "b" || len(got[2]) != maxLineBytes || got[3] != "last" {
		t.Fatalf("lines = %q", got)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestChildEnvironKeepsDaemonSecrets(t *testing.T) {
	t.Setenv("RKE2_HANODE_TOKEN", "hunter2")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("HTTPS_PROXY", "http://proxy:3128")
	env := strings.Join(childEnviron(), "\n")
	if strings.Contains(env, "hunter2") || strings.Contains(env, "NOTIFY_SOCKET") {
		t.Fatalf("daemon-only variables reach children:\n%s", env)
	}
	if !strings.Contains(env, "HTTPS_PROXY=http://proxy:3128") {
		t.Fatal("the proxy setting must reach the install script")
	}
}

// The script runs as root: over https it needs nothing more, over http or
// from a file only with its SHA-256, and never after a redirect off https.
func TestInstallScriptTrust(t *testing.T) {
	plain := serveScript(t)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Write([]byte(testInstallScript))
		case "/downgrade":
			http.Redirect(w, r, plain.URL+"/", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(tlsSrv.Close)

	run := func(url, sum string) (*installFixture, error) {
		f := newInstallFixture(t, url)
		f.opts.ScriptSHA256 = sum
		f.opts.Attempts = 1
		f.opts.HTTPClient = tlsSrv.Client()
		_, err := Install(context.Background(), f.opts)
		return f, err
	}
	for _, url := range []string{tlsSrv.URL + "/", tlsSrv.URL + "/moved"} {
		if _, err := run(url, ""); err != nil {
			t.Errorf("https %s without a checksum: %v", url, err)
		}
	}
	f, err := run(tlsSrv.URL+"/downgrade", "")
	if err == nil || !strings.Contains(err.Error(), "refusing to leave https") || f.runs(t) != "" {
		t.Errorf("https→http redirect: %v, runs %q", err, f.runs(t))
	}
	// Even a matching checksum does not allow the downgrade.
	if _, err := run(tlsSrv.URL+"/downgrade", testScriptSum()); err == nil {
		t.Errorf("https→http redirect with a checksum was followed")
	}
	f, err = run(plain.URL, "")
	if err == nil || !strings.Contains(err.Error(), "install-script-sha256 is not set") || f.runs(t) != "" {
		t.Errorf("http without a checksum: %v, runs %q", err, f.runs(t))
	}
	wrong := strings.Repeat("0", 64)
	f, err = run(plain.URL, wrong)
	if err == nil || !strings.Contains(err.Error(), "install-script-sha256 is "+wrong) || !strings.Contains(err.Error(), "has SHA-256 "+testScriptSum()) ||
		!strings.Contains(err.Error(), "install-script-url") || f.runs(t) != "" {
		t.Errorf("http with a wrong checksum: %v, runs %q", err, f.runs(t))
	}
	if _, err = run(plain.URL, strings.ToUpper(testScriptSum())); err != nil {
		t.Errorf("http with the right checksum: %v", err)
	}
	local := filepath.Join(t.TempDir(), "install.sh")
	os.WriteFile(local, []byte(testInstallScript+"# changed\n"), 0o600)
	if _, err = run(local, testScriptSum()); err == nil || !strings.Contains(err.Error(), "refusing to run it") {
		t.Errorf("local script that does not match: %v", err)
	}
}

// With RKE2's default data-dir the script keeps its own images folder.
func TestScriptEnvImagesDir(t *testing.T) {
	env := strings.Join(scriptEnv(InstallOptions{Role: RoleServer, RKE2DataDir: DefaultRKE2DataDir + "/"}), "\n")
	if strings.Contains(env, "INSTALL_RKE2_AGENT_IMAGES_DIR") {
		t.Errorf("default data-dir: %s", env)
	}
	env = strings.Join(scriptEnv(InstallOptions{Role: RoleServer, RKE2DataDir: "/data/rke2"}), "\n")
	if !strings.Contains(env, "INSTALL_RKE2_AGENT_IMAGES_DIR=/data/rke2/agent/images") {
		t.Errorf("custom data-dir: %s", env)
	}
}
