package gossip

import (
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// memberlist reports rejected traffic and failed probes only in its log.
// logFilter reads those lines (texts of memberlist v0.6.0, pinned in go.mod
// and checked by TestClassifyLine) before passing every line on.
type lineKind int

const (
	lineOther lineKind = iota
	lineUndecryptable
	lineWrongLabel
	lineSuspect
)

// classifyLine returns what a memberlist log line reports, with the remote
// host for rejected traffic or the node name for a suspicion.
func classifyLine(line string) (kind lineKind, subject string) {
	switch {
	case strings.Contains(line, "memberlist: Decrypt packet failed:"),
		strings.Contains(line, "memberlist: failed to receive:") && isDecryptError(line):
		return lineUndecryptable, remoteHost(line)
	case strings.Contains(line, "with unacceptable label"):
		return lineWrongLabel, remoteHost(line)
	}
	const suspectPrefix, suspectSuffix = "memberlist: Suspect ", " has failed, no acks received"
	if i := strings.Index(line, suspectPrefix); i >= 0 && strings.HasSuffix(strings.TrimRight(line, "\n"), suspectSuffix) {
		rest := strings.TrimRight(line[i+len(suspectPrefix):], "\n")
		if name := strings.TrimSuffix(rest, suspectSuffix); name != "" {
			return lineSuspect, name
		}
	}
	return lineOther, ""
}

// isDecryptError recognises memberlist's errors for traffic that another key
// (or no key) produced.
func isDecryptError(s string) bool {
	for _, text := range []string{
		"no installed keys could decrypt",
		"remote state is not encrypted",
		"payload is too small to decrypt",
		"unsupported encryption version",
		"cannot decrypt empty payload",
	} {
		if strings.Contains(s, text) {
			return true
		}
	}
	return false
}

// remoteHost extracts the host of memberlist's trailing "from=host:port".
func remoteHost(line string) string {
	i := strings.LastIndex(line, "from=")
	if i < 0 {
		return "unknown"
	}
	addr := strings.TrimSpace(line[i+len("from="):])
	if f := strings.Fields(addr); len(f) > 0 {
		addr = f[0]
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	if addr == "" {
		return "unknown"
	}
	return addr
}

// logFilter is the io.Writer behind memberlist's *log.Logger.
type logFilter struct {
	next      io.Writer // the zap bridge
	onReject  func(host string, wrongLabel bool)
	onSuspect func(node string)
}

var _ io.Writer = (*logFilter)(nil)

func (f *logFilter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		switch kind, subject := classifyLine(line); kind {
		case lineUndecryptable, lineWrongLabel:
			f.onReject(subject, kind == lineWrongLabel)
			// The clear, rate-limited warning replaces memberlist's
			// per-packet error line.
			line = demote(line)
		case lineSuspect:
			f.onSuspect(subject)
		}
		if _, err := io.WriteString(f.next, line+"\n"); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func demote(line string) string {
	if rest, ok := strings.CutPrefix(line, "[ERR]"); ok {
		return "[DEBUG]" + rest
	}
	return line
}

// rateLimiter allows one event per key per interval and counts the ones it
// suppressed in between.
type rateLimiter struct {
	mu       sync.Mutex
	interval time.Duration
	now      func() time.Time
	last     map[string]time.Time
	dropped  map[string]int
}

const rateLimiterKeys = 1024

func newRateLimiter(interval time.Duration, now func() time.Time) *rateLimiter {
	return &rateLimiter{interval: interval, now: now, last: map[string]time.Time{}, dropped: map[string]int{}}
}

// allow reports whether an event for key may be logged now, and how many
// were suppressed since the last one that was.
func (r *rateLimiter) allow(key string) (ok bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if t, seen := r.last[key]; seen && now.Sub(t) < r.interval {
		r.dropped[key]++
		return false, 0
	}
	if len(r.last) >= rateLimiterKeys {
		// Many distinct peers: forget them all rather than grow without bound.
		clear(r.last)
		clear(r.dropped)
	}
	suppressed = r.dropped[key]
	delete(r.dropped, key)
	r.last[key] = now
	return true, suppressed
}
