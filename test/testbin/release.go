package testbin

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ReadRelease reads a commit recorded in a file: the first line that is
// neither empty nor a # comment.
func ReadRelease(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("testbin: %s names no commit", path)
}

// BuildRelease builds the daemon of an earlier commit of this repository
// into dir/rke2-hanode-<commit>, with its version set to version, as make
// build builds (static, stripped), and returns its path. The repository is the one holding the working
// directory; the commit's tree is exported with git archive (no worktree
// is registered), so the clone must hold the commit: a shallow clone that
// lacks it is an error saying to fetch the full history.
func BuildRelease(dir, commit, version string) (string, error) {
	top, err := git("", "rev-parse", "--show-toplevel")
	if err != nil {
		return "", fmt.Errorf("testbin: the working directory is not inside a git clone of rke2-hanode (%w): run the test from a clone", err)
	}
	root := strings.TrimSpace(top)
	if _, err := git(root, "cat-file", "-e", commit+"^{commit}"); err != nil {
		return "", fmt.Errorf("testbin: commit %s is not in the history of the clone at %s: fetch the full history (git fetch --unshallow, or clone without --depth) and run again", commit, root)
	}
	src := filepath.Join(dir, "src-"+commit)
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	archive := exec.Command("git", "archive", "--format=tar", commit)
	archive.Dir = root
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	untar.Stdin = pipe
	var archiveErr, untarErr bytes.Buffer // each written by its own copier
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		return "", fmt.Errorf("testbin: tar: %w", err)
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return "", fmt.Errorf("testbin: git archive %s: %w: %s", commit, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("testbin: unpack %s: %w: %s", commit, err, untarErr.String())
	}
	out := filepath.Join(dir, "rke2-hanode-"+commit)
	build := exec.Command("go", "build", "-o", out, "-trimpath",
		"-ldflags", "-s -w -X github.com/rke2-hanode/rke2-hanode/pkg/version.Version="+version+
			" -X github.com/rke2-hanode/rke2-hanode/pkg/version.Commit="+commit,
		"./cmd/rke2-hanode")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("testbin: build ./cmd/rke2-hanode of commit %s: %w", commit, err)
	}
	os.RemoveAll(src)
	return out, nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
