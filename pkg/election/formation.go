package election

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"
)

// lockKey is where a node records, in raft's stable store, the bootstrap set
// it has locked itself to. It survives restarts with the rest of raft's
// state, and raft never reads it.
var lockKey = []byte("rke2-hanode/formation-lock")

// lockedSuffix marks an advertised set hash as locked.
const lockedSuffix = "!"

// member is one server of a bootstrap set.
type member struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// formationLock is the persisted promise: this node takes part in forming
// the cluster from exactly Members, and no other set, ever.
type formationLock struct {
	Hash    string   `json:"hash"`
	Members []member `json:"members"`
}

// setHash names a candidate bootstrap set. Cluster name, expect-servers,
// names and raft addresses all go in, so equal hashes mean equal raft
// configurations.
func setHash(cluster string, expect int, members []member) string {
	h := sha256.New()
	fmt.Fprintf(h, "rke2-hanode bootstrap-set v1\x00%s\x00%d\x00", cluster, expect)
	for _, m := range members {
		fmt.Fprintf(h, "%s=%s\x00", m.Name, m.Addr)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// proposal is what formation decided from one view of the membership.
type proposal struct {
	advertise string         // Local.BootstrapSet to publish
	lock      *formationLock // non-nil: persist this lock now
	bootstrap []member       // non-nil: BootstrapCluster with exactly these
	wait      string         // why nothing further happens yet (for logs)
}

// formationStep is the pure decision of a server that has no raft state.
// locked is its persisted lock, or nil. See doc.go for why it is safe.
func formationStep(self, cluster string, expect int, locked *formationLock, servers []Peer) proposal {
	byName := make(map[string]Peer, len(servers))
	for _, p := range servers {
		byName[p.Name] = p
	}
	if locked != nil {
		p := proposal{advertise: locked.Hash + lockedSuffix}
		for _, m := range locked.Members {
			if m.Name == self {
				continue
			}
			peer, ok := byName[m.Name]
			switch {
			case !ok || peer.State != MemberAlive:
				p.wait = "locked; waiting for " + m.Name + " to be alive"
				return p
			case peer.HasRaftState:
				p.wait = "locked; " + m.Name + " already has raft state: waiting to be added"
				return p
			case peer.BootstrapSet != locked.Hash+lockedSuffix:
				p.wait = "locked; waiting for " + m.Name + " to lock the same set"
				return p
			}
		}
		p.bootstrap = slices.Clone(locked.Members)
		return p
	}

	var alive []member
	for _, p := range servers {
		if p.HasRaftState {
			return proposal{wait: p.Name + " has raft state: waiting to be added"}
		}
		if p.State != MemberAlive || p.ClusterName != cluster {
			continue
		}
		if p.ExpectServers != expect {
			return proposal{wait: fmt.Sprintf("%s expects %d servers, this node %d", p.Name, p.ExpectServers, expect)}
		}
		if p.RaftAddr == "" {
			return proposal{wait: p.Name + " advertises no raft address"}
		}
		alive = append(alive, member{Name: p.Name, Addr: p.RaftAddr})
	}
	if len(alive) < expect {
		return proposal{wait: "seen " + strconv.Itoa(len(alive)) + " of " + strconv.Itoa(expect) + " servers"}
	}
	slices.SortFunc(alive, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	// A set that some servers have already locked to is completed if it
	// still can be; otherwise the lowest names. (Which set is proposed only
	// matters for liveness: safety rests on the locks.)
	set := adoptLockedSet(cluster, expect, alive, byName)
	if set == nil {
		set = alive[:expect]
	}
	hash := setHash(cluster, expect, set)
	p := proposal{advertise: hash}
	if !slices.ContainsFunc(set, func(m member) bool { return m.Name == self }) {
		p.wait = "not in the bootstrap set"
		return p
	}
	// Lock only when every alive server, not just the members, proposes
	// this set: a server that sees another set would otherwise be free to
	// lock that one, and two partial locks never complete (safe, not live).
	// A server locked to another set never changes its mind: waiting for it
	// would only block.
	for _, m := range alive {
		if m.Name == self {
			continue
		}
		adv := byName[m.Name].BootstrapSet
		if strings.HasSuffix(adv, lockedSuffix) && adv != hash+lockedSuffix {
			if slices.ContainsFunc(set, func(s member) bool { return s.Name == m.Name }) {
				p.wait = m.Name + " is locked to another set"
				return p
			}
			continue
		}
		if adv != hash && adv != hash+lockedSuffix {
			p.wait = "waiting for " + m.Name + " to propose the same set"
			return p
		}
	}
	p.lock = &formationLock{Hash: hash, Members: slices.Clone(set)}
	p.advertise = hash + lockedSuffix
	return p
}

func loadLock(s raft.StableStore) (*formationLock, error) {
	b, err := s.Get(lockKey)
	if err != nil {
		// Both of raft's stores say "not found" for a missing key.
		if err.Error() == "not found" {
			return nil, nil
		}
		return nil, fmt.Errorf("election: read formation lock: %w", err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return decodeLock(b)
}

func storeLock(s raft.StableStore, l *formationLock) error {
	b, err := encodeLock(l)
	if err != nil {
		return err
	}
	if err := s.Set(lockKey, b); err != nil {
		return fmt.Errorf("election: write formation lock: %w", err)
	}
	return nil
}

func raftConfiguration(members []member) raft.Configuration {
	var c raft.Configuration
	for _, m := range members {
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Addr)})
	}
	return c
}

// maxSetSearch bounds the subsets adoptLockedSet hashes per step.
const maxSetSearch = 20000

// adoptLockedSet returns a set of alive servers whose hash some of them
// advertise as locked, if every member is alive and locked to it or not
// locked at all, so that it can still complete. Among several, the one with
// the most locked members wins, then the lowest hash: every server with the
// same view picks the same set.
func adoptLockedSet(cluster string, expect int, alive []member, byName map[string]Peer) []member {
	lockers := map[string][]member{}
	var free []member
	for _, m := range alive {
		adv := byName[m.Name].BootstrapSet
		if h, ok := strings.CutSuffix(adv, lockedSuffix); ok && h != "" {
			lockers[h] = append(lockers[h], m)
		} else {
			free = append(free, m)
		}
	}
	hashes := make([]string, 0, len(lockers))
	for h := range lockers {
		hashes = append(hashes, h)
	}
	slices.SortFunc(hashes, func(a, b string) int {
		if d := len(lockers[b]) - len(lockers[a]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	budget := maxSetSearch
	for _, h := range hashes {
		need := expect - len(lockers[h])
		if need < 0 || need > len(free) {
			continue
		}
		var found []member
		pick := make([]member, 0, need)
		var walk func(from int) bool
		walk = func(from int) bool {
			if budget--; budget < 0 {
				return true
			}
			if len(pick) == need {
				set := append(slices.Clone(lockers[h]), pick...)
				slices.SortFunc(set, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
				if setHash(cluster, expect, set) == h {
					found = set
					return true
				}
				return false
			}
			for i := from; i <= len(free)-(need-len(pick)); i++ {
				pick = append(pick, free[i])
				if walk(i + 1) {
					return true
				}
				pick = pick[:len(pick)-1]
			}
			return false
		}
		walk(0)
		if found != nil {
			return found
		}
		if budget < 0 {
			return nil
		}
	}
	return nil
}
