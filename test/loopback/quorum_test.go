package loopback

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// simEtcdState is state.json's etcd section with the leader and revision.
type simEtcdState struct {
	Etcd struct {
		Members []struct {
			Name    string `json:"name"`
			Learner bool   `json:"learner"`
		} `json:"members"`
		Leader   string `json:"leader"`
		Revision int64  `json:"revision"`
	} `json:"etcd"`
}

func readSimEtcd(n *demo.Node) (simEtcdState, error) {
	var s simEtcdState
	data, err := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(data, &s)
}

// waitEtcdStatus waits (3 minutes at most) until n's /status cluster.etcd
// satisfies ok, and returns it.
func waitEtcdStatus(t *testing.T, n *demo.Node, what string, ok func(e *status.Etcd) bool) *status.Etcd {
	t.Helper()
	var last *status.Etcd
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		st, err := n.Status(ctx)
		if err != nil {
			return false
		}
		last = st.Cluster.Etcd
		return last != nil && ok(last)
	})
	if err != nil {
		b, _ := json.Marshal(last)
		t.Fatalf("%s: %s never shown; cluster.etcd %s", n.Name, what, b)
	}
	return last
}

// statusTable is what `rke2-hanode status` prints for n.
func statusTable(t *testing.T, n *demo.Node) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, daemonBin, "status", "--address", "http://"+n.HTTPAddress).CombinedOutput()
	if err != nil {
		t.Fatalf("rke2-hanode status on %s: %v\n%s", n.Name, err, out)
	}
	return string(out)
}

// killHost kills n's daemon and its RKE2 for good.
func killHost(n *demo.Node) {
	pids := n.SimPIDs()
	n.Kill()
	for _, pid := range pids {
		_ = syscallKill(pid)
	}
}

// TestQuorumAtRisk: three servers form; every one reads its real etcd
// (through RKE2's client TLS and JSON gateway) and shows 3 voters with a
// margin of 1. One is killed: the survivors show 3 voters, margin 0, at
// risk, in status and metrics. A second is killed: the last one shows
// quorum lost and names itself the newest survivor with the revision its
// etcd holds. rke2sim's state.json is the witness of the members, the
// leader and the revision.
func TestQuorumAtRisk(t *testing.T) {
	c := newCluster(t, "127.88.0.11", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 120*time.Second)
	for _, n := range c.Nodes {
		e := waitEtcdStatus(t, n, "3 healthy voters, margin 1", func(e *status.Etcd) bool {
			return e.Voters == 3 && e.Healthy == 3 && e.QuorumMargin == 1 && !e.QuorumAtRisk && !e.MajorityGone && !e.ObservedAt.IsZero()
		})
		for _, m := range e.Members {
			if m.ID == "" || m.Learner || !m.Healthy {
				t.Errorf("%s: member %+v, want a healthy voter with its etcd ID", n.Name, m)
			}
		}
		if m := scrape(t, n); !containsLine(m, "rke2_hanode_etcd_voters 3") || !containsLine(m, "rke2_hanode_quorum_margin 1") ||
			!containsLine(m, "rke2_hanode_quorum_at_risk 0") || !containsLine(m, "rke2_hanode_quorum_lost 0") || !containsLine(m, "rke2_hanode_etcd_learners 0") {
			t.Errorf("%s: metrics do not show 3 voters with margin 1", n.Name)
		}
	}

	first, second, last := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	t.Logf("killing %s", first.Name)
	killHost(first)
	for _, n := range []*demo.Node{second, last} {
		waitEtcdStatus(t, n, "3 voters, margin 0, at risk", func(e *status.Etcd) bool {
			return e.Voters == 3 && e.Healthy == 2 && e.QuorumMargin == 0 && e.QuorumAtRisk && !e.MajorityGone
		})
		if m := scrape(t, n); !containsLine(m, "rke2_hanode_etcd_voters 3") || !containsLine(m, "rke2_hanode_quorum_margin 0") ||
			!containsLine(m, "rke2_hanode_quorum_at_risk 1") || !containsLine(m, "rke2_hanode_quorum_lost 0") {
			t.Errorf("%s: metrics do not show 3 voters, margin 0, at risk", n.Name)
		}
		if out := statusTable(t, n); !strings.Contains(out, "etcd: 3 voters, 0 learners, 2 answer, quorum margin 0") ||
			!strings.Contains(out, "WARNING: etcd quorum is at risk") {
			t.Errorf("%s: rke2-hanode status does not show the margin and the warning:\n%s", n.Name, out)
		}
		if s, err := readSimEtcd(n); err != nil || len(s.Etcd.Members) != 3 || s.Etcd.Leader == "" {
			t.Errorf("%s: real etcd %+v (%v), want 3 members and a leader", n.Name, s.Etcd, err)
		}
	}

	t.Logf("killing %s", second.Name)
	killHost(second)
	// Without quorum no write happens, so the revision the survivor names
	// is the one its etcd holds, as rke2sim records it.
	var sim simEtcdState
	e := waitEtcdStatus(t, last, "quorum lost with the survivor named", func(e *status.Etcd) bool {
		var err error
		sim, err = readSimEtcd(last)
		return err == nil && e.MajorityGone && e.QuorumAtRisk && e.QuorumMargin < 0 && e.Voters == 3 &&
			e.NewestSurvivor != nil && e.NewestSurvivor.Name == last.Name && e.NewestSurvivor.Revision == sim.Etcd.Revision && sim.Etcd.Leader == ""
	})
	if e.NewestSurvivor.Revision <= 0 {
		t.Errorf("survivor revision %d, want the store's (> 0)", e.NewestSurvivor.Revision)
	}
	if m := scrape(t, last); !containsLine(m, "rke2_hanode_quorum_lost 1") || !containsLine(m, "rke2_hanode_quorum_at_risk 1") {
		t.Errorf("%s: metrics do not show quorum lost", last.Name)
	}
	if out := statusTable(t, last); !strings.Contains(out, "WARNING: etcd quorum is lost") || !strings.Contains(out, "newest survivor is "+last.Name) {
		t.Errorf("%s: rke2-hanode status does not show quorum lost and the survivor:\n%s", last.Name, out)
	}
	t.Logf("%s: quorum lost, newest survivor %s at revision %d (rke2sim: %d members, no leader)", last.Name, e.NewestSurvivor.Name, e.NewestSurvivor.Revision, len(sim.Etcd.Members))
}
