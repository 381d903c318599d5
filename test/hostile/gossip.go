// Package hostile is what the attack tests' hostile host does to gossip,
// shared by the loopback suite and the test bed's hostile program
// (test/e2e/hostile): with the agent token only, it joins gossip and says
// it is a server, as loudly as the metadata allows.
package hostile

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// ForgedServer describes the impostor: a new node name, its own address
// (memberlist must reach it there), and another server's address it
// announces as its own and as its raft address.
type ForgedServer struct {
	Name          string
	AgentToken    string // all it holds: the gossip key derives from it
	ClusterName   string
	BindIP        string
	GossipPort    int // 0: the daemon's default, 9347
	SpoofIP       string
	Join          []string
	ExpectServers int
	CAHash        string // the CA it wants agents to pin (64 hex digits)
	Logger        *zap.Logger
}

// Start joins gossip as the impostor: role server, raft member, bootstrap
// done, RKE2 started and ready, cluster ready with its CA, asking for the
// join slot. Its claim is signed with the one key it can make, derived from
// the agent token as a server derives its own from the server token. The
// returned function leaves and stops it. Until then it re-signs its claim
// every two seconds, so every member keeps hearing it.
func (f ForgedServer) Start(ctx context.Context) (*gossip.Member, func(), error) {
	if f.Name == "" || f.AgentToken == "" || f.BindIP == "" || f.SpoofIP == "" || len(f.CAHash) != 64 {
		return nil, nil, errors.New("hostile: name, agent token, bind and spoofed addresses and a CA hash are needed")
	}
	port := f.GossipPort
	if port == 0 {
		port = 9347
	}
	signer, err := claims.NewSigner(f.AgentToken, f.ClusterName)
	if err != nil {
		return nil, nil, err
	}
	log := f.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m, err := gossip.Open(gossip.Config{
		NodeName: f.Name, BindAddr: f.BindIP, BindPort: port, AdvertiseAddr: f.BindIP,
		Join: f.Join, Token: f.AgentToken, ClusterName: f.ClusterName, Signer: signer, SyncRole: gossip.RoleServer,
		Logger: log,
		Meta: gossip.Meta{
			Role: gossip.RoleServer, Phase: "ready", PhaseSince: time.Now(),
			AdvertiseAddr: f.SpoofIP, RaftAddr: net.JoinHostPort(f.SpoofIP, "9348"), RaftState: gossip.RaftMember,
			ExpectServers: f.ExpectServers, BootstrapSet: "0123456789abcdef!", WantJoinSlot: true, StartedRKE2: true,
			Ready: true, CAHash: f.CAHash, ClusterReady: true, Commands: 2,
			BootstrapNode: f.Name, JoinSlot: f.Name, JoinedServers: 2,
		},
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	go func() {
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			_ = m.UpdateClaim(func(c *claims.Claim) { c.RKE2Running = fmt.Sprintf("v1.31.%d+rke2r1", i) })
		}
	}()
	return m, func() { cancel(); <-done; _ = m.Close() }, nil
}
