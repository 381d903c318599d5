package gossip

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// FuzzClassifyLine: memberlist's log lines carry text from the network (a
// peer's name, its address). Classification never panics, reports a
// subject exactly when it reports something, and a subject never spans
// lines, so it cannot forge a log line.
func FuzzClassifyLine(f *testing.F) {
	for _, line := range []string{
		"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946",
		"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=[fd00::9]:51234",
		`[ERR] memberlist: discarding packet with unacceptable label "other": from=10.0.0.8:7946`,
		"[INFO] memberlist: Suspect node-3 has failed, no acks received",
		"[ERR] memberlist: Decrypt packet failed: x from=",
		"[INFO] memberlist: Suspect  has failed, no acks received",
	} {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		kind, subject := classifyLine(line)
		switch kind {
		case lineOther:
			if subject != "" {
				t.Fatalf("classifyLine(%q): no kind but subject %q", line, subject)
			}
		case lineUndecryptable, lineWrongLabel, lineSuspect:
			if subject == "" {
				t.Fatalf("classifyLine(%q) = %v with an empty subject", line, kind)
			}
		default:
			t.Fatalf("classifyLine(%q): kind %v unknown", line, kind)
		}
		if !strings.Contains(line, "\n") && strings.Contains(subject, "\n") {
			t.Fatalf("subject %q of a one-line input spans lines", subject)
		}
		if kind == lineUndecryptable || kind == lineWrongLabel {
			if strings.ContainsAny(subject, " \t\r\n") {
				t.Fatalf("classifyLine(%q): host %q holds white space", line, subject)
			}
		}
	})
}

// FuzzSplitSeed: a join entry comes from the config or a DNS answer.
// Whatever splitSeed accepts is an IP address or a valid host name with a
// port in range, and joining host and port again gives the same result.
func FuzzSplitSeed(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.1:7000", "[fd00::1]:7000", "fd00::1", "server-1.example.com",
		"server-1:7000", "host:http", "a..b", "[x]:1", "fe80::1%eth0", " 10.0.0.1:+80 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed string) {
		host, port, err := splitSeed(seed, 9347)
		if err != nil {
			if host != "" || port != 0 {
				t.Fatalf("splitSeed(%q): error %v with %q, %d", seed, err, host, port)
			}
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("splitSeed(%q): port %d", seed, port)
		}
		if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
			t.Fatalf("splitSeed(%q): host %q is neither an IP address nor a host name", seed, host)
		}
		h2, p2, err := splitSeed(net.JoinHostPort(host, strconv.Itoa(port)), 9347)
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("splitSeed(%q) = %q, %d; joined again: %q, %d, %v", seed, host, port, h2, p2, err)
		}
	})
}
