package election

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Limits of the raft listener. Peers are the other servers (at most 6),
// each with a pool of a few connections plus a pipeline and a snapshot
// stream, so 64 leaves room for three times what a seven-server cluster
// uses; at the cap, a new connection takes the slot of the oldest one still
// in its TLS handshake (closed), and is closed at once when every slot is
// a peer's past its handshake. A peer on the same
// network finishes its TLS 1.3 handshake in milliseconds; 10 s leaves room
// for a loaded host and bounds how long a silent connection holds a slot.
// One source address may hold at most 8 handshakes in progress, so a single
// flooding host cannot take every slot from the real servers.
const (
	raftMaxConns          = 64
	raftHandshakeTimeout  = 10 * time.Second
	raftMaxPendingPerHost = 8
	refusalLogInterval    = 10 * time.Second
)

// errStreamClosed is what Accept returns once the stream is closed.
var errStreamClosed = errors.New("election: raft stream closed")

// streamGuard sits between the TCP listener and raft: it runs each TLS
// handshake in its own goroutine under a deadline, caps the connections
// alive at once (at the cap the oldest handshake makes way for a new
// connection), and admits a peer only when admit accepts its raft server
// ID. Raft itself checks no identity: NetworkTransport serves AppendEntries
// to any connection, so this is the only place a token holder that is not
// a server of the configuration is turned away.
type streamGuard struct {
	maxConns, maxPendingPerHost int
	handshakeTimeout            time.Duration

	slots chan struct{} // one token per live connection
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	pending map[string]int // handshakes in progress per remote host
	// handshaking are the connections in their handshake, oldest first.
	handshaking []*pendingConn
	admit       func(ctx context.Context, id string) error
	log         *zap.Logger
	refused     map[string]*refusalCount
	now         func() time.Time
	// refusals counts refused connections by reason
	// (rke2_hanode_raft_refused_connections_total); nil counts nothing.
	refusals *prometheus.CounterVec
}

// Reasons a connection is refused, the labels of
// rke2_hanode_raft_refused_connections_total.
const (
	refusedCap        = "connection_cap"
	refusedHostLimit  = "host_handshakes"
	refusedHandshake  = "tls_handshake"
	refusedNoID       = "no_server_id"
	refusedNotAdmited = "not_admitted"
)

var refusalReasons = []string{refusedCap, refusedHostLimit, refusedHandshake, refusedNoID, refusedNotAdmited}

type refusalCount struct {
	last       time.Time
	suppressed int
}

func newStreamGuard() *streamGuard {
	return &streamGuard{
		maxConns:          raftMaxConns,
		maxPendingPerHost: raftMaxPendingPerHost,
		handshakeTimeout:  raftHandshakeTimeout,
		slots:             make(chan struct{}, raftMaxConns),
		conns:             make(chan net.Conn),
		done:              make(chan struct{}),
		pending:           map[string]int{},
		log:               zap.NewNop(),
		refused:           map[string]*refusalCount{},
		now:               time.Now,
	}
}

// setAdmission installs the logger and the check of a peer's raft server
// ID. Without a check, any peer with a certificate of this cluster's CA is
// admitted.
func (g *streamGuard) setAdmission(log *zap.Logger, admit func(ctx context.Context, id string) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log, g.admit = log, admit
}

// setRefusals installs the counter of refused connections.
func (g *streamGuard) setRefusals(c *prometheus.CounterVec) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refusals = c
}

func (g *streamGuard) close() { g.once.Do(func() { close(g.done) }) }

func (g *streamGuard) next() (net.Conn, error) {
	select {
	case c := <-g.conns:
		return c, nil
	case <-g.done:
		return nil, errStreamClosed
	}
}

// acceptLoop takes TCP connections until ln is closed. It never blocks on
// one peer: every handshake runs in its own goroutine, and only while a
// slot is free.
func (g *streamGuard) acceptLoop(ln net.Listener, cfg *tls.Config) {
	delay := 5 * time.Millisecond
	for {
		raw, err := ln.Accept()
		if err != nil {
			select {
			case <-g.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				g.close()
				return
			}
			// Out of file descriptors and the like: back off, as
			// net/http does, rather than spin.
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		host := remoteHostOf(raw)
		p := g.startPending(host, raw)
		if p == nil {
			raw.Close()
			g.refuse(refusedHostLimit, "too many handshakes from one host", host, fmt.Sprintf("%d in progress", g.maxPendingPerHost))
			continue
		}
		select {
		case g.slots <- struct{}{}:
		default:
			// At the cap, the oldest connection still in its handshake
			// gives its slot to this one: silent connections from a few
			// hosts cannot keep a real server out, and an admitted peer's
			// connection is never closed for a newcomer.
			if old := g.evictOldestPending(p); old != nil {
				g.refuse(refusedCap, "connection cap reached: closed the oldest connection still in its TLS handshake", old.host,
					fmt.Sprintf("%d connections open; its slot goes to a new connection from %s", g.maxConns, host))
				break
			}
			g.endPending(p)
			raw.Close()
			g.refuse(refusedCap, "connection cap reached", host, fmt.Sprintf("%d connections open", g.maxConns))
			continue
		}
		go g.handshake(raw, p, cfg)
	}
}

// pendingConn is a connection in its TLS handshake.
type pendingConn struct {
	raw  net.Conn
	host string
	// evicted: closed at the cap for a newer connection, which took its
	// slot (so its handshake does not free one).
	evicted bool
}

// startPending registers a connection's handshake, or returns nil when
// its host has too many in progress.
func (g *streamGuard) startPending(host string, raw net.Conn) *pendingConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending[host] >= g.maxPendingPerHost {
		return nil
	}
	g.pending[host]++
	p := &pendingConn{raw: raw, host: host}
	g.handshaking = append(g.handshaking, p)
	return p
}

