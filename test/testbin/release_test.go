package testbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRelease(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ in, want, err string }{
		{"# the previous release\n\n  abc123  \nignored\n", "abc123", ""},
		{"# only a comment\n\n", "", "names no commit"},
	} {
		p := filepath.Join(dir, "release")
		os.WriteFile(p, []byte(tt.in), 0o644)
		got, err := ReadRelease(p)
		if got != tt.want || (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ReadRelease(%q) = %q, %v; want %q, error %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// A commit the clone does not hold (a shallow clone's case) is an error
// that says to fetch the full history, before anything is built.
func TestBuildReleaseMissingCommit(t *testing.T) {
	_, err := BuildRelease(t.TempDir(), "0123456789abcdef0123456789abcdef01234567", "x")
	if err == nil || !strings.Contains(err.Error(), "fetch the full history") {
		t.Fatalf("BuildRelease of a commit not in the clone: %v", err)
	}
}
