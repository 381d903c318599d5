package gossip

import (
	"math"
	"slices"
	"sync"
)

// broadcastQueue holds, per name, the newest message waiting to be
// gossiped, and hands each out a bounded number of times, the least sent
// and then the newest first. It carries the servers' claims.
//
// memberlist's own TransmitLimitedQueue is not used for them: in the
// version this module builds with, a message that replaces the only one
// queued takes its tie-breaking id from before the queue emptied, while
// the ids of the messages after it start again from one. A later message
// of the same length then lands on the same key in memberlist's tree and
// silently takes its place, and the newer claim is never sent (nor
// reported finished). Claims are much of a size, so that happens. This
// queue keys messages by name only, so no message can displace another.
type broadcastQueue struct {
	numNodes func() int // the members the messages should reach
	mult     int        // memberlist's RetransmitMult

	mu    sync.Mutex
	seq   uint64
	items map[string]*queuedMsg
}

type queuedMsg struct {
	name      string
	msg       []byte
	transmits int
	seq       uint64 // the order of queueing: higher is newer
}

func newBroadcastQueue(mult int, numNodes func() int) *broadcastQueue {
	return &broadcastQueue{numNodes: numNodes, mult: mult, items: map[string]*queuedMsg{}}
}

// transmitLimit is how often a message is sent: mult times the number of
// decimal digits of the cluster's size, the bound memberlist uses for its
// own broadcasts (each member that learns a message from gossip relays it
// in turn, so that many sends reach the cluster with high probability).
func transmitLimit(mult, nodes int) int {
	return max(1, mult*int(math.Ceil(math.Log10(float64(max(nodes, 1)+1)))))
}

// queue replaces the message queued under name with msg.
func (q *broadcastQueue) queue(name string, msg []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	q.items[name] = &queuedMsg{name: name, msg: msg, seq: q.seq}
}

// GetBroadcasts takes the messages that fit in limit bytes, each costing
// overhead on top of its length, as memberlist's Delegate.GetBroadcasts
// does; a message sent its last time leaves the queue.
func (q *broadcastQueue) GetBroadcasts(overhead, limit int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	order := make([]*queuedMsg, 0, len(q.items))
	for _, it := range q.items {
		order = append(order, it)
	}
	slices.SortFunc(order, func(a, b *queuedMsg) int {
		if a.transmits != b.transmits {
			return a.transmits - b.transmits
		}
		switch {
		case a.seq > b.seq:
			return -1
		case a.seq < b.seq:
			return 1
		}
		return 0
	})
	most := transmitLimit(q.mult, q.numNodes())
	var out [][]byte
	free := limit
	for _, it := range order {
		if overhead+len(it.msg) > free {
			continue // a smaller one may still fit
		}
		free -= overhead + len(it.msg)
		out = append(out, it.msg)
		if it.transmits++; it.transmits >= most {
			delete(q.items, it.name)
		}
	}
	return out
}

// Len is the number of messages queued.
func (q *broadcastQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Reset drops every queued message.
func (q *broadcastQueue) Reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	clear(q.items)
}
