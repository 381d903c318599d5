// Package keys derives every key the daemon needs from a cluster token.
//
// Hosts share nothing but the tokens, so each secret (the gossip encryption
// key, the raft CA's ed25519 seed, the server-claims signing key) is derived
// from one. Derivation has two steps:
//
//  1. Stretch: argon2id over the token, salted with a fixed label and the
//     cluster name, gives a 32-byte master key. This is the memory-hard step
//     that makes every offline guess of the token cost what one start costs
//     (see Params), so what a TLS handshake or a captured gossip packet
//     reveals cannot be brute-forced. It runs once per (token, cluster) in a
//     process: the result is cached.
//  2. Expand: HKDF-SHA256 over the master key, with the purpose and the
//     cluster name in its info, so one token used for two clusters, or for
//     two purposes, never yields the same key.
//
// Derived keys are secrets: never log them, print them or put them in
// metrics or status.
package keys

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Purposes of derived keys. Changing one changes every cluster's keys.
const (
	PurposeGossip       = "rke2-hanode gossip v1"
	PurposeRaftCA       = "rke2-hanode raft-ca v1"
	PurposeServerClaims = "rke2-hanode server-claims v1"
)

// Argon2id costs of the stretch step. They are part of the derivation:
// changing one changes every cluster's keys, so they are constants, not
// settings. 64 MiB and 2 passes take about 0.1-0.3 s on one core of a small
// server, once at start; an attacker pays the same 64 MiB and 2 passes for
// every guess, which with the strength rule (CheckStrength: at least 128
// estimated bits) puts a search far out of reach. 4 lanes let the daemon use
// up to 4 cores without lowering the per-guess cost.
const (
	argonTime    = 2
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
	argonSalt    = "rke2-hanode argon2id v1\x00"
	masterLen    = 32
)

// Params describes the stretch step's costs, for documentation and reports.
func Params() (passes uint32, memoryKiB uint32, lanes uint8) {
	return argonTime, argonMemory, argonThreads
}

var stretchCache = struct {
	sync.Mutex
	m map[[sha256.Size]byte][]byte
}{m: map[[sha256.Size]byte][]byte{}}

// stretchCacheMax bounds the cache; a daemon uses one or two entries, a test
// process that starts many clusters a few dozen.
const stretchCacheMax = 64

// master returns the argon2id master key of token within cluster, computing
// it at most once per process. The lock is held while computing, so
// concurrent callers wait for one derivation rather than each spending
// 64 MiB at once.
func master(token, cluster string) []byte {
	id := sha256.Sum256([]byte(argonSalt + cluster + "\x00" + token))
	stretchCache.Lock()
	defer stretchCache.Unlock()
	if k, ok := stretchCache.m[id]; ok {
		return k
	}
	k := stretch(token, cluster)
	if len(stretchCache.m) >= stretchCacheMax {
		clear(stretchCache.m)
	}
	stretchCache.m[id] = k
	return k
}

// stretch is the memory-hard step, uncached.
func stretch(token, cluster string) []byte {
	return argon2.IDKey([]byte(token), []byte(argonSalt+cluster), argonTime, argonMemory, argonThreads, masterLen)
}

// Derive returns n bytes derived from token for purpose within cluster.
func Derive(token, purpose, cluster string, n int) ([]byte, error) {
	if token == "" {
		return nil, fmt.Errorf("keys: empty token")
	}
	info := purpose + "\x00" + cluster
	key, err := hkdf.Key(sha256.New, master(token, cluster), nil, info, n)
	if err != nil {
		return nil, fmt.Errorf("keys: derive %s: %w", purpose, err)
	}
	return key, nil
}
