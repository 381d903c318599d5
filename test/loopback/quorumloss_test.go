package loopback

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// runRecover runs `rke2-hanode recover` for n as the operator would on
// that host, with rke2sim's environment; it returns the exit code and the
// output.
func runRecover(t *testing.T, n *demo.Node, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(daemonBin, append([]string{"recover", "--config", n.ConfigPath}, args...)...)
	cmd.Env = append(append(os.Environ(), simEnv...), "RKE2SIM_NODE_DIR="+n.Dir)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// TestQuorumLoss: three servers; two die (daemon and RKE2 killed), the
// bootstrap node among them, so that it too comes back removed. The
// survivor cannot recover alone: raft and etcd both lost their quorum;
// status and the metric say so and name it the newest survivor, which its
// daemon records for recover. The operator stops its daemon and runs
// `recover`: refused without --confirm and for another host; with them it
// runs RKE2's cluster-reset and recovers raft to the survivor. Started
// again, the survivor serves the cluster alone. The two dead servers then
// come back with their old disks: each sees the newer recovery epoch in
// the survivor's claim, wipes its datastore from before and rejoins
// through the slot. Real etcd ends with three voters, none of the old
// members of the two, one cluster-reset recorded, and no server started
// with cluster-init any more.
func TestQuorumLoss(t *testing.T) {
	c := newCluster(t, "127.90.0.11", 3, 0)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	rows := waitReady(t, c, 120*time.Second)
	// The survivor is a server that joined: the bootstrap node, whichever
	// raft chose, is among the two that die and return.
	boot := rows[0].Status.Cluster.BootstrapNode
	var survivor *demo.Node
	var others []*demo.Node
	for _, n := range c.Nodes {
		if survivor == nil && n.Name != boot {
			survivor = n
		} else {
			others = append(others, n)
		}
	}
	if survivor == nil || len(others) != 2 || (others[0].Name != boot && others[1].Name != boot) {
		t.Fatalf("bootstrap node %q: no joined server to survive among %d", boot, len(c.Nodes))
	}
	two := others[0].Name + " and " + others[1].Name
	old := map[string]bool{} // the etcd members of the two
	for _, v := range others {
		s, err := readSimEtcd(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range s.Etcd.Members {
			if hostOfMember(m.Name) == v.Name {
				old[m.Name] = true
			}
		}
	}
	if len(old) != 2 {
		t.Fatalf("etcd members of %s before: %v", two, old)
	}
	for _, v := range others {
		pids := v.SimPIDs()
		v.Kill()
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	t.Logf("%s (bootstrap node %s) killed; %s survives", two, boot, survivor.Name)

	// The survivor sees the majority gone: no raft leader, the others dead,
	// RKE2 not ready there (etcd without quorum).
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var st status.Status
	err := demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
		var err error
		if st, err = survivor.Status(ctx); err != nil || st.Cluster.Raft.Leader != "" {
			return false
		}
		dead := 0
		for _, m := range st.Members {
			if m.Name != survivor.Name && m.State != "alive" {
				dead++
			}
		}
		return dead == 2
	})
	if err != nil {
		t.Fatalf("the survivor does not see the majority gone: raft %+v, members %+v", st.Cluster.Raft, st.Members)
	}

	// Status and the metric say the quorum is lost and name the survivor
	// with the newest data; the daemon records it for recover.
	e := waitEtcdStatus(t, survivor, "quorum lost with the survivor named", func(e *status.Etcd) bool {
		return e.MajorityGone && e.NewestSurvivor != nil && e.NewestSurvivor.Name == survivor.Name && e.NewestSurvivor.Revision > 0
	})
	if m := scrape(t, survivor); !containsLine(m, "rke2_hanode_quorum_lost 1") {
		t.Errorf("%s: metrics do not show quorum lost", survivor.Name)
	}
	record := filepath.Join(survivor.Dir, "hanode", "quorum-lost.json")
	if err := demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
		b, err := os.ReadFile(record)
		return err == nil && strings.Contains(string(b), `"survivor": "`+survivor.Name+`"`)
	}); err != nil {
		t.Fatalf("%s: no quorum-loss assessment naming it at %s", survivor.Name, record)
	}
	t.Logf("quorum lost: newest survivor %s at revision %d", e.NewestSurvivor.Name, e.NewestSurvivor.Revision)

	// While its daemon runs, recover refuses (the raft store is in use).
	if code, out := runRecover(t, survivor, "--from", survivor.Name, "--confirm"); code != 2 || !strings.Contains(out, "stop it first") {
		t.Fatalf("recover with the daemon running: exit %d\n%s", code, out)
	}
	survivor.Stop(30 * time.Second)
	waitGone(t, survivor)
	if code, out := runRecover(t, survivor, "--from", survivor.Name); code != 2 || !strings.Contains(out, "--confirm") {
		t.Fatalf("recover without --confirm: exit %d\n%s", code, out)
	}
	if code, out := runRecover(t, survivor, "--from", others[0].Name, "--confirm"); code != 2 || !strings.Contains(out, "run recover on "+others[0].Name+" itself") {
		t.Fatalf("recover from another host: exit %d\n%s", code, out)
	}
	code, out := runRecover(t, survivor, "--from", survivor.Name, "--confirm")
	if code != 0 || !strings.Contains(out, "raft recovered: "+survivor.Name+" is the only voter; recovery epoch 1") {
		t.Fatalf("recover: exit %d\n%s", code, out)
	}
	t.Logf("recover:\n%s", out)

	if err := survivor.Start(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel2()
	err = demo.WaitFor(ctx2, 500*time.Millisecond, func() bool {
		var err error
		st, err = survivor.Status(ctx2)
		return err == nil && st.Node.Phase == status.PhaseReady && st.Cluster.VIPReachable
	})
	if err != nil {
		t.Fatalf("the recovered survivor is not ready with the VIP: phase %q (%s), detail %q", st.Node.Phase, st.Node.Error, st.Node.Detail)
	}
	if st.Cluster.Raft.Leader != survivor.Name {
		t.Errorf("raft leader %q after the recovery, want %s", st.Cluster.Raft.Leader, survivor.Name)
	}

	// The two come back with their old disks: they wipe and rejoin.
	for _, v := range others {
		if err := v.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel3()
	err = demo.WaitFor(ctx3, 500*time.Millisecond, func() bool {
		for _, n := range others {
			if st, err := n.Status(ctx3); err != nil || st.Node.Phase != status.PhaseReady {
				return false
			}
		}
		return true
	})
	if err != nil {
		for _, n := range others {
			st, _ := n.Status(context.Background())
			t.Logf("%s: phase %q (%s) %q", n.Name, st.Node.Phase, st.Node.Error, st.Node.Detail)
		}
		t.Fatal("the returning servers did not rejoin the recovered cluster")
	}
	want := []string{"server-1", "server-2", "server-3"}
	for _, n := range c.Nodes {
		etcdVoters(t, n, want)
		s, err := readSimEtcd(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range s.Etcd.Members {
			if old[m.Name] {
				t.Errorf("%s: etcd still lists the old member %s", n.Name, m.Name)
			}
		}
	}
	for _, n := range others {
		aside, _ := filepath.Glob(filepath.Join(n.RKE2DataDir, "server", "db.wiped-*"))
		if len(aside) != 1 {
			t.Errorf("%s: server/db moved aside %v, want once", n.Name, aside)
		}
		if s := readSim(t, n); s.Mode != "join" {
			t.Errorf("%s: rke2sim mode %q, want join", n.Name, s.Mode)
		}
	}
	if s := readSimResets(t, survivor); s != 1 {
		t.Errorf("%s: %d cluster-resets recorded, want 1", survivor.Name, s)
	}
	checkClusterInits(t, c, true, 0)

	// The old bootstrap node restarts: it resumes as the joiner it now is,
	// on its datastore, never with cluster-init.
	var bootNode *demo.Node
	for _, n := range others {
		if n.Name == boot {
			bootNode = n
		}
	}
	bootNode.Stop(30 * time.Second)
	waitGone(t, bootNode)
	if err := bootNode.Start(); err != nil {
		t.Fatal(err)
	}
	ctx4, cancel4 := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel4()
	if err := demo.WaitFor(ctx4, 500*time.Millisecond, func() bool {
		st, err := bootNode.Status(ctx4)
		return err == nil && st.Node.Phase == status.PhaseReady
	}); err != nil {
		st, _ := bootNode.Status(context.Background())
		t.Fatalf("%s (the old bootstrap node) restarted: phase %q (%s) %q", boot, st.Node.Phase, st.Node.Error, st.Node.Detail)
	}
	if s := readSim(t, bootNode); s.Mode != "join" {
		t.Errorf("%s restarted: rke2sim mode %q, want join", boot, s.Mode)
	}
	for _, n := range c.Nodes {
		etcdVoters(t, n, want)
	}
	checkClusterInits(t, c, true, 0)
}

// waitGone waits until n's daemon and RKE2 processes are gone.
func waitGone(t *testing.T, n *demo.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if demo.WaitFor(ctx, 250*time.Millisecond, func() bool { return !n.Running() && len(simServerPIDs(n)) == 0 }) != nil {
		t.Fatalf("%s: processes still running after the stop", n.Name)
	}
}

func readSimResets(t *testing.T, n *demo.Node) int {
	t.Helper()
	var s struct {
		Resets []string `json:"resets"`
	}
	data, err := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return len(s.Resets)
}
