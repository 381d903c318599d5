package election

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Quorum-loss recovery (rke2-hanode recover). When a majority of the
// servers is gone for good, raft has lost its quorum as etcd has: nothing
// can be committed, so the recovery is done offline on the survivor, with
// its daemon stopped, the way hashicorp/raft documents it (RecoverCluster to
// a configuration of the survivor alone). The FSM state the survivor keeps
// is the state its log had, rewritten once, in the snapshot RecoverCluster
// takes, for the new one-server cluster: a recovery epoch one above the last
// (the epoch every later datastore is measured against), the survivor the
// only etcd voter, every other server recorded as removed (it rejoins only
// wiped, through the join slot), no slot and no removal in flight. Every
// later replica starts from that snapshot, so they all agree on it.

// Recovery is the last quorum-loss recovery of this cluster.
type Recovery struct {
	Epoch int       `json:"epoch"`
	Node  string    `json:"node"` // the survivor the cluster was recovered on
	At    time.Time `json:"at"`
}

// recovered is s after a recovery on survivor at at.
func (s ClusterState) recovered(survivor string, at time.Time) ClusterState {
	next := s.clone()
	epoch := 1
	if s.Recovery != nil {
		epoch = s.Recovery.Epoch + 1
	}
	next.Recovery = &Recovery{Epoch: epoch, Node: survivor, At: at.UTC().Round(0)}
	for _, v := range s.EtcdVoters() {
		if v != survivor && !slices.Contains(next.Removed, v) {
			next.Removed = append(next.Removed, v)
		}
	}
	next.Removed = slices.DeleteFunc(next.Removed, func(r string) bool { return r == survivor })
	slices.Sort(next.Removed)
	next.Joined = slices.DeleteFunc(next.Joined, func(j string) bool { return slices.Contains(next.Removed, j) })
	next.Slot = nil
	if next.Removal.Active() {
		next.Removal = nil
	}
	return next
}

// RaftVoter is one voter of the raft configuration on disk.
type RaftVoter struct {
	ID, Address string
}

// RaftOnDisk is what a stopped server's raft store holds.
type RaftOnDisk struct {
	Voters []RaftVoter
	State  ClusterState
}

// ErrStoreLocked: the raft store is open in a running daemon.
var ErrStoreLocked = errors.New("the raft store is in use: rke2-hanode runs on this host (stop it first: systemctl stop rke2-hanode)")

// offlineRaft is a server's raft stores opened with the daemon stopped.
type offlineRaft struct {
	conf   *raft.Config
	fsm    *fsm
	stores *Stores
	trans  raft.Transport
	close  func() error
}

func openOffline(dataDir, nodeName string) (*offlineRaft, error) {
	dir := filepath.Join(dataDir, "raft")
	db := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(db); err != nil {
		return nil, fmt.Errorf("election: no raft store at %s (is data-dir right, and is this a server?): %w", db, err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: db, BoltOptions: &bbolt.Options{Timeout: 2 * time.Second}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, ErrStoreLocked
	}
	if err != nil {
		return nil, fmt.Errorf("election: open raft store %s: %w", db, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("election: open snapshot store in %s: %w", dir, err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(nodeName)
	conf.Logger = hclog.NewNullLogger()
	_, trans := raft.NewInmemTransport(raft.ServerAddress(nodeName))
	return &offlineRaft{conf: conf, fsm: &fsm{}, stores: &Stores{Log: bolt, Stable: bolt, Snapshots: snaps}, trans: trans, close: bolt.Close}, nil
}

// ReadRaftOffline reads the raft configuration and the FSM state of a
// stopped server (the daemon holds the store while it runs: ErrStoreLocked).
func ReadRaftOffline(dataDir, nodeName string) (RaftOnDisk, error) {
	o, err := openOffline(dataDir, nodeName)
	if err != nil {
		return RaftOnDisk{}, err
	}
	defer o.close()
	cfg, err := raft.GetConfiguration(o.conf, o.fsm, o.stores.Log, o.stores.Stable, o.stores.Snapshots, o.trans)
	if err != nil {
		return RaftOnDisk{}, fmt.Errorf("election: read the raft configuration: %w", err)
	}
	// NewRaft restored the newest snapshot; the log after it is replayed
	// here, as RecoverCluster does.
	var from uint64
	if metas, err := o.stores.Snapshots.List(); err == nil && len(metas) > 0 {
		from = metas[0].Index
	}
	last, err := o.stores.Log.LastIndex()
	if err != nil {
		return RaftOnDisk{}, fmt.Errorf("election: read the raft log: %w", err)
	}
	for i := from + 1; i <= last; i++ {
		var entry raft.Log
		if err := o.stores.Log.GetLog(i, &entry); err != nil {
			return RaftOnDisk{}, fmt.Errorf("election: read raft log entry %d: %w", i, err)
		}
		_ = o.fsm.Apply(&entry) // a rejected command leaves the state as it was, as on a replica
	}
	out := RaftOnDisk{State: o.fsm.get()}
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			out.Voters = append(out.Voters, RaftVoter{ID: string(s.ID), Address: string(s.Address)})
		}
	}
	sort.Slice(out.Voters, func(i, j int) bool { return out.Voters[i].ID < out.Voters[j].ID })
	return out, nil
}

// RecoverRaftOffline makes a stopped server the only voter of its raft
// group (hashicorp/raft's RecoverCluster) and records the recovery in the
// FSM state it keeps; raftAddr is its own raft address. It returns that
// state.
func RecoverRaftOffline(dataDir, nodeName, raftAddr string, now time.Time) (ClusterState, error) {
	o, err := openOffline(dataDir, nodeName)
	if err != nil {
		return ClusterState{}, err
	}
	defer o.close()
	rf := &recoveringFSM{fsm: o.fsm, survivor: nodeName, at: now}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(nodeName), Address: raft.ServerAddress(raftAddr)}}}
	if err := raft.RecoverCluster(o.conf, rf, o.stores.Log, o.stores.Stable, o.stores.Snapshots, o.trans, conf); err != nil {
		return ClusterState{}, fmt.Errorf("election: recover raft on %s: %w", nodeName, err)
	}
	return o.fsm.get(), nil
}

// recoveringFSM is the FSM during RecoverCluster: it replays the log as
// usual, and rewrites the state once, for the recovery, right before
// RecoverCluster snapshots it.
type recoveringFSM struct {
	*fsm
	survivor string
	at       time.Time
}

func (r *recoveringFSM) Snapshot() (raft.FSMSnapshot, error) {
	r.fsm.mu.Lock()
	r.fsm.state = r.fsm.state.recovered(r.survivor, r.at)
	r.fsm.mu.Unlock()
	return r.fsm.Snapshot()
}
