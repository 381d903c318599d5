package upgrade

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSteps(t *testing.T) {
	tests := []struct {
		role  Role
		drain bool
		want  []Step
	}{
		{RoleServer, false, []Step{StepSnapshot, StepInstall, StepRestart, StepHealthy}},
		{RoleServer, true, []Step{StepSnapshot, StepInstall, StepDrain, StepRestart, StepHealthy, StepUncordon}},
		{RoleAgent, false, []Step{StepInstall, StepRestart, StepHealthy}},
		{RoleAgent, true, []Step{StepInstall, StepDrain, StepRestart, StepHealthy, StepUncordon}},
	}
	for _, tc := range tests {
		if got := Steps(tc.role, tc.drain); !slices.Equal(got, tc.want) {
			t.Errorf("Steps(%s, drain=%v) = %v, want %v", tc.role, tc.drain, got, tc.want)
		}
	}
	if got := SnapshotName("v1.37.1+rke2r1"); got != "pre-upgrade-v1.37.1-rke2r1" {
		t.Errorf("SnapshotName = %q", got)
	}
	r := StepFailed(StepInstall, errors.New("install script failed 3 times: exit status 1\x1b[2J"+strings.Repeat("x", 400)))
	if !strings.HasPrefix(r, "install: install script failed 3 times") || len(r) > 210 || strings.ContainsRune(r, 0x1b) {
		t.Errorf("StepFailed = %q (%d bytes)", r, len(r))
	}
	if _, err := (Progress{Target: "v1.37.1+rke2r1", Hosts: []HostProgress{{Name: "s1", Role: RoleServer, State: HostUpgrading, Since: 1}}}).Apply(
		Command{Op: OpFailed, Node: "s1", Reason: r, At: 2}); err != nil {
		t.Errorf("a step's failure does not fit a command: %v", err)
	}
}