// endPending ends p's handshake and reports whether p was evicted.
func (g *streamGuard) endPending(p *pendingConn) (evicted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p.evicted {
		return true
	}
	g.dropPendingLocked(p)
	return false
}

func (g *streamGuard) dropPendingLocked(p *pendingConn) {
	if i := slices.Index(g.handshaking, p); i >= 0 {
		g.handshaking = slices.Delete(g.handshaking, i, i+1)
	}
	if g.pending[p.host]--; g.pending[p.host] <= 0 {
		delete(g.pending, p.host)
	}
}

// evictOldestPending closes the oldest connection in its handshake other
// than keep, whose slot keep takes; nil when there is none (every slot is
// an admitted peer's, or one handing over to raft).
func (g *streamGuard) evictOldestPending(keep *pendingConn) *pendingConn {
	g.mu.Lock()
	var old *pendingConn
	for _, p := range g.handshaking {
		if p != keep {
			old = p
			break
		}
	}
	if old != nil {
		old.evicted = true
		g.dropPendingLocked(old)
	}
	g.mu.Unlock()
	if old != nil {
		old.raw.Close()
	}
	return old
}

// handshake completes TLS within the deadline, admits the peer, and hands
// the connection to Accept; on any failure the connection is closed and its
// slot freed.
func (g *streamGuard) handshake(raw net.Conn, p *pendingConn, cfg *tls.Config) {
	host := p.host
	conn := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), g.handshakeTimeout)
	defer cancel()
	ok, slotGone := false, false
	defer func() {
		if !ok {
			conn.Close()
			if !slotGone {
				<-g.slots
			}
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(g.handshakeTimeout))
	err := conn.HandshakeContext(ctx)
	if g.endPending(p) {
		slotGone = true // evicted at the cap: a newer connection holds its slot (counted there)
		return
	}
	if err != nil {
		g.refuse(refusedHandshake, "TLS handshake failed", host, err.Error())
		return
	}
	id, err := peerID(conn.ConnectionState())
	if err != nil {
		g.refuse(refusedNoID, "no raft server ID", host, err.Error())
		return
	}
	g.mu.Lock()
	admit := g.admit
	g.mu.Unlock()
	if admit != nil {
		if err := admit(ctx, id); err != nil {
			g.refuse(refusedNotAdmited, "peer not admitted", host, err.Error())
			return
		}
	}
	_ = raw.SetDeadline(time.Time{})
	c := &slotConn{Conn: conn, release: func() { <-g.slots }}
	select {
	case g.conns <- c:
		ok = true
	case <-g.done:
	case <-ctx.Done():
		// raft did not take it in time (shutting down, or stuck)
	}
}

// refuse counts a refused connection under label and logs it, at most
// once per reason and interval, with the count of those not logged in
// between; a flood of connections yields a few lines, not one per
// connection.
func (g *streamGuard) refuse(label, reason, host, detail string) {
	g.mu.Lock()
	if g.refusals != nil {
		g.refusals.WithLabelValues(label).Inc()
	}
	rc := g.refused[reason]
	if rc == nil {
		rc = &refusalCount{}
		g.refused[reason] = rc
	}
	now := g.now()
	if !rc.last.IsZero() && now.Sub(rc.last) < refusalLogInterval {
		rc.suppressed++
		g.mu.Unlock()
		return
	}
	suppressed := rc.suppressed
	rc.last, rc.suppressed = now, 0
	log := g.log
	g.mu.Unlock()
	log.Warn("raft: refused an inbound connection", zap.String("reason", reason), zap.String("remote", host),
		zap.String("detail", detail), zap.Int("suppressed_since_last", suppressed))
}

// slotConn frees its slot when closed, once.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func remoteHostOf(c net.Conn) string {
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		return host
	}
	return c.RemoteAddr().String()
}

// peerID is the raft server ID a verified peer certificate carries.
func peerID(st tls.ConnectionState) (string, error) {
	if len(st.PeerCertificates) == 0 {
		return "", errors.New("peer sent no certificate")
	}
	id := st.PeerCertificates[0].Subject.CommonName
	if id == "" {
		return "", errors.New("peer certificate has no CommonName")
	}
	return id, nil
}

// admitRaftPeer is the guard's check for this node: before raft runs it
// waits (within ctx) for raft to start; once raft has a configuration, the
// peer must be one of its servers. Before any configuration exists (a
// server waiting to be bootstrapped or added), any server certificate of
// this cluster is admitted, as it must be for the leader to reach it.
func (e *Election) admitRaftPeer(ctx context.Context, id string) error {
	for {
		e.mu.Lock()
		r, w := e.r, e.watch
		e.mu.Unlock()
		if r != nil {
			return admitByConfiguration(r.GetConfiguration(), id)
		}
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("raft has not started yet")
		}
	}
}

// admitByConfiguration admits id if the configuration is empty or lists it.
func admitByConfiguration(f raft.ConfigurationFuture, id string) error {
	if err := f.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return nil
	}
	for _, s := range servers {
		if string(s.ID) == id {
			return nil
		}
	}
	return fmt.Errorf("%q is not a server of the raft configuration (%d servers)", id, len(servers))
}
