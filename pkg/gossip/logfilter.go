package gossip

import (
	"container/list"
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

// rateLimiter allows one event per key per interval, and at most
// rateLimiterBurst events per interval over all keys, and counts the ones it
// suppressed in between. Keys come from the network (a peer's address, which
// a sender can spoof), so both bounds matter: the per-key state is a
// least-recently-used table of rateLimiterKeys entries, and the global token
// bucket keeps a flood of distinct keys to a few lines per interval. No
// suppressed event is lost from the count: one dropped by the global bucket,
// or held by a key the table evicted, is reported with the next line that
// is logged, whatever its key.
type rateLimiter struct {
	mu       sync.Mutex
	interval time.Duration
	now      func() time.Time
	lru      *list.List // of *limiterEntry, most recent first
	keys     map[string]*list.Element
	tokens   float64   // global bucket
	filled   time.Time // when tokens was last refilled
	orphaned int       // suppressed events not attributable to a logged key
}

type limiterEntry struct {
	key     string
	last    time.Time
	dropped int
}

const (
	rateLimiterKeys  = 1024
	rateLimiterBurst = 20
)

func newRateLimiter(interval time.Duration, now func() time.Time) *rateLimiter {
	return &rateLimiter{interval: interval, now: now, lru: list.New(), keys: map[string]*list.Element{}, tokens: rateLimiterBurst}
}

// allow reports whether an event for key may be logged now, and how many
// events were suppressed since the last one that was: this key's, plus
// those of the global bucket and of evicted keys.
func (r *rateLimiter) allow(key string) (ok bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.refill(now)
	el, seen := r.keys[key]
	if seen {
		r.lru.MoveToFront(el)
		if e := el.Value.(*limiterEntry); now.Sub(e.last) < r.interval {
			e.dropped++
			return false, 0
		}
	}
	if r.tokens < 1 {
		r.orphaned++
		return false, 0
	}
	r.tokens--
	if !seen {
		el = r.lru.PushFront(&limiterEntry{key: key})
		r.keys[key] = el
		for r.lru.Len() > rateLimiterKeys {
			old := r.lru.Remove(r.lru.Back()).(*limiterEntry)
			delete(r.keys, old.key)
			r.orphaned += old.dropped
		}
	}
	e := el.Value.(*limiterEntry)
	suppressed = e.dropped + r.orphaned
	e.last, e.dropped, r.orphaned = now, 0, 0
	return true, suppressed
}

// refill adds rateLimiterBurst tokens per interval, up to the burst.
func (r *rateLimiter) refill(now time.Time) {
	if r.filled.IsZero() {
		r.filled = now
		return
	}
	if d := now.Sub(r.filled); d > 0 && r.interval > 0 {
		r.tokens = min(rateLimiterBurst, r.tokens+rateLimiterBurst*float64(d)/float64(r.interval))
		r.filled = now
	}
}
