package node

import (
	"context"

	"github.com/rke2-hanode/rke2-hanode/pkg/election"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

// What the phase machine needs of the parts it drives, each as small as the
// role paths use it. The real parts are *gossip.Member, *election.Election,
// *vip.Prober, an installer.ServiceManager and rke2Installer; the tests
// drive every role path with hand-written fakes of these.

// memberView is this host's gossip member: who is alive, their metadata,
// and this host's own.
type memberView interface {
	Members() []gossip.MemberInfo
	Local() gossip.Meta
	NumAlive(role string) int
	AliveRank(name string) (rank, of int)
	// Subscribe signals every change of the membership or of a member's
	// metadata until cancel is called.
	Subscribe() (changes <-chan struct{}, cancel func())
	// UpdateMeta changes this host's metadata; node writes only its phase
	// and timeline, and an agent its readiness (requests to the leader go
	// through the coordinator).
	UpdateMeta(fn func(*gossip.Meta)) error
	NameConflict() error
	// RetryName asks the cluster again whether this host's name is free
	// after NameConflict; nil: it is this host's now.
	RetryName(ctx context.Context) error
}

// coordinator is the raft group as a server's phase machine uses it: what
// it waits for, and every request it makes of the leader (DESIGN.md §5).
type coordinator interface {
	State() raftView
	IsBootstrap() bool
	WaitBootstrap(ctx context.Context) (string, error)
	// MarkStarted commits that the bootstrap node starts RKE2 now.
	MarkStarted(ctx context.Context) error
	WaitClusterReady(ctx context.Context) (election.ClusterReady, error)
	AcquireJoinSlot(ctx context.Context) (election.JoinSlot, error)
	// Standby reports why the leader does not admit this server yet (ok
	// false: it is admitted, or the membership duties are off).
	Standby() (reason string, ok bool)
	// MarkJoined waits for the leader to record this server's join; it
	// records it only after ReportReady.
	MarkJoined(ctx context.Context) error
	// ReportReady asks the leader to commit what this server's readiness
	// proves: cluster ready (the bootstrap node, with the CA it made) or
	// its join (a joiner, with the CA it joined). ReportNotReady withdraws it.
	ReportReady(caHash string)
	ReportNotReady()
	// RemovedFromRaft: this server's raft state no longer lists it in the
	// configuration (it was removed).
	RemovedFromRaft() bool
}

// vipProber asks RKE2's supervisor port, on the VIP or on a host, whether
// it answers with the cluster's CA, and who holds the VIP.
type vipProber interface {
	Probe(ctx context.Context, addr, expectCAHash string) vip.Result
	WaitReachable(ctx context.Context, addr, expectCAHash string) (string, error)
	WaitReachableAmong(ctx context.Context, addr, expectCAHash string, slot func() vip.Slot) (string, error)
	Holder(addr string, members []vip.MemberMAC) (name string, local bool, err error)
}

// rke2Service runs this host's RKE2 unit.
type rke2Service interface {
	Start(ctx context.Context, role installer.Role) error
	WaitActive(ctx context.Context, role installer.Role) error
	Active(ctx context.Context, role installer.Role) (bool, error)
	// Stop stops it (a removed server).
	Stop(ctx context.Context, role installer.Role) error
}

// rke2Host is what the phase machine does to the host's disk and network
// before RKE2 runs.
type rke2Host interface {
	// Install puts RKE2 on the host unless it is there (or running).
	Install(ctx context.Context, running bool) error
	// CheckVIPFree fails while anything answers ARP for the VIP: nobody may
	// hold it before the cluster exists.
	CheckVIPFree(ctx context.Context) error
	// Datastore reports the etcd datastore on disk, if any.
	Datastore() (datastoreOnDisk, error)
	// WriteConfig writes RKE2's config for kind (and, on servers, the
	// kube-vip manifest).
	WriteConfig(kind installer.Case, caHash string) error
}

var (
	_ memberView  = (*gossip.Member)(nil)
	_ vipProber   = (*vip.Prober)(nil)
	_ rke2Service = (installer.ServiceManager)(nil)
)
