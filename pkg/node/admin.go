package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/adminsock"
	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	ms "github.com/rke2-hanode/rke2-hanode/pkg/membership"
)

// Operator verbs through the admin socket (pkg/adminsock). A verb that
// needs the cluster's consent becomes a Request this server relays to the
// leader in its signed claim; the leader decides it once and commits the
// outcome by ID (election/requests.go); the verb waits, with a deadline,
// until the outcome is in this server's own copy of the state, and says it.

// requestWait bounds how long a verb waits for the leader's outcome; a
// removal's execution has its own bound (removalExecuteTimeout).
const requestWait = 2 * time.Minute

// maxRequests is how many requests a server relays at once (the claim's
// bound).
const maxRequests = claims.MaxRequests

// requestRelay publishes the requests this server relays in its signed
// claim, for the leader to read (the gossip carriage).
type requestRelay interface {
	RelayRequests(rs []election.Request) error
}

// noRelay publishes nothing: only a leader that is this server itself sees
// its requests (election reads them through the duties).
type noRelay struct{}

func (noRelay) RelayRequests([]election.Request) error { return nil }

// requestBook holds the requests this server relays until their outcome is
// committed.
type requestBook struct {
	mu      sync.Mutex
	pending []election.Request
}

func (b *requestBook) list() []election.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.pending)
}

// add queues a request; refused when maxRequests wait already.
func (b *requestBook) add(r election.Request) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) >= maxRequests {
		return fmt.Errorf("%d requests already wait for the leader: try again once they are decided", len(b.pending))
	}
	b.pending = append(b.pending, r)
	return nil
}

// drop withdraws the requests whose outcome st holds, and id; it reports
// whether anything changed.
func (b *requestBook) drop(st election.ClusterState, id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.pending)
	b.pending = slices.DeleteFunc(b.pending, func(r election.Request) bool {
		_, done := st.Record(r.ID)
		return done || r.ID == id
	})
	return len(b.pending) != n
}

// selfRequests is what the leader's duties read for server name: this
// server's own requests, or what gossip carries for another server.
func (n *Node) selfRequests(name string) []election.Request {
	if name == n.cfg.NodeName {
		return n.reqs.list()
	}
	return n.peerRequests(name)
}

// peerRequests are the requests server name relays in its verified claim,
// as gossip carries them. A member without a verified claim (an agent, a
// host without the server key) relays nothing, whatever its metadata says.
func (n *Node) peerRequests(name string) []election.Request {
	for _, mi := range n.members.Members() {
		if mi.Name != name || mi.Claim == nil {
			continue
		}
		out := make([]election.Request, 0, len(mi.Claim.Requests))
		for _, r := range mi.Claim.Requests {
			out = append(out, election.Request{ID: r.ID, Kind: r.Kind, Target: r.Target, At: r.At})
		}
		return out
	}
	return nil
}

// claimRelay publishes the requests in this server's signed claim.
type claimRelay struct{ g *gossip.Member }

func (c claimRelay) RelayRequests(rs []election.Request) error {
	return c.g.UpdateClaim(func(cl *claims.Claim) {
		cl.Requests = cl.Requests[:0]
		for _, r := range rs {
			cl.Requests = append(cl.Requests, claims.Request{ID: r.ID, Kind: r.Kind, Target: r.Target, At: r.At})
		}
	})
}

// publishRequests hands this server's requests to the relay.
func (n *Node) publishRequests() {
	if n.relay == nil {
		return
	}
	if err := n.relay.RelayRequests(n.reqs.list()); err != nil {
		n.log.Warn("could not relay the operators' requests", zap.Error(err))
	}
}

// ask relays a request and waits until its outcome is committed; it
// withdraws the request when it returns.
func (n *Node) ask(ctx context.Context, kind, target string, progress func(string)) (election.RequestRecord, error) {
	id, err := election.NewRequestID()
	if err != nil {
		return election.RequestRecord{}, err
	}
	r := election.Request{ID: id, Kind: kind, Target: target, At: n.clk.Now().UTC()}
	if err := n.reqs.add(r); err != nil {
		return election.RequestRecord{}, err
	}
	defer func() {
		n.reqs.drop(n.coord.State().ClusterState, id)
		n.publishRequests()
	}()
	n.publishRequests()
	leader := n.coord.State().Leader
	if leader == "" {
		leader = "not known yet"
	}
	progress(fmt.Sprintf("asked the raft leader (%s) for %s %s (request %s)", leader, kind, target, id))
	ctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	for {
		if rec, ok := n.coord.State().Record(id); ok {
			return rec, nil
		}
		if n.clk.Sleep(ctx, 500*time.Millisecond) != nil {
			return election.RequestRecord{}, fmt.Errorf("no decision from the raft leader within %s (leader: %s): is every server on a build that knows operator requests, and is raft up (rke2-hanode status)?", requestWait, leader)
		}
	}
}

