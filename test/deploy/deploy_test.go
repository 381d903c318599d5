// Package deploy tests what ships beside the daemon for operators: the
// Prometheus alert rules (promtool check and unit tests), the Grafana
// dashboard (every query parses, every metric it names is exported), the
// daemon's /metrics (promtool's lint) and the status page in a real
// browser against a live loopback cluster.
package deploy

import (
	"github.com/rke2-hanode/rke2-hanode/test/testbin"

	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/test/browser"
)

const (
	alertsDir     = "../../deploy/prometheus"
	dashboardPath = "../../deploy/grafana/rke2-hanode.json"
)

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian: apt-get install prometheus); the rules, dashboard and metrics lint checks are skipped")
	}
	return p
}

func runPromtool(t *testing.T, dir string, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestAlertRules(t *testing.T) {
	runPromtool(t, alertsDir, nil, "check", "rules", "alerts.yaml")
	out := runPromtool(t, alertsDir, nil, "test", "rules", "alerts_test.yaml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	// Every alert has a unit test, an operations section and what an
	// operator needs in its annotations.
	rules := alertRules(t)
	tests, err := os.ReadFile(filepath.Join(alertsDir, "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
			t.Errorf("alert %s has no case in alerts_test.yaml", r.Alert)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[k] == "" {
				t.Errorf("alert %s has no %s", r.Alert, k)
			}
		}
		anchor := strings.ToLower(r.Alert)
		if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/operations.md#"+anchor) || !strings.Contains(string(ops), "### "+r.Alert+"\n") {
			t.Errorf("alert %s: runbook_url %q must point at a section \"### %s\" of docs/operations.md", r.Alert, r.Annotations["runbook_url"], r.Alert)
		}
	}
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(alertsDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var out []rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("alerts.yaml has no rules")
	}
	return out
}

// dashboardQueries returns every "expr" of the dashboard by panel title.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	out := map[string]string{}
	var walk func(v any, title string)
	walk = func(v any, title string) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["title"].(string); ok {
				title = s
			}
			if e, ok := v["expr"].(string); ok {
				out[fmt.Sprintf("%s/%v", title, v["refId"])] = e
			}
			for _, c := range v {
				walk(c, title)
			}
		case []any:
			for _, c := range v {
				walk(c, title)
			}
		}
	}
	walk(dash, "")
	if len(out) < 10 {
		t.Fatalf("dashboard has %d queries; expected its panels' queries", len(out))
	}
	return out
}

// Every query of the dashboard parses as PromQL: promtool checks them as
// recording rules.
func TestDashboardQueriesParse(t *testing.T) {
	promtool(t)
	queries := dashboardQueries(t)
	keys := make([]string, 0, len(queries))
	for k := range queries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type rec struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var recs []rec
	for i, k := range keys {
		recs = append(recs, rec{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: queries[k]})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": recs}}}
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-rules.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runPromtool(t, dir, nil, "check", "rules", "dashboard-rules.yaml")
	if !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", len(recs))) {
		t.Fatalf("promtool check rules:\n%s", out)
	}
}

var metricName = regexp.MustCompile(`\brke2_hanode_[a-zA-Z0-9_]+`)

// referencedMetrics maps every rke2_hanode_ name used by the dashboard and
// the alerts to where it is used.
func referencedMetrics(t *testing.T) map[string]string {
	out := map[string]string{}
	for where, q := range dashboardQueries(t) {
		for _, n := range metricName.FindAllString(q, -1) {
			out[n] = "dashboard " + where
		}
	}
	for _, r := range alertRules(t) {
		for _, n := range metricName.FindAllString(r.Expr, -1) {
			out[n] = "alert " + r.Alert
		}
	}
	return out
}

// notAlwaysExported are labelled metrics with no series in a settled,
// healthy cluster: rke2_hanode_errors_total{stage} gets a series with the
// first failure in a stage, rke2_hanode_join_slot_holder{node} only while a
// server holds the join slot.
var notAlwaysExported = map[string]bool{"rke2_hanode_errors_total": true, "rke2_hanode_join_slot_holder": true}

var daemonBin, simBin string

func TestMain(m *testing.M) { testbin.Main(m, &daemonBin, &simBin) }

func get(t *testing.T, url string) []byte {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return body
}

