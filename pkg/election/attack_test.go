package election

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// An outsider on the LAN (no token, no certificate) with a few source
// addresses opens silent TCP connections to the raft port, never starting
// TLS: raftMaxPendingPerHost from each of raftMaxConns/raftMaxPendingPerHost
// hosts fill every slot, and renews them as the handshake deadline closes
// them. A real server of the cluster must still get in (a peer that
// reconnects after a network blip, a new leader's pipeline).
func TestAttackSilentHandshakesFromAFewHostsStarveARealPeer(t *testing.T) {
	_, addr := servedStream(t, nil)
	hosts := raftMaxConns / raftMaxPendingPerHost
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for h := range hosts {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", h+2))}}
		for range raftMaxPendingPerHost {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("dial from host %d: %v", h, err)
			}
			conns = append(conns, c)
		}
	}
	// the guard keeps them, or closes the excess at once (never waiting
	// past half the handshake deadline here: they must still be held)
	t.Logf("%d of %d silent connections held", openWithinHandshake(conns, len(conns)), len(conns))
	// a real server of the cluster dials while the slots are held
	srv, cli, err := raftTLSConfig("token", "c", "b", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := newTLSStream("127.0.0.1:0", "127.0.0.1:0", srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := peer.Dial(raft.ServerAddress(addr), 5*time.Second)
	if err == nil {
		// the guard may close it right after the handshake: a read tells
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, rerr := c.Read(make([]byte, 1))
		c.Close()
		if ne, ok := rerr.(net.Error); !ok || !ne.Timeout() {
			err = fmt.Errorf("closed after the handshake: %v", rerr)
		}
	}
	if err != nil {
		t.Fatalf("%d hosts' silent connections take every raft slot from a real server: %v", hosts, err)
	}
}
