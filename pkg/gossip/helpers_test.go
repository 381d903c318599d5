package gossip

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// testIP hands out loopback addresses, one per member, so members of one
// test can be told apart by address. 127.0.0.0/8 is local on Linux.
var testIPCounter atomic.Uint32

func nextTestIP() string {
	n := testIPCounter.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 1+n/250, 1+n%250)
}

// testMember is a started member with its log and metrics at hand.
type testMember struct {
	*Member
	name string
	addr string // ip:port
	logs *observer.ObservedLogs
	reg  *prometheus.Registry
}

type memberOpt func(*Config)

func withJoin(seeds ...string) memberOpt { return func(c *Config) { c.Join = seeds } }
func withToken(tok string) memberOpt     { return func(c *Config) { c.Token = tok } }
func withCluster(name string) memberOpt {
	return func(c *Config) { c.ClusterName = name; c.Meta.ClusterName = name }
}
func withIP(ip string) memberOpt      { return func(c *Config) { c.BindAddr, c.AdvertiseAddr = ip, ip } }
func withPort(port int) memberOpt     { return func(c *Config) { c.BindPort = port } }
func withTimings(t Timings) memberOpt { return func(c *Config) { c.Timings = t } }
func withRole(role string) memberOpt  { return func(c *Config) { c.Meta.Role = role } }

// newTestTransport is memberlist's network transport on a fresh test
// address, for tests that wrap it; withTransport hands the wrapper to a
// member bound on that transport's port.
func newTestTransport(t testing.TB) (*memberlist.NetTransport, string) {
	t.Helper()
	ip := nextTestIP()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{ip}, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	return nt, ip
}

func withTransport(tr memberlist.NodeAwareTransport, nt *memberlist.NetTransport) memberOpt {
	return func(c *Config) {
		c.transport, c.BindPort, c.AdvertisePort = tr, nt.GetAutoBindPort(), nt.GetAutoBindPort()
	}
}

// testTimings are LocalTimings with short join retries.
func testTimings() Timings {
	t := LocalTimings()
	t.JoinBackoffMin = 50 * time.Millisecond
	t.JoinBackoffMax = 500 * time.Millisecond
	t.LogInterval = time.Hour // one warning per peer per test
	return t
}

func startMember(t testing.TB, name string, opts ...memberOpt) *testMember {
	t.Helper()
	ip := nextTestIP()
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	cfg := Config{
		NodeName:      name,
		BindAddr:      ip,
		AdvertiseAddr: ip,
		Token:         "test-token",
		ClusterName:   "test",
		Meta:          Meta{Role: RoleServer, Phase: "discovering", ExpectServers: 3},
		Logger:        zap.New(core),
		Registerer:    reg,
		Timings:       testTimings(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	t.Cleanup(func() {
		m.noLeave.Store(true) // fast teardown: the peers stop too
		cancel()
		_ = m.Close()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &testMember{Member: m, name: name, addr: m.self.String(), logs: logs, reg: reg}
}

// kill stops a member like a crash: no leave message.
func (tm *testMember) kill(t testing.TB) {
	t.Helper()
	tm.noLeave.Store(true)
	if err := tm.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitLimit bounds every wait of these tests on an event. It is generous on
// purpose: on a loaded machine (two cores, other packages' tests beside)
// gossip converges later, and a test asserts that it converges, not how
// fast; benchmarks measure speed.
const waitLimit = 5 * time.Minute

// eventually polls cond until it holds and returns the time that took. It
// fails the test only after waitLimit, with cond's last detail.
func eventually(t testing.TB, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < waitLimit {
		ok, detail := cond()
		if ok {
			took := time.Since(start)
			if took > 10*time.Second {
				t.Logf("%s took %s", what, took.Round(time.Millisecond))
			}
			return took
		}
		last = detail
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("after %s: %s: %s", waitLimit, what, last)
	return 0
}

func stateOf(m *Member, name string) (Liveness, bool) {
	for _, mi := range m.Members() {
		if mi.Name == name {
			return mi.State, true
		}
	}
	return "", false
}

// allSeeAlive reports whether every member sees exactly the given members
// alive.
func allSeeAlive(members []*testMember) (bool, string) {
	for _, m := range members {
		if n := m.NumAlive(""); n != len(members) {
			return false, fmt.Sprintf("%s sees %d alive of %d", m.name, n, len(members))
		}
	}
	return true, ""
}

// allKnowAll reports whether every member knows every other one as alive
// or suspect (a late probe answer on a loaded machine is not a failure).
func allKnowAll(members []*testMember) (bool, string) {
	for _, m := range members {
		m.mu.Lock()
		counts := m.countLocked()
		m.mu.Unlock()
		n := 0
		for rs, c := range counts {
			if rs.state == StateAlive || rs.state == StateSuspect {
				n += c
			}
		}
		if n != len(members) {
			return false, fmt.Sprintf("%s knows %d live members of %d", m.name, n, len(members))
		}
	}
	return true, ""
}

// shutdownAll stops members concurrently, like a crash.
func shutdownAll(members []*testMember) {
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() {
			m.noLeave.Store(true)
			_ = m.Close()
		})
	}
	wg.Wait()
}

// metricValue reads a counter or gauge from a registry; labels as name=value.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if mt.Counter != nil {
				return mt.Counter.GetValue()
			}
			return mt.Gauge.GetValue()
		}
	}
	return 0
}

// freePort finds a port free for both tcp and udp on ip.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for tcp and udp")
	return 0
}