// AdminVerbs are the verbs the admin socket serves.
func (n *Node) AdminVerbs() map[string]adminsock.Verb {
	return map[string]adminsock.Verb{
		"remove": n.verbRemove,
		"upgrade-pause": func(ctx context.Context, _ json.RawMessage, p func(string)) (string, error) {
			return n.verbUpgrade(ctx, election.RequestUpgradePause, p)
		},
		"upgrade-resume": func(ctx context.Context, _ json.RawMessage, p func(string)) (string, error) {
			return n.verbUpgrade(ctx, election.RequestUpgradeResume, p)
		},
	}
}

var errOnAgent = errors.New("this host is an agent: run it on a server (requests to the cluster are made by servers only)")

// serverReady is the common precondition of a request verb.
func (n *Node) serverReady() error {
	if !n.cfg.IsServer() {
		return errOnAgent
	}
	if n.coordinator() == nil {
		return errors.New("raft is not running on this server yet: try again in a moment")
	}
	return nil
}

// RemoveRequest is the body of the remove verb.
type RemoveRequest struct {
	Node string `json:"node"`
}

func (n *Node) verbRemove(ctx context.Context, body json.RawMessage, progress func(string)) (string, error) {
	var req RemoveRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Node == "" {
		return "", errors.New("remove: name the node to remove")
	}
	if err := n.serverReady(); err != nil {
		return "", err
	}
	st := n.coord.State().ClusterState
	if v, err := n.checkRemoval(st, req.Node); err != nil {
		return "", err
	} else {
		progress("this server's view: " + v.Reason)
	}
	rec, err := n.ask(ctx, election.RequestRemove, req.Node, progress)
	if err != nil {
		return "", err
	}
	if !rec.Accepted {
		return "", fmt.Errorf("the raft leader refused: %s", rec.Reason)
	}
	progress("committed by the raft leader: " + rec.Reason)
	return n.followRemoval(ctx, req.Node, rec.At, progress)
}

// checkRemoval is this server's own check of a removal before it asks:
// the membership rules on its copy of the state and its gossip view.
func (n *Node) checkRemoval(st election.ClusterState, target string) (ms.Verdict, error) {
	if r := st.Removal; r.Active() {
		return ms.Verdict{}, fmt.Errorf("the removal of %s is %s: one removal at a time; wait for it to end (rke2-hanode status)", r.Node, r.State)
	}
	voters := st.EtcdVoters()
	if !slices.Contains(voters, target) {
		return ms.Verdict{}, fmt.Errorf("%s is not an etcd voter (voters: %v): nothing to remove", target, voters)
	}
	v := ms.CheckRemoval(n.answering(st, voters), target)
	if !v.OK {
		return v, errors.New(v.Reason)
	}
	return v, nil
}

// answering is the voters with whether each answers as this server sees
// it: alive in gossip and ready with the cluster's CA.
func (n *Node) answering(st election.ClusterState, voters []string) []ms.Member {
	ca := ""
	if st.ClusterReady != nil {
		ca = st.ClusterReady.CAHash
	}
	out := make([]ms.Member, 0, len(voters))
	for _, v := range voters {
		m := ms.Member{Name: v, Voter: true}
		for _, mi := range n.members.Members() {
			if mi.Name == v && mi.MetaErr == nil && mi.State == "alive" {
				m.Answers = mi.Meta.Ready && mi.Meta.CAHash == ca
			}
		}
		out = append(out, m)
	}
	return out
}

// followRemoval waits for the committed removal of target (committed at
// since) to end, with progress lines.
func (n *Node) followRemoval(ctx context.Context, target string, since time.Time, progress func(string)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, removalExecuteTimeout+time.Minute)
	defer cancel()
	last := ms.RemovalState("")
	for {
		r := n.coord.State().Removal
		if r != nil && r.Node == target && !r.Since.Before(since) {
			if r.State != last {
				last = r.State
				switch r.State {
				case ms.RemovalDone:
					return fmt.Sprintf("%s removed: its Node and etcd member are gone; its daemon stops RKE2 there. To bring it back: `rke2-hanode rejoin --wipe` on it", target), nil
				case ms.RemovalFailed:
					return "", fmt.Errorf("the removal of %s failed: %s", target, r.Reason)
				default:
					progress(fmt.Sprintf("removal of %s: %s (executor %s)", target, r.State, r.Executor))
				}
			}
		}
		if n.clk.Sleep(ctx, 500*time.Millisecond) != nil {
			return "", fmt.Errorf("the removal of %s did not end within %s; its state: %s (rke2-hanode status)", target, removalExecuteTimeout+time.Minute, last)
		}
	}
}

func (n *Node) verbUpgrade(ctx context.Context, kind string, progress func(string)) (string, error) {
	if err := n.serverReady(); err != nil {
		return "", err
	}
	rec, err := n.ask(ctx, kind, "", progress)
	if err != nil {
		return "", err
	}
	if !rec.Accepted {
		return "", fmt.Errorf("the raft leader refused: %s", rec.Reason)
	}
	if kind == election.RequestUpgradePause {
		return "upgrade paused: no further host begins its upgrade; hosts upgrading now finish (rke2-hanode upgrade resume to continue)", nil
	}
	return "upgrade resumed: hosts begin in turn again, a failed host is retried", nil
}
