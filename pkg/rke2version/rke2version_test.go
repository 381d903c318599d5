package rke2version

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"v1.36.4+rke2r1", "v1.36.4+rke2r1", ""},
		{"1.36.4+rke2r2", "v1.36.4+rke2r2", ""},
		{"v1.31.0-rc1+rke2r1", "v1.31.0-rc1+rke2r1", ""},
		{"v1.31.0-rc.2+rke2r1", "v1.31.0-rc.2+rke2r1", ""},
		{"v1.36", "", "want vMAJOR.MINOR.PATCH+rke2rN"},
		{"v1.36.4", "", "want vMAJOR.MINOR.PATCH+rke2rN"},
		{"v1.36.4+k3s1", "", "want vMAJOR.MINOR.PATCH+rke2rN"},
		{"v1.36.4+rke2r0", "", "revision starts at 1"},
		{"v1.036.4+rke2r1", "", "not a plain number"},
		{"v0.0.0+rke2r1", "", "not a release"},
		{"v99999999.1.1+rke2r1", "", "want vMAJOR"},
		{" v1.36.4+rke2r1", "", "want vMAJOR"},
		{"v1.36.4+rke2r1\n", "", "want vMAJOR"},
		{"", "", "want vMAJOR"},
	}
	for _, tc := range tests {
		v, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, %v; want error %q", tc.in, v, err, tc.err)
			}
			continue
		}
		if err != nil || v.String() != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, v, err, tc.want)
		}
	}
}

func TestCompare(t *testing.T) {
	// Each is older than the next.
	order := []string{
		"v1.35.9+rke2r3",
		"v1.36.0-rc1+rke2r1",
		"v1.36.0-rc2+rke2r1",
		"v1.36.0-rc10+rke2r1",
		"v1.36.0+rke2r1",
		"v1.36.0+rke2r2",
		"v1.36.4+rke2r1",
		"v1.36.10+rke2r1",
		"v1.37.0+rke2r1",
		"v2.0.0+rke2r1",
	}
	for i := range order {
		for j := range order {
			a, b := MustParse(order[i]), MustParse(order[j])
			want := sign(i - j)
			if got := a.Compare(b); got != want {
				t.Errorf("%s compare %s = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestMinorDistance(t *testing.T) {
	tests := []struct {
		from, to string
		want     int
	}{
		{"v1.35.2+rke2r1", "v1.36.0+rke2r1", 1},
		{"v1.35.2+rke2r1", "v1.37.0+rke2r1", 2},
		{"v1.36.2+rke2r1", "v1.36.9+rke2r1", 0},
		{"v1.36.2+rke2r1", "v1.35.9+rke2r1", -1},
		{"v1.36.2+rke2r1", "v2.0.0+rke2r1", maxComponent},
	}
	for _, tc := range tests {
		if got := MustParse(tc.from).MinorDistance(MustParse(tc.to)); got != tc.want {
			t.Errorf("%s → %s: minor distance %d, want %d", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestFromOutput(t *testing.T) {
	v, err := FromOutput([]byte("warning: x\nrke2 version v1.30.1+rke2r2 (0123abcd)\ngo version go1.26\n"))
	if err != nil || v != MustParse("v1.30.1+rke2r2") {
		t.Fatalf("FromOutput = %v, %v", v, err)
	}
	for _, out := range []string{"k3s version v1.30.1+k3s1 (x)", "", "rke2 version banana (x)"} {
		if _, err := FromOutput([]byte(out)); err == nil || !strings.Contains(err.Error(), "rke2") {
			t.Errorf("FromOutput(%q) err = %v", out, err)
		}
	}
}

func TestParseChannel(t *testing.T) {
	for _, s := range []string{"stable", "latest", "testing", "v1.36"} {
		c, err := ParseChannel(s)
		if err != nil || c.String() != s {
			t.Errorf("ParseChannel(%q) = %v, %v", s, c, err)
		}
	}
	for _, s := range []string{"nightly", "1.36", "v1.36.4", "Stable", ""} {
		if _, err := ParseChannel(s); err == nil || !strings.Contains(err.Error(), "accepted values are stable, latest, testing") {
			t.Errorf("ParseChannel(%q) err = %v", s, err)
		}
	}
	c, _ := ParseChannel("v1.36")
	if !c.Admits(MustParse("v1.36.9+rke2r1")) || c.Admits(MustParse("v1.37.0+rke2r1")) {
		t.Error("channel v1.36 admits the wrong minor")
	}
}

// FuzzParse: Parse never panics; what it accepts prints back in canonical
// form, parses to the same value, and compares equal to itself only.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"v1.36.4+rke2r1", "1.2.3+rke2r9", "v1.31.0-rc1+rke2r1", "v1.31.0-rc.1.x+rke2r1", "v1.36", "v01.2.3+rke2r1", "v1.2.3-+rke2r1"} {
		f.Add(s, "v1.36.4+rke2r1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		v, err := Parse(a)
		if err != nil {
			if !v.IsZero() {
				t.Fatalf("Parse(%q): error %v with %v", a, err, v)
			}
			return
		}
		s := v.String()
		w, err := Parse(s)
		if err != nil || w != v {
			t.Fatalf("Parse(%q) = %v prints %q, which parses to %v, %v", a, v, s, w, err)
		}
		if strings.TrimPrefix(a, "v") != strings.TrimPrefix(s, "v") {
			t.Fatalf("Parse(%q) prints as %q", a, s)
		}
		if v.Compare(v) != 0 {
			t.Fatalf("%v does not compare equal to itself", v)
		}
		if u, err := Parse(b); err == nil {
			if v.Compare(u) != -u.Compare(v) {
				t.Fatalf("compare of %v and %v is not antisymmetric", v, u)
			}
			if (v.Compare(u) == 0) != (v == u) {
				t.Fatalf("%v and %v compare equal but differ, or the reverse", v, u)
			}
		}
	})
}
