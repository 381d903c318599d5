package node

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// The last quorum-loss assessment, kept on disk for the offline recover.
// While the daemon runs and sees a majority of the etcd voters gone, it
// writes the newest survivor it computed (the alive voter with the highest
// etcd revision, as the servers gossip it; status cluster.etcd.
// newest_survivor) to <data-dir>/quorum-lost.json, and removes the file
// once quorum is back. `recover --from NODE` runs with the daemon stopped,
// so it cannot ask gossip: it reads this file and refuses when NODE is not
// the survivor named there, or when there is no file (this daemon never
// saw the quorum lost), unless --force-survivor says the operator chose
// NODE knowingly.

// survivorFile is the assessment's file name in data-dir.
const survivorFile = "quorum-lost.json"

// survivorRecord is the file's content.
type survivorRecord struct {
	Survivor   string    `json:"survivor"`
	Revision   int64     `json:"revision"`
	Voters     []string  `json:"voters"`
	ObservedAt time.Time `json:"observed_at"`
}

// recordQuorumAssessment keeps the file in step with the assessment st
// (nil: nothing known, the file is left as it is).
func (n *Node) recordQuorumAssessment(st *status.Etcd) {
	if st == nil || len(st.Members) == 0 {
		return
	}
	path := filepath.Join(n.cfg.DataDir, survivorFile)
	if !st.MajorityGone {
		if err := os.Remove(path); err == nil {
			n.log.Info("etcd quorum is back: the quorum-loss assessment is removed", zap.String("file", path))
		}
		n.lastSurvivor = survivorRecord{}
		return
	}
	if st.NewestSurvivor == nil {
		return
	}
	var voters []string
	for _, m := range st.Members {
		if !m.Learner && m.Node != "" {
			voters = append(voters, m.Node)
		}
	}
	rec := survivorRecord{Survivor: st.NewestSurvivor.Name, Revision: st.NewestSurvivor.Revision, Voters: voters, ObservedAt: n.clk.Now().UTC()}
	if last := n.lastSurvivor; last.Survivor == rec.Survivor && last.Revision == rec.Revision {
		return
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err == nil {
		err = fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600)
	}
	if err != nil {
		n.log.Warn("cannot keep the quorum-loss assessment for recover", zap.Error(err))
		return
	}
	n.lastSurvivor = rec
	n.log.Warn("etcd quorum is lost: the newest survivor is recorded for recover",
		zap.String("survivor", rec.Survivor), zap.Int64("revision", rec.Revision), zap.String("file", path))
}

// checkSurvivor is recover's refusal when self is not the newest survivor
// this host's daemon last recorded (or nothing is recorded), unless force.
func checkSurvivor(dataDir, self string, force bool, say func(string, ...any)) error {
	path := filepath.Join(dataDir, survivorFile)
	b, err := os.ReadFile(path)
	var rec survivorRecord
	if err == nil {
		if err = json.Unmarshal(b, &rec); err == nil && rec.Survivor == "" {
			err = errors.New("no survivor named")
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		if force {
			say("no quorum-loss assessment at %s: recovering from %s as --force-survivor says", path, self)
			return nil
		}
		return usagef("no quorum-loss assessment at %s: this host's rke2-hanode never saw the etcd quorum lost, so it cannot tell that %s holds the newest data; "+
			"check status cluster.etcd.newest_survivor on the hosts still up, and add --force-survivor to recover from %s anyway", path, self, self)
	case err != nil:
		if force {
			say("unreadable quorum-loss assessment %s (%v): recovering from %s as --force-survivor says", path, err, self)
			return nil
		}
		return usagef("the quorum-loss assessment %s is unreadable (%v): check status cluster.etcd.newest_survivor, and add --force-survivor to recover from %s anyway", path, err, self)
	case rec.Survivor != self:
		if force {
			say("the last assessment (%s) names %s at revision %d as the newest survivor: recovering from %s as --force-survivor says (its newer writes are lost)",
				rec.ObservedAt.Format(time.RFC3339), rec.Survivor, rec.Revision, self)
			return nil
		}
		return usagef("the last assessment (%s, %s) names %s at etcd revision %d as the survivor with the newest data, not %s: "+
			"recover on %s (rke2-hanode recover --from %s --confirm), or add --force-survivor to recover from %s and lose what only %s holds",
			rec.ObservedAt.Format(time.RFC3339), path, rec.Survivor, rec.Revision, self, rec.Survivor, rec.Survivor, self, rec.Survivor)
	}
	say("the last assessment (%s) names %s, at etcd revision %d, the newest survivor", rec.ObservedAt.Format(time.RFC3339), self, rec.Revision)
	return nil
}

// forgetSurvivor removes the assessment once the recovery is done.
func forgetSurvivor(dataDir string) {
	_ = os.Remove(filepath.Join(dataDir, survivorFile))
}
