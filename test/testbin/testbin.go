// Package testbin builds the two executables the cluster tests run, the
// daemon and rke2sim, into a folder of the caller's. rke2sim is its own Go
// module (it embeds etcd, which the daemon's module never links), so it is
// built from its own folder.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Build puts rke2-hanode and rke2sim into dir and returns their paths.
func Build(dir string) (daemon, sim string, err error) {
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		return "", "", fmt.Errorf("testbin: cannot locate the source tree")
	}
	root := filepath.Join(filepath.Dir(here), "..", "..")
	daemon, sim = filepath.Join(dir, "rke2-hanode"), filepath.Join(dir, "rke2sim")
	for _, b := range []struct{ out, dir, pkg string }{
		{daemon, root, "./cmd/rke2-hanode"},
		{sim, filepath.Join(root, "test", "rke2sim"), "./cmd/rke2sim"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", "", fmt.Errorf("testbin: build %s in %s: %w", b.pkg, b.dir, err)
		}
	}
	// RKE2's install script puts rke2-killall.sh beside rke2; the daemon's
	// VIP watchdog finds it there.
	killall, err := os.ReadFile(filepath.Join(root, "test", "rke2sim", "artifacts", "rke2-killall.sh"))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "rke2-killall.sh"), killall, 0o755)
	}
	if err != nil {
		return "", "", fmt.Errorf("testbin: rke2-killall.sh: %w", err)
	}
	return daemon, sim, nil
}

// Main builds both executables into a temporary folder, sets *daemon and
// *sim to them, runs the tests and exits with their code, removing the
// folder; a build failure exits 1. Call it from TestMain.
func Main(m interface{ Run() int }, daemon, sim *string) {
	dir, err := os.MkdirTemp("", "rke2-hanode-test-bin-")
	if err == nil {
		*daemon, *sim, err = Build(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
