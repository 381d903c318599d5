package installer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	retry "github.com/rke2-hanode/rke2-hanode/pkg/backoff"
)

// maxLineBytes caps one line of child output; the rest of a longer line is
// dropped rather than blocking the child on a full pipe.
const maxLineBytes = 4096

// lineReader turns everything a child writes to its stdout and stderr into
// lines. Its write end is an *os.File, so exec.Cmd.Wait returns when the
// child exits even if a grandchild still holds the pipe.
type lineReader struct {
	r, w *os.File
	done chan struct{}
}

func newLineReader(emit func(line string)) (*lineReader, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	lr := &lineReader{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(lr.done)
		readLines(r, emit)
	}()
	return lr, nil
}

// started closes the parent's copy of the write end once the child has it.
func (lr *lineReader) started() { lr.w.Close() }

// finish waits up to grace for the last lines, then stops reading.
func (lr *lineReader) finish(grace time.Duration) {
	lr.w.Close()
	select {
	case <-lr.done:
	case <-time.After(grace):
	}
	lr.r.Close()
	<-lr.done
}

func readLines(r io.Reader, emit func(string)) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line) < maxLineBytes {
			line = append(line, chunk[:min(len(chunk), maxLineBytes-len(line))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if text := bytes.TrimRight(line, "\r\n"); len(text) > 0 {
			emit(string(text))
		}
		line = line[:0]
		if err != nil {
			return
		}
	}
}

// tail keeps the last lines of a child's output for error messages, the way
// the journal keeps a unit's.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func newTail(n int) *tail { return &tail{max: n} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:t.max-1]
	}
	t.lines = append(t.lines, line)
}

func (t *tail) last() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// killGroup signals the process group led by pid (children run with Setpgid).
func killGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}

// backoff is the installer's retry and restart delay: base, 2*base, … up
// to max, plus up to half again at random so hosts that failed together
// do not retry in lockstep.
type backoff struct {
	base, max time.Duration
	// jitter returns the delay to use for d; nil adds up to 50% at random.
	jitter func(d time.Duration) time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	if b.jitter != nil {
		return b.jitter(retry.Policy{Base: b.base, Max: b.max}.Ceiling(attempt))
	}
	// Uniform in [d, 1.5d]: the ceiling raised by half, its lower third random.
	return retry.Policy{Base: b.base * 3 / 2, Max: b.max * 3 / 2, Jitter: 1.0 / 3}.Delay(attempt)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// childEnviron is the daemon's environment without what belongs to the
// daemon alone: its own settings (RKE2_HANODE_*, which may hold the token)
// and systemd's per-service variables, which would make a child answer for
// the daemon's unit.
func childEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(key, "RKE2_HANODE_"),
			key == "NOTIFY_SOCKET", key == "LISTEN_FDS", key == "LISTEN_PID", key == "LISTEN_FDNAMES", key == "WATCHDOG_USEC", key == "WATCHDOG_PID":
			continue
		}
		env = append(env, kv)
	}
	return env
}
