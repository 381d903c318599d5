package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// TestSurvivorAssessment: the daemon records the newest survivor while the
// quorum is lost and removes it once quorum is back; recover refuses when
// the record names another survivor or none, unless --force-survivor.
func TestSurvivorAssessment(t *testing.T) {
	dir := t.TempDir()
	n := &Node{cfg: &config.Config{NodeName: "ha-m1", DataDir: dir}, log: zap.NewNop(), clk: newStepClock()}
	members := []status.EtcdMember{{Name: "ha-m1-0123abcd", Node: "ha-m1"}, {Name: "ha-m2-0123abce", Node: "ha-m2"}, {Name: "ha-m3-0123abcf", Node: "ha-m3"}}
	lost := func(survivor string, rev int64) *status.Etcd {
		return &status.Etcd{Members: members, MajorityGone: true, NewestSurvivor: &status.EtcdSurvivor{Name: survivor, Revision: rev}}
	}
	say := func(string, ...any) {}
	path := filepath.Join(dir, survivorFile)

	if err := checkSurvivor(dir, "ha-m1", false, say); err == nil || !strings.Contains(err.Error(), "--force-survivor") {
		t.Fatalf("no record: %v, want a refusal naming --force-survivor", err)
	}
	if err := checkSurvivor(dir, "ha-m1", true, say); err != nil {
		t.Fatalf("no record, forced: %v", err)
	}

	n.recordQuorumAssessment(lost("ha-m2", 812))
	err := checkSurvivor(dir, "ha-m1", false, say)
	if err == nil || !strings.Contains(err.Error(), "names ha-m2 at etcd revision 812") || !strings.Contains(err.Error(), "recover --from ha-m2 --confirm") {
		t.Fatalf("another survivor recorded: %v", err)
	}
	if err := checkSurvivor(dir, "ha-m1", true, say); err != nil {
		t.Fatalf("another survivor, forced: %v", err)
	}
	n.recordQuorumAssessment(lost("ha-m1", 900))
	if err := checkSurvivor(dir, "ha-m1", false, say); err != nil {
		t.Fatalf("this host recorded as the survivor: %v", err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"revision": 900`) {
		t.Fatalf("record: %s", b)
	}
	// Nothing known: the record stays.
	n.recordQuorumAssessment(nil)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("record dropped on an unknown assessment: %v", err)
	}
	// Quorum back: the record goes.
	n.recordQuorumAssessment(&status.Etcd{Members: members})
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("record kept once quorum is back: %v", err)
	}
}
