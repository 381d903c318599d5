package installer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/cahash"
)

// TestWithRKE2Sim runs the rendered configs, the exec manager and the
// readiness check against the project's rke2 stand-in: a bootstrap server,
// then an agent pinning its CA. It needs a built rke2sim in RKE2SIM_BIN.
func TestWithRKE2Sim(t *testing.T) {
	bin := os.Getenv("RKE2SIM_BIN")
	if bin == "" {
		t.Skip("RKE2SIM_BIN unset: build test/rke2sim/cmd/rke2sim and point RKE2SIM_BIN at it")
	}
	// Loopback addresses of their own, so the fixed 9345 cannot collide.
	net := fmt.Sprintf("127.%d.%d.", 100+rand.N(100), rand.N(250))
	serverIP, agentIP := net+"1", net+"2"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	root := t.TempDir()

	start := func(c Case, nodeIP, caHash string) (*ExecManager, string) {
		name := c.String()
		dataDir := filepath.Join(root, name, "data")
		cfg, err := RenderConfig(RenderOptions{Case: c, NodeName: name, NodeIP: nodeIP, VIP: serverIP,
			Token: "my-shared-secret", CAHash: caHash, RKE2DataDir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		cfgDir := filepath.Join(root, name, "etc")
		if err := WriteConfig(cfgDir, cfg); err != nil {
			t.Fatal(err)
		}
		m, err := NewExecManager(ExecOptions{RKE2Bin: bin, ConfigFile: ConfigPath(cfgDir),
			LogFile: filepath.Join(root, name+".log"), RestartDelay: 200 * time.Millisecond, StopGrace: 10 * time.Second,
			Env: []string{"RKE2SIM_START_DELAY=100ms", "RKE2SIM_AGENT_DELAY=100ms"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		if err := m.Start(ctx, c.Role()); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitActive(ctx, c.Role()); err != nil {
			log, _ := os.ReadFile(filepath.Join(root, name+".log"))
			t.Fatalf("%v\n%s", err, log)
		}
		return m, dataDir
	}

	_, serverData := start(Bootstrap, serverIP, "")
	ca, err := os.ReadFile(ServerCAPath(serverData))
	if err != nil {
		t.Fatal(err)
	}
	caHash, err := cahash.Of(ca)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := os.ReadFile(filepath.Join(serverData, "server", "token"))
	if !strings.HasPrefix(string(token), "K10"+caHash+"::server:") {
		t.Fatalf("server token %.20q… does not pin the CA hash computed here (%s)", token, caHash)
	}
	st, err := Inspect(ctx, InspectOptions{RKE2Bin: bin, RKE2DataDir: serverData})
	if err != nil || !st.HasDatastore || !st.Installed {
		t.Fatalf("Inspect = %+v, %v", st, err)
	}
	if fi, err := os.Stat(DatastorePath(serverData)); err != nil || !fi.IsDir() || st.Datastore != DatastorePath(serverData) {
		t.Fatalf("the datastore is not where DatastorePath says (%s): %v", DatastorePath(serverData), err)
	}

	_, agentData := start(Agent, agentIP, caHash)
	state, err := os.ReadFile(filepath.Join(agentData, "sim", "state.json"))
	if err != nil || !strings.Contains(string(state), `"mode": "agent"`) || !strings.Contains(string(state), caHash) {
		t.Fatalf("agent state: %s, %v", state, err)
	}
}
