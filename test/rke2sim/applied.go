package rke2sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The objects of the auto-deploy folder live in the cluster, not on the
// host: a manifest applied on any server reaches every server (a DaemonSet
// runs everywhere), the last apply of an object wins, and removing a file
// deletes nothing. appliedStore models that: a last-writer-wins map of
// objects, replicated between members by pulling each other's copy.

// appliedObject is one object as last applied to the cluster.
type appliedObject struct {
	Object  map[string]any `json:"object,omitempty"`
	File    string         `json:"file"`
	By      string         `json:"by"` // the member that applied it
	At      time.Time      `json:"at"`
	Deleted bool           `json:"deleted,omitempty"` // pruned from its changed file
}

type appliedStore struct {
	mu      sync.Mutex
	path    string                   // persisted here (the cluster keeps objects)
	objects map[string]appliedObject // by kind/namespace/name
	seen    map[string]string        // file name → content hash applied from this host
}

func objectKey(obj map[string]any) string {
	return str(obj["kind"]) + "/" + str(dig(obj, "metadata", "namespace")) + "/" + str(dig(obj, "metadata", "name"))
}

func loadAppliedStore(path string) (*appliedStore, error) {
	s := &appliedStore{path: path, objects: map[string]appliedObject{}, seen: map[string]string{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("applied manifests: %w", err)
	}
	if err := json.Unmarshal(raw, &s.objects); err != nil {
		return nil, fmt.Errorf("applied manifests: %s: %w", path, err)
	}
	return s, nil
}

func (s *appliedStore) saveLocked() error {
	raw, err := json.Marshal(s.objects)
	if err != nil {
		return fmt.Errorf("applied manifests: %w", err)
	}
	return writeFileAtomic(s.path, raw, 0o600)
}

// applyDir applies every file of dir whose content changed since this host
// last applied it (all of them after a start, as RKE2 does): its objects
// replace the cluster's, and objects the file no longer holds are pruned. A
// removed file deletes nothing. It returns the files that did not decode.
func (s *appliedStore) applyDir(dir, self string, now time.Time) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var problems []string
	changed := false
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		hash := hex.EncodeToString(sum[:])
		if s.seen[e.Name()] == hash {
			continue
		}
		s.seen[e.Name()] = hash
		docs, err := decodeManifest(e.Name(), raw)
		if err != nil {
			// Like RKE2's deploy controller: a file that does not decode is
			// not applied at all.
			problems = append(problems, err.Error())
			continue
		}
		keep := map[string]bool{}
		for _, d := range docs {
			key := objectKey(d.obj)
			keep[key] = true
			s.objects[key] = appliedObject{Object: d.obj, File: e.Name(), By: self, At: now}
		}
		for key, o := range s.objects {
			if o.File == e.Name() && !o.Deleted && !keep[key] {
				s.objects[key] = appliedObject{File: o.File, By: self, At: now, Deleted: true}
			}
		}
		changed = true
	}
	if changed {
		return problems, s.saveLocked()
	}
	return problems, nil
}

// merge takes the newer version of every object from another member's copy.
func (s *appliedStore) merge(theirs map[string]appliedObject) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for key, o := range theirs {
		if mine, ok := s.objects[key]; !ok || o.At.After(mine.At) || (o.At.Equal(mine.At) && o.By > mine.By) {
			s.objects[key] = o
			changed = true
		}
	}
	if changed {
		return s.saveLocked()
	}
	return nil
}

func (s *appliedStore) snapshot() map[string]appliedObject {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]appliedObject, len(s.objects))
	for k, v := range s.objects {
		out[k] = v
	}
	return out
}

// docs lists the live objects, in key order.
func (s *appliedStore) docs() []manifestDoc {
	snap := s.snapshot()
	keys := make([]string, 0, len(snap))
	for k := range snap {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []manifestDoc
	for _, k := range keys {
		if o := snap[k]; !o.Deleted {
			out = append(out, manifestDoc{file: o.File + " (applied by " + o.By + ")", obj: o.Object})
		}
	}
	return out
}

// pullApplied merges every other member's applied objects into ours.
func (n *node) pullApplied(ctx context.Context, store *appliedStore) {
	for _, m := range n.members() {
		if m.Name == n.cfg.NodeName {
			continue
		}
		var theirs map[string]appliedObject
		if err := n.memberCall(ctx, m, http.MethodGet, "/v1-rke2/sim/applied", nil, &theirs); err == nil {
			if err := store.merge(theirs); err != nil {
				n.log.Warn("cannot persist applied manifests", zap.Error(err))
			}
		}
	}
}
