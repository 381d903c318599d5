package textcheck

import (
	"strings"
	"testing"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in, wantErr string
	}{
		{"server-1", ""},
		{strings.Repeat("a", MaxLen), ""},
		{strings.Repeat("a", MaxLen+1), "field node longer than 253 bytes"},
		{"a\x1b[2J", "field node holds a non-printable character"},
		{"a\xffb", "field node holds a non-printable character"},
	} {
		err := Printable("node", tc.in)
		if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
			t.Errorf("Printable(%q) = %v, want %q", tc.in, err, tc.wantErr)
		}
	}
}
