package membership

import "fmt"

// ReinstallAllowed decides a reinstalled host's request to clear its old
// etcd member and node password. The host has the name of a voter, no
// datastore and a new host ID. It is allowed only when the old self is
// dead: the voter's etcd does not answer, and the only host gossiping under
// that name is the new one (memberlist lets a second host take a name only
// once the first is dead or gone). The clearing is then an ordinary
// removal (quorum-checked, one at a time) after which the host joins in its
// turn through the slot.
func ReinstallAllowed(s Server, c Cluster, members []Member) (bool, string) {
	old := c.IDs[s.Name]
	switch {
	case s.HasDatastore:
		return false, fmt.Sprintf("%s still has an RKE2 datastore: it is not a fresh install; run `rke2-hanode rejoin --wipe` to clear it", s.Name)
	case old != "" && s.ID == old:
		return false, fmt.Sprintf("%s is the same host that joined (same host ID): nothing to clear", s.Name)
	}
	for _, m := range members {
		if m.Name == s.Name && m.Answers {
			return false, fmt.Sprintf("the etcd member %s still answers: its old self is alive, so it is not cleared; stop the old host first", s.Name)
		}
	}
	return true, ""
}

func reinstallWords(s Server, c Cluster) string {
	if s.HasDatastore {
		return fmt.Sprintf("%s runs with another host ID than the member that joined and keeps a datastore: run `rke2-hanode rejoin --wipe`", s.Name)
	}
	return fmt.Sprintf("%s is a reinstalled host with the name of a member: it asks to clear its old member and node password, then joins in its turn", s.Name)
}
