package node

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// An agent is not in raft: it learns that the leader began its upgrade
// from a server's /status, whose upgrade object lists every host's place
// in the roll (upgrade.Report). It asks only while it has something to
// upgrade (its configuration wants another version than it runs, or a
// run is under way), every agentPoll or so (jittered), and only servers
// whose claim gossip verified. The answer is read-only HTTP, so it is
// trusted no further than this: the agent upgrades only to the version
// its own configuration wants, and the leader records it done only on
// its report for the begin it committed. An agent the answer places in
// the next batch (among the first max_unavailable agents still to
// upgrade after those upgrading now) asks every agentPollSoon instead:
// its begin follows the next done, and at most one batch of agents asks
// that often. The place only sets how soon it asks again.
const (
	agentPoll     = 5 * time.Second
	agentPollSoon = time.Second
)

type agentBeginSource struct {
	n *Node

	mu   sync.Mutex
	next time.Time
	last upgradeBegin
	ok   bool
}

func newAgentBeginSource(n *Node) *agentBeginSource {
	return &agentBeginSource{n: n}
}

func (a *agentBeginSource) begin(members []gossip.MemberInfo, name string) (upgradeBegin, bool) {
	n := a.n
	f := n.localFacts()
	inFlight := false
	if r := n.upg.runner.current(); r != nil && !r.Finished && r.Failed == "" {
		inFlight = true
	}
	if !inFlight && (f.Wanted == "" || f.Wanted == f.Running) {
		return upgradeBegin{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := n.clk.Now()
	if now.Before(a.next) {
		return a.last, a.ok
	}
	var soon bool
	a.last, a.ok, soon = a.ask(members, name, f.Wanted)
	poll := agentPoll
	if soon {
		poll = agentPollSoon
	}
	a.next = now.Add(poll/2 + time.Duration(rand.Int64N(int64(poll))))
	return a.last, a.ok
}

// nextInLine: the roll u places agent name in the next batch, right after
// the agents upgrading now.
func nextInLine(u *status.Upgrade, name string) bool {
	if u.Phase != upgrade.PhaseAgents && u.Phase != upgrade.PhaseServers {
		return false
	}
	upgrading := 0
	for _, h := range u.Hosts {
		if h.Role == string(upgrade.RoleAgent) && h.State == string(upgrade.HostUpgrading) {
			upgrading++
		}
	}
	i := slices.Index(u.Agents, name)
	return i >= 0 && i < upgrading+max(u.MaxUnavailable, 1)
}

// ask tries the verified servers, in random order, until one answers;
// soon: the answer places this agent in the next batch.
func (a *agentBeginSource) ask(members []gossip.MemberInfo, name, wanted string) (b upgradeBegin, ok, soon bool) {
	_, port, err := net.SplitHostPort(a.n.cfg.HTTPAddress)
	if err != nil || port == "" {
		port = "9349"
	}
	var servers []string
	for _, mi := range members {
		if mi.Claim != nil && mi.State == gossip.StateAlive && mi.Claim.AdvertiseAddr != "" {
			servers = append(servers, mi.Claim.AdvertiseAddr)
		}
	}
	rand.Shuffle(len(servers), func(i, j int) { servers[i], servers[j] = servers[j], servers[i] })
	for _, addr := range servers[:min(len(servers), 3)] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, st, err := statusview.Fetch(ctx, net.JoinHostPort(addr, port))
		cancel()
		if err != nil || st.Upgrade == nil {
			a.n.log.Debug("upgrade: no roll from this server", zap.String("server", addr), zap.Error(err))
			continue
		}
		u := st.Upgrade
		for _, h := range u.Hosts {
			if h.Name == name && h.State == string(upgrade.HostUpgrading) && u.Target == wanted && !h.Since.IsZero() {
				return upgradeBegin{Since: h.Since.UnixNano(), Target: u.Target}, true, false
			}
		}
		return upgradeBegin{}, false, u.Target == wanted && nextInLine(u, name)
	}
	return upgradeBegin{}, false, false
}
