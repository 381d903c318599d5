package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/test/browser"
)

// evilName is a member name a hostile host could gossip; the page must
// show it as text.
const evilName = `<img src=x onerror="document.title='owned'">`

// recorded is a 3 + 2 cluster as server-1 saw it: server-3 failed while
// starting, the rest are ready, agent-1 has since died.
func recorded() status.Status {
	t0 := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	walk := func(steps ...any) []status.Transition {
		var out []status.Transition
		for i := 0; i < len(steps); i += 2 {
			out = append(out, status.Transition{Phase: steps[i].(string), At: at(steps[i+1].(float64))})
		}
		return out
	}
	return status.Status{
		Node: status.Node{Name: "server-1", Role: "server", Phase: "ready", Since: at(9), Bootstrap: true},
		Cluster: status.Cluster{Name: "demo", ExpectServers: 3, BootstrapNode: "server-1", ClusterReady: true,
			VIP: "127.77.0.200", VIPReachable: true, VIPHolder: "server-1", Raft: status.Raft{State: "leader", Leader: "server-1"}},
		Members: []status.Member{
			{Name: "server-1", Address: "127.77.0.11", Role: "server", Phase: "ready", State: "alive", Since: at(9)},
			{Name: "server-2", Address: "127.77.0.12", Role: "server", Phase: "ready", State: "alive", Since: at(13)},
			{Name: "server-3", Address: "127.77.0.13", Role: "server", Phase: "failed", State: "alive", Since: at(15)},
			{Name: "agent-1", Address: "127.77.0.14", Role: "agent", Phase: "ready", State: "dead", Since: at(11)},
			{Name: evilName, Address: "127.77.0.15", Role: "agent", Phase: "ready", State: "alive", Since: at(11.5)},
		},
		Timeline: map[string][]status.Transition{
			"server-1": walk("preflight", 0.0, "installing", 0.1, "discovering", 1.0, "electing", 2.0, "starting", 3.0, "waiting-vip", 6.0, "ready", 9.0),
			"server-2": walk("preflight", 0.2, "installing", 0.3, "discovering", 1.1, "electing", 2.0, "waiting-cluster", 3.0, "waiting-join-slot", 9.5, "starting", 10.0, "ready", 13.0),
			"server-3": walk("preflight", 0.1, "installing", 0.2, "discovering", 1.2, "electing", 2.0, "waiting-cluster", 3.0, "waiting-join-slot", 9.5, "starting", 13.5, "failed", 15.0),
			"agent-1":  walk("preflight", 0.3, "installing", 0.4, "discovering", 1.5, "waiting-cluster", 2.0, "starting", 9.6, "ready", 11.0),
			evilName:   walk("preflight", 0.3, "installing", 0.4, "discovering", 1.5, "waiting-cluster", 2.0, "starting", 9.7, "ready", 11.5),
		},
	}
}

