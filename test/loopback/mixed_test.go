package loopback

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
)

// previousBuild is the last daemon build without signed claims: servers of
// it publish their metadata unsigned, and must keep working beside this
// build during a rolling upgrade of the daemon.
const previousBuild = "a54288e"

// buildPrevious builds the previous daemon from the repository's history
// into dir; the test is skipped when the history is not there (a source
// archive).
func buildPrevious(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o700); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, previousBuild, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Skipf("no source of %s to build the previous daemon from: %v: %s", previousBuild, err, out)
	}
	bin := filepath.Join(dir, "rke2-hanode-previous")
	build := exec.Command("go", "build", "-o", bin, "./cmd/rke2-hanode")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v: %s", previousBuild, err, out)
	}
	return bin
}

// TestRollingDaemonUpgrade: a two-token cluster of the previous build
// (3 servers, 1 agent) is upgraded host by host to this build. Mid-way,
// a server of this build resumes among servers of the previous one, an
// agent of this build sees the previous build's servers (vouched for as
// raft voters by the upgraded server's claim) and runs on, and at the end
// every host is ready with every server's claim verified everywhere.
func TestRollingDaemonUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("loopback clusters take tens of seconds; skipped with -short")
	}
	dir := t.TempDir()
	previous := buildPrevious(t, dir)
	// Each host runs the build named in its folder's daemon-bin file.
	wrapper := filepath.Join(dir, "daemon")
	script := "#!/bin/sh\nbin=$(cat \"$(dirname \"$3\")/daemon-bin\")\nexec \"$bin\" \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	tok, err := claims.Generate("demo")
	if err != nil {
		t.Fatal(err)
	}
	c, err := demo.New(demo.Options{
		Servers: 3, Agents: 1, Base: "127.94.0.11", Dir: filepath.Join(dir, "hosts"), Token: tok.Server, AgentToken: tok.Agent,
		Daemon: wrapper, Sim: simBin, Env: simEnv, LogLevel: "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("---- %s: last lines of its log\n%s", n.Name, tail(n.LogPath, 40))
			}
		}
		c.Close()
	})
	use := func(n *demo.Node, bin string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(filepath.Dir(n.ConfigPath), "daemon-bin"), []byte(bin), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		use(n, previous)
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 3*time.Minute)

	upgrade := func(name string) {
		t.Helper()
		n := c.Node(name)
		n.Stop(30 * time.Second)
		use(n, daemonBin)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c, 3*time.Minute)
	}
	upgrade("server-1")
	upgrade("agent-1")
	// The upgraded agent sees the previous build's servers as servers:
	// server-1's claim vouches for them.
	st, err := c.Node("agent-1").Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if strings.HasPrefix(m.Name, "server-") && (m.Role != "server" || m.UnverifiedServer) {
			t.Errorf("agent-1 (this build) sees %s as %+v", m.Name, m)
		}
		if m.Name == "server-1" && !m.ClaimVerified {
			t.Errorf("agent-1 does not verify server-1's claim: %+v", m)
		}
	}
	upgrade("server-2")
	upgrade("server-3")
	rows := waitReady(t, c, 3*time.Minute)
	checkCluster(t, c, true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last string
	if err := demo.WaitFor(ctx, time.Second, func() bool {
		for _, r := range rows {
			st, err := r.Node.Status(ctx)
			if err != nil {
				last = err.Error()
				return false
			}
			for _, m := range st.Members {
				if m.Role == "server" && !m.ClaimVerified || m.UnverifiedServer {
					last = r.Node.Name + " sees " + m.Name + " unverified"
					return false
				}
			}
		}
		return true
	}); err != nil {
		t.Errorf("after the upgrade: %s", last)
	}
}
