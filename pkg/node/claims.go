package node

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// claimKeys are what this host needs of the signed server claims
// (pkg/claims): the fingerprint every host verifies with and, on servers,
// the signer. A server derives both from the server token (and config
// validation made sure its agent token carries the same fingerprint); an
// agent reads the fingerprint from its agent token, or, holding the server
// token in the single-token set-up, derives it.
func claimKeys(c *config.Config) (fp string, signer *claims.Signer, err error) {
	if c.IsServer() {
		if fp, err = claims.TrustedFingerprint(c.Secret(), c.AgentSecret(), c.ClusterName); err != nil {
			return "", nil, fmt.Errorf("node: %w", err)
		}
		if signer, err = claims.NewSigner(c.Secret(), c.ClusterName); err != nil {
			return "", nil, fmt.Errorf("node: %w", err)
		}
		return fp, signer, nil
	}
	if fp, ok := claims.AgentTokenFingerprint(c.Secret()); ok {
		return fp, nil, nil
	}
	if fp, err = claims.FingerprintFromServerToken(c.Secret(), c.ClusterName); err != nil {
		return "", nil, fmt.Errorf("node: %w", err)
	}
	return fp, nil, nil
}

// gossipKeyFromServerToken reports whether the gossip key is derived from
// the server token: the single-token set-up, where a server has no agent
// secret and an agent's token is the server token (no fingerprint in it;
// config refuses a two-token agent token without one). Then only holders
// of the server token can gossip at all, and gossip may trust the unsigned
// server metadata of a build from before signed claims.
func gossipKeyFromServerToken(c *config.Config) bool {
	if c.IsServer() {
		return c.AgentSecret() == ""
	}
	_, agentToken := claims.AgentTokenFingerprint(c.Secret())
	return !agentToken
}

// voterSource is the part of the raft group a server vouches with.
type voterSource interface {
	VoterAddrs() (ids, addrs []string, err error)
}

// claimPublisher is the part of gossip that signs this server's claim.
type claimPublisher interface {
	UpdateClaim(fn func(*claims.Claim)) error
	Subscribe() (<-chan struct{}, func())
}

var _ claimPublisher = (*gossip.Member)(nil)

// publishVoters keeps raft's voters, their raft addresses and the
// recovery epoch of its raft state in this server's claim until ctx ends:
// other members trust a server of an older build (which signs no claim)
// only while some verified claim lists it as a voter at the raft address
// it declares, and a server returning with an old datastore reads the
// epoch. It looks on
// every gossip change and every 5 seconds; an unchanged list signs nothing.
func (n *Node) publishVoters(ctx context.Context, g claimPublisher) {
	ch, cancel := g.Subscribe()
	defer cancel()
	var last, lastAddrs []string
	var lastEpoch uint64
	for {
		if src, ok := n.coordinator().(voterSource); ok {
			voters, addrs, err := src.VoterAddrs()
			if len(voters) > claims.MaxVoters {
				voters, addrs = voters[:claims.MaxVoters], addrs[:claims.MaxVoters]
			}
			addrs = canonicalAddrs(addrs)
			// The recovery epoch goes out with the voters: both are
			// what a server returning with an old datastore reads.
			var epoch uint64
			if r := n.coordinator().State().Recovery; r != nil && r.Epoch > 0 {
				epoch = uint64(r.Epoch)
			}
			if err == nil && voters != nil && (!slices.Equal(voters, last) || !slices.Equal(addrs, lastAddrs) || epoch != lastEpoch) {
				if err = g.UpdateClaim(func(c *claims.Claim) { c.Voters, c.VoterAddrs, c.RecoveryEpoch = voters, addrs, epoch }); err == nil {
					last, lastAddrs, lastEpoch = voters, addrs, epoch
				}
			}
			if err != nil {
				n.log.Debug("voters not published in this server's claim", zap.Error(err))
			}
		}
		if n.waitChange(ctx, ch, 5*time.Second) != nil {
			return
		}
	}
}

// canonicalAddrs are raft addresses in the claim's canonical IP:port form;
// nil (no voter is vouched for) when one is not an IP:port.
func canonicalAddrs(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Addr().Zone() != "" || ap.Port() == 0 {
			return nil
		}
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
	}
	return out
}
