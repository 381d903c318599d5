package gossip

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// countingTransport counts every byte a member sends, by udp and tcp. Every
// byte sent is received by someone, so the sum over members is the traffic.
type countingTransport struct {
	*memberlist.NetTransport
	sent    *atomic.Int64
	streams chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
}

func newCountingTransport(ip string, sent *atomic.Int64) (*countingTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{ip},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		return nil, err
	}
	c := &countingTransport{NetTransport: nt, sent: sent, streams: make(chan net.Conn), done: make(chan struct{})}
	c.wg.Go(func() {
		for {
			select {
			case conn := <-nt.StreamCh():
				select {
				case c.streams <- &countingConn{Conn: conn, sent: sent}:
				case <-c.done:
					conn.Close()
					return
				}
			case <-c.done:
				return
			}
		}
	})
	return c, nil
}

func (c *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	c.sent.Add(int64(len(b)))
	return c.NetTransport.WriteToAddress(b, a)
}

func (c *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	c.sent.Add(int64(len(b)))
	return c.NetTransport.WriteTo(b, addr)
}

func (c *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := c.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, sent: c.sent}, nil
}

func (c *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return c.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (c *countingTransport) StreamCh() <-chan net.Conn { return c.streams }

func (c *countingTransport) Shutdown() error {
	err := c.NetTransport.Shutdown()
	close(c.done)
	c.wg.Wait()
	return err
}

type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}

// BenchmarkCluster starts n members with the production (LAN) timings, all
// joining through the same three seeds, and reports how long until every
// member knows every other and the steady traffic per member afterwards.
// Run it once: go test -run '^$' -bench Cluster -benchtime 1x ./pkg/gossip/
func BenchmarkCluster(b *testing.B) {
	for _, n := range []int{10, 100, 300} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for b.Loop() {
				converge, perMember := runCluster(b, n, 30*time.Second)
				b.ReportMetric(converge.Seconds(), "s-converge")
				b.ReportMetric(perMember, "B/member/s")
			}
		})
	}
}

func runCluster(b *testing.B, n int, window time.Duration) (converge time.Duration, bytesPerMemberSecond float64) {
	var sent atomic.Int64
	meta := fullMeta()
	members := make([]*testMember, 0, n)
	defer func() { shutdownAll(members) }()
	start := time.Now()
	for i := range n {
		ip := nextTestIP()
		tr, err := newCountingTransport(ip, &sent)
		if err != nil {
			b.Fatal(err)
		}
		var join []string
		for _, seed := range members[:min(3, len(members))] {
			join = append(join, seed.addr)
		}
		meta.AdvertiseAddr = ip
		m, err := Open(Config{
			NodeName:      fmt.Sprintf("m%03d", i),
			BindAddr:      ip,
			AdvertiseAddr: ip,
			AdvertisePort: tr.GetAutoBindPort(),
			Join:          join,
			Token:         "bench-token",
			ClusterName:   "rke2",
			Meta:          meta,
			Logger:        zap.NewNop(),
			transport:     tr,
		})
		if err != nil {
			b.Fatal(err)
		}
		go m.Run(context.Background()) // ended by shutdownAll's Close
		members = append(members, &testMember{Member: m, name: fmt.Sprintf("m%03d", i), addr: m.self.String()})
	}
	for {
		ok, detail := allKnowAll(members)
		if ok {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Logf("%d members did not converge in 5 minutes (%s); measuring traffic anyway", n, detail)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	converge = time.Since(start)

	before := sent.Load()
	time.Sleep(window)
	return converge, float64(sent.Load()-before) / float64(n) / window.Seconds()
}
