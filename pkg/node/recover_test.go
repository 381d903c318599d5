package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
)

// TestRecoverRefusals: recover refuses, before touching anything, without
// --from or --confirm, on another host than the survivor, on an agent, and
// on a server with no raft store; each refusal says what to do.
func TestRecoverRefusals(t *testing.T) {
	server := func() *config.Config {
		c := config.Defaults()
		c.Role, c.NodeName, c.DataDir, c.RKE2DataDir = "server", "ha-m1", t.TempDir(), t.TempDir()
		return c
	}
	agent := server()
	agent.Role = "agent"
	cases := []struct {
		name string
		c    *config.Config
		o    RecoverOptions
		want string
	}{
		{"no --from", server(), RecoverOptions{Confirm: true}, "--from NODE is required"},
		{"another host", server(), RecoverOptions{From: "ha-m2", Confirm: true}, "--from ha-m2: this host is ha-m1; run recover on ha-m2 itself"},
		{"no --confirm", server(), RecoverOptions{From: "ha-m1"}, "Add --confirm to do it"},
		{"an agent", agent, RecoverOptions{From: "ha-m1", Confirm: true}, "this host is an agent"},
		{"no raft store", server(), RecoverOptions{From: "ha-m1", Confirm: true}, "no raft store at"},
	}
	for _, tc := range cases {
		err := Recover(context.Background(), tc.c, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
		if tc.name != "no raft store" && !errors.Is(err, ErrRecoverUsage) {
			t.Errorf("%s: %v is not a usage refusal", tc.name, err)
		}
	}
}
