package httpapi

import (
	"regexp"
	"strings"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// TestPageKnowsEveryPhase: the page draws a phase it does not list as
// "unknown", so its list must be the daemon's, in the same order.
func TestPageKnowsEveryPhase(t *testing.T) {
	js, err := pageFiles.ReadFile("page/page.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)const PHASES = \[(.*?)\];`).FindSubmatch(js)
	if m == nil {
		t.Fatal("page.js has no PHASES list")
	}
	var got []string
	for _, q := range regexp.MustCompile(`"([a-z-]+)"`).FindAllSubmatch(m[1], -1) {
		got = append(got, string(q[1]))
	}
	if strings.Join(got, ",") != strings.Join(status.Phases, ",") {
		t.Fatalf("page.js PHASES = %v, want status.Phases %v", got, status.Phases)
	}
	css, err := pageFiles.ReadFile("page/page.css")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range status.Phases {
		if !strings.Contains(string(css), ".phase-"+p+" {") {
			t.Errorf("page.css has no colour for phase %s", p)
		}
	}
}
