package config

import (
	"strings"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

// An agent token is <fingerprint>.<secret>, and the fingerprint is public
// (it names the servers' claim key; anyone who saw one agent token, or can
// derive it, knows it). The strength rule must weigh the secret part only:
// otherwise the 32 hex digits of the fingerprint make a guessable secret
// pass, and the gossip key (derived from the whole agent token) can be
// guessed offline by an outsider who knows the fingerprint.
func TestAttackWeakSecretBehindAFingerprint(t *testing.T) {
	server := keys.RandomSecret()
	fp, err := claims.FingerprintFromServerToken(server, "rke2")
	if err != nil {
		t.Fatal(err)
	}
	weak := fp + ".hunter2"
	if keys.CheckStrength("hunter2") == nil {
		t.Fatal("setup: the secret part alone is not weak")
	}
	srv := strings.Replace(validServer, "token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "token: "+server+"\nagent-token: "+weak, 1)
	agent := strings.Replace(strings.Replace(validServer, "role: server", "role: agent", 1),
		"token: s3cret-token-Xk8pQ2mZ7rT4vN9wB3yL6h", "token: "+weak, 1)
	var accepted []string
	for name, body := range map[string]string{"a server's agent-token": srv, "an agent's token": agent} {
		if _, err := load(t, body); err == nil {
			accepted = append(accepted, name)
		} else if !strings.Contains(err.Error(), "too weak") {
			t.Errorf("%s: refused for another reason: %v", name, err)
		}
	}
	if len(accepted) > 0 {
		t.Fatalf("an agent token whose secret part is weak passes the strength rule thanks to its public fingerprint (%s)",
			strings.Join(accepted, ", "))
	}
}
