package statusview

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ha-m1", "ha-m1"},
		{"ünïcode·ok", "ünïcode·ok"},
		{"evil\x1b[2Jname", `evil\x1b[2Jname`},
		{"two\nlines", `two\x0alines`},
		{"bell\a", `bell\x07`},
		{"c1\u009bcsi", `c1\x9bcsi`},
		{"bad\xffutf8", `bad\xffutf8`},
	} {
		if got := Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestShortenCountsRunes(t *testing.T) {
	if got := Shorten("abcdef", 4); got != "abc…" {
		t.Errorf("Shorten = %q", got)
	}
	if got := Shorten("äöüäöü", 4); got != "äöü…" {
		t.Errorf("Shorten cut inside a rune: %q", got)
	}
	if got := Shorten("abc", 3); got != "abc" {
		t.Errorf("Shorten = %q", got)
	}
}

// TestPrintStatusEscapesGossip: what other hosts put in gossip (names,
// phases, errors) cannot clear or forge the operator's screen.
func TestPrintStatusEscapesGossip(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := status.Status{
		Node:    status.Node{Name: "a1", Error: "start: \x1b[31mred"},
		Cluster: status.Cluster{Name: "rke2", BootstrapNode: "evil\x1b[2J", VIP: "10.0.0.200", VIPHolder: "evil\x1b[2J", JoinedServers: 2},
		Members: []status.Member{
			{Name: "evil\x1b[2J", Role: "server", Phase: "ready\r\nfake-row", State: "alive", Address: "10.0.0.11", Since: now.Add(-time.Minute)},
		},
	}
	var b bytes.Buffer
	PrintStatus(&b, st, now)
	out := b.String()
	if strings.ContainsAny(out, "\x1b\r") {
		t.Fatalf("control characters reached the output:\n%q", out)
	}
	for _, want := range []string{`evil\x1b[2J (vip) *`, `ready\x0d\x0afake-row`, `bootstrap evil\x1b[2J`, `\x1b[31mred`, "2 joined after the bootstrap", "1m0s ago"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFetch(t *testing.T) {
	want := status.Status{Node: status.Node{Name: "n1", Phase: status.PhaseReady}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(want)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range []string{srv.URL, strings.TrimPrefix(srv.URL, "http://"), srv.URL + "/"} {
		raw, st, err := Fetch(ctx, addr)
		if err != nil || st.Node.Name != "n1" || !bytes.Contains(raw, []byte(`"n1"`)) {
			t.Errorf("Fetch(%s) = %+v %v", addr, st, err)
		}
	}
	if _, _, err := Fetch(ctx, srv.URL+"/nothing-here"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404 answer: %v", err)
	}
}

func TestScreenPrintsChangesOffTerminal(t *testing.T) {
	var b bytes.Buffer
	s := Screen{Out: &b}
	s.Draw("frame 1", "a")
	s.Draw("frame 2", "a")
	s.Draw("frame 3", "b")
	if got := b.String(); got != "frame 1\nframe 3\n" {
		t.Errorf("off a terminal: %q", got)
	}
	b.Reset()
	tty := Screen{Out: &b, TTY: true}
	tty.Draw("x", "a")
	tty.Draw("y", "a")
	if got := b.String(); got != clearScreen+"x"+clearScreen+"y" {
		t.Errorf("on a terminal: %q", got)
	}
}

// The member table shows each host's running and wanted RKE2 from the
// upgrade object, and a line for a roll under way.
func TestPrintStatusVersions(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := status.Status{
		Cluster: status.Cluster{Name: "rke2"},
		Members: []status.Member{{Name: "s1", Role: "server", Phase: "ready", State: "alive"}, {Name: "a1", Role: "agent", Phase: "ready", State: "alive"}},
		Upgrade: &status.Upgrade{Phase: "servers", Target: "v1.36.1+rke2r1", Blocked: "server s2 is not a healthy voter",
			Hosts: []status.UpgradeHost{{Name: "s1", Running: "v1.35.2+rke2r1", Wanted: "v1.36.1+rke2r1"}}},
	}
	var b bytes.Buffer
	PrintStatus(&b, st, now)
	out := b.String()
	for _, re := range []string{`(?m)^NAME +ROLE +PHASE +SINCE +STATE +RUNNING +WANTED +ADDRESS`, `(?m)^s1 +server +ready +- +alive +v1\.35\.2\+rke2r1 +v1\.36\.1\+rke2r1 +-`,
		`(?m)^a1 +agent +ready +- +alive +- +- +-`, `(?m)^upgrade: servers to v1\.36\.1\+rke2r1: server s2 is not a healthy voter$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
}

// TestPrintStatusMarksUnverifiedServers: a member that says it is a server
// without a valid claim is marked, with the legend; verified ones are not.
func TestPrintStatusMarksUnverifiedServers(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := status.Status{Members: []status.Member{
		{Name: "server-1", Role: "server", Phase: "ready", State: "alive", ClaimVerified: true},
		{Name: "intruder", Role: "agent", Phase: "ready", State: "alive", UnverifiedServer: true},
	}}
	var b bytes.Buffer
	PrintStatus(&b, st, now)
	out := b.String()
	if !strings.Contains(out, "intruder !") || strings.Contains(out, "server-1 !") || !strings.Contains(out, "without a valid server claim") {
		t.Fatalf("output:\n%s", out)
	}
	b.Reset()
	st.Members = st.Members[:1]
	PrintStatus(&b, st, now)
	if strings.Contains(b.String(), "without a valid server claim") {
		t.Fatalf("legend without an unverified member:\n%s", b.String())
	}
}

// The table shows the etcd voters and margin, and warns when quorum is at
// risk or lost (naming the newest survivor).
func TestPrintStatusEtcd(t *testing.T) {
	members := []status.EtcdMember{{Name: "a-0000000a", Healthy: true}, {Name: "b-0000000b"}, {Name: "c-0000000c", Learner: true}}
	cases := []struct {
		name string
		etcd *status.Etcd
		want []string
		not  []string
	}{
		{"none", nil, nil, []string{"etcd:", "WARNING"}},
		{"healthy", &status.Etcd{Members: members, Voters: 3, Healthy: 3, QuorumMargin: 1},
			[]string{"etcd: 3 voters, 1 learners, 3 answer, quorum margin 1"}, []string{"WARNING"}},
		{"at risk", &status.Etcd{Members: members, Voters: 3, Healthy: 2, QuorumAtRisk: true},
			[]string{"quorum margin 0", "WARNING: etcd quorum is at risk"}, []string{"lost"}},
		{"lost", &status.Etcd{Members: members, Voters: 3, Healthy: 0, QuorumMargin: -2, QuorumAtRisk: true, MajorityGone: true,
			NewestSurvivor: &status.EtcdSurvivor{Name: "a\x1b[31m", Revision: 42}, Error: "no leader"},
			[]string{"WARNING: etcd quorum is lost", "newest survivor is a\\x1b[31m at revision 42", "does not answer: no leader"}, []string{"\x1b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			PrintStatus(&b, status.Status{Cluster: status.Cluster{Etcd: c.etcd}}, time.Now())
			for _, w := range c.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("missing %q in\n%s", w, b.String())
				}
			}
			for _, w := range c.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("%q should not show in\n%s", w, b.String())
				}
			}
		})
	}
}

// TestPrintStatusDetailAndVIPRelease: the human status says what the phase
// waits for (a cold start's quorum wait) and the watchdog's last release.
func TestPrintStatusDetailAndVIPRelease(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := status.Status{
		Node: status.Node{Name: "a1", Phase: status.PhaseStarting, Detail: "starting rke2-server.service on its own datastore; etcd waits for a quorum: 1 of the 2 servers it needs are up"},
		Cluster: status.Cluster{Name: "rke2", VIP: "10.0.0.200", VIPReleased: &status.VIPRelease{
			At: now.Add(-2 * time.Minute), Reason: "rke2-server has been down for 30s while kube-vip holds the VIP here and nothing answers on 9345"}},
	}
	var b bytes.Buffer
	PrintStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{
		"this node (a1) is starting: starting rke2-server.service on its own datastore; etcd waits for a quorum: 1 of the 2 servers it needs are up",
		"this node (a1) released the VIP 2m0s ago (rke2-killall.sh): rke2-server has been down for 30s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
