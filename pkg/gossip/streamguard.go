package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/hashicorp/memberlist"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
)

// Limits of memberlist's inbound TCP streams (push/pull state exchanges,
// joins, ping fallbacks). Memberlist reads a whole encrypted message (it
// takes up to 20 MB) before it can tell whether its sender holds the key,
// so without them an outsider who knows only the cluster name holds as
// much memory as it sends, on as many streams as it opens.
const (
	// maxStreamsPerHost bounds the streams one source address has open at
	// once: a peer has one push/pull at a time with this member, plus a
	// join or a ping fallback.
	maxStreamsPerHost = 8
	// maxStreams bounds the inbound streams open at once.
	maxStreams = 64
	// maxStreamMembers is the cluster size the stream bound leaves room
	// for, far above an RKE2 cluster's.
	maxStreamMembers = 4000
	// maxStreamNodeState bounds one member's entry in memberlist's
	// push/pull state: name, address, port, metadata at memberlist's
	// limit, incarnation, state and versions, with msgpack's framing.
	maxStreamNodeState = maxNodeNameLen + memberlist.MetaMaxSize + 128
	// maxStreamBytes is the largest encrypted message a stream may
	// announce: this cluster's whole push/pull state (every member's entry
	// and every server's claim at their largest) with room to spare.
	// Memberlist's own limit is 20 MB.
	maxStreamBytes = maxStreamMembers*maxStreamNodeState + maxClaimEntries*(maxNodeNameLen+claims.MaxSignedLen+16) + 64<<10
)

// memberlist's stream framing: an optional label header, then the
// message type; an encrypted message carries its length next.
const (
	mlHasLabelMsg = 244
	mlEncryptMsg  = 10
)

// Reasons a stream is refused, the labels of
// rke2_hanode_gossip_streams_refused_total.
const (
	streamRefusedCap      = "stream_cap"
	streamRefusedHost     = "host_streams"
	streamRefusedOversize = "oversized"
)

var streamRefuseReasons = []string{streamRefusedCap, streamRefusedHost, streamRefusedOversize}

// guardedTransport wraps memberlist's network transport: it caps the
// inbound streams per source host and in all, and closes a stream that
// announces a message larger than maxStreamBytes before memberlist reads
// it.
type guardedTransport struct {
	memberlist.NodeAwareTransport
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	refused func(reason, host string)

	maxPerHost, maxTotal int
	maxLen               uint32

	mu      sync.Mutex
	perHost map[string]int
	total   int
}

func newGuardedTransport(inner memberlist.NodeAwareTransport, refused func(reason, host string)) *guardedTransport {
	g := &guardedTransport{NodeAwareTransport: inner, streams: make(chan net.Conn), done: make(chan struct{}),
		refused: refused, maxPerHost: maxStreamsPerHost, maxTotal: maxStreams, maxLen: maxStreamBytes, perHost: map[string]int{}}
	g.wg.Add(1)
	go g.run()
	return g
}

func (g *guardedTransport) StreamCh() <-chan net.Conn { return g.streams }

// Shutdown tears the inner transport down first, as memberlist does with
// its own handlers: run keeps taking its streams meanwhile, so a stream
// accepted during the shutdown never leaves the inner listener blocked on
// its channel (it would wait for it for ever).
func (g *guardedTransport) Shutdown() error {
	err := g.NodeAwareTransport.Shutdown()
	g.once.Do(func() { close(g.done) })
	g.wg.Wait()
	return err
}

func (g *guardedTransport) run() {
	defer g.wg.Done()
	in := g.NodeAwareTransport.StreamCh()
	for {
		var conn net.Conn
		select {
		case conn = <-in:
		case <-g.done:
			return
		}
		host := streamHost(conn)
		if reason := g.take(host); reason != "" {
			conn.Close()
			g.refused(reason, host)
			continue
		}
		gc := &guardedConn{Conn: conn, g: g, host: host}
		select {
		case g.streams <- gc:
		case <-g.done:
			gc.Close()
			return
		}
	}
}

// take counts a new stream of host, or says why it is refused.
func (g *guardedTransport) take(host string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.maxTotal:
		return streamRefusedCap
	case g.perHost[host] >= g.maxPerHost:
		return streamRefusedHost
	}
	g.total++
	g.perHost[host]++
	return ""
}

func (g *guardedTransport) release(host string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.perHost[host]--; g.perHost[host] <= 0 {
		delete(g.perHost, host)
	}
}

func streamHost(c net.Conn) string {
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		return host
	}
	return c.RemoteAddr().String()
}

// guardedConn is an inbound stream: its first read takes memberlist's
// header (under the deadline memberlist set) and checks the announced
// length; it frees its count when closed.
type guardedConn struct {
	net.Conn
	g    *guardedTransport
	host string
	once sync.Once

	checked bool
	pending []byte
	err     error
}

var errStreamTooLarge = errors.New("gossip: stream announces a message larger than this cluster's state can be")

func (c *guardedConn) Read(p []byte) (int, error) {
	if !c.checked {
		c.checked = true
		c.pending, c.err = c.header()
		if errors.Is(c.err, errStreamTooLarge) {
			c.g.refused(streamRefusedOversize, c.host)
			c.Conn.Close()
			c.pending = nil
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

// header reads memberlist's label header, message type and, for an
// encrypted message, its length, and returns the bytes read.
func (c *guardedConn) header() ([]byte, error) {
	buf := make([]byte, 1, 2+255+1+4)
	if _, err := io.ReadFull(c.Conn, buf); err != nil {
		return nil, err
	}
	if buf[0] == mlHasLabelMsg {
		buf = buf[:2]
		if _, err := io.ReadFull(c.Conn, buf[1:2]); err != nil {
			return buf[:1], err
		}
		n := len(buf)
		buf = buf[:n+int(buf[1])+1] // the label, then the type
		if _, err := io.ReadFull(c.Conn, buf[n:]); err != nil {
			return buf[:n], err
		}
	}
	if buf[len(buf)-1] != mlEncryptMsg {
		return buf, nil
	}
	n := len(buf)
	buf = buf[:n+4]
	if _, err := io.ReadFull(c.Conn, buf[n:]); err != nil {
		return buf[:n], err
	}
	if size := binary.BigEndian.Uint32(buf[n:]); size > c.g.maxLen {
		return buf, fmt.Errorf("%w: %d bytes, limit %d", errStreamTooLarge, size, c.g.maxLen)
	}
	return buf, nil
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.g.release(c.host) })
	return err
}
