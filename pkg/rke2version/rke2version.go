// Package rke2version parses, orders and measures RKE2 release versions
// (v1.36.4+rke2r1) and release channels (stable, latest, testing, v1.36).
// It is the one parser of RKE2 versions: the configuration, the installer
// (what `rke2 --version` prints) and the upgrade plan all read versions
// through it. It does no I/O.
package rke2version

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Version is an RKE2 release: Kubernetes major.minor.patch, an optional
// pre-release (rc1) and the RKE2 revision N of "+rke2rN". The zero Version
// means "unknown" (IsZero).
type Version struct {
	Major, Minor, Patch int
	Pre                 string // "" for a release, else e.g. "rc1"
	Rev                 int    // the N of +rke2rN, 1 or more
}

// maxComponent bounds every number so that no version overflows or
// compares by accident of size; Kubernetes is far below it.
const maxComponent = 1 << 20

var (
	reVersion = regexp.MustCompile(`^v?(\d{1,7})\.(\d{1,7})\.(\d{1,7})(?:-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*))?\+rke2r(\d{1,7})$`)
	reMinor   = regexp.MustCompile(`^v(\d{1,7})\.(\d{1,7})$`)
	// reOutput matches the line `rke2 version v1.36.4+rke2r1 (commit)`.
	reOutput = regexp.MustCompile(`(?m)^rke2 version (v?[0-9][^\s]*)`)
)

// Parse reads v1.36.4+rke2r1 (the leading v optional) or a pre-release
// such as v1.31.0-rc1+rke2r1.
func Parse(s string) (Version, error) {
	m := reVersion.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("rke2 version %q: want vMAJOR.MINOR.PATCH+rke2rN, e.g. v1.36.4+rke2r1", s)
	}
	var n [4]int
	for i, g := range []string{m[1], m[2], m[3], m[5]} {
		v, err := strconv.Atoi(g)
		if err != nil || v > maxComponent || (len(g) > 1 && g[0] == '0') {
			return Version{}, fmt.Errorf("rke2 version %q: component %q is not a plain number below %d", s, g, maxComponent)
		}
		n[i] = v
	}
	if n[0] == 0 && n[1] == 0 && n[2] == 0 {
		return Version{}, fmt.Errorf("rke2 version %q: v0.0.0 is not a release", s)
	}
	if n[3] < 1 {
		return Version{}, fmt.Errorf("rke2 version %q: the rke2r revision starts at 1", s)
	}
	return Version{Major: n[0], Minor: n[1], Patch: n[2], Pre: m[4], Rev: n[3]}, nil
}

// MustParse is Parse for constants in tests and tables; it panics on error.
func MustParse(s string) Version {
	v, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return v
}

// FromOutput reads the version `rke2 --version` prints: the word after
// "rke2 version " at the start of a line.
func FromOutput(out []byte) (Version, error) {
	m := reOutput.FindSubmatch(out)
	if m == nil {
		first, _, _ := strings.Cut(string(out), "\n")
		return Version{}, fmt.Errorf("rke2 --version printed %q, want \"rke2 version vX.Y.Z+rke2rN …\"", first)
	}
	v, err := Parse(string(m[1]))
	if err != nil {
		return Version{}, fmt.Errorf("rke2 --version: %w", err)
	}
	return v, nil
}

// String is the canonical form, with the leading v; "" for the zero Version.
func (v Version) String() string {
	if v.IsZero() {
		return ""
	}
	pre := ""
	if v.Pre != "" {
		pre = "-" + v.Pre
	}
	return fmt.Sprintf("v%d.%d.%d%s+rke2r%d", v.Major, v.Minor, v.Patch, pre, v.Rev)
}

// IsZero reports the unknown version.
func (v Version) IsZero() bool { return v == Version{} }

// MinorString is "v1.36", the channel a minor line is published under.
func (v Version) MinorString() string { return fmt.Sprintf("v%d.%d", v.Major, v.Minor) }

// Compare orders versions: major, minor, patch, then a pre-release before
// its release (rc1 < rc2 < release, compared as RKE2 tags them), then the
// rke2r revision. It returns -1, 0 or +1.
func (v Version) Compare(w Version) int {
	for _, d := range [...]int{v.Major - w.Major, v.Minor - w.Minor, v.Patch - w.Patch} {
		if d != 0 {
			return sign(d)
		}
	}
	if c := comparePre(v.Pre, w.Pre); c != 0 {
		return c
	}
	return sign(v.Rev - w.Rev)
}

// Less reports v < w.
func (v Version) Less(w Version) bool { return v.Compare(w) < 0 }

// MinorDistance is how many minor releases w is ahead of v (negative when
// behind); across majors it counts no minors and is reported as a large
// distance, since no upgrade crosses a major in one step.
func (v Version) MinorDistance(w Version) int {
	if v.Major != w.Major {
		return sign(w.Major-v.Major) * maxComponent
	}
	return w.Minor - v.Minor
}

func sign(d int) int {
	switch {
	case d < 0:
		return -1
	case d > 0:
		return 1
	}
	return 0
}

// comparePre orders pre-releases by semver's rule: none is newest; dotted
// parts compare numerically when both are numbers, else as text, and a
// text part whose letters match compares by its trailing number (rc2 <
// rc10).
func comparePre(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return 1
	}
	if b == "" {
		return -1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := comparePart(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return sign(len(as) - len(bs))
}

func comparePart(a, b string) int {
	an, ab := splitNumber(a)
	bn, bb := splitNumber(b)
	if ab != bb {
		return strings.Compare(a, b)
	}
	if an != bn {
		return sign(an - bn)
	}
	return strings.Compare(a, b)
}

// splitNumber splits "rc12" into 12 and "rc"; a part without a trailing
// number (or one too long) is -1 and the whole text.
func splitNumber(s string) (int, string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) || len(s)-i > 7 {
		return -1, s
	}
	n, _ := strconv.Atoi(s[i:])
	return n, s[:i]
}

// Channel is a release channel: one of stable, latest, testing, or a minor
// line such as v1.36 (the newest patch of that minor).
type Channel struct {
	Name string // stable, latest, testing; "" for a minor line
	// Major and Minor of a minor-line channel.
	Major, Minor int
}

// Named channels the install script knows.
var namedChannels = []string{"stable", "latest", "testing"}

// ErrChannel is wrapped by ParseChannel's errors.
var ErrChannel = errors.New("accepted values are stable, latest, testing or a minor version such as v1.36")

// ParseChannel reads a channel name.
func ParseChannel(s string) (Channel, error) {
	for _, n := range namedChannels {
		if s == n {
			return Channel{Name: n}, nil
		}
	}
	if m := reMinor.FindStringSubmatch(s); m != nil {
		maj, err1 := strconv.Atoi(m[1])
		mnr, err2 := strconv.Atoi(m[2])
		if err1 == nil && err2 == nil && maj <= maxComponent && mnr <= maxComponent {
			return Channel{Major: maj, Minor: mnr}, nil
		}
	}
	return Channel{}, fmt.Errorf("rke2 channel %q: %w", s, ErrChannel)
}

// String is the channel's name as the install script takes it.
func (c Channel) String() string {
	if c.Name != "" {
		return c.Name
	}
	return fmt.Sprintf("v%d.%d", c.Major, c.Minor)
}

// Admits reports whether v belongs to a minor-line channel; a named
// channel admits any version (what it resolves to is the release server's
// answer, not ours).
func (c Channel) Admits(v Version) bool {
	return c.Name != "" || (v.Major == c.Major && v.Minor == c.Minor)
}
