package keys

import (
	"regexp"
	"testing"
)

var refusal = regexp.MustCompile(`^too weak: about \d+ bits, at least 128 are required \(e\.g\. 28 random lower-case letters, 22 mixed letters and digits, or 64 hex digits\); make one with ` + "`rke2-hanode token generate`$")

// FuzzCheckStrength: any token, however malformed, gets an answer without
// a panic, and a refusal never shows the token.
func FuzzCheckStrength(f *testing.F) {
	for _, s := range []string{"", "my-shared-secret", "K10", "K10::", "K10::a:", "K10abc::node:x:y", "\xff\xfe", RandomSecret()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		// The refusal is fixed text but for the estimate, so it cannot
		// show the token.
		if err := CheckStrength(token); err != nil && !refusal.MatchString(err.Error()) {
			t.Fatalf("unexpected refusal text: %v", err)
		}
		if b := TokenBits(token); b < 0 {
			t.Fatalf("negative estimate %f", b)
		}
	})
}
