package gossip

import (
	"fmt"
	"testing"
)

// Names are owned: a second host that joins under a held name, straight
// through the holder, is refused and told to rename; the holder keeps its
// name and runs on, and the impostor shows in its log and metric.
func TestImpostorDoesNotHaltTheNameHolder(t *testing.T) {
	a := startMember(t, "a")
	b := startMember(t, "b", withJoin(a.addr))
	eventually(t, "converge", func() (bool, string) { return allSeeAlive([]*testMember{a, b}) })

	imp := startMember(t, "a", withJoin(a.addr))
	eventually(t, "the impostor refused by the holder", func() (bool, string) {
		n := metricValue(t, a.reg, "rke2_hanode_name_impostor_total", nil)
		return n > 0 && imp.NameConflict() != nil, fmt.Sprintf("impostors counted by a: %v; impostor's conflict: %v", n, imp.NameConflict())
	})
	if err := a.NameConflict(); err != nil {
		t.Errorf("the holder halts on an impostor: NameConflict() = %v", err)
	}
	if a.logs.FilterMessageSnippet("another host claims this host's node name: refused").Len() == 0 {
		t.Error("the holder logged no impostor")
	}
	// The cluster keeps the holder's address for the name.
	for _, mi := range b.Members() {
		if mi.Name == "a" && fmt.Sprintf("%s:%d", mi.Addr, mi.Port) != a.addr {
			t.Errorf("b sees a at %s:%d, want the holder %s", mi.Addr, mi.Port, a.addr)
		}
	}
}
