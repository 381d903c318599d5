package node

import (
	"fmt"
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
