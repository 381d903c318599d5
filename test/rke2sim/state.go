package rke2sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Modes recorded in state.json.
const (
	ModeClusterInit = "cluster-init"
	ModeJoin        = "join"
	ModeAgent       = "agent"
)

// Rejection is one turned-away attempt recorded in state.json.
type Rejection struct {
	At     string `json:"at"`
	Reason string `json:"reason"`
}

// Evidence is <data-dir>/sim/state.json, what tests read of a host. Every field is
// always present; times are RFC 3339 with nanoseconds, "" when not applicable.
type Evidence struct {
	Mode         string      `json:"mode"`
	CAHash       string      `json:"ca_hash"`
	JoinedVia    string      `json:"joined_via"`
	JoinStarted  string      `json:"join_started"`
	JoinFinished string      `json:"join_finished"`
	Rejections   []Rejection `json:"rejections"`
	Etcd         EtcdState   `json:"etcd"`
	// Version is the RKE2 version this sim runs (RKE2SIM_VERSION).
	Version string `json:"version"`
	// Skew lists version-skew violations RKE2 lets through (it refuses none).
	Skew []Rejection `json:"skew"`
	// Removed: when and why this server's etcd member was removed from the
	// cluster (its Node deleted): it serves its member no more.
	Removed   string     `json:"removed"`
	Evictions []Eviction `json:"evictions"`
	// Resets are the times of the cluster-resets done on this server's
	// datastore (rke2 server --cluster-reset), oldest first.
	Resets []string `json:"resets"`
}

// Eviction is one eviction request the Kubernetes API of this server
// received (the server whose API was called records it, whichever node the
// pod is on).
type Eviction struct {
	At        string `json:"at"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	// Node is the pod's spec.nodeName; Kind is PodKindDaemonSet,
	// PodKindMirror or PodKindWorkload. Both "" when the request named no
	// pod the API holds (a bad request, or 404).
	Node string `json:"node"`
	Kind string `json:"kind"`
	// NodeCordoned: the pod's Node had spec.unschedulable when the request
	// arrived (a drain cordons first).
	NodeCordoned bool `json:"node_cordoned"`
	// Refused: answered 429, a PodDisruptionBudget's refusal
	// (RKE2SIM_PDB_REFUSALS); the pod stays.
	Refused bool `json:"refused"`
	// Code is the HTTP status answered: 201 evicted (the pod deleted), 429
	// refused, 404 no such pod, 400 a malformed Eviction, 415 not JSON.
	Code int `json:"code"`
}

// StatePath is where state.json lives under a data-dir.
func StatePath(dataDir string) string { return filepath.Join(dataDir, "sim", "state.json") }

// ReadState reads state.json; a missing file is an empty state.
func ReadState(dataDir string) (Evidence, error) {
	raw, err := os.ReadFile(StatePath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return Evidence{Rejections: []Rejection{}}, nil
	}
	if err != nil {
		return Evidence{}, fmt.Errorf("state: %w", err)
	}
	var st Evidence
	if err := json.Unmarshal(raw, &st); err != nil {
		return Evidence{}, fmt.Errorf("state: %s: %w", StatePath(dataDir), err)
	}
	if st.Rejections == nil {
		st.Rejections = []Rejection{}
	}
	return st, nil
}

// WriteState writes state.json atomically.
func WriteState(dataDir string, st Evidence) error {
	if st.Rejections == nil {
		st.Rejections = []Rejection{}
	}
	if st.Etcd.Members == nil {
		st.Etcd.Members = []EtcdMember{}
	}
	if st.Skew == nil {
		st.Skew = []Rejection{}
	}
	if st.Resets == nil {
		st.Resets = []string{}
	}
	if st.Evictions == nil {
		st.Evictions = []Eviction{}
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return writeFileAtomic(StatePath(dataDir), append(raw, '\n'), 0o644)
}

// stamp formats a time for state.json.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Member is one etcd member of the simulated cluster.
type Member struct {
	Name string `json:"name"`
	URL  string `json:"url"` // https://node-ip:supervisor-port
}

// Datastore is <data-dir>/server/db/etcd/member.json: which cluster this
// host's datastore belongs to and the members it knows.
type Datastore struct {
	ClusterID string   `json:"cluster_id"`
	CAHash    string   `json:"ca_hash"`
	Mode      string   `json:"mode"` // how this member came to be: cluster-init or join
	Self      string   `json:"self"`
	Members   []Member `json:"members"`
}

func datastoreDir(dataDir string) string { return filepath.Join(dataDir, "server", "db", "etcd") }

// HasDatastore says whether this host's etcd member has ever started (its
// WAL under <data-dir>/server/db/etcd exists, k3s's test): then RKE2 resumes
// that cluster and ignores server:.
func HasDatastore(dataDir string) bool {
	fi, err := os.Stat(etcdWALDir(dataDir))
	return err == nil && fi.IsDir()
}

// ReadDatastore reads the member file.
func ReadDatastore(dataDir string) (Datastore, error) {
	raw, err := os.ReadFile(filepath.Join(datastoreDir(dataDir), "member.json"))
	if err != nil {
		return Datastore{}, fmt.Errorf("datastore: %w", err)
	}
	var ds Datastore
	if err := json.Unmarshal(raw, &ds); err != nil {
		return Datastore{}, fmt.Errorf("datastore: %w", err)
	}
	return ds, nil
}

// WriteDatastore writes the member file (members sorted by name).
func WriteDatastore(dataDir string, ds Datastore) error {
	sort.Slice(ds.Members, func(i, j int) bool { return ds.Members[i].Name < ds.Members[j].Name })
	raw, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return fmt.Errorf("datastore: %w", err)
	}
	if err := os.MkdirAll(datastoreDir(dataDir), 0o700); err != nil {
		return fmt.Errorf("datastore: %w", err)
	}
	return writeFileAtomic(filepath.Join(datastoreDir(dataDir), "member.json"), append(raw, '\n'), 0o600)
}
