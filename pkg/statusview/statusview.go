// Package statusview is how a person sees a daemon's /status: the one
// client that fetches it and the one set of words and tables that
// `rke2-hanode status` and `rke2-hanode demo` draw it with. Everything in a
// status document that came from gossip (names, phases, errors) is another
// host's say; it is escaped before it reaches a terminal.
package statusview

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// maxStatusBytes bounds a /status answer (a few thousand members fit).
const maxStatusBytes = 16 << 20

// Fetch asks the daemon at address ("host:port" or a URL) for /status and
// returns the raw JSON with its decoding. ctx bounds the request.
func Fetch(ctx context.Context, address string) ([]byte, status.Status, error) {
	var st status.Status
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	url := strings.TrimRight(address, "/") + "/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, st, fmt.Errorf("status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, st, fmt.Errorf("status: is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes+1))
	if err != nil {
		return nil, st, fmt.Errorf("status: read %s: %w", url, err)
	}
	if len(raw) > maxStatusBytes {
		return nil, st, fmt.Errorf("status: %s answered more than %d bytes", url, maxStatusBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, st, fmt.Errorf("status: %s answered %s", url, resp.Status)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, st, fmt.Errorf("status: %s: %w", url, err)
	}
	return raw, st, nil
}

// Clean makes s safe to print on a terminal: control characters (an
// escape sequence that clears the screen or moves the cursor, a newline
// that forges a table row) and invalid UTF-8 are shown as \x.. escapes.
func Clean(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// Dash is s cleaned, or "-" when s is empty.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return Clean(s)
}

// YesNo is b in words.
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Shorten cuts s to at most max runes, marking the cut with "…".
func Shorten(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

// Plural is "1 server", "2 servers".
func Plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(word, "s"))
}

// Ago is how long before now t was, truncated to unit; "-" for no time.
func Ago(now, t time.Time, unit time.Duration) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Truncate(unit).String()
}

// Screen redraws a live view: on a terminal it clears the screen before
// each frame; elsewhere (a log, a pipe) it prints a frame only when its
// key changed, so the output reads as a history of changes.
type Screen struct {
	Out  io.Writer
	TTY  bool
	last string
}

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\033[H\033[2J"

// Draw shows frame; key is what must change for a frame to be printed
// when Out is not a terminal.
func (s *Screen) Draw(frame, key string) {
	if s.TTY {
		fmt.Fprint(s.Out, clearScreen, frame)
		return
	}
	if key != s.last {
		s.last = key
		fmt.Fprintln(s.Out, frame)
	}
}
