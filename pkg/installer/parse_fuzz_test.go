package installer

import (
	"strings"
	"testing"

	"go.uber.org/zap"
)

// FuzzParseRKE2Version: the version is one word taken from a line that
// starts "rke2 version ", as rke2 --version prints it.
func FuzzParseRKE2Version(f *testing.F) {
	for _, s := range []string{
		"rke2 version v1.36.4+rke2r1 (0123abcd)\ngo version go1.26\n",
		"rke2 version 1.31.0+rke2r2\n",
		"banner\nrke2 version v1.30.1-rc1+rke2r1 (x)",
		"rke2 version \n",
		"rke2 version v\t1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		v, err := parseRKE2Version(out)
		if err != nil {
			if v != "" {
				t.Fatalf("error %v with version %q", err, v)
			}
			return
		}
		if v == "" || strings.ContainsAny(v, " \t\r\n\v\f") {
			t.Fatalf("parseRKE2Version(%q) = %q", out, v)
		}
		if c := v[0]; c != 'v' && (c < '0' || c > '9') {
			t.Fatalf("parseRKE2Version(%q) = %q: starts with neither v nor a digit", out, v)
		}
		// The version is canonical (leading v) whether or not rke2 printed the v.
		if !strings.Contains(string(out), "rke2 version "+v) && !strings.Contains(string(out), "rke2 version "+v[1:]) {
			t.Fatalf("parseRKE2Version(%q) = %q, which does not follow \"rke2 version \"", out, v)
		}
	})
}

// FuzzNotify: sd_notify messages come from the child over a socket. A
// message never panics, is applied only from the main PID, and leaves the
// state a line-by-line reading of it gives: READY=1 sets ready,
// STOPPING=1 clears it, the last STATUS= wins.
func FuzzNotify(f *testing.F) {
	for _, s := range []string{"READY=1", "READY=1\nSTATUS=serving", "STATUS=starting\nSTOPPING=1", "READY=0", "READY", "=\n\n=1", "STATUS=a=b"} {
		f.Add(s, true)
	}
	f.Add("READY=1", false)
	f.Fuzz(func(t *testing.T, msg string, fromMain bool) {
		const main = 4242
		s := &supervisor{log: zap.NewNop(), changed: make(chan struct{}), status: ExecStatus{PID: main, Status: "before"}}
		pid := main
		if !fromMain {
			pid = main + 1
		}
		s.notify(pid, msg)
		got := s.status

		want := ExecStatus{PID: main, Status: "before"}
		if fromMain {
			for _, line := range strings.Split(msg, "\n") {
				switch {
				case !strings.Contains(line, "="):
				case line == "READY=1":
					want.Ready = true
				case line == "STOPPING=1":
					want.Ready = false
				case strings.HasPrefix(line, "STATUS="):
					want.Status = strings.TrimPrefix(line, "STATUS=")
				}
			}
		}
		if got != want {
			t.Fatalf("notify(%d, %q): status %+v, want %+v", pid, msg, got, want)
		}
	})
}

// TestNotifyIgnoresLinesWithoutAssignment: found by FuzzNotify, a line
// "STATUS" (no '=') cleared the status; it is not an assignment, and
// systemd ignores it.
func TestNotifyIgnoresLinesWithoutAssignment(t *testing.T) {
	s := &supervisor{log: zap.NewNop(), changed: make(chan struct{}), status: ExecStatus{PID: 7, Ready: true, Status: "serving"}}
	s.notify(7, "STATUS\nREADY\nSTOPPING")
	if s.status.Status != "serving" || !s.status.Ready {
		t.Fatalf("status after lines without '=': %+v", s.status)
	}
	s.notify(7, "STATUS=\nSTOPPING=1")
	if s.status.Status != "" || s.status.Ready {
		t.Fatalf("status after STATUS= and STOPPING=1: %+v", s.status)
	}
}
