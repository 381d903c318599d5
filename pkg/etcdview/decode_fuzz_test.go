package etcdview

import (
	"strings"
	"testing"
)

// FuzzDecodeView: the gateway's answers come from whatever listens on the
// local port. decodeView never panics, and a view it accepts names its own
// member among printable members, no more than MaxMembers.
func FuzzDecodeView(f *testing.F) {
	f.Add([]byte(statusJSON), []byte(membersJSON))
	f.Add([]byte(`{"header":{"member_id":"7","revision":"9223372036854775808"}}`), []byte(`{"members":[{"ID":"7","name":"a"}]}`))
	f.Add([]byte(`{"header":{"member_id":7}}`), []byte(`{"members":[{"ID":7,"name":"a\u0000b"}]}`))
	f.Add([]byte(`null`), []byte(`[]`))
	f.Fuzz(func(t *testing.T, st, ml []byte) {
		v, err := decodeView(st, ml)
		if err != nil {
			return
		}
		if v.MemberID == 0 || v.MemberName == "" || v.Revision < 0 || len(v.Members) > MaxMembers {
			t.Fatalf("accepted %+v", v)
		}
		for _, m := range v.Members {
			if strings.IndexFunc(m.Name+m.PeerURL, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
				t.Fatalf("unprintable member %q", m.Name)
			}
		}
	})
}
