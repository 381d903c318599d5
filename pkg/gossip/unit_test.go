package gossip

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	dto "github.com/prometheus/client_model/go"

	"github.com/rke2-hanode/rke2-hanode/pkg/clock"
)

// The lines are memberlist v0.6.0's own texts (net.go, state.go), as its
// logger writes them.
func TestClassifyLine(t *testing.T) {
	tests := []struct {
		line        string
		wantKind    lineKind
		wantSubject string
	}{
		{"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946",
			lineUndecryptable, "10.0.0.9"},
		{"[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=10.0.0.9:51234",
			lineUndecryptable, "10.0.0.9"},
		{"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=[fd00::9]:51234",
			lineUndecryptable, "fd00::9"},
		{"[ERR] memberlist: Decrypt packet failed: payload is too small to decrypt: 3 from=10.0.0.9:7946",
			lineUndecryptable, "10.0.0.9"},
		{`[ERR] memberlist: discarding packet with unacceptable label "other": from=10.0.0.8:7946`,
			lineWrongLabel, "10.0.0.8"},
		{`[ERR] memberlist: discarding stream with unacceptable label "other": from=10.0.0.8:40000`,
			lineWrongLabel, "10.0.0.8"},
		{"[INFO] memberlist: Suspect node-3 has failed, no acks received", lineSuspect, "node-3"},
		{"[INFO] memberlist: Suspect node-3 has failed, no acks received\n", lineSuspect, "node-3"},
		{"[ERR] memberlist: failed to receive: EOF from=10.0.0.9:51234", lineOther, ""},
		{"[ERR] memberlist: Failed to decode ping request: bad from=10.0.0.9:7946", lineOther, ""},
		{"[INFO] memberlist: Marking node-3 as failed, suspect timeout reached (1 peer confirmations)", lineOther, ""},
		{"[ERR] memberlist: Decrypt packet failed: x", lineUndecryptable, "unknown"},
		// Found by FuzzClassifyLine: an empty address or name was reported
		// as the subject.
		{"[ERR] memberlist: Decrypt packet failed: x from=", lineUndecryptable, "unknown"},
		{"[ERR] memberlist: Decrypt packet failed: x from=[]:7946", lineUndecryptable, "unknown"},
		{"[INFO] memberlist: Suspect  has failed, no acks received", lineOther, ""},
	}
	for _, tt := range tests {
		kind, subject := classifyLine(tt.line)
		if kind != tt.wantKind || subject != tt.wantSubject {
			t.Errorf("classifyLine(%q) = %v, %q; want %v, %q", tt.line, kind, subject, tt.wantKind, tt.wantSubject)
		}
	}
}

func TestLogFilterDemotesAndForwards(t *testing.T) {
	var out bytes.Buffer
	var rejected, suspects []string
	f := &logFilter{
		next:      &out,
		onReject:  func(host string, label bool) { rejected = append(rejected, host) },
		onSuspect: func(node string) { suspects = append(suspects, node) },
	}
	in := "[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946\n" +
		"[INFO] memberlist: Suspect b has failed, no acks received\n" +
		"[WARN] memberlist: something else\n"
	if n, err := f.Write([]byte(in)); err != nil || n != len(in) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	want := "[DEBUG] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946\n" +
		"[INFO] memberlist: Suspect b has failed, no acks received\n" +
		"[WARN] memberlist: something else\n"
	if out.String() != want {
		t.Errorf("forwarded:\n%s\nwant:\n%s", out.String(), want)
	}
	if !slices.Equal(rejected, []string{"10.0.0.9"}) || !slices.Equal(suspects, []string{"b"}) {
		t.Errorf("rejected %v, suspects %v", rejected, suspects)
	}
}

func TestRateLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRateLimiter(time.Minute, func() time.Time { return now })
	step := func(key string, wantOK bool, wantSuppressed int) {
		t.Helper()
		ok, suppressed := r.allow(key)
		if ok != wantOK || suppressed != wantSuppressed {
			t.Fatalf("allow(%s) at %s = %v, %d; want %v, %d", key, now.Format(time.TimeOnly), ok, suppressed, wantOK, wantSuppressed)
		}
	}
	step("a", true, 0)
	step("a", false, 0)
	step("b", true, 0)
	now = now.Add(30 * time.Second)
	step("a", false, 0)
	now = now.Add(31 * time.Second)
	step("a", true, 2)
	step("a", false, 0)
	for i := range rateLimiterKeys + 1 {
		r.allow(strings.Repeat("k", i+1))
	}
	if len(r.keys) > rateLimiterKeys || r.lru.Len() > rateLimiterKeys {
		t.Fatalf("limiter keeps %d keys", len(r.keys))
	}
}

func TestSplitSeed(t *testing.T) {
	tests := []struct {
		seed     string
		wantHost string
		wantPort int
		wantErr  string
	}{
		{"10.0.0.1", "10.0.0.1", 9347, ""},
		{"10.0.0.1:7000", "10.0.0.1", 7000, ""},
		{" 10.0.0.1 ", "10.0.0.1", 9347, ""},
		{"fd00::1", "fd00::1", 9347, ""},
		{"[fd00::1]:7000", "fd00::1", 7000, ""},
		{"server-1.example.com", "server-1.example.com", 9347, ""},
		{"server-1:7000", "server-1", 7000, ""},
		{"", "", 0, "join entry is empty"},
		{"10.0.0.1:0", "", 0, `port "0" is not 1-65535`},
		{"10.0.0.1:99999", "", 0, `port "99999"`},
		{"host:http", "", 0, `port "http"`},
		{"bad host", "", 0, "not an IP address or host name"},
		{"http://host", "", 0, `port "//host" is not 1-65535`},
		{"-host", "", 0, "not an IP address or host name"},
		{"a..b", "", 0, "not an IP address or host name"},
	}
	for _, tt := range tests {
		host, port, err := splitSeed(tt.seed, 9347)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("splitSeed(%q) err = %v, want %q", tt.seed, err, tt.wantErr)
			}
			continue
		}
		if err != nil || host != tt.wantHost || port != tt.wantPort {
			t.Errorf("splitSeed(%q) = %q, %d, %v; want %q, %d", tt.seed, host, port, err, tt.wantHost, tt.wantPort)
		}
	}
}

