package gossip

import (
	"bytes"
	"fmt"
	"testing"
)

func msgOf(tag string, n int) []byte {
	return append([]byte(tag), bytes.Repeat([]byte{'.'}, n-len(tag))...)
}

func tags(msgs [][]byte) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(bytes.TrimRight(m, ".")))
	}
	return out
}

// The sequence memberlist's TransmitLimitedQueue (v0.6.0) loses a message
// in: the only message queued is replaced by a newer one of its name,
// then two messages of the same length follow. There a's newer claim is
// taken out by c's and never sent; here every name's newest is sent.
func TestBroadcastQueueKeepsEveryNamesNewest(t *testing.T) {
	q := newBroadcastQueue(4, func() int { return 5 })
	q.queue("a", msgOf("a1", 100))
	q.queue("a", msgOf("a2", 100))
	q.queue("b", msgOf("b", 100))
	q.queue("c", msgOf("c", 100))
	if q.Len() != 3 {
		t.Fatalf("%d queued, want 3 (a's newest, b, c)", q.Len())
	}
	got := fmt.Sprint(tags(q.GetBroadcasts(2, 1400)))
	if got != "[c b a2]" {
		t.Errorf("sent %s, want the newest first and a's older claim not at all: [c b a2]", got)
	}
}

func TestBroadcastQueueSendsEachTheTransmitLimit(t *testing.T) {
	for _, tc := range []struct{ mult, nodes, want int }{
		{4, 1, 4}, {4, 5, 4}, {4, 9, 4}, {4, 10, 8}, {4, 100, 12}, {3, 23, 6}, {0, 5, 1},
	} {
		if got := transmitLimit(tc.mult, tc.nodes); got != tc.want {
			t.Errorf("transmitLimit(%d, %d) = %d, want %d", tc.mult, tc.nodes, got, tc.want)
		}
	}
	q := newBroadcastQueue(4, func() int { return 5 })
	q.queue("a", msgOf("a", 50))
	sent := 0
	for range 10 {
		sent += len(q.GetBroadcasts(2, 1400))
	}
	if sent != 4 || q.Len() != 0 {
		t.Errorf("sent %d times, %d left queued: want 4 sends, then none queued", sent, q.Len())
	}
	// A newer message of the name starts its count again.
	q.queue("a", msgOf("a", 50))
	q.GetBroadcasts(2, 1400)
	q.queue("a", msgOf("a'", 50))
	sent = 0
	for range 10 {
		for _, m := range q.GetBroadcasts(2, 1400) {
			if string(bytes.TrimRight(m, ".")) != "a'" {
				t.Fatalf("sent %q after it was replaced", m)
			}
			sent++
		}
	}
	if sent != 4 {
		t.Errorf("the replacing message was sent %d times, want 4", sent)
	}
}

func TestBroadcastQueueFillsThePacketLeastSentFirst(t *testing.T) {
	q := newBroadcastQueue(4, func() int { return 5 })
	q.queue("old", msgOf("old", 400))
	q.GetBroadcasts(2, 1400) // old has been sent once
	q.queue("big", msgOf("big", 900))
	q.queue("small", msgOf("small", 300))
	// In 1000 bytes: small (302 with its overhead), the newest of the
	// unsent; big (902) does not fit in the 698 left; old (402, sent
	// once already) does.
	got := fmt.Sprint(tags(q.GetBroadcasts(2, 1000)))
	if got != "[small old]" {
		t.Errorf("sent %s, want [small old]: the least sent first, newest among them, and what fits", got)
	}
	if got := fmt.Sprint(tags(q.GetBroadcasts(2, 1000))); got != "[big]" {
		t.Errorf("next packet %s, want [big], the one not yet sent", got)
	}
	q.Reset()
	if q.Len() != 0 || q.GetBroadcasts(2, 1400) != nil {
		t.Error("Reset left messages queued")
	}
}
