package claims

import (
	"bytes"
	"testing"
)

// FuzzDecodeClaim: the decoder of claims received from any gossip member
// never panics, and what it accepts encodes back to the same bytes unless
// it skipped a field it does not know.
func FuzzDecodeClaim(f *testing.F) {
	for _, c := range []Claim{claim(1), fullClaim(2), worstCase(), {Node: "a", Seq: 1}} {
		b, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{claimNeeds, claimVersion + 1, tagNode, 1, 'a', tagSeq, 8, 0, 0, 0, 0, 0, 0, 0, 1, 200, 0})
	s := signer(f, serverToken)
	v := verifier(f, s)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeClaim(b)
		if err == nil {
			again, err := c.Encode()
			if err != nil {
				t.Fatalf("decoded claim does not encode: %v", err)
			}
			if b[1] == claimVersion && !bytes.Equal(again, b) {
				if c2, err := DecodeClaim(again); err != nil || !bytes.Equal(mustEncode(t, c2), again) {
					t.Fatalf("re-encoding is not stable")
				}
			}
		}
		// A signed claim built around the input is accepted only if the
		// input decodes, and never panics.
		w := append(append(bytes.Clone(b), s.Public()...), make([]byte, sigLen)...)
		if _, err := v.Accept("a", w); err == nil {
			t.Fatal("a zero signature was accepted")
		}
	})
}
