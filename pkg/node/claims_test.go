package node

import (
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
)

// TestClaimKeys: servers sign with the server token's key; every host
// verifies with the same fingerprint, from the agent token or derived from
// the token it holds.
func TestClaimKeys(t *testing.T) {
	tok, err := claims.Generate("rke2")
	if err != nil {
		t.Fatal(err)
	}
	load := func(env ...string) *config.Config {
		t.Helper()
		c, err := config.Load(config.LoadOptions{Env: append(env, "RKE2_HANODE_NODE_NAME=h1", "RKE2_HANODE_VIP=10.0.0.200",
			"RKE2_HANODE_INTERFACE=eth0", "RKE2_HANODE_JOIN=10.0.0.1", "RKE2_HANODE_EXPECT_SERVERS=3")})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	want, _ := claims.FingerprintFromServerToken(tok.Server, "rke2")
	for name, tc := range map[string]struct {
		c      *config.Config
		signer bool
	}{
		"server, two tokens": {load("RKE2_HANODE_ROLE=server", "RKE2_HANODE_TOKEN="+tok.Server, "RKE2_HANODE_AGENT_TOKEN="+tok.Agent), true},
		"server, one token":  {load("RKE2_HANODE_ROLE=server", "RKE2_HANODE_TOKEN="+tok.Server), true},
		"agent, agent token": {load("RKE2_HANODE_ROLE=agent", "RKE2_HANODE_TOKEN="+tok.Agent), false},
		"agent, one token":   {load("RKE2_HANODE_ROLE=agent", "RKE2_HANODE_TOKEN="+tok.Server), false},
	} {
		fp, s, err := claimKeys(tc.c)
		if err != nil || fp != want || (s != nil) != tc.signer || (s != nil && s.Fingerprint() != want) {
			t.Errorf("%s: fingerprint %q (want %q), signer %v, %v", name, fp, want, s != nil, err)
		}
	}
}
