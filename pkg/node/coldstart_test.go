package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/gossip"
)

// TestRestartOwnDatastore: only a server that was ready here, for the CA
// beside its datastore, restarts RKE2 on it without waiting for raft; a
// raft view that caught up and disagrees sends it the ordinary way.
func TestRestartOwnDatastore(t *testing.T) {
	readyJoiner := progress{Role: "server", StartedRKE2: true, CAHash: testCA, Ready: true}
	readyBoot := progress{Role: "server", StartedRKE2: true, Bootstrap: true, CAHash: testCA, Ready: true}
	ours := datastoreOnDisk{Present: true, CAHash: testCA}
	cases := []struct {
		name string
		f    resumeFacts
		want bool
	}{
		{"joiner, raft not caught up", resumeFacts{Path: pathJoiner, Progress: readyJoiner, Datastore: ours}, true},
		{"bootstrap, raft not caught up", resumeFacts{Path: pathBootstrap, Progress: readyBoot, Datastore: ours}, true},
		{"joiner, raft says joined", resumeFacts{Path: pathJoiner, Progress: readyJoiner, Datastore: ours, Raft: raftFacts{Started: true, ClusterCA: testCA, Joined: true}}, true},
		{"bootstrap, raft caught up", resumeFacts{Path: pathBootstrap, Progress: readyBoot, Datastore: ours, Raft: raftFacts{Started: true, ClusterCA: testCA}}, true},
		{"joiner, raft caught up without its join (removed?)", resumeFacts{Path: pathJoiner, Progress: readyJoiner, Datastore: ours, Raft: raftFacts{Started: true, ClusterCA: testCA}}, false},
		{"raft's cluster has another CA", resumeFacts{Path: pathJoiner, Progress: readyJoiner, Datastore: ours, Raft: raftFacts{Started: true, ClusterCA: "new", Joined: true}}, false},
		{"never ready (a join cut short)", resumeFacts{Path: pathJoiner, Progress: progress{Role: "server", StartedRKE2: true, CAHash: testCA}, Datastore: ours}, false},
		{"no datastore (wiped)", resumeFacts{Path: pathJoiner, Progress: readyJoiner}, false},
		{"datastore of another CA", resumeFacts{Path: pathJoiner, Progress: readyJoiner, Datastore: datastoreOnDisk{Present: true, CAHash: "old"}}, false},
		{"datastore without a readable CA", resumeFacts{Path: pathJoiner, Progress: readyJoiner, Datastore: datastoreOnDisk{Present: true, CAErr: fmt.Errorf("no PEM")}}, false},
		{"RKE2 running: adopted instead", resumeFacts{Path: pathJoiner, Progress: readyJoiner, Datastore: ours, ServiceActive: true}, false},
		{"agent", resumeFacts{Path: pathAgent, Progress: readyJoiner, Datastore: ours}, false},
		{"fresh host", resumeFacts{Path: pathJoiner}, false},
	}
	for _, c := range cases {
		if got := restartOwnDatastore(c.f); got != c.want {
			t.Errorf("%s: restart on own datastore = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestLeftBehind: a server is left behind only by an alive server's
// verified claim whose published voters leave it out.
func TestLeftBehind(t *testing.T) {
	claim := func(voters ...string) *claims.Claim { return &claims.Claim{Voters: voters} }
	alive, dead := gossip.StateAlive, gossip.StateDead
	cases := []struct {
		name    string
		members []gossip.MemberInfo
		by      string
	}{
		{"counted", []gossip.MemberInfo{{Name: "s1", State: alive, Claim: claim("s1", "s2", "s3")}}, ""},
		{"recovered without it", []gossip.MemberInfo{{Name: "s1", State: alive, Claim: claim("s1", "s4", "s5")}}, "s1"},
		{"a dead member's claim is not evidence", []gossip.MemberInfo{{Name: "s1", State: dead, Claim: claim("s1")}}, ""},
		{"no voters published (no raft leader there)", []gossip.MemberInfo{{Name: "s1", State: alive, Claim: claim()}}, ""},
		{"no verified claim", []gossip.MemberInfo{{Name: "s1", State: alive}}, ""},
		{"its own old claim", []gossip.MemberInfo{{Name: "s2", State: alive, Claim: claim("s1")}}, ""},
	}
	for _, c := range cases {
		if by, _ := leftBehind("s2", c.members); by != c.by {
			t.Errorf("%s: left behind by %q, want %q", c.name, by, c.by)
		}
	}
}

// TestWipeIfRecovered: a server coming back with a datastore from before a
// recovery (an alive server's claim publishes a newer recovery epoch and
// leaves it out of the voters) moves server/db and its raft store aside,
// as rejoin --wipe does, and is marked wiped; a server merely removed, one
// on the current epoch and one still counted keep theirs.
func TestWipeIfRecovered(t *testing.T) {
	claim := func(epoch uint64, voters ...string) *claims.Claim {
		return &claims.Claim{Voters: voters, RecoveryEpoch: epoch}
	}
	cases := []struct {
		name  string
		claim *claims.Claim
		own   uint64
		wipe  bool
	}{
		{"recovered while away", claim(1, "s1"), 0, true},
		{"recovered twice, it holds the first", claim(2, "s1", "s4", "s5"), 1, true},
		{"merely removed", claim(0, "s1", "s3"), 0, false},
		{"its store knows that recovery", claim(1, "s1"), 1, false},
		{"still counted", claim(1, "s1", "s2"), 0, false},
	}
	defer func(f func(string, string) (uint64, bool)) { raftEpochOf = f }(raftEpochOf)
	for _, tc := range cases {
		w := newWorld("server", false)
		w.self = "s2"
		w.members = []gossip.MemberInfo{{Name: "s1", State: gossip.StateAlive, Claim: tc.claim}}
		n := newTestNode(t, w, "server", t.TempDir())
		n.gossipCfg.Signer = &claims.Signer{}
		n.cfg.RKE2DataDir, n.cfg.ServiceManager = t.TempDir(), "exec"
		db, raftDir := filepath.Join(n.cfg.RKE2DataDir, "server", "db"), filepath.Join(n.cfg.DataDir, "raft")
		etcdDir := filepath.Join(db, "etcd")
		for _, d := range []string{etcdDir, raftDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		raftEpochOf = func(string, string) (uint64, bool) { return tc.own, true }
		if err := n.wipeIfRecovered(context.Background()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, dbErr := os.Stat(db)
		_, raftErr := os.Stat(raftDir)
		aside, _ := filepath.Glob(db + ".wiped-*")
		switch {
		case tc.wipe && (dbErr == nil || raftErr == nil || len(aside) != 1 || !n.prog.Wiped):
			t.Errorf("%s: not wiped: server/db %v, raft %v, moved aside %v, progress wiped %v", tc.name, dbErr, raftErr, aside, n.prog.Wiped)
		case !tc.wipe && (dbErr != nil || raftErr != nil || n.prog.Wiped):
			t.Errorf("%s: wiped: server/db %v, raft %v, progress wiped %v", tc.name, dbErr, raftErr, n.prog.Wiped)
		}
	}
}