func serve(t *testing.T, st func() status.Status) string {
	t.Helper()
	srv, err := Listen(Config{Address: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Status: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return "http://" + srv.Addr().String()
}

func TestPageServesEmbeddedFiles(t *testing.T) {
	base := serve(t, recorded)
	for path, want := range map[string]string{"/": "text/html", "/page/page.js": "javascript", "/page/page.css": "text/css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), want) {
			t.Errorf("GET %s: %d %s, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no content security policy", path)
		}
		if path == "/" {
			if strings.Contains(string(body), evilName) || strings.Contains(string(body), "INITIAL-STATUS") {
				t.Errorf("GET /: the inlined status is not escaped or not inlined:\n%s", body)
			}
			m := regexp.MustCompile(`(?s)<script id="initial-status" type="application/json">(.*?)</script>`).FindSubmatch(body)
			var st status.Status
			if m == nil || json.Unmarshal(m[1], &st) != nil || len(st.Timeline) != 5 {
				t.Errorf("GET /: the inlined status does not parse back to the 5-host timeline")
			}
		}
	}
	if resp, err := http.Get(base + "/nothing-here"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /nothing-here: %v %v, want 404", resp.StatusCode, err)
	}
}

// What the page draws is checked in a real browser: one row per host in the
// members' order, each host's phases in order, the critical path marked on
// the hosts the last ready host waited for, the failure with its hint, and
// the hostile name shown as text.
func TestPageInBrowser(t *testing.T) {
	bin := browser.Require(t)
	base := serve(t, recorded)
	dom, err := browser.DumpDOM(context.Background(), bin, base+"/")
	if err != nil {
		t.Fatal(err)
	}
	rows := browser.TimelineRows(dom)
	wantOrder := []string{"server-1", "server-2", "server-3", "agent-1", evilName}
	if len(rows) != len(wantOrder) {
		t.Fatalf("page shows %d timeline rows, want %d:\n%s", len(rows), len(wantOrder), dom)
	}
	for i, r := range rows {
		if r.Host != wantOrder[i] {
			t.Errorf("row %d is %q, want %q", i, r.Host, wantOrder[i])
		}
		var want []string
		for _, tr := range recorded().Timeline[r.Host] {
			want = append(want, tr.Phase)
		}
		if strings.Join(r.Phases, ",") != strings.Join(want, ",") {
			t.Errorf("row %s shows phases %v, want %v", r.Host, r.Phases, want)
		}
	}
	// server-2 became ready last among the ready hosts; it waited for the
	// slot until server-1 was ready, so both are on the path.
	crit := map[string]bool{}
	for _, r := range rows {
		crit[r.Host] = len(r.Critical) > 0
	}
	if !crit["server-1"] || !crit["server-2"] || crit["agent-1"] || crit["server-3"] {
		t.Errorf("critical path marks %v, want server-1 and server-2 only", crit)
	}
	if !strings.Contains(dom, `<div class="tl-row gone" data-host="agent-1"`) || !strings.Contains(dom, "agent-1 (dead)") {
		t.Errorf("the dead agent-1 is not marked as gone")
	}
	if !strings.Contains(dom, "server-3 failed in starting") || !strings.Contains(dom, "journalctl -u rke2-server") {
		t.Errorf("the failure of server-3 and its hint are not shown")
	}
	if strings.Contains(dom, `onerror="document.title`) && !strings.Contains(dom, "&lt;img") {
		t.Errorf("the hostile member name became markup")
	}
	if regexp.MustCompile(`<img[^>]*onerror`).MatchString(dom) || strings.Contains(dom, "<title>owned") {
		t.Errorf("the hostile member name became markup:\n%s", dom)
	}
	shot := filepath.Join(browser.ArtifactDir(), "status-page-recorded.png")
	if err := browser.Screenshot(context.Background(), bin, base+"/", shot, 1280, 900); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
}

// The page redraws from /status: the document inlined at load shows one
// host, the ones polled after it all five.
func TestPageRedrawsFromStatus(t *testing.T) {
	bin := browser.Require(t)
	var calls atomic.Int32
	base := serve(t, func() status.Status {
		st := recorded()
		if calls.Add(1) == 1 {
			st.Members = st.Members[:1]
			st.Timeline = map[string][]status.Transition{"server-1": st.Timeline["server-1"][:3]}
		}
		return st
	})
	dom, err := browser.DumpDOM(context.Background(), bin, base+"/", "--virtual-time-budget=5000")
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() < 2 {
		t.Fatalf("the page did not poll /status (%d requests)", calls.Load())
	}
	rows := browser.TimelineRows(dom)
	if len(rows) != 5 || len(rows[0].Phases) != 7 {
		t.Fatalf("after polling the page shows %d rows (first with %d phases), want 5 rows and server-1's 7 phases", len(rows), len(rows[0].Phases))
	}
}

// A host that failed shows its own reason on its own page.
func TestPageShowsOwnFailureReason(t *testing.T) {
	bin := browser.Require(t)
	base := serve(t, func() status.Status {
		st := recorded()
		st.Node = status.Node{Name: "server-3", Role: "server", Phase: "failed", Error: "start: rke2-server exited with status 1 <b>bold</b>"}
		return st
	})
	dom, err := browser.DumpDOM(context.Background(), bin, base+"/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, "Reason: start: rke2-server exited with status 1 &lt;b&gt;bold&lt;/b&gt;") {
		t.Errorf("the page of the failed host does not show its reason as text:\n%s", dom)
	}
}

// The page shows the etcd quorum line, and the newest survivor once the
// majority is gone.
func TestPageShowsQuorum(t *testing.T) {
	bin := browser.Require(t)
	base := serve(t, func() status.Status {
		st := recorded()
		st.Cluster.Etcd = &status.Etcd{Voters: 3, Healthy: 0, QuorumMargin: -2, QuorumAtRisk: true, MajorityGone: true,
			NewestSurvivor: &status.EtcdSurvivor{Name: "server-3", Revision: 42}}
		return st
	})
	dom, err := browser.DumpDOM(context.Background(), bin, base+"/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, "3 voters, 0 answer, margin -2 — QUORUM LOST, newest survivor server-3 (revision 42)") {
		t.Errorf("the page does not show the lost quorum and its survivor:\n%s", dom)
	}
}
