package upgrade

import "fmt"

// Step is one thing a host does to upgrade itself once its begin is
// committed. doc.go says what the node calls for each.
type Step string

// Steps, in the order a host runs them.
const (
	StepSnapshot Step = "etcd-snapshot" // servers: rke2 etcd-snapshot save
	StepInstall  Step = "install"       // the install method, INSTALL_RKE2_VERSION=target
	StepDrain    Step = "drain"         // upgrade-drain: cordon, evict (deadline)
	StepRestart  Step = "restart"       // stop and start rke2-server or rke2-agent
	StepHealthy  Step = "wait-healthy"  // healthy voter and supervisor; agent Ready (deadline)
	StepUncordon Step = "uncordon"      // upgrade-drain: uncordon
)

// Steps is what a host of role runs, in order. The install comes before
// the drain: the running RKE2 keeps serving while the new one is put on
// disk, so the drained window is only the restart.
func Steps(role Role, drain bool) []Step {
	var out []Step
	if role == RoleServer {
		out = append(out, StepSnapshot)
	}
	out = append(out, StepInstall)
	if drain {
		out = append(out, StepDrain)
	}
	out = append(out, StepRestart, StepHealthy)
	if drain {
		out = append(out, StepUncordon)
	}
	return out
}

// SnapshotName is the name given to `rke2 etcd-snapshot save --name`, so
// that the snapshot taken before an upgrade is found by its target.
func SnapshotName(target string) string {
	return "pre-upgrade-" + sanitize(target)
}

// sanitize keeps what a snapshot file name may hold ('+' becomes '-').
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	return string(b)
}

// StepFailed is the reason a host gossips (Host.Failed) when a step fails:
// the step, then the error, bounded by the command's limit.
func StepFailed(s Step, err error) string {
	return clip(fmt.Sprintf("%s: %v", s, err))
}
