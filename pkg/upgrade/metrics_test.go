package upgrade

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Hosts: []Host{
		hostAt("s0", RoleServer, "v1.36.3+rke2r1", "v1.37.1+rke2r1"),
		hostAt("a0", RoleAgent, "v1.36.3+rke2r1", "v1.36.3+rke2r1"),
	}, Now: time.Unix(1_800_000_000, 0)}
	in.Progress = Progress{Target: "v1.37.1+rke2r1", Hosts: []HostProgress{{Name: "s0", Role: RoleServer, State: HostFailed, Since: 1, Reason: "install script exited 1"}}}
	plan := Decide(in)
	m.Update(in, plan)
	want := `
# HELP rke2_hanode_upgrade_blocked 1 for the kind of reason the roll is blocked (refused, failed, paused, waiting); all 0 when it is not.
# TYPE rke2_hanode_upgrade_blocked gauge
rke2_hanode_upgrade_blocked{reason="failed"} 1
rke2_hanode_upgrade_blocked{reason="paused"} 0
rke2_hanode_upgrade_blocked{reason="refused"} 0
rke2_hanode_upgrade_blocked{reason="waiting"} 0
# HELP rke2_hanode_upgrade_host_state 1 per host in the current roll, labelled with its state: draining, upgrading, done or failed.
# TYPE rke2_hanode_upgrade_host_state gauge
rke2_hanode_upgrade_host_state{node="s0",state="failed"} 1
# HELP rke2_hanode_upgrade_wanted_version 1 per host, labelled with the RKE2 version its configuration wants.
# TYPE rke2_hanode_upgrade_wanted_version gauge
rke2_hanode_upgrade_wanted_version{node="a0",role="agent",version="v1.36.3+rke2r1"} 1
rke2_hanode_upgrade_wanted_version{node="s0",role="server",version="v1.37.1+rke2r1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rke2_hanode_upgrade_blocked", "rke2_hanode_upgrade_host_state", "rke2_hanode_upgrade_wanted_version"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.phase.WithLabelValues(PhaseFailed)); got != 1 {
		t.Fatalf("phase failed = %v", got)
	}
	if got := testutil.ToFloat64(m.hosts.WithLabelValues("server", "failed")); got != 1 {
		t.Fatalf("hosts{server,failed} = %v", got)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("registering twice on one registry succeeded")
	}
}
