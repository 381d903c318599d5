package installer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
)

// InspectOptions says where to look for an existing RKE2.
type InspectOptions struct {
	// RKE2Bin, else the first rke2 in SearchPaths (nil: DefaultSearchPaths).
	RKE2Bin     string
	SearchPaths []string
	// RKE2DataDir is RKE2's data-dir ("" = the default).
	RKE2DataDir string
	// Services reports which unit runs; nil leaves State.Running empty.
	Services ServiceManager
}

// State is the RKE2 already on a host.
type State struct {
	Installed bool
	Bin       string
	Version   string
	// Running is the role whose service is active, "" for none.
	Running Role
	// HasDatastore is true when <data-dir>/server/db/etcd exists: RKE2
	// will resume that datastore and ignore `server:`.
	HasDatastore bool
	Datastore    string
}

// DatastorePath is where RKE2 keeps its etcd datastore.
func DatastorePath(rke2DataDir string) string {
	return filepath.Join(dataDirOrDefault(rke2DataDir), "server", "db", "etcd")
}

// ServerCAPath is the cluster CA a server serves on /cacerts.
func ServerCAPath(rke2DataDir string) string {
	return filepath.Join(dataDirOrDefault(rke2DataDir), "server", "tls", "server-ca.crt")
}

func dataDirOrDefault(dir string) string {
	if dir == "" {
		return DefaultRKE2DataDir
	}
	return dir
}

// Inspect reports the RKE2 already on the host, so that a running one is
// adopted rather than reinstalled and a datastore is never bootstrapped over.
func Inspect(ctx context.Context, opts InspectOptions) (State, error) {
	st := State{Datastore: DatastorePath(opts.RKE2DataDir)}
	if fi, err := os.Stat(st.Datastore); err == nil && fi.IsDir() {
		st.HasDatastore = true
	}
	paths := opts.SearchPaths
	if paths == nil {
		paths = DefaultSearchPaths
	}
	if bin, err := FindRKE2(opts.RKE2Bin, paths); err == nil {
		st.Installed, st.Bin = true, bin
		if st.Version, err = RKE2Version(ctx, bin); err != nil {
			return st, fmt.Errorf("installer: inspect: %w", err)
		}
	}
	if opts.Services == nil {
		return st, nil
	}
	for _, role := range []Role{RoleServer, RoleAgent} {
		active, err := opts.Services.Active(ctx, role)
		if err != nil {
			return st, fmt.Errorf("installer: inspect: %w", err)
		}
		if active {
			st.Running = role
			break
		}
	}
	return st, nil
}

// GuardOptions is what GuardDatastore needs to know.
type GuardOptions struct {
	Case        Case
	RKE2DataDir string
	// CAHash is the cluster's CA hash (joiners).
	CAHash string
	// Resuming is true when the cluster already recorded RKE2 as started on
	// this host (the bootstrap node after "started RKE2", a joined server):
	// its datastore is this cluster's.
	Resuming bool
}

// GuardDatastore is called before RKE2's config is written. A host holding
// an etcd datastore never gets a config without `server:` unless it is the
// bootstrap node resuming, and never joins when the datastore belongs to
// another cluster: RKE2 ignores `server:` when a datastore exists, so the
// host would quietly bring back the old cluster.
func GuardDatastore(opts GuardOptions) error {
	path := DatastorePath(opts.RKE2DataDir)
	if opts.Case == Agent || opts.Resuming {
		return nil
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		return nil
	}
	if opts.Case == Bootstrap {
		return fmt.Errorf("installer: this host already holds an RKE2 datastore (%s) that this cluster never started: "+
			"bootstrapping on it would bring back an old cluster instead of creating a new one; remove it (rke2-uninstall.sh)", path)
	}
	owner := "of an unknown cluster (no " + ServerCAPath(opts.RKE2DataDir) + ")"
	if pem, err := os.ReadFile(ServerCAPath(opts.RKE2DataDir)); err == nil {
		hash, err := cahash.Of(pem)
		if err != nil {
			return fmt.Errorf("installer: this host already holds an RKE2 datastore (%s) whose CA %s cannot be read (%v): "+
				"remove it (rke2-uninstall.sh) or make it the bootstrap node", path, ServerCAPath(opts.RKE2DataDir), err)
		}
		if hash == opts.CAHash {
			return nil // already a member of this cluster
		}
		owner = "of another cluster (CA hash " + hash + ", this cluster's is " + opts.CAHash + ")"
	}
	return fmt.Errorf("installer: this host already holds an RKE2 datastore (%s) %s: RKE2 would ignore server: and resume it; "+
		"remove it (rke2-uninstall.sh) or make it the bootstrap node", path, owner)
}
