package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
)

// progress is what this host remembers across restarts, in
// <data-dir>/progress.json. Raft holds the cluster's truth; this file holds
// what only this host can know: that it started its own RKE2, for which
// cluster (so a datastore on disk is explained), and that it was ready.
type progress struct {
	Role string `json:"role"`
	// StartedRKE2 is set just before this host starts its RKE2 service for
	// the first time; CAHash is the cluster it was started for ("" for the
	// bootstrap node, which makes the CA).
	StartedRKE2 bool   `json:"started_rke2"`
	Bootstrap   bool   `json:"bootstrap"`
	CAHash      string `json:"ca_hash,omitempty"`
	// Ready is set once this host reached the ready phase.
	Ready     bool      `json:"ready"`
	ReadyAt   time.Time `json:"ready_at,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

func progressPath(dataDir string) string { return filepath.Join(dataDir, "progress.json") }

func loadProgress(dataDir string) (progress, error) {
	var p progress
	data, err := os.ReadFile(progressPath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("node: read progress: %w", err)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("node: %s is damaged (%v): move it away to start this host's progress afresh", progressPath(dataDir), err)
	}
	return p, nil
}

func saveProgress(dataDir string, p progress) error {
	p.UpdatedAt = time.Now().UTC()
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(progressPath(dataDir), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("node: save progress: %w", err)
	}
	return nil
}
