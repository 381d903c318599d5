package node

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
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
// its report for the begin it committed.
const agentPoll = 5 * time.Second

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
	a.next = now.Add(agentPoll/2 + time.Duration(rand.Int64N(int64(agentPoll))))
	a.last, a.ok = a.ask(members, name, f.Wanted)
	return a.last, a.ok
}

// ask tries the verified servers, in random order, until one answers.
func (a *agentBeginSource) ask(members []gossip.MemberInfo, name, wanted string) (upgradeBegin, bool) {
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
				return upgradeBegin{Since: h.Since.UnixNano(), Target: u.Target}, true
			}
		}
		return upgradeBegin{}, false
	}
	return upgradeBegin{}, false
}
