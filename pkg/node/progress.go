package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
//
// Version is the file's major version: a build reads files of its own
// version or older (a file without one is version 1) and refuses a newer
// one rather than misread it. Adding an optional field keeps the version
// (older builds ignore fields they do not know); changing what a field
// means bumps it.
type progress struct {
	Version int    `json:"version"`
	Role    string `json:"role"`
	// StartedRKE2 is set just before this host starts its RKE2 service for
	// the first time; CAHash is the cluster it was started for ("" for the
	// bootstrap node, which makes the CA).
	StartedRKE2 bool   `json:"started_rke2"`
	Bootstrap   bool   `json:"bootstrap"`
	CAHash      string `json:"ca_hash,omitempty"`
	// Ready is set once this host reached the ready phase.
	Ready   bool      `json:"ready"`
	ReadyAt time.Time `json:"ready_at,omitempty"`
	// Wiped: `rejoin --wipe` moved this server's datastore and raft store
	// aside; the daemon tells the leader before anything else (a removed
	// server is added back to raft only then), and clears it.
	Wiped     bool      `json:"wiped,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// RKE2Running is the version of the rke2 binary this host's service
	// was last started from (by this daemon, or found running): what it
	// runs, not what was installed since (upgrade.go).
	RKE2Running string `json:"rke2_running,omitempty"`
	// Upgrade is the rolling upgrade this host runs or ran last, and the
	// steps it finished (upgrade.go).
	Upgrade *upgradeRun `json:"upgrade,omitempty"`
	// Prepared is the version this host installed ahead of its begin
	// (upgrade_prepare.go): its install step then only checks the binary.
	Prepared string `json:"prepared,omitempty"`
	// PreparedFile is the rke2 binary's identity (path, inode, size,
	// times) right after that install: while the file keeps it, the
	// install step need not run the binary to know what it is.
	PreparedFile string `json:"prepared_file,omitempty"`
}

func progressPath(dataDir string) string { return filepath.Join(dataDir, "progress.json") }

// progressVersion is the version of progress.json this build writes and
// the newest it reads.
const progressVersion = 1

// maxProgressBytes bounds what loadProgress reads: the file holds a few
// short fields.
const maxProgressBytes = 64 << 10

func loadProgress(dataDir string) (progress, error) {
	path := progressPath(dataDir)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return progress{}, nil
	}
	if err != nil {
		return progress{}, fmt.Errorf("node: read progress: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProgressBytes+1))
	if err != nil {
		return progress{}, fmt.Errorf("node: read progress: %w", err)
	}
	return decodeProgress(path, data)
}

// decodeProgress parses the file at path. Every error names the file and
// what to do.
func decodeProgress(path string, data []byte) (progress, error) {
	damaged := func(err error) (progress, error) {
		return progress{}, fmt.Errorf("node: %s is damaged (%v): move it away to start this host's progress afresh", path, err)
	}
	if len(data) > maxProgressBytes {
		return damaged(fmt.Errorf("over %d bytes", maxProgressBytes))
	}
	var p progress
	if err := json.Unmarshal(data, &p); err != nil {
		return damaged(err)
	}
	switch {
	case p.Version == 0:
		p.Version = 1 // written before the file carried a version
	case p.Version < 0:
		return damaged(fmt.Errorf("version %d", p.Version))
	case p.Version > progressVersion:
		return progress{}, fmt.Errorf("node: %s is version %d, written by a newer rke2-hanode; this build reads up to version %d: run the newer build, or move the file away to start this host's progress afresh", path, p.Version, progressVersion)
	}
	switch p.Role {
	case "", "server", "agent":
	default:
		return damaged(fmt.Errorf("role %q", p.Role))
	}
	if p.Upgrade != nil {
		if err := p.Upgrade.validate(); err != nil {
			return damaged(err)
		}
	}
	if p.CAHash != "" {
		if raw, err := hex.DecodeString(p.CAHash); err != nil || len(raw) != 32 {
			return damaged(fmt.Errorf("ca_hash %q is not 64 hex characters", p.CAHash))
		}
	}
	return p, nil
}

// saveProgress writes p, stamped with now (the phase machine's clock).
func saveProgress(dataDir string, p progress, now time.Time) error {
	p.Version = progressVersion
	p.UpdatedAt = now.UTC()
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(progressPath(dataDir), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("node: save progress: %w", err)
	}
	return nil
}
