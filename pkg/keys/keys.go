// Package keys derives every key the daemon needs from the cluster token.
//
// Hosts share nothing but the token, so each secret (the gossip encryption
// key, the raft CA's ed25519 seed) is derived from it with HKDF-SHA256. The
// purpose and the cluster name go into HKDF's info, so one token used for two
// clusters, or for two purposes, never yields the same key. Derived keys are
// secrets: never log them, print them or put them in metrics or status.
package keys

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// Purposes of derived keys. Changing one changes every cluster's keys.
const (
	PurposeGossip = "rke2-hanode gossip v1"
	PurposeRaftCA = "rke2-hanode raft-ca v1"
)

// Derive returns n bytes derived from token for purpose within cluster.
func Derive(token, purpose, cluster string, n int) ([]byte, error) {
	if token == "" {
		return nil, fmt.Errorf("keys: empty token")
	}
	info := purpose + "\x00" + cluster
	key, err := hkdf.Key(sha256.New, []byte(token), nil, info, n)
	if err != nil {
		return nil, fmt.Errorf("keys: derive %s: %w", purpose, err)
	}
	return key, nil
}
