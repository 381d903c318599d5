package loopback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/kubeapi"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

// Rolling upgrades on loopback: every host installs rke2sim through
// rke2sim's own install script from airgap artifacts of two versions
// (make-artifacts.sh), each into a prefix of its own; a changed
// rke2-version and artifact-path, picked up as each daemon restarts, make
// the leader roll the cluster.

const (
	fromV = "v1.35.2+rke2r1"
	toV   = "v1.36.1+rke2r1"
)

// artifacts builds rke2sim's airgap artifacts of version v.
func artifacts(t *testing.T, v string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), v)
	out, err := exec.Command("sh", "../rke2sim/make-artifacts.sh", simBin, dir, v).CombinedOutput()
	if err != nil {
		t.Fatalf("make-artifacts.sh %s: %v\n%s", v, err, out)
	}
	return dir
}

// setKeys replaces (or adds) top-level keys of n's config.
func setKeys(t *testing.T, n *demo.Node, kv map[string]string) {
	t.Helper()
	data, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for k, v := range kv {
		line := k + ": " + v
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(k) + `:.*$`)
		if re.MatchString(text) {
			text = re.ReplaceAllLiteralString(text, line)
		} else {
			text = strings.TrimRight(text, "\n") + "\n" + line + "\n"
		}
	}
	if err := os.WriteFile(n.ConfigPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// installVia gives n an install script of its own: rke2sim's, with n's
// own tar prefix and unit folder, and installs from from once, as a host
// that was set up before the daemon ran.
func installVia(t *testing.T, n *demo.Node, from string) {
	t.Helper()
	prefix := filepath.Join(n.Dir, "prefix")
	wrapper := filepath.Join(n.Dir, "install-rke2.sh")
	script := fmt.Sprintf("#!/bin/sh\nexport INSTALL_RKE2_TAR_PREFIX=%q RKE2SIM_INSTALL_UNIT_DIR=%q\nexec sh %q\n",
		prefix, filepath.Join(n.Dir, "units"), filepath.Join(from, "install.sh"))
	if err := os.MkdirAll(filepath.Join(n.Dir, "units"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", wrapper)
	cmd.Env = append(os.Environ(), "INSTALL_RKE2_ARTIFACT_PATH="+from, "INSTALL_RKE2_TYPE="+n.Role,
		"INSTALL_RKE2_AGENT_IMAGES_DIR="+filepath.Join(n.RKE2DataDir, "agent", "images"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: install: %v\n%s", n.Name, err, out)
	}
	sum := sha256.Sum256([]byte(script))
	setKeys(t, n, map[string]string{
		"install-method": "script", "install-script-url": wrapper, "install-script-sha256": hex.EncodeToString(sum[:]), "artifact-path": from,
		"rke2-bin": filepath.Join(prefix, "bin", "rke2"), "rke2-version": artifactVersion(t, from),
	})
}

func artifactVersion(t *testing.T, artifactDir string) string {
	t.Helper()
	return filepath.Base(artifactDir)
}

// upgradeCluster forms servers+agents hosts at fromV, installed by script.
func upgradeCluster(t *testing.T, base string, servers, agents int, env ...string) (*demo.Cluster, string) {
	t.Helper()
	c := newClusterEnv(t, base, servers, agents, append(append([]string(nil), simEnv...), env...))
	from := artifacts(t, fromV)
	for _, n := range c.Nodes {
		installVia(t, n, from)
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, 5*time.Minute)
	for _, n := range c.Nodes {
		if v := simVersion(t, n); v != fromV {
			t.Fatalf("%s runs %q before the roll, want %s", n.Name, v, fromV)
		}
	}
	return c, from
}

// simVersion is the version n's rke2sim records running.
func simVersion(t *testing.T, n *demo.Node) string {
	t.Helper()
	var s struct {
		Version string `json:"version"`
	}
	data, err := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
	if err != nil || json.Unmarshal(data, &s) != nil {
		return ""
	}
	return s.Version
}

// reconfigure sets kv on every host and restarts the daemons one at a
// time, each ready again before the next (a daemon reads its config at
// start; under exec its RKE2 restarts with it, from the binary on disk).
func reconfigure(t *testing.T, c *demo.Cluster, kv func(n *demo.Node) map[string]string) {
	t.Helper()
	for _, n := range c.Nodes {
		setKeys(t, n, kv(n))
		n.Stop(30 * time.Second)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		waitNodeReady(t, n, 3*time.Minute)
	}
}

func waitNodeReady(t *testing.T, n *demo.Node, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last status.Status
	err := demo.WaitFor(ctx, 250*time.Millisecond, func() bool {
		_, st, err := statusview.Fetch(ctx, n.HTTPAddress)
		last = st
		return err == nil && st.Node.Phase == status.PhaseReady
	})
	if err != nil {
		t.Fatalf("%s not ready again within %s: %+v", n.Name, within, last.Node)
	}
}

// upgradeOf is a server's view of the roll.
func upgradeOf(ctx context.Context, n *demo.Node) (*status.Upgrade, error) {
	_, st, err := statusview.Fetch(ctx, n.HTTPAddress)
	if err != nil {
		return nil, err
	}
	if st.Upgrade == nil {
		return nil, fmt.Errorf("%s reports no upgrade", n.Name)
	}
	return st.Upgrade, nil
}

// waitUpgrade waits until the first server's view satisfies cond.
func waitUpgrade(t *testing.T, c *demo.Cluster, within time.Duration, what string, cond func(*status.Upgrade) bool) *status.Upgrade {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last *status.Upgrade
	err := demo.WaitFor(ctx, 500*time.Millisecond, func() bool {
		u, err := upgradeOf(ctx, c.Nodes[0])
		if err != nil {
			return false
		}
		last = u
		return cond(u)
	})
	if err != nil {
		b, _ := json.MarshalIndent(last, "", "  ")
		t.Fatalf("upgrade not %s within %s; last seen:\n%s", what, within, b)
	}
	return last
}

// sampler watches the servers' supervisors while the roll runs: how many
// answer at once, and when each host was first seen at the target.
type sampler struct {
	mu          sync.Mutex
	maxDown     int
	minUp       int
	firstAt     map[string]time.Time
	downSamples int
	ended       chan struct{} // closed once the sampling stopped
}

// seeVersions records the hosts first seen at the target now.
func (s *sampler) seeVersions(t *testing.T, c *demo.Cluster) {
	for _, n := range c.Nodes {
		if simVersion(t, n) == toV {
			s.mu.Lock()
			if _, ok := s.firstAt[n.Name]; !ok {
				s.firstAt[n.Name] = time.Now()
			}
			s.mu.Unlock()
		}
	}
}

// finish waits for the sampling to stop (its ctx ended) and looks at the
// versions once more: the roll's last host may finish between the last
// sample and the roll's done, which the leader records at once.
func (s *sampler) finish(t *testing.T, c *demo.Cluster) {
	<-s.ended
	s.seeVersions(t, c)
}

func sample(ctx context.Context, t *testing.T, c *demo.Cluster) *sampler {
	s := &sampler{minUp: 1 << 30, firstAt: map[string]time.Time{}, ended: make(chan struct{})}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	go func() {
		defer close(s.ended)
		for ctx.Err() == nil {
			down, up := 0, 0
			for _, n := range c.Nodes {
				if n.Role == "server" {
					resp, err := client.Get("https://" + n.IP + ":9345/ping")
					if err == nil {
						resp.Body.Close()
					}
					if err != nil || resp.StatusCode != 200 {
						down++
					} else {
						up++
					}
				}
			}
			s.seeVersions(t, c)
			s.mu.Lock()
			s.maxDown, s.minUp = max(s.maxDown, down), min(s.minUp, up)
			if down > 0 {
				s.downSamples++
			}
			s.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return s
}

// TestRollingUpgrade: 3 servers and 2 agents, all with upgrade-drain, from
// one minor to the next. Each server drains itself; the leader drains
// each agent (an agent holds no admin kubeconfig). Servers go one at a time (never two supervisors down at once, so etcd
// keeps quorum), each after an etcd snapshot named for the target;
// agents only once every server runs the target; no version skew recorded
// by rke2sim; every host ends at the target with status done.
func TestRollingUpgrade(t *testing.T) {
	// Every host runs a workload pod whose first eviction a
	// PodDisruptionBudget refuses, besides its DaemonSet and mirror pods.
	c, _ := upgradeCluster(t, "127.91.0.11", 3, 2, "RKE2SIM_WORKLOAD_PODS=1", "RKE2SIM_PDB_REFUSALS=1")
	to := artifacts(t, toV)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// An administrator cordoned one agent before the roll: it is drained
	// with the others, and stays cordoned after the roll.
	var firstServer *demo.Node
	for _, n := range c.Nodes {
		if n.Role == "server" && firstServer == nil {
			firstServer = n
		}
	}
	const adminCordoned = "agent-1"
	if code, body := kubeCall(t, firstServer, http.MethodPatch, "/api/v1/nodes/"+adminCordoned, `{"spec":{"unschedulable":true}}`); code != http.StatusOK {
		t.Fatalf("cordon %s by hand: %d %s", adminCordoned, code, body)
	}
	// The daemons restart for their new config, one at a time (each RKE2
	// restarts with its daemon under exec, still at the old version); the
	// roll starts once every server wants the target.
	s := sample(ctx, t, c)
	reconfigure(t, c, func(n *demo.Node) map[string]string {
		return map[string]string{"rke2-version": toV, "artifact-path": to, "upgrade-drain": "true"}
	})
	u := waitUpgrade(t, c, 10*time.Minute, "done", func(u *status.Upgrade) bool { return u.Phase == "done" && u.Target == toV })
	stop()
	s.finish(t, c)
	for _, h := range u.Hosts {
		if h.Running != toV || h.State != "done" {
			t.Errorf("%s: running %s, state %q after the roll", h.Name, h.Running, h.State)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxDown > 1 {
		t.Errorf("%d servers' supervisors were down at once, want at most 1", s.maxDown)
	}
	if s.downSamples == 0 {
		t.Errorf("no server was ever seen restarting: the sampler saw nothing of the roll")
	}
	var lastServer time.Time
	for _, n := range c.Nodes {
		at, ok := s.firstAt[n.Name]
		if !ok {
			t.Errorf("%s never seen at %s", n.Name, toV)
			continue
		}
		if n.Role == "server" && at.After(lastServer) {
			lastServer = at
		}
	}
	for _, n := range c.Nodes {
		if at := s.firstAt[n.Name]; n.Role == "agent" && !at.After(lastServer) {
			t.Errorf("agent %s ran %s at %s, before the last server (%s)", n.Name, toV, at.Format(time.StampMilli), lastServer.Format(time.StampMilli))
		}
	}
	// Hosts next in line install ahead of their begin (while the ones
	// ahead restart): some host's install step found the target on disk.
	ahead := 0
	for _, n := range c.Nodes {
		if strings.Contains(readFile(filepath.Join(n.Dir, "daemon.log")), "installed ahead of its begin; the binary on disk is the target") {
			ahead++
		}
	}
	if ahead == 0 {
		t.Errorf("no host installed ahead of its begin")
	}
	// Agents install ahead once no server is left to start an older RKE2:
	// after the last server's install, while it restarts; both agents
	// here are in the first two batches, so both do.
	var lastRestart time.Time
	for _, n := range c.Nodes {
		if at := logTime(t, n, `"step": "restart"`); n.Role == "server" && at.After(lastRestart) {
			lastRestart = at
		}
	}
	for _, n := range c.Nodes {
		if n.Role != "agent" {
			continue
		}
		at := logTime(t, n, "installing ahead of this host's begin")
		switch {
		case at.IsZero():
			t.Errorf("agent %s did not install ahead of its begin", n.Name)
		case at.Before(lastRestart):
			t.Errorf("agent %s installed ahead at %s, before the last server's restart (%s)", n.Name, at.Format(time.StampMilli), lastRestart.Format(time.StampMilli))
		}
	}
	// Drained as kubectl drain does, whoever drained it: each host's
	// workload pod evicted once its Node was cordoned (after one refusal),
	// no DaemonSet or mirror pod evicted.
	type eviction struct {
		Pod, Node, Kind string
		NodeCordoned    bool `json:"node_cordoned"`
		Refused         bool
		Code            int
	}
	var evictions []eviction
	for _, n := range c.Nodes {
		if n.Role != "server" {
			continue
		}
		var ev struct{ Evictions []eviction }
		data, _ := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatalf("%s: state.json: %v", n.Name, err)
		}
		evictions = append(evictions, ev.Evictions...)
	}
	for _, n := range c.Nodes {
		evicted, refused := 0, 0
		for _, e := range evictions {
			if e.Node != n.Name {
				continue
			}
			if e.Kind != "workload" {
				t.Errorf("%s: a %s pod was evicted (%s): drain leaves it", n.Name, e.Kind, e.Pod)
			}
			if !e.NodeCordoned {
				t.Errorf("%s: %s evicted before its Node was cordoned", n.Name, e.Pod)
			}
			switch {
			case e.Refused:
				refused++
			case e.Code == http.StatusCreated:
				evicted++
			}
		}
		if evicted != 1 || refused < 1 {
			t.Errorf("%s: workload pod evicted %d times after %d refusals, want once after at least 1", n.Name, evicted, refused)
		}
	}
	// Every Node was cordoned and then uncordoned through a server's
	// apiserver: a server's by itself, an agent's by the leader.
	var simLogs string
	for _, n := range c.Nodes {
		if n.Role == "server" {
			simLogs += readFile(filepath.Join(n.Dir, "hanode", "rke2-server.log"))
		}
	}
	for _, n := range c.Nodes {
		patched := func(v bool) bool {
			return regexp.MustCompile(fmt.Sprintf(`node patched\t\{[^}]*"node": "%s", "unschedulable": %v\}`, regexp.QuoteMeta(n.Name), v)).MatchString(simLogs)
		}
		var node struct {
			Metadata struct{ Annotations map[string]string }
			Spec     struct{ Unschedulable bool }
		}
		code, body := kubeCall(t, firstServer, http.MethodGet, "/api/v1/nodes/"+n.Name, "")
		if code != http.StatusOK || json.Unmarshal(body, &node) != nil {
			t.Fatalf("get Node %s: %d %s", n.Name, code, body)
		}
		if _, marked := node.Metadata.Annotations[kubeapi.AnnotationUpgradeCordon]; marked {
			t.Errorf("%s: the roll's cordon mark is left on its Node", n.Name)
		}
		if n.Name == adminCordoned {
			if patched(false) || !node.Spec.Unschedulable {
				t.Errorf("%s: an administrator's cordon was undone by the roll (uncordoned %v, unschedulable %v)", n.Name, patched(false), node.Spec.Unschedulable)
			}
			continue
		}
		if !patched(true) || !patched(false) || node.Spec.Unschedulable {
			t.Errorf("%s: not cordoned and uncordoned through the Kubernetes API (cordoned %v, uncordoned %v, unschedulable now %v)", n.Name, patched(true), patched(false), node.Spec.Unschedulable)
		}
	}
	for _, n := range c.Nodes {
		var ev struct {
			Skew []struct{ Reason string } `json:"skew"`
		}
		data, _ := os.ReadFile(filepath.Join(n.RKE2DataDir, "sim", "state.json"))
		_ = json.Unmarshal(data, &ev)
		if len(ev.Skew) > 0 {
			t.Errorf("%s: rke2sim recorded version skew: %+v", n.Name, ev.Skew)
		}
		if n.Role != "server" {
			continue
		}
		// Drained through its own apiserver: cordoned before the restart,
		// uncordoned after.
		simLog := readFile(filepath.Join(n.Dir, "hanode", "rke2-server.log"))
		patched := func(v bool) []int {
			return regexp.MustCompile(fmt.Sprintf(`node patched\t\{[^}]*"node": "%s", "unschedulable": %v\}`, regexp.QuoteMeta(n.Name), v)).FindStringIndex(simLog)
		}
		on, off := -1, -1
		if m := patched(true); m != nil {
			on = m[0]
		}
		if m := patched(false); m != nil {
			off = m[0]
		}
		if on < 0 || off < on {
			t.Errorf("%s: not cordoned then uncordoned through the Kubernetes API (cordon at %d, uncordon at %d)", n.Name, on, off)
		}
		snaps, _ := filepath.Glob(filepath.Join(n.RKE2DataDir, "server", "db", "snapshots", "pre-upgrade-v1.36.1-rke2r1-"+n.Name+"-*"))
		if len(snaps) != 1 {
			t.Errorf("%s: %d pre-upgrade snapshots, want 1: %v", n.Name, len(snaps), snaps)
		}
	}
	if m := scrape(t, c.Nodes[0]); !strings.Contains(m, `rke2_hanode_upgrade_phase{phase="done"} 1`) ||
		!strings.Contains(m, `rke2_hanode_upgrade_running_version{node="agent-2",role="agent",version="v1.36.1+rke2r1"} 1`) {
		t.Errorf("metrics after the roll lack the done phase or agent-2's running version")
	}
	checkCluster(t, c, false)
	checkNoSecrets(t, c)
}

// TestUpgradeRefused: a skipped minor and then a downgrade are refused
// with nothing touched: no snapshot, no install, every host still at the
// old version, and status says why.
func TestUpgradeRefused(t *testing.T) {
	c, _ := upgradeCluster(t, "127.92.0.11", 3, 1)
	skip := artifacts(t, "v1.37.0+rke2r1")
	reconfigure(t, c, func(*demo.Node) map[string]string {
		return map[string]string{"rke2-version": "v1.37.0+rke2r1", "artifact-path": skip}
	})
	waitUpgrade(t, c, 3*time.Minute, "refused for the skipped minor", func(u *status.Upgrade) bool {
		return u.Phase == "refused" && strings.Contains(u.Blocked, "2 minor versions ahead: upgrade to v1.36 first")
	})
	down := artifacts(t, "v1.34.5+rke2r1")
	reconfigure(t, c, func(*demo.Node) map[string]string {
		return map[string]string{"rke2-version": "v1.34.5+rke2r1", "artifact-path": down}
	})
	waitUpgrade(t, c, 3*time.Minute, "refused for the downgrade", func(u *status.Upgrade) bool {
		return u.Phase == "refused" && strings.Contains(u.Blocked, "is not downgraded in place")
	})
	for _, n := range c.Nodes {
		if v := simVersion(t, n); v != fromV {
			t.Errorf("%s runs %s after refused upgrades, want %s", n.Name, v, fromV)
		}
		// Nothing touched: never cordoned for a refused upgrade.
		simLog := readFile(filepath.Join(n.Dir, "hanode", "rke2-server.log"))
		if regexp.MustCompile(fmt.Sprintf(`node patched\t\{[^}]*"node": "%s", "unschedulable": true\}`, regexp.QuoteMeta(n.Name))).MatchString(simLog) {
			t.Errorf("%s: cordoned for a refused upgrade", n.Name)
		}
		snaps, _ := filepath.Glob(filepath.Join(n.RKE2DataDir, "server", "db", "snapshots", "pre-upgrade-*"))
		if len(snaps) > 0 {
			t.Errorf("%s: snapshots %v taken for a refused upgrade", n.Name, snaps)
		}
	}
}

// TestUpgradeHostFails: one server's artifacts fail their checksum: its
// install step fails, the roll stops (no agent begins), and status names
// the host and the install script's words.
func TestUpgradeHostFails(t *testing.T) {
	c, _ := upgradeCluster(t, "127.93.0.11", 3, 1)
	to := artifacts(t, toV)
	bad := artifacts(t, toV)
	if err := os.WriteFile(filepath.Join(bad, "sha256sum-amd64.txt"), []byte(strings.Repeat("0", 64)+"  rke2.linux-amd64.tar.gz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reconfigure(t, c, func(n *demo.Node) map[string]string {
		if n.Name == "server-1" {
			return map[string]string{"rke2-version": toV, "artifact-path": bad}
		}
		return map[string]string{"rke2-version": toV, "artifact-path": to}
	})
	u := waitUpgrade(t, c, 10*time.Minute, "failed", func(u *status.Upgrade) bool { return u.Phase == "failed" })
	// The report carries 96 bytes (the claim's limit): the step and the
	// end of the error, here the script's two checksums; the host's log
	// has the whole.
	if !regexp.MustCompile("server server-1 failed: install: .*got [0-9a-f]{64}; fix it and run `rke2-hanode upgrade resume`").MatchString(u.Blocked) {
		t.Errorf("blocked %q: want server-1, the install step and the end of the script's words", u.Blocked)
	}
	if log := readFile(c.Node("server-1").LogPath); !strings.Contains(log, "download sha256 does not match") {
		t.Errorf("server-1's log lacks the install script's words")
	}
	// The roll stays stopped: the agent never begins.
	time.Sleep(5 * time.Second)
	u = waitUpgrade(t, c, time.Minute, "still failed", func(u *status.Upgrade) bool { return u.Phase == "failed" })
	for _, h := range u.Hosts {
		if h.Role == "agent" && (h.State != "" || h.Running != fromV) {
			t.Errorf("agent %s: state %q running %s after a server failed", h.Name, h.State, h.Running)
		}
		if h.Name == "server-1" && (h.State != "failed" || h.Running != fromV) {
			t.Errorf("server-1: state %q running %s", h.State, h.Running)
		}
	}
	if !slices.ContainsFunc(u.Hosts, func(h status.UpgradeHost) bool { return h.Name == "server-1" }) {
		t.Errorf("server-1 missing from %+v", u.Hosts)
	}
}

// logTime is when node n's daemon log first holds a line containing
// text; zero if none.
func logTime(t *testing.T, n *demo.Node, text string) time.Time {
	t.Helper()
	for _, line := range strings.Split(readFile(filepath.Join(n.Dir, "daemon.log")), "\n") {
		if !strings.Contains(line, text) {
			continue
		}
		stamp, _, _ := strings.Cut(line, "\t")
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", stamp)
		if err != nil {
			t.Fatalf("%s: log line without a time: %q", n.Name, line)
		}
		return at
	}
	return time.Time{}
}

// kubeCall makes one request to server's Kubernetes API with the admin
// kubeconfig RKE2 wrote there (its 127.0.0.1 replaced by the server's
// address, as the daemon does); it returns the status and the body.
func kubeCall(t *testing.T, server *demo.Node, method, path, body string) (int, []byte) {
	t.Helper()
	k, err := kubeapi.LoadKubeconfig(filepath.Join(server.RKE2ConfigDir, "rke2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(k.Server)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = net.JoinHostPort(server.IP, u.Port())
	pair, err := tls.X509KeyPair(k.Cert, k.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CA)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	req, err := http.NewRequest(method, u.String()+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}
