package election

import (
	"sync"

	"github.com/hashicorp/raft"
)

// leaderCommit is what a follower learnt of its leader's commit index since
// this incarnation started: the newest index carried by an AppendEntries
// request raft accepted, until the follower's own commit index reached it
// once. A follower's commit index is only min(leader's commit, its last
// entry), so a fresh server receiving a long log in batches of 64 entries
// has a commit index equal to the end of the batch at hand: applied up to
// it, it would take itself for caught up while the later batches, and the
// state they carry, are still on their way. Caught up means this node's
// commit index reached the leader's at first contact, not only its own.
//
// Only accepted requests count: a request from a deposed leader, or one raft
// refuses for a log mismatch, says nothing of the current commit index. Raft
// peers are servers of the configuration (streamGuard admits no other), and
// the leader can do worse than lie about its commit index, so a forged index
// is not a concern here; a node that cannot catch up stays not caught up.
type leaderCommit struct {
	mu      sync.Mutex
	seen    bool   // an accepted AppendEntries request since start
	index   uint64 // the newest leader commit index accepted before reached
	reached bool   // the node's commit index reached index once
}

// accepted records the leader commit index of an AppendEntries request raft
// accepted.
func (lc *leaderCommit) accepted(index uint64) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.reached {
		return
	}
	lc.seen = true
	lc.index = max(lc.index, index)
}

// covers reports whether commit (this node's commit index) reached the
// leader's commit index learnt since start; once it has, it stays so.
func (lc *leaderCommit) covers(commit uint64) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.reached && lc.seen && commit >= lc.index {
		lc.reached = true
	}
	return lc.reached
}

// learning reports whether the index is still being learnt (accepted
// requests are still looked at).
func (lc *leaderCommit) learning() bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return !lc.reached
}

// commitTransport is raft's transport with the requests raft consumes
// passed through one goroutine, which, while lc is learning, reads raft's
// answer to each AppendEntries request before passing it on, and records
// the request's leader commit index when raft accepted it. Heartbeats take
// the transport's fast path, untouched: they carry no commit index.
type commitTransport struct {
	raft.Transport
	lc   *leaderCommit
	out  chan raft.RPC
	done chan struct{}
	once sync.Once
}

// Both of raft's transports (TCP and in-memory) take pre-votes; raft only
// asks for them when the transport it is given does.
var (
	_ raft.WithPreVote = (*commitTransport)(nil)
	_ raft.WithClose   = (*commitTransport)(nil)
)

func newCommitTransport(inner raft.Transport, lc *leaderCommit) *commitTransport {
	t := &commitTransport{Transport: inner, lc: lc, out: make(chan raft.RPC), done: make(chan struct{})}
	go t.forward(inner.Consumer())
	return t
}

// Consumer is where raft reads the requests it serves.
func (t *commitTransport) Consumer() <-chan raft.RPC { return t.out }

func (t *commitTransport) forward(in <-chan raft.RPC) {
	for {
		var rpc raft.RPC
		select {
		case rpc = <-in:
		case <-t.done:
			return
		}
		if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok && t.lc.learning() {
			rpc = t.watch(rpc, req.LeaderCommitIndex)
		}
		select {
		case t.out <- rpc:
		case <-t.done:
			// Closing: unanswered, as raft leaves the requests it has not
			// served at shutdown (the sender's transport times out).
			return
		}
	}
}

// watch returns rpc with its answer passed through a goroutine that records
// leaderCommit when raft accepted the request.
func (t *commitTransport) watch(rpc raft.RPC, leaderCommit uint64) raft.RPC {
	orig := rpc.RespChan
	resp := make(chan raft.RPCResponse, 1)
	rpc.RespChan = resp
	go func() {
		select {
		case r := <-resp:
			if a, ok := r.Response.(*raft.AppendEntriesResponse); ok && r.Error == nil && a.Success {
				t.lc.accepted(leaderCommit)
			}
			orig <- r // buffered by both transports
		case <-t.done:
		}
	}()
	return rpc
}

// RequestPreVote passes a pre-vote to the transport underneath.
func (t *commitTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	pv, ok := t.Transport.(raft.WithPreVote)
	if !ok {
		return raft.ErrUnsupportedProtocol
	}
	return pv.RequestPreVote(id, target, args, resp)
}

// stop ends the forwarding goroutine; the transport underneath stays open.
func (t *commitTransport) stop() { t.once.Do(func() { close(t.done) }) }

// Close stops forwarding and closes the transport underneath (raft closes
// its transport on shutdown).
func (t *commitTransport) Close() error {
	t.stop()
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}
