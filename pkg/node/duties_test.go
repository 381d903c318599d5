package node

import (
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// TestCommandReaders: the duties' gate reads each server's gossiped command
// version; a build from before the field reads version 1, a server not in
// gossip is not known.
func TestCommandReaders(t *testing.T) {
	ms := []gossip.MemberInfo{
		{Name: "new", Meta: gossip.Meta{Role: gossip.RoleServer, Commands: 2}},
		{Name: "old", Meta: gossip.Meta{Role: gossip.RoleServer}},
	}
	for _, tc := range []struct {
		name string
		v    int
		ok   bool
	}{{"new", 2, true}, {"old", 1, true}, {"absent", 0, false}} {
		if v, ok := commandReaders(ms, tc.name); v != tc.v || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, v, ok, tc.v, tc.ok)
		}
	}
}
