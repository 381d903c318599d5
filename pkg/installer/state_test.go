package installer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeServices is a ServiceManager whose units are as the test says.
type fakeServices struct {
	active map[Role]bool
	err    error
}

func (f *fakeServices) Start(ctx context.Context, role Role) error      { return f.err }
func (f *fakeServices) WaitActive(ctx context.Context, role Role) error { return f.err }
func (f *fakeServices) Stop(ctx context.Context, role Role) error       { return f.err }
func (f *fakeServices) Active(ctx context.Context, role Role) (bool, error) {
	return f.active[role], f.err
}

func TestInspect(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "rke2")
	st, err := Inspect(context.Background(), InspectOptions{SearchPaths: []string{}, RKE2DataDir: dataDir})
	if err != nil || st.Installed || st.HasDatastore || st.Running != "" {
		t.Fatalf("empty host: %+v, %v", st, err)
	}
	bin := writeFakeRKE2(t, filepath.Join(root, "usr", "local"), "v1.36.4+rke2r1")
	os.MkdirAll(DatastorePath(dataDir), 0o700)
	st, err = Inspect(context.Background(), InspectOptions{
		SearchPaths: []string{filepath.Join(root, "opt", "bin"), filepath.Dir(bin)},
		RKE2DataDir: dataDir,
		Services:    &fakeServices{active: map[Role]bool{RoleAgent: true}},
	})
	want := State{Installed: true, Bin: bin, Version: "v1.36.4+rke2r1", Running: RoleAgent, HasDatastore: true, Datastore: filepath.Join(dataDir, "server", "db", "etcd")}
	if err != nil || st != want {
		t.Fatalf("Inspect = %+v, %v\nwant %+v", st, err, want)
	}
	broken := filepath.Join(root, "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\necho hello\n"), 0o755)
	if _, err := Inspect(context.Background(), InspectOptions{RKE2Bin: broken}); err == nil || !strings.Contains(err.Error(), `printed "hello"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Inspect(context.Background(), InspectOptions{SearchPaths: []string{}, Services: &fakeServices{err: errors.New("dbus: gone")}}); err == nil {
		t.Fatal("service manager error ignored")
	}
	if DatastorePath("") != "/var/lib/rancher/rke2/server/db/etcd" {
		t.Fatal(DatastorePath(""))
	}
}

func TestGuardDatastore(t *testing.T) {
	caPEM, bundle, bundleHash := testCAs(t)
	sum := sha256.Sum256(caPEM)
	clusterHash := hex.EncodeToString(sum[:])
	empty := t.TempDir()
	withStore := t.TempDir()
	os.MkdirAll(DatastorePath(withStore), 0o700)
	member := t.TempDir()
	os.MkdirAll(DatastorePath(member), 0o700)
	os.MkdirAll(filepath.Dir(ServerCAPath(member)), 0o700)
	os.WriteFile(ServerCAPath(member), caPEM, 0o600)
	// A member whose server CA is an intermediate with its root: the
	// cluster's hash is the root's DER, as k3s hashes /cacerts.
	bundled := t.TempDir()
	os.MkdirAll(DatastorePath(bundled), 0o700)
	os.MkdirAll(filepath.Dir(ServerCAPath(bundled)), 0o700)
	os.WriteFile(ServerCAPath(bundled), bundle, 0o600)
	broken := t.TempDir()
	os.MkdirAll(DatastorePath(broken), 0o700)
	os.MkdirAll(filepath.Dir(ServerCAPath(broken)), 0o700)
	os.WriteFile(ServerCAPath(broken), []byte("not a certificate"), 0o600)
	tests := []struct {
		name string
		opts GuardOptions
		want string
	}{
		{"fresh host bootstraps", GuardOptions{Case: Bootstrap, RKE2DataDir: empty}, ""},
		{"fresh host joins", GuardOptions{Case: JoinServer, RKE2DataDir: empty, CAHash: clusterHash}, ""},
		{"bootstrap resuming", GuardOptions{Case: Bootstrap, RKE2DataDir: withStore, Resuming: true}, ""},
		{"agent ignores datastores", GuardOptions{Case: Agent, RKE2DataDir: withStore}, ""},
		{"joined member restarts", GuardOptions{Case: JoinServer, RKE2DataDir: member, CAHash: clusterHash}, ""},
		{"joined member with a bundled CA restarts", GuardOptions{Case: JoinServer, RKE2DataDir: bundled, CAHash: bundleHash}, ""},
		{"join with an unreadable CA", GuardOptions{Case: JoinServer, RKE2DataDir: broken, CAHash: clusterHash},
			"whose CA " + ServerCAPath(broken) + " cannot be read"},
		{"bootstrap over an old datastore", GuardOptions{Case: Bootstrap, RKE2DataDir: withStore},
			"this host already holds an RKE2 datastore (" + DatastorePath(withStore) + ") that this cluster never started"},
		{"join with an unknown datastore", GuardOptions{Case: JoinServer, RKE2DataDir: withStore, CAHash: clusterHash},
			"datastore (" + DatastorePath(withStore) + ") of an unknown cluster"},
		{"join with another cluster's datastore", GuardOptions{Case: JoinServer, RKE2DataDir: member, CAHash: strings.Repeat("ab", 32)},
			"of another cluster (CA hash " + clusterHash + ", this cluster's is abab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := GuardDatastore(tc.opts)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rke2-uninstall.sh") {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
