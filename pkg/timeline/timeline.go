// Package timeline keeps a host's recent phase transitions and the compact
// form in which a host gossips them, so that any host can draw how the
// whole cluster assembled and where the time went.
//
// The wire form must fit the few bytes gossip metadata can spare
// (MaxEncodedLen), so it carries a phase code and a tenth-of-a-second delta
// per transition, and drops the oldest transitions first when they do not
// all fit.
package timeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// DefaultDepth is how many transitions a Recorder keeps.
const DefaultDepth = 32

// MaxEncodedLen bounds Encode's output; gossip metadata reserves this much.
const MaxEncodedLen = 96

// PhaseUnknown is what Decode reports for a phase code this daemon does not
// know (a newer daemon's phase), so the rest of the timeline still reads.
const PhaseUnknown = "unknown"

// formatVersion is the first byte of the wire form.
const formatVersion = 1

// unit is the precision of the wire form.
const unit = 100 * time.Millisecond

// maxBase bounds every time on the wire (in units since 1970, about the
// year 2187): beyond any real clock, and within time.Duration's range.
const maxBase = 1 << 36

// codes are the wire codes of the phases. Append only: a code never changes
// meaning, so daemons of two versions read each other's timelines. Code 0 is
// PhaseUnknown.
var codes = []string{
	PhaseUnknown,
	status.PhasePreflight, status.PhaseInstalling, status.PhaseDiscovering, status.PhaseElecting,
	status.PhaseWaitingCluster, status.PhaseWaitingJoinSlot, status.PhaseStarting,
	status.PhaseWaitingVIP, status.PhaseReady, status.PhaseFailed,
	status.PhaseStandby,
}

func codeOf(phase string) (byte, bool) {
	for i, p := range codes {
		if p == phase {
			return byte(i), true
		}
	}
	return 0, false
}

// Recorder keeps the last Depth transitions of this host. It is safe for
// concurrent use.
type Recorder struct {
	mu      sync.Mutex
	depth   int
	entries []status.Transition
}

// NewRecorder keeps the last depth transitions (DefaultDepth when depth < 1).
func NewRecorder(depth int) *Recorder {
	if depth < 1 {
		depth = DefaultDepth
	}
	return &Recorder{depth: depth}
}

// Record notes that the host entered phase at the given time.
func (r *Recorder) Record(phase string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, status.Transition{Phase: phase, At: at})
	if n := len(r.entries) - r.depth; n > 0 {
		r.entries = append(r.entries[:0:0], r.entries[n:]...)
	}
}

// Entries returns a copy of the transitions, oldest first.
func (r *Recorder) Entries() []status.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]status.Transition(nil), r.entries...)
}

// Encode returns the wire form of entries (oldest first): the newest
// transitions that fit in MaxEncodedLen bytes. Times are kept to a tenth of
// a second; a time earlier than the one before it is taken as equal to it
// (a clock step back must not make the summary unreadable). Entries before
// 1970 and phases this package has no code for are an error.
func Encode(entries []status.Transition) ([]byte, error) {
	for _, e := range entries {
		if _, ok := codeOf(e.Phase); !ok {
			return nil, fmt.Errorf("timeline: phase %q has no wire code", e.Phase)
		}
		if e.At.Before(time.Unix(0, 0)) || toUnits(e.At) > maxBase {
			return nil, fmt.Errorf("timeline: time %s of phase %s is out of range", e.At.UTC().Format(time.RFC3339), e.Phase)
		}
	}
	for start := 0; start < len(entries); start++ {
		if b := encode(entries[start:]); len(b) <= MaxEncodedLen {
			return b, nil
		}
	}
	return nil, nil
}

func encode(entries []status.Transition) []byte {
	b := []byte{formatVersion}
	prev := toUnits(entries[0].At)
	b = binary.AppendUvarint(b, uint64(prev))
	for _, e := range entries {
		code, _ := codeOf(e.Phase)
		at := max(toUnits(e.At), prev)
		b = append(b, code)
		b = binary.AppendUvarint(b, uint64(at-prev))
		prev = at
	}
	return b
}

func toUnits(t time.Time) int64 { return t.UnixNano() / int64(unit) }

// Decode parses the wire form written by Encode. Empty input is an empty
// timeline. It rejects other versions, truncation, more than DefaultDepth
// transitions, input over MaxEncodedLen and times out of range; a phase code
// it does not know reads as PhaseUnknown.
func Decode(buf []byte) ([]status.Transition, error) {
	if len(buf) == 0 {
		return nil, nil
	}
	if len(buf) > MaxEncodedLen {
		return nil, fmt.Errorf("timeline: %d bytes, limit %d", len(buf), MaxEncodedLen)
	}
	if buf[0] != formatVersion {
		return nil, fmt.Errorf("timeline: format %d: this daemon understands %d", buf[0], formatVersion)
	}
	buf = buf[1:]
	base, n := binary.Uvarint(buf)
	if n <= 0 || base > maxBase {
		return nil, errors.New("timeline: bad start time")
	}
	buf = buf[n:]
	at := int64(base)
	var out []status.Transition
	for len(buf) > 0 {
		if len(out) == DefaultDepth {
			return nil, fmt.Errorf("timeline: more than %d transitions", DefaultDepth)
		}
		code := buf[0]
		delta, n := binary.Uvarint(buf[1:])
		if n <= 0 {
			return nil, fmt.Errorf("timeline: truncated after %d transitions", len(out))
		}
		buf = buf[1+n:]
		if delta > maxBase || at+int64(delta) > maxBase {
			return nil, errors.New("timeline: time out of range")
		}
		at += int64(delta)
		phase := PhaseUnknown
		if int(code) < len(codes) {
			phase = codes[code]
		}
		out = append(out, status.Transition{Phase: phase, At: time.Unix(0, at*int64(unit)).UTC()})
	}
	if len(out) == 0 {
		return nil, errors.New("timeline: a start time without transitions")
	}
	return out, nil
}
