package rke2sim

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runCmd runs one rke2 command line in-process against r's config and
// environment and returns its exit code, stdout and log.
func runCmd(t *testing.T, r *simRun, args ...string) (int, string, string) {
	t.Helper()
	env := baseEnv()
	env["RKE2SIM_NODE_PASSWORD_FILE"] = filepath.Join(r.dataDir, "etc-rancher-node", "password")
	for k, v := range r.spec.env {
		env[k] = v
	}
	var out, log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := Main(ctx, Options{Args: append(args, "--config", r.cfgPath), Getenv: func(k string) string { return env[k] },
		Stdout: &out, Stderr: &log})
	return code, out.String(), log.String()
}

// TestClusterResetAndSnapshots: etcd-snapshot save writes an on-demand
// snapshot through the running server; with every server stopped,
// --cluster-reset leaves one member with its data, writes reset-flag,
// says RKE2's words and exits 0; a second reset is refused; the next start
// removes reset-flag; a reset restoring the snapshot brings back the data
// as it was when the snapshot was taken.
func TestClusterResetAndSnapshots(t *testing.T) {
	cfg := func(host int, name string, join bool) string {
		c := []string{"node-ip: " + addr(14, host), "node-name: " + name, "token: s3cret"}
		if join {
			c = append(c, "server: "+supURL(addr(14, 1)))
		}
		return strings.Join(c, "\n")
	}
	a := startSim(t, simSpec{config: cfg(1, "a", false)})
	a.waitReady()
	b := startSim(t, simSpec{config: cfg(2, "b", true)})
	b.waitReady()
	c := startSim(t, simSpec{config: cfg(3, "c", true)})
	c.waitReady()

	code, out, log := runCmd(t, a, "etcd-snapshot", "save")
	m := regexp.MustCompile(`^Snapshot (on-demand-a-[0-9]+) saved\.\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("etcd-snapshot save: exit %d, stdout %q; log:\n%s", code, out, log)
	}
	snap := filepath.Join(a.dataDir, "server", "db", "snapshots", m[1])
	if fi, err := os.Stat(snap); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file %s: %v %v", snap, fi, err)
	}
	// --name sets the snapshot's base name, as RKE2's flag does.
	code, out, log = runCmd(t, a, "etcd-snapshot", "save", "--name", "pre-upgrade-v1.36.1-rke2r1")
	if m := regexp.MustCompile(`^Snapshot (pre-upgrade-v1\.36\.1-rke2r1-a-[0-9]+) saved\.\n$`).FindStringSubmatch(out); code != 0 || m == nil {
		t.Fatalf("etcd-snapshot save --name: exit %d, stdout %q; log:\n%s", code, out, log)
	} else if _, err := os.Stat(filepath.Join(a.dataDir, "server", "db", "snapshots", m[1])); err != nil {
		t.Fatal(err)
	}
	k := adminClient(t, filepath.Join(filepath.Dir(a.cfgPath), "rke2.yaml"), addr(14, 1))
	if code, body := k.do(http.MethodPatch, "/api/v1/nodes/a", "application/merge-patch+json", `{"spec":{"unschedulable":true}}`); code != http.StatusOK {
		t.Fatalf("cordon a after the snapshot: %d %s", code, body)
	}
	for _, r := range []*simRun{c, b, a} {
		r.stop()
	}
	if code, out, log := runCmd(t, a, "etcd-snapshot", "save"); code != 1 || out != "" || !strings.Contains(log, "the local server is not running") {
		t.Fatalf("etcd-snapshot save with the server stopped: exit %d %q; log:\n%s", code, out, log)
	}

	// The reset: one member, its data kept.
	code, _, log = runCmd(t, a, "server", "--cluster-reset")
	flag := filepath.Join(a.dataDir, "server", "db", "reset-flag")
	if code != 0 || !strings.Contains(log, reasonResetDone) {
		t.Fatalf("cluster-reset: exit %d; log:\n%s", code, log)
	}
	if r := a.state().Resets; len(r) != 1 {
		t.Fatalf("state.json resets %q after one cluster-reset, want one", r)
	}
	if _, err := os.Stat(flag); err != nil {
		t.Fatalf("reset-flag: %v", err)
	}
	if e := a.state().Etcd; len(e.Members) != 1 || nodeNameOf(e.Members[0].Name) != "a" || e.Leader != e.Members[0].Name {
		t.Fatalf("etcd after reset %+v", e)
	}
	code, _, log = runCmd(t, a, "server", "--cluster-reset")
	again := fmt.Sprintf(reasonResetAgain, flag)
	if code != 1 || !strings.Contains(log, again) || !hasRejection(a.state(), again) {
		t.Fatalf("second reset: exit %d, want 1 and %q; log:\n%s", code, again, log)
	}
	a2 := startSim(t, simSpec{dataDir: a.dataDir, config: cfg(1, "a", false)})
	a2.waitReady()
	if _, err := os.Stat(flag); !os.IsNotExist(err) {
		t.Fatalf("reset-flag after a normal start: %v, want it gone", err)
	}
	k = adminClient(t, filepath.Join(filepath.Dir(a2.cfgPath), "rke2.yaml"), addr(14, 1))
	if code, kn := k.node("a"); code != http.StatusOK || !kn.Spec.Unschedulable {
		t.Fatalf("a after the reset: %d %+v, want its data (cordoned)", code, kn)
	}
	if code, kn := k.node("c"); code != http.StatusOK {
		t.Fatalf("c's Node after the reset: %d %+v, want it kept (only membership is reset)", code, kn)
	}
	a2.stop()

	// A reset from the snapshot: the data as it was then (not cordoned).
	code, _, log = runCmd(t, a, "server", "--cluster-reset", "--cluster-reset-restore-path="+snap)
	if code != 0 || !strings.Contains(log, reasonResetDone) {
		t.Fatalf("cluster-reset from a snapshot: exit %d; log:\n%s", code, log)
	}
	if old, _ := filepath.Glob(filepath.Join(a.dataDir, "server", "db", "etcd-old-*")); len(old) != 1 {
		t.Fatalf("old datastore kept aside: %v", old)
	}
	a3 := startSim(t, simSpec{dataDir: a.dataDir, config: cfg(1, "a", false)})
	a3.waitReady()
	k = adminClient(t, filepath.Join(filepath.Dir(a3.cfgPath), "rke2.yaml"), addr(14, 1))
	if code, kn := k.node("a"); code != http.StatusOK || kn.Spec.Unschedulable {
		t.Fatalf("a after the restore: %d %+v, want the snapshot's (not cordoned)", code, kn)
	}
	if e := a3.state().Etcd; len(e.Members) != 1 {
		t.Fatalf("etcd after restore %+v", e)
	}
}

func TestClusterResetFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--cluster-reset"}, "flag provided but not defined: --cluster-reset"},
		{[]string{"server", "--cluster-reset-restore-path=/x"}, "--cluster-reset-restore-path needs --cluster-reset"},
		{[]string{"server", "--cluster-reset-restore-path"}, "flag needs an argument: --cluster-reset-restore-path"},
		{[]string{"etcd-snapshot"}, "want the save subcommand"},
		{[]string{"etcd-snapshot", "list"}, "want the save subcommand"},
		{[]string{"server", "--name", "x"}, "flag provided but not defined: --name"},
		{[]string{"etcd-snapshot", "save", "--name", "../x"}, "a snapshot's base name is"},
		{[]string{"etcd-snapshot", "save", "--name"}, "flag needs an argument: --name"},
	}
	for _, tc := range cases {
		var errb bytes.Buffer
		code := Main(context.Background(), Options{Args: tc.args, Getenv: func(string) string { return "" }, Stdout: &bytes.Buffer{}, Stderr: &errb})
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d %q, want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
