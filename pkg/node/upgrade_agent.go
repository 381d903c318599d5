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
// from the servers' verified claims, which carry the agents' committed
// begins (claims.AgentBegins) as each server's copy of the replicated
// state holds them. A begin is followed only to the version this agent's
// own configuration wants; the leader records it done only on its report
// for the begin it committed. Where no verified server publishes begins
// (every server runs a build from before the field, during a daemon
// upgrade), the agent asks a verified server's /status instead, whose
// upgrade object lists every host's place in the roll (upgrade.Report):
// only while it has something to upgrade (its configuration wants another
// version than it runs, or a run is under way), every agentPoll or so
// (jittered). That answer is read-only plain HTTP, trusted no further
// than the version check above. An agent the answer places in the next
// batch (among the first max_unavailable agents still to upgrade after
// those upgrading now) asks every agentPollSoon instead: its begin follows
// the next done, and at most one batch of agents asks that often.
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
	if b, published, ok := beginFromClaims(members, name, f.Wanted); published {
		return b, ok
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

// beginFromClaims is agent name's begin to version wanted as the alive
// servers' verified claims carry it, the newest when they differ (a
// server's copy of the state may lag the leader's); published is false
// when no such claim publishes begins at all.
func beginFromClaims(members []gossip.MemberInfo, name, wanted string) (b upgradeBegin, published, ok bool) {
	for _, mi := range members {
		c := mi.Claim
		if c == nil || mi.State != gossip.StateAlive || !c.AgentBegins.Published {
			continue
		}
		published = true
		if c.AgentBegins.Target != wanted {
			continue
		}
		for _, ab := range c.AgentBegins.Agents {
			if ab.Node == name && ab.Since > b.Since {
				b, ok = upgradeBegin{Since: ab.Since, Target: wanted}, true
			}
		}
	}
	return b, published, ok
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
