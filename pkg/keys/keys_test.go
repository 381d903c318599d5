package keys

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestDeriveSeparatesPurposeClusterAndToken(t *testing.T) {
	base, err := Derive("secret", PurposeGossip, "rke2", 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(base) != 32 {
		t.Fatalf("len = %d", len(base))
	}
	again, _ := Derive("secret", PurposeGossip, "rke2", 32)
	if !bytes.Equal(base, again) {
		t.Fatal("derivation is not deterministic")
	}
	for name, args := range map[string][3]string{
		"purpose": {"secret", PurposeRaftCA, "rke2"},
		"claims":  {"secret", PurposeServerClaims, "rke2"},
		"cluster": {"secret", PurposeGossip, "other"},
		"token":   {"secret2", PurposeGossip, "rke2"},
	} {
		k, err := Derive(args[0], args[1], args[2], 32)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(k, base) {
			t.Errorf("another %s gives the same key", name)
		}
	}
	if _, err := Derive("", PurposeGossip, "rke2", 32); err == nil {
		t.Error("empty token accepted")
	}
}

// TestDeriveStretchesWithArgon2id is the offline-guessing attack: with
// HKDF alone over the token (the old derivation), one guess of a token
// against a captured raft CA certificate cost a microsecond. The derived
// keys must come from argon2id at the stated costs, so a guess costs a
// 64 MiB, 2-pass argon2id run (BenchmarkGuess measures it).
func TestDeriveStretchesWithArgon2id(t *testing.T) {
	const token, cluster = "guess-me", "rke2"
	got, err := Derive(token, PurposeRaftCA, cluster, 32)
	if err != nil {
		t.Fatal(err)
	}
	cheap, _ := hkdf.Key(sha256.New, []byte(token), nil, PurposeRaftCA+"\x00"+cluster, 32)
	if bytes.Equal(got, cheap) {
		t.Fatal("key is HKDF over the bare token: an offline guess costs one hash")
	}
	m := argon2.IDKey([]byte(token), []byte("rke2-hanode argon2id v1\x00"+cluster), 2, 64*1024, 4, 32)
	want, _ := hkdf.Key(sha256.New, m, nil, PurposeRaftCA+"\x00"+cluster, 32)
	if !bytes.Equal(got, want) {
		t.Fatal("key is not HKDF over argon2id(token, label+cluster, 2 passes, 64 MiB, 4 lanes)")
	}
	if passes, mem, lanes := Params(); passes != 2 || mem != 64*1024 || lanes != 4 {
		t.Errorf("Params() = %d, %d, %d", passes, mem, lanes)
	}
}

// TestDeriveCachesTheStretch: many members of one cluster started in one
// process pay the memory-hard step once, and concurrent callers agree.
func TestDeriveCachesTheStretch(t *testing.T) {
	const token, cluster = "cached-token", "cache-test"
	var wg sync.WaitGroup
	out := make([][]byte, 8)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], _ = Derive(token, PurposeGossip, cluster, 32)
		}()
	}
	wg.Wait()
	for i := range out {
		if !bytes.Equal(out[i], out[0]) {
			t.Fatal("concurrent derivations disagree")
		}
	}
	a := master(token, cluster)
	b := master(token, cluster)
	if &a[0] != &b[0] {
		t.Error("the master key was computed twice for one (token, cluster)")
	}
}

func TestCheckStrength(t *testing.T) {
	for _, tc := range []struct {
		token string
		ok    bool
	}{
		{"my-shared-secret", false},
		{"summer2024", false},
		{"summer2024summer2024summer2024summer2024", false}, // a repeated pattern counts once
		{strings.Repeat("a", 200), false},
		{"s3cret-token", false},
		{"", false},
		{"qwhzkrmvbtpfyjxdlsnocaeiugwq", true}, // 28 lower-case letters
		{"Xk8pQ2mZ7rT4vN9wB3yL6h", true},       // 22 mixed letters and digits
		{"K10" + strings.Repeat("0123456789abcdef", 4) + "::server:" + RandomSecret(), true},
		{"K10" + strings.Repeat("0123456789abcdef", 4) + "::server:Xk8pQ2mZ7rT4", false}, // the public CA hash does not count
		{"K10::node:my-shared-secret", false},
		{RandomSecret(), true},
		{"demo-0b5f8e2a91c4d7364fa0e9b2c81d5f73", true},
	} {
		err := CheckStrength(tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("CheckStrength(%q) = %v (bits %.0f), want ok=%v", tc.token, err, TokenBits(tc.token), tc.ok)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "rke2-hanode token generate") {
				t.Errorf("error does not name the remedy: %v", err)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error shows the token: %v", err)
			}
		}
	}
}

func TestRandomSecret(t *testing.T) {
	a, b := RandomSecret(), RandomSecret()
	if len(a) != 64 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("RandomSecret() = %q, want 64 lower-case hex digits", a)
	}
	if a == b {
		t.Fatal("two secrets are equal")
	}
}

// BenchmarkGuess is what one offline guess of a token costs an attacker
// who captured a raft CA certificate or a gossip packet: the uncached
// argon2id stretch plus one HKDF.
func BenchmarkGuess(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		m := stretch("guess-"+string(rune('a'+i%26)), "rke2")
		if _, err := hkdf.Key(sha256.New, m, nil, PurposeRaftCA+"\x00rke2", 32); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuessOld is the same guess against the old derivation (HKDF
// over the bare token), for comparison.
func BenchmarkGuessOld(b *testing.B) {
	for b.Loop() {
		if _, err := hkdf.Key(sha256.New, []byte("guess"), nil, PurposeRaftCA+"\x00rke2", 32); err != nil {
			b.Fatal(err)
		}
	}
}
