package node

import (
	"context"
	"errors"
	"net"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
)

// caFetcher is the prober's fetch of /cacerts from one server's own address.
type caFetcher interface {
	FetchCAHash(ctx context.Context, host string) (string, error)
}

// bootstrapCAFetcher is what the raft leader uses to check, before it
// commits cluster ready, that the bootstrap node serves the CA it claims:
// /cacerts at the host of the peer's raft address, which is that server's
// advertise address. nil when the prober cannot fetch.
func (n *Node) bootstrapCAFetcher() election.CAFetcher {
	f, ok := n.prober.(caFetcher)
	if !ok {
		return nil
	}
	return func(ctx context.Context, p election.Peer) (string, error) {
		host, _, err := net.SplitHostPort(p.RaftAddr)
		if err != nil || host == "" {
			return "", errors.New("node: server " + p.Name + " advertises no raft address to fetch its CA from")
		}
		return f.FetchCAHash(ctx, host)
	}
}
