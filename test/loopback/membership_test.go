package loopback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// simEtcd is state.json's etcd section: real etcd's member list.
type simEtcd struct {
	Etcd struct {
		Members []struct {
			Name    string `json:"name"`
			PeerURL string `json:"peer_url"`
			Learner bool   `json:"learner"`
		} `json:"members"`
	} `json:"etcd"`
}

// TestSpareServer: three servers form; a 4th started later would make the
// etcd voters even, so it waits in standby with RKE2 installed and never
// started; a 5th admits both, and they join one at a time. Real etcd is
// the witness: one etcd of 5 voters, no learner.
func TestSpareServer(t *testing.T) {
	c := newCluster(t, "127.86.0.11", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)

	fourth, err := c.AddNode("server-4", "server", "127.86.0.14")
	if err != nil {
		t.Fatal(err)
	}
	if err := fourth.Start(); err != nil {
		t.Fatal(err)
	}
	var st status.Status
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	err = demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		var err error
		st, err = fourth.Status(ctx)
		return err == nil && st.Node.Phase == status.PhaseStandby
	})
	cancel()
	if err != nil {
		t.Fatalf("the 4th server never showed standby: phase %q, error %q", st.Node.Phase, st.Node.Error)
	}
	if st.Node.Standby == "" {
		t.Errorf("the 4th server's status does not say what it waits for: %+v", st.Node)
	}
	t.Logf("server-4 in standby: %s", st.Node.Standby)
	// It stays there: a 4th voter would make the count even.
	for range 20 {
		time.Sleep(250 * time.Millisecond)
		st, err := fourth.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Node.Phase != status.PhaseStandby {
			t.Fatalf("the 4th server left standby alone: phase %q (%s)", st.Node.Phase, st.Node.Error)
		}
	}
	if _, err := os.Stat(filepath.Join(fourth.RKE2DataDir, "sim", "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the 4th server's RKE2 ran while in standby (state.json: %v)", err)
	}
	if m := scrape(t, c.Nodes[0]); !containsLine(m, "rke2_hanode_standby_servers 1") {
		t.Errorf("server-1's metrics do not count one standby server")
	}
	other, err := c.Nodes[0].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(other.Cluster.StandbyServers) != "[server-4]" {
		t.Errorf("server-1's status shows standby servers %v, want [server-4]", other.Cluster.StandbyServers)
	}

	fifth, err := c.AddNode("server-5", "server", "127.86.0.15")
	if err != nil {
		t.Fatal(err)
	}
	if err := fifth.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 180*time.Second)
	checkCluster(t, c, false)

	// Real etcd: five voters, no learner, as every server's etcd sees it
	// once its view settled.
	for _, n := range c.Nodes {
		var e simEtcd
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
			e = simEtcd{}
			data, err := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
			if err != nil || json.Unmarshal(data, &e) != nil {
				return false
			}
			voters := 0
			for _, m := range e.Etcd.Members {
				if m.Learner {
					return false
				}
				voters++
			}
			return voters == 5
		})
		cancel()
		if err != nil {
			t.Errorf("%s: etcd members %+v, want 5 voters and no learner", n.Name, e.Etcd.Members)
		}
	}
	if m := scrape(t, c.Nodes[0]); !containsLine(m, "rke2_hanode_standby_servers 0") {
		t.Errorf("server-1's metrics still count a standby server")
	}
}

// containsLine reports whether text has line as one of its lines.
func containsLine(text, line string) bool {
	return slices.Contains(strings.Split(text, "\n"), line)
}

// shortRemoval sets server-removal-timeout on n's config.
func shortRemoval(t *testing.T, n *demo.Node, d string) {
	t.Helper()
	data, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "server-removal-timeout") {
		t.Fatalf("%s: config already sets server-removal-timeout", n.Name)
	}
	data = append(data, []byte("server-removal-timeout: "+d+"\n")...)
	if err := os.WriteFile(n.ConfigPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// etcdVoters waits (60s at most) until n's real etcd lists exactly the
// hosts want as voters, and no learner.
func etcdVoters(t *testing.T, n *demo.Node, want []string) bool {
	t.Helper()
	var e simEtcd
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		e = simEtcd{}
		data, err := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
		if err != nil || json.Unmarshal(data, &e) != nil {
			return false
		}
		var names []string
		for _, m := range e.Etcd.Members {
			if m.Learner {
				return false
			}
			names = append(names, hostOfMember(m.Name))
		}
		slices.Sort(names)
		return slices.Equal(names, want)
	})
	if err != nil {
		t.Errorf("%s: etcd members %+v, want voters %v and no learner", n.Name, e.Etcd.Members, want)
		return false
	}
	return true
}

// hostOfMember is the host of an etcd member name, which RKE2 makes
// <node name>-<random suffix>.
func hostOfMember(member string) string {
	if i := strings.LastIndexByte(member, '-'); i > 0 {
		return member[:i]
	}
	return member
}

// TestServerDies: three servers and a 4th in standby; one server dies for
// good (daemon and RKE2). After server-removal-timeout the leader removes
// it by consensus, its Node is deleted through the Kubernetes API (RKE2's
// etcd controller removes the member), and the standby joins: real etcd
// ends with 3 voters, the dead one gone.
func TestServerDies(t *testing.T) {
	c := newCluster(t, "127.87.0.11", 3, 0)
	for _, n := range c.Nodes {
		shortRemoval(t, n, "10s")
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	fourth, err := c.AddNode("server-4", "server", "127.87.0.14")
	if err != nil {
		t.Fatal(err)
	}
	shortRemoval(t, fourth, "10s")
	if err := fourth.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	err = demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		st, err := fourth.Status(ctx)
		return err == nil && st.Node.Phase == status.PhaseStandby
	})
	cancel()
	if err != nil {
		t.Fatal("the 4th server never showed standby")
	}
	st, err := c.Nodes[0].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The victim is a server that does not lead raft.
	var victim *demo.Node
	var survivors []string
	for _, n := range c.Nodes[:3] {
		if victim == nil && n.Name != st.Cluster.Raft.Leader {
			victim = n
			continue
		}
		survivors = append(survivors, n.Name)
	}
	t.Logf("killing %s for good (raft leader %s)", victim.Name, st.Cluster.Raft.Leader)
	pids := victim.SimPIDs()
	victim.Kill()
	for _, pid := range pids {
		_ = syscallKill(pid)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 180*time.Second)
	err = demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		st, err := fourth.Status(ctx)
		return err == nil && st.Node.Phase == status.PhaseReady
	})
	cancel()
	if err != nil {
		st, _ := fourth.Status(context.Background())
		t.Fatalf("the standby server did not join after %s died: phase %q (%s)", victim.Name, st.Node.Phase, st.Node.Error)
	}
	want := append(survivors, "server-4")
	slices.Sort(want)
	for _, n := range c.Nodes {
		if n != victim {
			etcdVoters(t, n, want)
		}
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
