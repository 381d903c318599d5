package installer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// InspectOptions says where to look for an existing RKE2.
type InspectOptions struct {
	// RKE2Bin, else the first rke2 in SearchPaths (nil: DefaultSearchPaths).
	RKE2Bin     string
	SearchPaths []string
	// RKE2DataDir is RKE2's data-dir ("" = the default).
	RKE2DataDir string
	// Services reports which unit runs; nil leaves FoundRKE2.Running empty.
	Services ServiceManager
}

// FoundRKE2 is the RKE2 already on a host.
type FoundRKE2 struct {
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
func Inspect(ctx context.Context, opts InspectOptions) (FoundRKE2, error) {
	st := FoundRKE2{Datastore: DatastorePath(opts.RKE2DataDir)}
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
