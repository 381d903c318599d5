package node

import (
	"net"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// A VIP squatter that also holds the agent token answers ARP for the VIP
// from its own host and announces that host's MAC in its gossip metadata
// (unsigned: any member may say any MAC). Only servers run kube-vip, so
// only a verified server's MAC may name the VIP's holder; the squatter
// must stay "a host outside the cluster" in status and in the alarm.
func TestAttackSquatterNamedAsVIPHolderByItsMAC(t *testing.T) {
	evilMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x66}
	w := &world{members: []gossip.MemberInfo{
		{Name: "srv-1", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleServer, MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}}},
		{Name: "srv-1-new", State: gossip.StateAlive, Unverified: true, Meta: gossip.Meta{Role: gossip.RoleAgent, MAC: evilMAC}},
	}}
	n := &Node{members: fakeMembers{w}}
	server := false
	for _, m := range n.memberMACs() {
		server = server || m.Name == "srv-1"
		if m.Name == "srv-1-new" {
			t.Fatal("an agent's (or a forger's) MAC names it as the VIP's holder in status and in the CA-mismatch alarm")
		}
	}
	if !server {
		t.Fatal("the verified server's MAC is not listed")
	}
}
