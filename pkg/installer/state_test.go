package installer

import (
	"context"
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
	want := FoundRKE2{Installed: true, Bin: bin, Version: "v1.36.4+rke2r1", Running: RoleAgent, HasDatastore: true, Datastore: filepath.Join(dataDir, "server", "db", "etcd")}
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
