package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/adminsock"
)

// adminEnv points the config at fresh data dirs through the environment,
// as `run` would load it, and returns them.
func adminEnv(t *testing.T, role string) (dataDir, rke2Dir string) {
	dataDir, rke2Dir = t.TempDir(), t.TempDir()
	for k, v := range map[string]string{
		"ROLE": role, "TOKEN": "very-secret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "EXPECT_SERVERS": "1", "VIP": "127.0.0.200",
		"INTERFACE": "lo", "NODE_NAME": "n1", "SERVICE_MANAGER": "exec", "RKE2_BIN": "/bin/true", "INSTALL_METHOD": "none",
		"DATA_DIR": dataDir, "RKE2_DATA_DIR": rke2Dir, "RKE2_CONFIG_DIR": t.TempDir(),
	} {
		t.Setenv("RKE2_HANODE_"+k, v)
	}
	if role == "agent" {
		t.Setenv("RKE2_HANODE_JOIN", "127.0.0.2")
	}
	return dataDir, rke2Dir
}

// fakeDaemon serves verbs on the admin socket of dataDir.
func fakeDaemon(t *testing.T, dataDir string, verbs map[string]adminsock.Verb) {
	t.Helper()
	s, err := adminsock.Listen(adminsock.Path(dataDir), verbs, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRemoveVerbCLI(t *testing.T) {
	dataDir, _ := adminEnv(t, "server")
	var asked []string
	fakeDaemon(t, dataDir, map[string]adminsock.Verb{
		"remove": func(_ context.Context, body json.RawMessage, progress func(string)) (string, error) {
			var req struct{ Node string }
			_ = json.Unmarshal(body, &req)
			asked = append(asked, req.Node)
			if req.Node == "s1" {
				return "", errors.New("removing s1 would break quorum: 2 etcd voters would remain, 1 of them answer, and 2 are needed")
			}
			progress("removal of " + req.Node + ": executing (executor s2)")
			return req.Node + " removed: its Node and etcd member are gone", nil
		},
	})
	var out, errb bytes.Buffer
	if code := Execute([]string{"remove", "s3"}, &out, &errb); code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), "… removal of s3: executing") || !strings.Contains(out.String(), "s3 removed") {
		t.Fatalf("output %q", out.String())
	}
	out.Reset()
	if code := Execute([]string{"remove", "s1"}, &out, &errb); code != ExitRuntime || !strings.Contains(errb.String(), "2 etcd voters would remain, 1 of them answer, and 2 are needed") {
		t.Fatalf("refusal: exit %d, stderr %q", code, errb.String())
	}
	if len(asked) != 2 || asked[0] != "s3" {
		t.Fatalf("asked %v", asked)
	}
	if code := Execute([]string{"remove"}, &out, &errb); code != ExitUsage {
		t.Fatalf("remove without a node: exit %d", code)
	}
}

func TestUpgradePauseCLI(t *testing.T) {
	dataDir, _ := adminEnv(t, "server")
	got := ""
	fakeDaemon(t, dataDir, map[string]adminsock.Verb{
		"upgrade-pause": func(context.Context, json.RawMessage, func(string)) (string, error) {
			got += "pause "
			return "upgrade paused", nil
		},
		"upgrade-resume": func(context.Context, json.RawMessage, func(string)) (string, error) {
			got += "resume"
			return "upgrade resumed", nil
		},
	})
	for _, verb := range []string{"pause", "resume"} {
		var out, errb bytes.Buffer
		if code := Execute([]string{"upgrade", verb}, &out, &errb); code != ExitOK || !strings.Contains(out.String(), "upgrade "+verb+"d") {
			t.Fatalf("upgrade %s: exit %d, out %q, stderr %q", verb, code, out.String(), errb.String())
		}
	}
	if got != "pause resume" {
		t.Fatalf("verbs run: %q", got)
	}
}

func TestVerbWithoutDaemon(t *testing.T) {
	adminEnv(t, "server")
	var out, errb bytes.Buffer
	if code := Execute([]string{"remove", "s3"}, &out, &errb); code != ExitRuntime || !strings.Contains(errb.String(), "does not answer on its admin socket") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestRejoinWipe(t *testing.T) {
	dataDir, rke2Dir := adminEnv(t, "server")
	db := filepath.Join(rke2Dir, "server", "db", "etcd")
	tls := filepath.Join(rke2Dir, "server", "tls")
	raftDir := filepath.Join(dataDir, "raft")
	for _, d := range []string{db, tls, raftDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dataDir, "progress.json"), []byte(`{"version":1,"role":"server","started_rke2":true,"ca_hash":"ca0fc1a55e4c0ffeeca0fc1a55e4c0ffeeca0fc1a55e4c0ffeeca0fc1a55e4c0","ready":true,"updated_at":"2026-01-01T00:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Execute([]string{"rejoin"}, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), "--wipe is required") {
		t.Fatalf("without --wipe: exit %d, stderr %q", code, errb.String())
	}
	// Refused while the daemon runs: nothing moved.
	func() {
		s, err := adminsock.Listen(adminsock.Path(dataDir), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		defer func() { cancel(); <-done }()
		errb.Reset()
		if code := Execute([]string{"rejoin", "--wipe"}, &out, &errb); code != ExitRuntime || !strings.Contains(errb.String(), "the daemon is running") {
			t.Fatalf("daemon running: exit %d, stderr %q", code, errb.String())
		}
		if _, err := os.Stat(db); err != nil {
			t.Fatalf("datastore touched while the daemon runs: %v", err)
		}
	}()
	out.Reset()
	errb.Reset()
	if code := Execute([]string{"rejoin", "--wipe"}, &out, &errb); code != ExitOK {
		t.Fatalf("wipe: exit %d, stderr %q", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(rke2Dir, "server", "db")); !os.IsNotExist(err) {
		t.Fatalf("server/db still there: %v", err)
	}
	if _, err := os.Stat(raftDir); !os.IsNotExist(err) {
		t.Fatalf("raft store still there: %v", err)
	}
	if _, err := os.Stat(tls); err != nil {
		t.Fatalf("certificates moved: %v", err)
	}
	moved, _ := filepath.Glob(filepath.Join(rke2Dir, "server", "db.wiped-*", "etcd"))
	if len(moved) != 1 {
		t.Fatalf("datastore not kept aside: %v", moved)
	}
	b, _ := os.ReadFile(filepath.Join(dataDir, "progress.json"))
	var p struct {
		Role    string `json:"role"`
		Started bool   `json:"started_rke2"`
		Ready   bool   `json:"ready"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Started || p.Ready || p.Role != "server" {
		t.Fatalf("progress %s, %v", b, err)
	}
	if !strings.Contains(out.String(), "start the daemon") {
		t.Fatalf("output %q", out.String())
	}
}

func TestRejoinOnAgent(t *testing.T) {
	adminEnv(t, "agent")
	var out, errb bytes.Buffer
	if code := Execute([]string{"rejoin", "--wipe"}, &out, &errb); code != ExitRuntime || !strings.Contains(errb.String(), "this host is an agent") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}
