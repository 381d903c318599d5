package installer

import (
	"context"
	"fmt"
)

// Role is the RKE2 service a host runs: `rke2 server` or `rke2 agent`.
type Role string

const (
	RoleServer Role = "server"
	RoleAgent  Role = "agent"
)

func (r Role) valid() error {
	if r != RoleServer && r != RoleAgent {
		return fmt.Errorf("installer: role %q is neither %q nor %q", string(r), RoleServer, RoleAgent)
	}
	return nil
}

// UnitName is the systemd unit of role: rke2-server.service or rke2-agent.service.
func UnitName(r Role) string {
	return "rke2-" + string(r) + ".service"
}

// ServiceManager runs RKE2's service for a role. Both implementations mean
// the same by "active": RKE2 sent READY=1 (the units are Type=notify).
type ServiceManager interface {
	// Start asks for the service to start and returns without waiting for
	// it to be ready: a server can take minutes.
	Start(ctx context.Context, role Role) error
	// WaitActive returns nil once the service is active, an error naming the
	// reason once it failed, or an error when ctx ends first.
	WaitActive(ctx context.Context, role Role) error
	// Active reports whether the service is active now.
	Active(ctx context.Context, role Role) (bool, error)
	// Stop stops the service and waits until it has stopped or ctx ends.
	Stop(ctx context.Context, role Role) error
}
