package keys

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
)

// MinTokenBits is the least estimated strength a token must have.
const MinTokenBits = 128

// TokenBits estimates a token's strength in bits: the number of distinct
// 3-character sequences in it plus two (its length, with repeated patterns
// counted once), times log2 of the size of the character classes it uses
// (lower-case letters 26, upper-case 26, digits 10, anything else 33).
//
// It is an upper bound on what a guesser faces, not a measure of true
// randomness: it refuses short tokens, one-class short tokens and repeated
// patterns ("summer2024summer2024…"); a long sentence still passes. Tokens
// made by `rke2-hanode token generate` (256 random bits) are far above it.
func TokenBits(token string) float64 {
	runes := []rune(token)
	var lower, upper, digit, other bool
	for _, r := range runes {
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= '0' && r <= '9':
			digit = true
		default:
			other = true
		}
	}
	pool := 0
	for _, c := range []struct {
		used bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 33}} {
		if c.used {
			pool += c.size
		}
	}
	if pool == 0 {
		return 0
	}
	length := len(runes)
	if length >= 3 {
		seen := map[[3]rune]bool{}
		for i := 0; i+3 <= len(runes); i++ {
			seen[[3]rune(runes[i:i+3])] = true
		}
		length = len(seen) + 2
	}
	return float64(length) * math.Log2(float64(pool))
}

// CheckStrength refuses a token whose estimated strength (TokenBits) is
// below MinTokenBits. Of a token in RKE2's secure form,
// K10<ca-hash>::<user>:<password> (or K10<ca-hash>::<bootstrap token>),
// only the password (or the bootstrap token) counts: the CA hash is public.
// The error names the estimate and the remedy, never the token.
func CheckStrength(token string) error {
	if rest, ok := strings.CutPrefix(token, "K10"); ok {
		if _, secret, ok := strings.Cut(rest, "::"); ok {
			if _, password, ok := strings.Cut(secret, ":"); ok {
				secret = password
			}
			token = secret
		}
	}
	if bits := TokenBits(token); bits < MinTokenBits {
		return fmt.Errorf("too weak: about %.0f bits, at least %d are required (e.g. 28 random lower-case letters, 22 mixed letters and digits, or 64 hex digits); make one with `rke2-hanode token generate`", bits, MinTokenBits)
	}
	return nil
}

// RandomSecret returns 32 bytes from crypto/rand as 64 lower-case hex
// digits: the secret part of every generated token.
func RandomSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather)
	return hex.EncodeToString(b)
}
