package election

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// A model check of formation alone: servers run formationStep on views of
// each other that are arbitrarily stale (every viewer sees every other
// server's advertisements in order, but as late as the schedule likes),
// arrive in any order, die and come back with their locks. The property:
// all servers that ever bootstrap do so with one configuration.

type mcVersion struct {
	adv      string
	hasState bool
	alive    bool
}

type mcNode struct {
	name    string
	arrived bool
	alive   bool
	lock    *formationLock
	state   bool
	hist    []mcVersion
	seen    map[string]int // viewer's index into each target's hist
	boot    []member
}

type stepFunc func(self, cluster string, expect int, locked *formationLock, servers []Peer) proposal

// naiveStep is the rule without locks: bootstrap as soon as every member of
// the set proposes it. The model check must find it unsafe, or it is not
// exploring the interleavings that matter.
func naiveStep(self, cluster string, expect int, _ *formationLock, servers []Peer) proposal {
	p := formationStep(self, cluster, expect, nil, servers)
	if p.lock != nil {
		p.bootstrap = p.lock.Members
		p.advertise = strings.TrimSuffix(p.advertise, lockedSuffix)
		p.lock = nil
	}
	return p
}

func modelRun(rng *rand.Rand, step stepFunc, n, expect, steps int) (configs map[string]bool, trace []string) {
	nodes := make([]*mcNode, n)
	for i := range nodes {
		nodes[i] = &mcNode{name: fmt.Sprintf("n%d", i), seen: map[string]int{}}
	}
	push := func(x *mcNode, adv string) {
		v := mcVersion{adv: adv, hasState: x.state, alive: x.alive}
		if len(x.hist) == 0 || x.hist[len(x.hist)-1] != v {
			x.hist = append(x.hist, v)
		}
	}
	configs = map[string]bool{}
	for range steps {
		x := nodes[rng.IntN(n)]
		switch r := rng.IntN(40); {
		case !x.arrived:
			x.arrived, x.alive = true, true
			push(x, "")
			trace = append(trace, x.name+" arrives")
		case r == 0 && x.alive && !x.state: // dies (keeps its lock on disk)
			x.alive = false
			push(x, x.hist[len(x.hist)-1].adv)
			trace = append(trace, x.name+" dies")
		case r < 20 && !x.alive:
			x.alive = true
			push(x, x.hist[len(x.hist)-1].adv)
			trace = append(trace, x.name+" comes back")
		case r < 24: // gossip: x learns newer versions of some other server
			t := nodes[rng.IntN(n)]
			if t != x && len(t.hist) > 0 {
				lo := x.seen[t.name]
				x.seen[t.name] = lo + rng.IntN(len(t.hist)-lo)
			}
		default: // x runs a formation step on its view
			if !x.alive || x.state {
				continue
			}
			var view []Peer
			for _, t := range nodes {
				if t == x || len(t.hist) == 0 {
					continue
				}
				v := t.hist[x.seen[t.name]]
				state := MemberDead
				if v.alive {
					state = MemberAlive
				}
				view = append(view, Peer{Name: t.name, RaftAddr: t.name, State: state, ExpectServers: expect,
					ClusterName: "c", HasRaftState: v.hasState, BootstrapSet: v.adv})
			}
			view = append(view, Peer{Name: x.name, RaftAddr: x.name, State: MemberAlive, ExpectServers: expect,
				ClusterName: "c", BootstrapSet: x.hist[len(x.hist)-1].adv})
			p := step(x.name, "c", expect, x.lock, view)
			if p.lock != nil {
				x.lock = p.lock
				trace = append(trace, x.name+" locks "+p.lock.Hash+" "+strings.Join(names(p.lock.Members), ","))
			}
			if p.bootstrap != nil {
				x.state, x.boot = true, p.bootstrap
				key := strings.Join(names(p.bootstrap), ",")
				configs[key] = true
				trace = append(trace, x.name+" bootstraps "+key)
			}
			push(x, p.advertise)
		}
	}
	return configs, trace
}

func TestFormationModelCheck(t *testing.T) {
	runs := 5000
	if testing.Short() {
		runs = 500
	}
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	formed := 0
	for i := range runs {
		n := 3 + rng.IntN(3) // 3..5 servers, expect 3: fewer than twice expect
		configs, trace := modelRun(rng, formationStep, n, 3, 200)
		if len(configs) > 1 {
			t.Fatalf("seed=%d run %d: %d configurations bootstrapped: %v\n%s", seed, i, len(configs), configs, strings.Join(trace, "\n"))
		}
		formed += len(configs)
	}
	if formed < runs/4 {
		t.Fatalf("seed=%d: only %d of %d runs formed at all: the model is too hostile to mean anything", seed, formed, runs)
	}
	t.Logf("seed=%d: %d runs, %d formed, never two configurations", seed, runs, formed)
}

func TestFormationModelCheckFindsNaiveSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
	for i := range 200000 {
		configs, _ := modelRun(rng, naiveStep, 3+rng.IntN(3), 3, 200)
		if len(configs) > 1 {
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range configs {
					if !yield(k) {
						return
					}
				}
			})
			t.Logf("run %d: the lock-free rule bootstrapped %v", i, keys)
			return
		}
	}
	t.Fatal("the model never split the lock-free rule: it explores too little")
}
