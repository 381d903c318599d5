package election

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// writeFormedRaft leaves in dataDir the raft store of server a of a formed
// three-server cluster (a bootstrap, b and c joined), as a stopped daemon
// leaves it.
func writeFormedRaft(t *testing.T, dataDir string) {
	t.Helper()
	dir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = "a"
	conf.Logger = hclog.NewNullLogger()
	_, trans := raft.NewInmemTransport("a")
	cfg := raft.Configuration{}
	for _, id := range []string{"a", "b", "c"} {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress("10.0.0." + id + ":9348")})
	}
	if err := raft.BootstrapCluster(conf, bolt, bolt, snaps, trans, cfg); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	cmds := []Command{
		{Op: opClaim, Node: "a", At: at},
		{Op: opStarted, Node: "a", At: at},
		{Op: opReady, VIP: "10.0.0.200", CAHash: testCAHash, At: at},
		{Op: opGrant, Node: "b", At: at, Expires: at + int64(time.Hour)},
		{Op: opJoined, Node: "b", At: at},
		{Op: opGrant, Node: "c", At: at, Expires: at + int64(time.Hour)},
		{Op: opJoined, Node: "c", At: at},
	}
	var logs []*raft.Log
	for i, c := range cmds {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i + 2), Term: 1, Type: raft.LogCommand, Data: b})
	}
	if err := bolt.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

const testCAHash = "6597969d83d36d4d390696b6599625ebe7dad9c95165d4fc8bf76b572f50d992"

// TestRecoverRaftOffline: on a stopped survivor, the raft store is read
// (voters, state), then recovered to the survivor alone; the state it keeps
// records the recovery epoch and the other servers as removed, and a
// second recovery raises the epoch.
func TestRecoverRaftOffline(t *testing.T) {
	dataDir := t.TempDir()
	writeFormedRaft(t, dataDir)
	before, err := ReadRaftOffline(dataDir, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Voters) != 3 || before.Voters[1].ID != "b" || before.Voters[1].Address != "10.0.0.b:9348" {
		t.Fatalf("voters on disk %+v, want a, b, c", before.Voters)
	}
	if !slices.Equal(before.State.EtcdVoters(), []string{"a", "b", "c"}) {
		t.Fatalf("state on disk %+v", before.State)
	}
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	st, err := RecoverRaftOffline(dataDir, "a", "10.0.0.a:9348", now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recovery == nil || st.Recovery.Epoch != 1 || st.Recovery.Node != "a" || !st.Recovery.At.Equal(now) {
		t.Fatalf("recovery %+v", st.Recovery)
	}
	if !slices.Equal(st.EtcdVoters(), []string{"a"}) || !slices.Equal(st.Removed, []string{"b", "c"}) {
		t.Fatalf("after recovery: voters %v, removed %v", st.EtcdVoters(), st.Removed)
	}
	after, err := ReadRaftOffline(dataDir, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Voters) != 1 || after.Voters[0].ID != "a" {
		t.Fatalf("voters after recovery %+v, want a alone", after.Voters)
	}
	if after.State.Recovery == nil || after.State.Recovery.Epoch != 1 || after.State.ClusterReady == nil || after.State.ClusterReady.CAHash != testCAHash {
		t.Fatalf("state read back %+v", after.State)
	}
	st, err = RecoverRaftOffline(dataDir, "a", "10.0.0.a:9348", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Recovery.Epoch != 2 {
		t.Fatalf("second recovery epoch %d, want 2", st.Recovery.Epoch)
	}
}

// TestRecoverRaftOfflineRefusesARunningDaemon: the store open in a daemon
// is locked; the offline functions say so instead of waiting.
func TestRecoverRaftOfflineRefusesARunningDaemon(t *testing.T) {
	dataDir := t.TempDir()
	writeFormedRaft(t, dataDir)
	held, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, "raft", "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := ReadRaftOffline(dataDir, "a"); !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("read with the store held: %v, want ErrStoreLocked", err)
	}
	if _, err := RecoverRaftOffline(dataDir, "a", "10.0.0.a:9348", time.Now()); !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("recover with the store held: %v, want ErrStoreLocked", err)
	}
}
