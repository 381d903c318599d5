package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The resume decision table. Each row names sets of facts ("a|b", or "*"
// for any) and the plan for them; the first row that matches a combination
// decides it. TestPlanResume enumerates every combination of the facts and
// fails on one that no row covers, so a new fact or value needs a row.
//
//	path:      bootstrap | joiner | agent
//	progress:  none | bootstrap (started as the bootstrap node)
//	           | this (started for this cluster's CA) | other (for another CA)
//	active:    yes | no (RKE2's service)
//	datastore: none | this (beside this cluster's CA) | other | noca (no CA to read)
//	raft:      nothing | started | ready (cluster ready, this CA) | joined (and this host joined)
//
// plan: adopt=<progress|raft|probe|none> (the CA adopted with), vip (check
// the VIP is free), slot (acquire a slot and have the join recorded),
// refuse:<words in the error>, or "-" for a plan that does nothing.
var resumeTable = []struct {
	path, progress, active, datastore, raft string
	plan                                    string
}{
	// A running RKE2 is adopted whatever the rest says: never restarted or reconfigured.
	{"*", "this|other", "yes", "*", "*", "adopt=progress"},
	{"*", "none|bootstrap", "yes", "*", "ready|joined", "adopt=raft"},
	{"agent", "none|bootstrap", "yes", "*", "nothing|started", "adopt=none"},
	{"bootstrap|joiner", "none|bootstrap", "yes", "*", "nothing|started", "adopt=probe"},

	// The bootstrap node: once raft committed its start, its datastore is the cluster's.
	// (This host saves "started as the bootstrap" only after raft committed it.)
	{"bootstrap", "*", "no", "*", "started|ready|joined", "-"},
	{"bootstrap", "bootstrap", "no", "*", "nothing", "-"},
	{"bootstrap", "none|this|other", "no", "none", "nothing", "vip"},
	{"bootstrap", "none|this|other", "no", "this|other|noca", "nothing", "vip refuse:that this cluster never started"},

	// A joiner: a recorded join needs no slot and explains any datastore.
	{"joiner", "*", "no", "*", "joined", "-"},
	{"joiner", "*", "no", "none", "*", "slot"},
	{"joiner", "*", "no", "this", "ready", "slot"},
	{"joiner", "this", "no", "*", "ready", "slot"}, // it started RKE2 for this cluster itself
	{"joiner", "*", "no", "this|other", "*", "slot refuse:of another cluster"},
	{"joiner", "*", "no", "noca", "*", "slot refuse:of an unknown cluster"},

	// An agent keeps no datastore.
	{"agent", "*", "no", "*", "*", "-"},
}

func matches(set, v string) bool {
	return set == "*" || slices.Contains(strings.Split(set, "|"), v)
}

func factsOf(path_, prog, active, disk, raft string) resumeFacts {
	f := resumeFacts{Path: path(path_), ServiceActive: active == "yes"}
	switch prog {
	case "bootstrap":
		f.Progress = progress{Role: "server", StartedRKE2: true, Bootstrap: true}
	case "this":
		f.Progress = progress{Role: "server", StartedRKE2: true, CAHash: testCA}
	case "other":
		f.Progress = progress{Role: "server", StartedRKE2: true, CAHash: "old"}
	}
	f.Datastore = datastoreOnDisk{Path: "/rke2/server/db/etcd", CAPath: "/rke2/server/tls/server-ca.crt"}
	switch disk {
	case "this":
		f.Datastore.Present, f.Datastore.CAHash = true, testCA
	case "other":
		f.Datastore.Present, f.Datastore.CAHash = true, "old"
	case "noca":
		f.Datastore.Present = true
	}
	switch raft {
	case "started":
		f.Raft = raftFacts{Started: true}
	case "ready":
		f.Raft = raftFacts{Started: true, ClusterCA: testCA}
	case "joined":
		f.Raft = raftFacts{Started: true, ClusterCA: testCA, Joined: true}
	}
	return f
}

// describe renders a plan in the table's words.
func describe(p resumePlan, f resumeFacts) string {
	var words []string
	if p.Adopt {
		switch {
		case p.ProbeLocalCA && p.AdoptCA == "":
			words = append(words, "adopt=probe")
		case p.AdoptCA == "":
			words = append(words, "adopt=none")
		case p.AdoptCA == f.Progress.CAHash:
			words = append(words, "adopt=progress")
		case p.AdoptCA == f.Raft.ClusterCA:
			words = append(words, "adopt=raft")
		default:
			words = append(words, "adopt="+p.AdoptCA)
		}
	}
	if p.CheckVIPFree {
		words = append(words, "vip")
	}
	if p.AcquireSlot != p.MarkJoined {
		words = append(words, fmt.Sprintf("slot=%v/joined=%v", p.AcquireSlot, p.MarkJoined))
	} else if p.AcquireSlot {
		words = append(words, "slot")
	}
	if p.Refuse != nil {
		words = append(words, "refuse:"+p.Refuse.Error())
	}
	if len(words) == 0 {
		return "-"
	}
	return strings.Join(words, " ")
}

// planMatches reports whether the described plan is the row's: a refusal
// matches when its error contains the row's words.
func planMatches(got, want string) bool {
	g, gr, _ := strings.Cut(got, "refuse:")
	w, wr, _ := strings.Cut(want, "refuse:")
	return strings.TrimSpace(g) == strings.TrimSpace(w) && (wr == "") == (gr == "") && strings.Contains(gr, wr)
}

func TestPlanResume(t *testing.T) {
	combos, used := 0, make([]bool, len(resumeTable))
	for _, p := range []string{"bootstrap", "joiner", "agent"} {
		for _, prog := range []string{"none", "bootstrap", "this", "other"} {
			for _, active := range []string{"yes", "no"} {
				for _, disk := range []string{"none", "this", "other", "noca"} {
					for _, raft := range []string{"nothing", "started", "ready", "joined"} {
						combos++
						row := slices.IndexFunc(resumeTable, func(r struct{ path, progress, active, datastore, raft, plan string }) bool {
							return matches(r.path, p) && matches(r.progress, prog) && matches(r.active, active) && matches(r.datastore, disk) && matches(r.raft, raft)
						})
						name := fmt.Sprintf("path=%s progress=%s active=%s datastore=%s raft=%s", p, prog, active, disk, raft)
						if row < 0 {
							t.Errorf("%s: no row of the table decides it", name)
							continue
						}
						used[row] = true
						f := factsOf(p, prog, active, disk, raft)
						if got := describe(planResume(f), f); !planMatches(got, resumeTable[row].plan) {
							t.Errorf("%s: plan %q, row %d says %q", name, got, row, resumeTable[row].plan)
						}
					}
				}
			}
		}
	}
	for i, u := range used {
		if !u {
			t.Errorf("row %d %+v decides nothing: an earlier row covers it", i, resumeTable[i])
		}
	}
	if combos != 3*4*2*4*4 {
		t.Fatalf("enumerated %d combinations", combos)
	}
}

// TestPlanResumeUnreadableCA: a CA beside the datastore that cannot be
// hashed is named with the reason.
func TestPlanResumeUnreadableCA(t *testing.T) {
	f := factsOf("joiner", "none", "no", "noca", "ready")
	f.Datastore.CAErr = fmt.Errorf("no PEM certificate")
	err := planResume(f).Refuse
	if err == nil || !strings.Contains(err.Error(), "whose CA /rke2/server/tls/server-ca.crt cannot be read (no PEM certificate)") {
		t.Fatalf("refusal = %v", err)
	}
}

// TestPlanResumeRefusalNamesTheDatastore: a refusal says where the
// datastore is and what to do.
func TestPlanResumeRefusalNamesTheDatastore(t *testing.T) {
	f := factsOf("joiner", "none", "no", "other", "ready")
	err := planResume(f).Refuse
	if err == nil {
		t.Fatal("no refusal")
	}
	for _, w := range []string{"/rke2/server/db/etcd", "CA hash old", "this cluster's is " + testCA, "rke2-uninstall.sh"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
}
