// Package browser drives Debian's chromium headless for the tests of the
// status page: it loads a URL in a fresh profile, with every background
// service off, and returns the DOM as the page's script left it, or a
// screenshot.
package browser

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Path is the chromium executable, or "" when none is installed.
func Path() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Require skips t with the reason when no chromium is installed.
func Require(t testing.TB) string {
	t.Helper()
	p := Path()
	if p == "" {
		t.Skip("chromium is not installed (Debian: apt-get install chromium); the status page's browser tests are skipped")
	}
	return p
}

func run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	profile, err := os.MkdirTemp("", "rke2-hanode-browser-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HOME="+profile)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("chromium %v: %w\n%s", args, err, lastBytes(stderr.Bytes(), 2000))
	}
	return stdout.Bytes(), nil
}

// DumpDOM loads url and returns the serialized DOM after the load event;
// extra flags go before the URL (--virtual-time-budget=MS lets the page's
// timers run that long first).
func DumpDOM(ctx context.Context, bin, url string, extra ...string) (string, error) {
	out, err := run(ctx, bin, append(append([]string{"--dump-dom"}, extra...), url)...)
	return string(out), err
}

// Screenshot loads url in a window of the given size and writes a PNG to path.
func Screenshot(ctx context.Context, bin, url, path string, width, height int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if _, err := run(ctx, bin, fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars", "--screenshot="+path, url); err != nil {
		return err
	}
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot at %s", path)
	}
	return nil
}

// ArtifactDir is where tests keep what a person looks at afterwards:
// $RKE2_HANODE_ARTIFACTS, or testdata/out of the calling package (ignored by git).
func ArtifactDir() string {
	if d := os.Getenv("RKE2_HANODE_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join("testdata", "out")
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Row is one host's row of the page's join timeline, as the DOM shows it.
type Row struct {
	Host, Role, Phase string
	// Phases are the segments' phases, oldest first; Critical the phases of
	// the segments marked as the critical path.
	Phases, Critical []string
}

var (
	rowStart = regexp.MustCompile(`<div class="tl-row[^"]*" data-host="([^"]*)" data-role="([^"]*)" data-phase="([^"]*)">`)
	segment  = regexp.MustCompile(`<div class="seg ([^"]*)" data-phase="([^"]*)"`)
)

// TimelineRows reads the timeline rows out of a dumped DOM.
func TimelineRows(dom string) []Row {
	var rows []Row
	locs := rowStart.FindAllStringSubmatchIndex(dom, -1)
	for i, loc := range locs {
		end := len(dom)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		r := Row{Host: html.UnescapeString(dom[loc[2]:loc[3]]), Role: dom[loc[4]:loc[5]], Phase: html.UnescapeString(dom[loc[6]:loc[7]])}
		for _, m := range segment.FindAllStringSubmatch(dom[loc[1]:end], -1) {
			r.Phases = append(r.Phases, m[2])
			if strings.Contains(" "+m[1]+" ", " critical ") {
				r.Critical = append(r.Critical, m[2])
			}
		}
		rows = append(rows, r)
	}
	return rows
}