// A live 3 + 2 loopback cluster, as `rke2-hanode demo` runs it: its
// /metrics passes promtool's lint on servers and agents, every metric the
// dashboard and the alerts use is exported, and the status page shows
// every host's join timeline as /status has it.
func TestLiveCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a loopback cluster takes tens of seconds; skipped with -short")
	}
	c, err := demo.New(demo.Options{
		Servers: 3, Agents: 2, Base: "127.79.0.11", Dir: t.TempDir(), Daemon: daemonBin, Sim: simBin,
		Env: []string{"RKE2SIM_START_DELAY=1s", "RKE2SIM_JOIN_DELAY=1s", "RKE2SIM_AGENT_DELAY=300ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if rows, err := c.Watch(ctx, time.Now(), 250*time.Millisecond, nil); err != nil {
		for _, r := range rows {
			t.Logf("%s: phase %q error %q (%v)", r.Node.Name, r.Status.Node.Phase, r.Status.Node.Error, r.Err)
		}
		t.Fatal("the cluster was not ready within 3 minutes")
	}

	t.Run("metrics lint", func(t *testing.T) {
		exported := map[string]bool{}
		for _, n := range c.Nodes {
			body := get(t, "http://"+n.HTTPAddress+"/metrics")
			if out := runPromtool(t, ".", body, "check", "metrics"); strings.TrimSpace(out) != "" {
				t.Errorf("promtool check metrics on %s's /metrics:\n%s", n.Name, out)
			}
			for _, line := range strings.Split(string(body), "\n") {
				if line != "" && !strings.HasPrefix(line, "#") {
					exported[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
				}
			}
		}
		for name, where := range referencedMetrics(t) {
			if !exported[name] && !notAlwaysExported[name] {
				t.Errorf("%s uses %s, which no host of the cluster exports", where, name)
			}
		}
	})

	t.Run("status page", func(t *testing.T) {
		bin := browser.Require(t)
		seer := c.Nodes[0]
		// Every host is ready by its own word; what the seer shows of the
		// others arrives by gossip, so wait until its timelines say so too.
		var st status.Status
		seen := func() bool {
			st = status.Status{}
			if err := json.Unmarshal(get(t, "http://"+seer.HTTPAddress+"/status"), &st); err != nil {
				t.Fatal(err)
			}
			for _, n := range c.Nodes {
				tl := st.Timeline[n.Name]
				if len(tl) == 0 || tl[len(tl)-1].Phase != status.PhaseReady {
					return false
				}
			}
			return true
		}
		if err := demo.WaitFor(ctx, 200*time.Millisecond, seen); err != nil {
			t.Fatalf("%s's timelines do not all end in ready: %v", seer.Name, st.Timeline)
		}
		dom, err := browser.DumpDOM(ctx, bin, "http://"+seer.HTTPAddress+"/")
		if err != nil {
			t.Fatal(err)
		}
		rows := browser.TimelineRows(dom)
		if len(rows) != len(c.Nodes) {
			t.Fatalf("the page of %s shows %d rows, want one per host (%d):\n%s", seer.Name, len(rows), len(c.Nodes), dom)
		}
		critical := 0
		for _, r := range rows {
			if c.Node(r.Host) == nil {
				t.Errorf("row for %q, which is no host of the cluster", r.Host)
				continue
			}
			var want []string
			for _, tr := range st.Timeline[r.Host] {
				want = append(want, tr.Phase)
			}
			if len(want) < 4 || strings.Join(r.Phases, ",") != strings.Join(want, ",") {
				t.Errorf("row %s shows phases %v; /status has %v", r.Host, r.Phases, want)
			}
			if r.Phase != status.PhaseReady {
				t.Errorf("row %s ends in %q, want ready", r.Host, r.Phase)
			}
			critical += len(r.Critical)
		}
		// The bootstrap's own walk is on the critical path of any cluster.
		for _, r := range rows {
			if r.Host == st.Cluster.BootstrapNode && len(r.Critical) == 0 {
				t.Errorf("the bootstrap node %s is not on the critical path", r.Host)
			}
		}
		if critical == 0 {
			t.Error("no segment is marked as the critical path")
		}
		shot := filepath.Join(browser.ArtifactDir(), "status-page-live-3+2.png")
		if err := browser.Screenshot(ctx, bin, "http://"+seer.HTTPAddress+"/", shot, 1280, 900); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", shot)
	})
}