func validConfig() Config {
	return Config{
		NodeName:    "a",
		Token:       "t",
		ClusterName: "rke2",
		Meta:        Meta{Role: RoleServer},
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "node name is empty"},
		{"no token", func(c *Config) { c.Token = "" }, "token is empty"},
		{"no cluster", func(c *Config) { c.ClusterName = "" }, "cluster name is empty"},
		{"port", func(c *Config) { c.BindPort = 70000 }, "bind port 70000 out of range"},
		{"advertise port", func(c *Config) { c.AdvertisePort = -1 }, "advertise port -1 out of range"},
		{"bind address", func(c *Config) { c.BindAddr = "eth0" }, `bind address "eth0": not an IP address`},
		{"advertise address", func(c *Config) { c.AdvertiseAddr = "host" }, `advertise address "host": not an IP address`},
		{"join entry", func(c *Config) { c.Join = []string{"10.0.0.1", "a b"} }, `join entry "a b"`},
		{"meta cluster", func(c *Config) { c.Meta.ClusterName = "other" }, `meta cluster name "other" differs from cluster name "rke2"`},
		{"meta role", func(c *Config) { c.Meta.Role = "" }, `meta role ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			_, err := newMember(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewFillsMetaFromConfig(t *testing.T) {
	cfg := validConfig()
	cfg.AdvertiseAddr = "10.0.0.1"
	m, err := newMember(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Local()
	if got.ClusterName != "rke2" || got.AdvertiseAddr != "10.0.0.1" || got.RaftState != RaftNone || got.Version == "" {
		t.Errorf("Local() = %+v", got)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close before Open: %v", err)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("Run of a member never opened succeeded")
	}
}

func node(name string, meta Meta) *memberlist.Node {
	b, err := meta.Encode()
	if err != nil {
		panic(err)
	}
	return &memberlist.Node{Name: name, Addr: net.IPv4(10, 0, 0, 2), Port: 9347, Meta: b}
}

// TestStateTransitions drives the delegate the way memberlist does.
func TestStateTransitions(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg := validConfig()
	cfg.Clock = clk
	cfg.Timings.DeadRetention = time.Hour
	m, err := newMember(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &delegate{m: m}
	changes := m.Changes()
	<-changes // the initial signal
	expect := func(name string, want Liveness, wantChange bool) {
		t.Helper()
		st, _ := stateOf(m, name)
		if st != want {
			t.Fatalf("%s is %q, want %q", name, st, want)
		}
		select {
		case <-changes:
			if !wantChange {
				t.Fatal("unexpected change signal")
			}
		default:
			if wantChange {
				t.Fatal("no change signal")
			}
		}
	}
	meta := Meta{Role: RoleAgent, Phase: "discovering"}

	d.NotifyJoin(node("b", meta))
	expect("b", StateAlive, true)
	d.NotifyJoin(node("b", meta))
	expect("b", StateAlive, false) // nothing new
	m.suspected("b")
	expect("b", StateSuspect, true)
	_ = d.NotifyAlive(node("b", meta))
	expect("b", StateAlive, true)
	m.suspected("b")
	d.NotifyPingComplete(node("b", meta), time.Millisecond, nil)
	expect("b", StateAlive, true)
	m.suspected("b")
	d.NotifyLeave(node("b", meta))
	expect("b", StateDead, true)
	m.suspected("b")
	_ = d.NotifyAlive(node("b", meta))
	expect("b", StateDead, false) // only a join revives the dead

	meta.Phase = "ready"
	d.NotifyJoin(node("b", meta))
	expect("b", StateAlive, true)
	meta.Leaving = true
	d.NotifyUpdate(node("b", meta))
	expect("b", StateAlive, true)
	d.NotifyLeave(node("b", meta))
	expect("b", StateLeft, true)

	d.NotifyJoin(&memberlist.Node{Name: "c", Addr: net.IPv4(10, 0, 0, 3), Meta: []byte{9}})
	for _, mi := range m.Members() {
		if mi.Name == "c" && (mi.MetaErr == nil || !strings.Contains(mi.MetaErr.Error(), "meta version 9")) {
			t.Errorf("undecodable meta: %+v", mi)
		}
	}
	if v := metricValueOf(t, m, "unknown", StateAlive); v != 1 {
		t.Errorf("members{unknown,alive} = %v", v)
	}
	if n := m.NumAlive(""); n != 0 {
		t.Errorf("NumAlive counts a member without metadata: %d", n)
	}

	clk.Advance(2 * time.Hour)
	m.prune()
	if _, ok := stateOf(m, "b"); ok {
		t.Error("a member that left long ago is still listed")
	}
	if _, ok := stateOf(m, "c"); !ok {
		t.Error("prune dropped an alive member")
	}
}

func metricValueOf(t *testing.T, m *Member, role string, st Liveness) float64 {
	t.Helper()
	g, err := m.metrics.members.GetMetricWithLabelValues(role, string(st))
	if err != nil {
		t.Fatal(err)
	}
	var out dto.Metric
	if err := g.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetGauge().GetValue()
}

func TestResolveSeeds(t *testing.T) {
	res := &fakeResolver{}
	res.set("10.0.0.2", "10.0.0.3", "fe80::1%eth0")
	cfg := validConfig()
	cfg.BindAddr = "10.0.0.1"
	cfg.BindPort = 9347
	cfg.Resolver = res
	cfg.Join = []string{"10.0.0.1", "10.0.0.2", "seeds.example", "10.0.0.3:9347", "10.0.0.4:7000"}
	m, err := newMember(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.port = 9347
	addrs, errs := m.resolveSeeds(context.Background())
	want := []string{"10.0.0.2:9347", "10.0.0.3:9347", "[fe80::1]:9347", "10.0.0.4:7000"}
	if !slices.Equal(addrs, want) || len(errs) != 0 {
		t.Errorf("resolveSeeds = %v, %v; want %v (own address left out, duplicates once)", addrs, errs, want)
	}
	res.set() // the name no longer resolves
	_, errs = m.resolveSeeds(context.Background())
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `resolve join entry "seeds.example"`) {
		t.Errorf("errors = %v", errs)
	}
}
