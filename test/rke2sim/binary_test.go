package rke2sim

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// simBinary builds cmd/rke2sim once per test run.
func simBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the rke2sim binary; skipped with -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "rke2sim-bin")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "rke2sim"), "./cmd/rke2sim").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build rke2sim: %v", buildErr)
	}
	return filepath.Join(buildDir, "rke2sim")
}

func TestBinaryVersionAndUsage(t *testing.T) {
	bin := simBinary(t)
	cmd := exec.Command(bin, "--version")
	cmd.Env = append(os.Environ(), "RKE2SIM_VERSION=v1.36.4+rke2r1")
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "rke2 version v1.36.4+rke2r1 ("+versionCommit("v1.36.4+rke2r1")+")\ngo version go1.") {
		t.Fatalf("--version: %q %v", out, err)
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"server", "--no-such-flag"}} {
		err := exec.Command(bin, args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
}

// TestBinaryKilledHolderLosesVIP runs real processes and SIGKILLs the VIP
// holder: the VIP moves to the survivor.
func TestBinaryKilledHolderLosesVIP(t *testing.T) {
	bin := simBinary(t)
	vip := addr(9, 100)
	start := func(host int, name, extra string) (*exec.Cmd, *syncBuffer, string) {
		dataDir := withManifests(t, loManifest(t, vip))
		cfg := filepath.Join(t.TempDir(), "config.yaml")
		body := strings.Join([]string{"node-ip: " + addr(9, host), "node-name: " + name, "tls-san: [" + vip + "]", "data-dir: " + dataDir, extra}, "\n")
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "server", "--config", cfg)
		for k, v := range baseEnv() {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		log := &syncBuffer{}
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd, log, dataDir
	}
	a, alog, aDir := start(1, "a", "token: kill")
	eventually(t, 60*time.Second, "the VIP on a", func() bool { return vipAnswers(vip) && strings.Contains(alog.String(), "VIP acquired") })
	raw, err := os.ReadFile(filepath.Join(aDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	_, blog, _ := start(2, "b", "token: "+strings.TrimSpace(string(raw))+"\nserver: "+supURL(addr(9, 1)))
	eventually(t, 60*time.Second, "b to join", func() bool { return strings.Contains(blog.String(), "\tready") })
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the VIP on b", func() bool { return vipAnswers(vip) && strings.Contains(blog.String(), "VIP acquired") })
}

func TestArtifactsAndInstall(t *testing.T) {
	bin := simBinary(t)
	out := t.TempDir()
	cmd := exec.Command("./make-artifacts.sh", bin, out)
	cmd.Env = append(os.Environ(), "RKE2SIM_VERSION=v1.36.4+rke2r1")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make-artifacts.sh: %v\n%s", err, msg)
	}
	tarball := filepath.Join(out, "rke2.linux-amd64.tar.gz")
	entries := tarEntries(t, tarball)
	for _, want := range []string{
		"bin/rke2", "bin/rke2-killall.sh", "bin/rke2-uninstall.sh",
		"lib/systemd/system/rke2-server.service", "lib/systemd/system/rke2-agent.service",
		"lib/systemd/system/rke2-server.env", "lib/systemd/system/rke2-agent.env", "share/rke2/sim-version",
	} {
		if _, ok := entries[want]; !ok {
			t.Errorf("tarball lacks %s (has %v)", want, keys(entries))
		}
	}
	for name := range entries {
		if top, _, _ := strings.Cut(name, "/"); top != "bin" && top != "lib" && top != "share" {
			t.Errorf("entry %q outside bin/, lib/, share/ (a top-level folder?)", name)
		}
	}
	unit := entries["lib/systemd/system/rke2-server.service"]
	for _, line := range []string{"Type=notify", "TimeoutStartSec=0", "Restart=always", "RestartSec=5s", "KillMode=process", "Delegate=yes",
		"ExecCondition=/bin/sh -c '! systemctl is-active --quiet rke2-agent.service'", "ExecStart=/usr/local/bin/rke2 server"} {
		if !strings.Contains(unit, line+"\n") {
			t.Errorf("rke2-server.service lacks %q", line)
		}
	}
	sums, err := os.ReadFile(filepath.Join(out, "sha256sum-amd64.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256File(t, tarball) + "  rke2.linux-amd64.tar.gz\n"; string(sums) != got {
		t.Fatalf("sha256sum-amd64.txt = %q, want %q", sums, got)
	}

	// install.sh against that folder, into a temporary prefix, with a fake systemctl.
	fakeBin := t.TempDir()
	calls := filepath.Join(fakeBin, "calls")
	if err := os.WriteFile(filepath.Join(fakeBin, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The core images archive and an extra one, both in the checksum file.
	for name, body := range map[string]string{"rke2-images.linux-amd64.tar.zst": "core", "rke2-images-kube-vip.linux-amd64.tar": "image"} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		appendSum(t, out, name)
	}
	images := filepath.Join(t.TempDir(), "images")
	unitDir := filepath.Join(t.TempDir(), "units")
	install := func(artifacts string) (string, string, error) {
		prefix := filepath.Join(t.TempDir(), "prefix")
		cmd := exec.Command(filepath.Join(out, "install.sh"))
		cmd.Env = append(os.Environ(), "PATH="+fakeBin+":"+os.Getenv("PATH"), "INSTALL_RKE2_ARTIFACT_PATH="+artifacts,
			"INSTALL_RKE2_TAR_PREFIX="+prefix, "INSTALL_RKE2_AGENT_IMAGES_DIR="+images, "RKE2SIM_INSTALL_UNIT_DIR="+unitDir, "INSTALL_RKE2_TYPE=agent")
		msg, err := cmd.CombinedOutput()
		return prefix, string(msg), err
	}
	if os.Getuid() != 0 {
		_, msg, err := install(out)
		if err == nil || !strings.Contains(msg, "You need to be root to perform this install") {
			t.Fatalf("non-root install: %v %s", err, msg)
		}
		t.Skip("the rest of install.sh needs root")
	}
	prefix, msg, err := install(out)
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, msg)
	}
	// A prefix other than /usr/local: units point at it and move where systemd reads them.
	for _, f := range []string{filepath.Join(prefix, "bin/rke2"), filepath.Join(prefix, "bin/rke2-uninstall.sh"),
		filepath.Join(prefix, "lib/systemd/system/rke2-agent.env"), filepath.Join(unitDir, "rke2-server.service"), filepath.Join(unitDir, "rke2-agent.service")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	agentUnit, _ := os.ReadFile(filepath.Join(unitDir, "rke2-agent.service"))
	if !strings.Contains(string(agentUnit), "ExecStart="+prefix+"/bin/rke2 agent") ||
		!strings.Contains(string(agentUnit), "EnvironmentFile=-"+prefix+"/lib/systemd/system/%N.env") {
		t.Errorf("the unit does not point at the prefix:\n%s", agentUnit)
	}
	for name, body := range map[string]string{"rke2-images.linux-amd64.tar.zst": "core", "rke2-images-kube-vip.linux-amd64.tar": "image"} {
		if img, err := os.ReadFile(filepath.Join(images, name)); err != nil || string(img) != body {
			t.Errorf("image archive %s not copied: %v", name, err)
		}
	}
	got, _ := os.ReadFile(calls)
	if string(got) != "daemon-reload\n" {
		t.Errorf("systemctl calls %q, want only daemon-reload", got)
	}
	ver, err := exec.Command(filepath.Join(prefix, "bin", "rke2"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(ver), "rke2 version v1.36.4+rke2r1 ("+versionCommit("v1.36.4+rke2r1")+")\ngo version go1.") {
		t.Errorf("installed rke2 --version: %q %v", ver, err)
	}

	// The real script's failures, in its words.
	variant := func(files []string, sums []string, change func(dir string)) string {
		dir := t.TempDir()
		for _, f := range files {
			copyFile(t, filepath.Join(out, f), filepath.Join(dir, f))
		}
		if err := os.WriteFile(filepath.Join(dir, "sha256sum-amd64.txt"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, f := range sums {
			appendSum(t, dir, f)
		}
		if change != nil {
			change(dir)
		}
		return dir
	}
	all := []string{"rke2.linux-amd64.tar.gz", "rke2-images.linux-amd64.tar.zst", "rke2-images-kube-vip.linux-amd64.tar"}
	corruptExtra := variant(all, all, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "rke2-images-kube-vip.linux-amd64.tar"), []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if _, msg, err := install(corruptExtra); err == nil || !strings.Contains(msg, "download sha256 does not match "+sha256Bytes("image")+", got "+sha256Bytes("changed")) {
		t.Errorf("corrupt extra image: %v\n%s", err, msg)
	}
	corruptCore := variant(all, all, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "rke2-images.linux-amd64.tar.zst"), []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if _, msg, err := install(corruptCore); err == nil || !strings.Contains(msg, "download sha256 does not match "+sha256Bytes("core")+", got "+sha256Bytes("changed")) {
		t.Errorf("corrupt core image: %v\n%s", err, msg)
	}
	// Without the core archive's checksum the extra archives are not copied.
	images2 := filepath.Join(t.TempDir(), "images")
	noCore := variant([]string{"rke2.linux-amd64.tar.gz", "rke2-images-kube-vip.linux-amd64.tar"}, []string{"rke2.linux-amd64.tar.gz", "rke2-images-kube-vip.linux-amd64.tar"}, nil)
	saved := images
	images = images2
	if _, msg, err := install(noCore); err != nil {
		t.Errorf("install without core images: %v\n%s", err, msg)
	}
	images = saved
	if _, err := os.Stat(filepath.Join(images2, "rke2-images-kube-vip.linux-amd64.tar")); err == nil {
		t.Error("an extra image archive was copied without the core archive's checksum")
	}
	// Not root.
	if setpriv, err := exec.LookPath("setpriv"); err == nil {
		script, err := os.Open(filepath.Join(out, "install.sh"))
		if err != nil {
			t.Fatal(err)
		}
		defer script.Close()
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-s")
		cmd.Stdin = script
		cmd.Env = append(os.Environ(), "INSTALL_RKE2_ARTIFACT_PATH="+out)
		msg, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(msg), "You need to be root to perform this install") {
			t.Errorf("non-root install: %v %s", err, msg)
		}
	}

	// A wrong checksum of the tarball and a missing artifact.
	corrupt := t.TempDir()
	copyFile(t, tarball, filepath.Join(corrupt, "rke2.linux-amd64.tar.gz"))
	bogus := strings.Repeat("0", 64)
	if err := os.WriteFile(filepath.Join(corrupt, "sha256sum-amd64.txt"), []byte(bogus+"  rke2.linux-amd64.tar.gz\n"+sha256File(t, tarball)+"  other.tar.gz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := install(corrupt); err == nil || !strings.Contains(msg, "download sha256 does not match "+bogus+", got "+sha256File(t, tarball)) {
		t.Errorf("corrupt checksum: %v\n%s", err, msg)
	}
	missing := t.TempDir()
	copyFile(t, filepath.Join(out, "sha256sum-amd64.txt"), filepath.Join(missing, "sha256sum-amd64.txt"))
	_, msg, err = install(missing)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(msg, "cp: cannot stat") {
		t.Errorf("missing tarball: %v\n%s", err, msg)
	}
}

func tarEntries(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		var b strings.Builder
		if h.Size < 1<<16 {
			if _, err := io.Copy(&b, tr); err != nil {
				t.Fatal(err)
			}
		}
		out[h.Name] = b.String()
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReader(f)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendSum(t *testing.T, dir, name string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "sha256sum-amd64.txt"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s  %s\n", sha256File(t, filepath.Join(dir, name)), name); err != nil {
		t.Fatal(err)
	}
}

func sha256Bytes(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestBinaryKubeVIPOutlivesStoppedServer: with RKE2SIM_KUBEVIP_OUTLIVES=1 a
// server stopped by SIGTERM leaves its kube-vip holding the VIP, answering
// nothing, findable by its pidfile; the next start takes the VIP back; and
// rke2-killall.sh stops the holder, freeing the VIP.
func TestBinaryKubeVIPOutlivesStoppedServer(t *testing.T) {
	bin := simBinary(t)
	vip := addr(15, 100)
	dataDir := withManifests(t, loManifest(t, vip))
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	body := strings.Join([]string{"node-ip: " + addr(15, 1), "node-name: a", "token: outlive", "tls-san: [" + vip + "]", "data-dir: " + dataDir}, "\n")
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(dataDir, "sim", "kube-vip.pid")
	holderPid := func() int {
		raw, err := os.ReadFile(pidfile)
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		return pid
	}
	t.Cleanup(func() {
		if pid := holderPid(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	bound := func() bool {
		ln, err := net.Listen("tcp", net.JoinHostPort(vip, testSupPort))
		if err != nil {
			return true
		}
		ln.Close()
		return false
	}
	run := func() (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(bin, "server", "--config", cfg)
		for k, v := range baseEnv() {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Env = append(cmd.Env, "RKE2SIM_KUBEVIP_OUTLIVES=1")
		log := &syncBuffer{}
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		eventually(t, 60*time.Second, "the VIP answering", func() bool { return vipAnswers(vip) })
		return cmd, log
	}
	stop := func(cmd *exec.Cmd, log *syncBuffer) {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("server after SIGTERM: %v; log:\n%s", err, log.String())
		}
		eventually(t, 30*time.Second, "the holder's pidfile", func() bool { return holderPid() > 0 })
		if syscall.Kill(holderPid(), 0) != nil {
			t.Fatal("holder process is not running")
		}
		if !bound() || vipAnswers(vip) {
			t.Fatalf("VIP bound=%v answers=%v, want held and answering nothing; log:\n%s", bound(), vipAnswers(vip), log.String())
		}
	}
	cmd, log := run()
	stop(cmd, log)
	// Held for good: nothing takes it while the server is down.
	time.Sleep(time.Second)
	if !bound() {
		t.Fatal("the VIP was let go while the server is down")
	}
	cmd, log = run() // takes it back
	if !strings.Contains(log.String(), "taking the VIP back") {
		t.Fatalf("restart did not take the VIP back; log:\n%s", log.String())
	}
	stop(cmd, log)
	// rke2-killall.sh, with a PATH that has no systemctl (it must not touch
	// this machine's units).
	pathDir := t.TempDir()
	if err := os.Symlink("/usr/bin/id", filepath.Join(pathDir, "id")); err != nil {
		t.Fatal(err)
	}
	killall := exec.Command("/bin/sh", "artifacts/rke2-killall.sh")
	killall.Env = []string{"PATH=" + pathDir, "RKE2_DATA_DIR=" + dataDir}
	if out, err := killall.CombinedOutput(); err != nil {
		t.Fatalf("rke2-killall.sh: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "the VIP freed by rke2-killall.sh", func() bool { return !bound() && holderPid() == 0 })
}

// TestArtifactsOfTwoVersionsSideBySide: make-artifacts.sh takes a version;
// the rke2 of each folder prints its own, in RKE2's format.
func TestArtifactsOfTwoVersionsSideBySide(t *testing.T) {
	bin := simBinary(t)
	for _, v := range []string{"v1.35.2+rke2r1", "v1.36.4+rke2r2"} {
		out := filepath.Join(t.TempDir(), v)
		if msg, err := exec.Command("./make-artifacts.sh", bin, out, v).CombinedOutput(); err != nil {
			t.Fatalf("make-artifacts.sh %s: %v\n%s", v, err, msg)
		}
		root := t.TempDir()
		if msg, err := exec.Command("tar", "-xzf", filepath.Join(out, "rke2.linux-amd64.tar.gz"), "-C", root).CombinedOutput(); err != nil {
			t.Fatalf("untar: %v\n%s", err, msg)
		}
		cmd := exec.Command(filepath.Join(root, "bin", "rke2"), "--version")
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		got, err := cmd.Output()
		want := "rke2 version " + v + " (" + versionCommit(v) + ")\ngo version go"
		if err != nil || !strings.HasPrefix(string(got), want) {
			t.Errorf("%s: --version %q %v, want prefix %q", v, got, err, want)
		}
	}
	if msg, err := exec.Command("./make-artifacts.sh", bin, t.TempDir(), "1.36").CombinedOutput(); err == nil || !strings.Contains(string(msg), "want RKE2's form") {
		t.Errorf("malformed version accepted: %v %s", err, msg)
	}
}
