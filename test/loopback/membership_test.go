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
