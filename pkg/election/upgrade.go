package election

import (
	"fmt"

	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// The rolling upgrade's commands (pkg/upgrade) ride in the cluster's log
// as operations of their own, encoded like every Command: tagged with the
// writer's version, unknown fields skipped. They are new operations, not
// skippable fields: a server of an older build refuses to apply them
// (validate names the unknown operation), so the leader issues them only
// once every voter advertises a build that knows them.
//
// Their fields: upgrade-start {target, at}; upgrade-drain, upgrade-begin
// and upgrade-done {node, role, at}; upgrade-failed {node, reason, at};
// upgrade-release {node, at}; upgrade-pause and upgrade-resume {at}.
// upgrade-drain and upgrade-release came with command version 4 (drainCommandVersion): the node issues it only while every
// voter reads that version (DrainReaders), and begins agents undrained
// otherwise.

// drainCommandVersion is the command version that brought upgrade-drain.
const drainCommandVersion = 4

// DrainCommandVersion is what every voter's build must read before the
// leader drains agents.
const DrainCommandVersion = drainCommandVersion

// upgradeDrains: the roll holds an agent draining or drained, which a
// snapshot below drainSnapshotVersion cannot carry.
func (s ClusterState) upgradeDrains() bool {
	if s.Upgrade == nil {
		return false
	}
	for _, h := range s.Upgrade.Hosts {
		if h.State == upgrade.HostDraining || h.Drained {
			return true
		}
	}
	return false
}

// upgradeCommand is c as pkg/upgrade reads it.
func (c Command) upgradeCommand() upgrade.Command {
	return upgrade.Command{Op: c.Op, Node: c.Node, Role: upgrade.Role(c.Role), Target: c.Target, Reason: c.Reason, At: c.At}
}

// UpgradeCommand is the log form of an upgrade command.
func UpgradeCommand(u upgrade.Command) Command {
	return Command{Op: u.Op, Node: u.Node, Role: string(u.Role), Target: u.Target, Reason: u.Reason, At: u.At}
}

// validateUpgrade checks an upgrade operation's fields; the fields only
// the cluster's operations carry must be empty.
func (c Command) validateUpgrade() error {
	if c.From != "" || c.VIP != "" || c.CAHash != "" || c.Expires != 0 {
		return fmt.Errorf("election: command %s: only node, role, target, reason and at are allowed", c.Op)
	}
	if err := c.upgradeCommand().Validate(); err != nil {
		return fmt.Errorf("election: %w", err)
	}
	return nil
}

// applyUpgrade is apply for the upgrade operations. A server begins only
// while no server joins: the join slot and a server's upgrade are one
// permission (a server out of the healthy voter set), never held twice.
// A removal takes a voter out too, and it and a server's upgrade never
// overlap, but that is the leader's rule (upgrade.Input.Removing,
// membership.Cluster.Upgrading), not the FSM's: builds that already apply
// these operations accept them then, and a replica that refused what
// another applies would hold another state for the same log.
func (s ClusterState) applyUpgrade(c Command) (ClusterState, error) {
	var p upgrade.Progress
	if s.Upgrade != nil {
		p = s.Upgrade.Clone()
	}
	if c.Op == upgrade.OpBegin && c.Role == string(upgrade.RoleServer) && s.Slot != nil {
		return s, fmt.Errorf("election: %s: %w: join slot held by %s", c.Op, ErrTransition, s.Slot.Holder)
	}
	next, err := p.Apply(c.upgradeCommand())
	if err != nil {
		return s, fmt.Errorf("election: %w: %w", ErrTransition, err)
	}
	out := s.clone()
	out.Upgrade = &next
	return out, nil
}

// upgradingServer is the server upgrading now, which holds the join
// slot's permission: no grant while it does.
func (s ClusterState) upgradingServer() (string, bool) {
	if s.Upgrade == nil {
		return "", false
	}
	return s.Upgrade.ServerUpgrading()
}
