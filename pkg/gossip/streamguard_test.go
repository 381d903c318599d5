package gossip

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// acceptingDuringShutdown is a transport whose listener hands over one
// more stream while it shuts down, as memberlist's NetTransport does when a
// connection is accepted just before its listener closes: its Shutdown
// returns only once that stream was taken.
type acceptingDuringShutdown struct {
	memberlist.NodeAwareTransport
	ch chan net.Conn
}

func (a *acceptingDuringShutdown) StreamCh() <-chan net.Conn { return a.ch }

func (a *acceptingDuringShutdown) Shutdown() error {
	c, peer := net.Pipe()
	defer peer.Close()
	a.ch <- c
	return nil
}

// TestGuardShutdownTakesStreamsAcceptedMeanwhile: the guard keeps taking
// the inner transport's streams until that transport is down. Stopping
// first left the inner listener blocked on its channel, and every Close
// of a member waited for it for ever (seen under the race detector with
// fifty members).
func TestGuardShutdownTakesStreamsAcceptedMeanwhile(t *testing.T) {
	inner := &acceptingDuringShutdown{ch: make(chan net.Conn)}
	g := newGuardedTransport(inner, func(string, string) {})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // memberlist's stream handler, which runs until the transport is down
		for {
			select {
			case c := <-g.StreamCh():
				c.Close()
			case <-stop:
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- g.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Shutdown never returned: the stream accepted during the shutdown was not taken")
	}
}
