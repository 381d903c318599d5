package adminsock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		peer Peer
		self uint32
		ok   bool
	}{
		{Peer{UID: 0}, 1000, true},
		{Peer{UID: 1000}, 1000, true},
		{Peer{UID: 1001}, 1000, false},
		{Peer{UID: 1001}, 0, false},
	} {
		err := Allowed(tc.peer, tc.self)
		if (err == nil) != tc.ok {
			t.Errorf("Allowed(uid %d, self %d) = %v, want ok %v", tc.peer.UID, tc.self, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "neither root nor the daemon's uid") {
			t.Errorf("refusal words: %v", err)
		}
	}
}

func serve(t *testing.T, self uint32, verbs map[string]Verb) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	path := Path(dir)
	s, err := listen(path, verbs, nil, self)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return path
}

func TestCallStreamsProgressAndOutcome(t *testing.T) {
	path := serve(t, uint32(os.Getuid()), map[string]Verb{
		"echo": func(ctx context.Context, body json.RawMessage, progress func(string)) (string, error) {
			var req struct{ Node string }
			if err := json.Unmarshal(body, &req); err != nil {
				return "", err
			}
			progress("working on " + req.Node)
			if req.Node == "bad" {
				return "", errors.New("refused: bad is not a voter")
			}
			return "done " + req.Node, nil
		},
	})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v, %v: want a socket 0600", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", di.Mode().Perm())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lines []string
	msg, err := Call(ctx, path, "echo", map[string]string{"node": "s2"}, func(l string) { lines = append(lines, l) })
	if err != nil || msg != "done s2" || len(lines) != 1 || lines[0] != "working on s2" {
		t.Fatalf("Call = %q, %v, progress %q", msg, err, lines)
	}
	if _, err := Call(ctx, path, "echo", map[string]string{"node": "bad"}, nil); err == nil || err.Error() != "refused: bad is not a voter" {
		t.Fatalf("refusal: %v", err)
	}
	if _, err := Call(ctx, path, "nope", nil, nil); err == nil {
		t.Fatal("an unknown verb answered")
	}
}

// A caller whose uid is neither root nor the daemon's is refused before any
// verb runs. Unprivileged, the daemon here takes another uid for its own, so
// this test's own (kernel-reported) uid is a stranger to it; as root, a
// child process runs the client as nobody (65534), with the directory and
// socket opened up so that only the credential check stands in its way.
func TestStrangerRefused(t *testing.T) {
	ran := false
	self := uint32(os.Getuid()) + 1
	if os.Getuid() == 0 {
		self = 0
	}
	path := serve(t, self, map[string]Verb{
		"remove": func(context.Context, json.RawMessage, func(string)) (string, error) {
			ran = true
			return "removed", nil
		},
	})
	var err error
	if os.Getuid() == 0 {
		base := filepath.Dir(filepath.Dir(path))
		for _, p := range []string{filepath.Dir(base), base, filepath.Dir(path), path} {
			if err := os.Chmod(p, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		bin, rerr := os.ReadFile(os.Args[0])
		if rerr != nil {
			t.Fatal(rerr)
		}
		helper := filepath.Join(base, "helper.test")
		if werr := os.WriteFile(helper, bin, 0o755); werr != nil {
			t.Fatal(werr)
		}
		cmd := exec.Command(helper, "-test.run=^TestHelperClient$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ADMINSOCK_HELPER="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, cerr := cmd.CombinedOutput()
		if cerr != nil && !strings.Contains(string(out), "CALL:") {
			t.Skipf("cannot run a child as nobody: %v: %s", cerr, out)
		}
		err = errors.New(string(out))
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = Call(ctx, path, "remove", map[string]string{"node": "s2"}, nil)
	}
	if err == nil || !strings.Contains(err.Error(), "neither root nor the daemon's uid") || ran {
		t.Fatalf("stranger: %v, verb ran %v", err, ran)
	}
}

// TestHelperClient is the stranger's side of TestStrangerRefused.
func TestHelperClient(t *testing.T) {
	path := os.Getenv("ADMINSOCK_HELPER")
	if path == "" {
		t.Skip("helper process only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg, err := Call(ctx, path, "remove", map[string]string{"node": "s2"}, nil)
	fmt.Printf("CALL: %q %v\n", msg, err)
}

func TestNoDaemon(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Call(ctx, filepath.Join(t.TempDir(), SocketName), "remove", nil, nil)
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no daemon: %v", err)
	}
}

func TestBodyLimit(t *testing.T) {
	path := serve(t, uint32(os.Getuid()), map[string]Verb{
		"echo": func(context.Context, json.RawMessage, func(string)) (string, error) { return "ok", nil },
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Call(ctx, path, "echo", map[string]string{"x": strings.Repeat("a", maxBody)}, nil)
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized body: %v", err)
	}
}

// A socket left by a daemon that died is replaced; one a live daemon
// serves is not taken over.
func TestStaleSocket(t *testing.T) {
	path := serve(t, uint32(os.Getuid()), nil)
	if _, err := listen(path, nil, nil, 0); err == nil || !strings.Contains(err.Error(), "served by another process") {
		t.Fatalf("second listener: %v", err)
	}
}
