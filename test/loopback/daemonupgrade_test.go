package loopback

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/test/testbin"
)

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
	commit, err := testbin.ReadRelease(previousRelease)
	if err != nil {
		t.Fatal(err)
	}
	previous, err := testbin.BuildRelease(dir, commit, "0.0.0-previous")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := claims.Generate("demo")
	if err != nil {
		t.Fatal(err)
	}
	c, err := demo.New(demo.Options{
		Servers: 3, Agents: 1, Base: "127.94.0.11", Dir: filepath.Join(dir, "hosts"), Token: tok.Server, AgentToken: tok.Agent,
		Daemon: daemonBin, Sim: simBin, Env: simEnv, LogLevel: "debug",
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
	use := func(n *demo.Node, bin string) { n.SetDaemon(bin) }
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
