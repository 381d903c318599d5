package statusview

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

// PrintStatus draws the cluster line and the member table of one daemon's
// status, as `rke2-hanode status` shows it.
func PrintStatus(w io.Writer, st status.Status, now time.Time) {
	c := st.Cluster
	holder := ""
	if c.VIPHolder != "" {
		holder = ", held by " + Clean(c.VIPHolder)
	}
	fmt.Fprintf(w, "cluster %s: bootstrap %s, cluster ready %s, join slot %s, VIP %s (%s%s)\n",
		Dash(c.Name), Dash(c.BootstrapNode), YesNo(c.ClusterReady), Dash(c.JoinSlot), Dash(c.VIP),
		map[bool]string{true: "reachable", false: "not reachable"}[c.VIPReachable], holder)
	if c.Raft.State != "" {
		fmt.Fprintf(w, "raft: this server is %s, the leader is %s, %d servers joined after the bootstrap\n", Clean(c.Raft.State), Dash(c.Raft.Leader), c.JoinedServers)
	} else if c.BootstrapNode != "" || c.JoinedServers > 0 {
		fmt.Fprintf(w, "servers: %d joined after the bootstrap, as the servers advertise\n", c.JoinedServers)
	}
	printEtcd(w, c.Etcd)
	if len(c.StandbyServers) > 0 {
		names := make([]string, len(c.StandbyServers))
		for i, s := range c.StandbyServers {
			names[i] = Clean(s)
		}
		fmt.Fprintf(w, "standby: %s (waiting to be admitted so that the etcd voters stay odd)\n", strings.Join(names, ", "))
	}
	// The versions come from the upgrade object (servers know every
	// host's); a daemon without one shows none.
	versions := map[string]status.UpgradeHost{}
	if u := st.Upgrade; u != nil {
		for _, h := range u.Hosts {
			versions[h.Name] = h
		}
		if u.Phase != "" && u.Phase != "idle" {
			line := "upgrade: " + Clean(u.Phase)
			if u.Target != "" {
				line += " to " + Clean(u.Target)
			}
			if u.Blocked != "" {
				line += ": " + Clean(u.Blocked)
			}
			fmt.Fprintln(w, line)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tPHASE\tSINCE\tSTATE\tRUNNING\tWANTED\tADDRESS\t")
	unverified := false
	for _, m := range st.Members {
		name := Clean(m.Name)
		if m.Name == c.VIPHolder && m.Name != "" {
			name += " (vip)"
		}
		if m.Name == c.BootstrapNode && m.Name != "" {
			name += " *"
		}
		if m.UnverifiedServer {
			name += " !"
			unverified = true
		}
		since := Ago(now, m.Since, time.Second)
		if since != "-" {
			since += " ago"
		}
		v := versions[m.Name]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, Dash(m.Role), Dash(m.Phase), since, Dash(m.State), Dash(v.Running), Dash(v.Wanted), Dash(m.Address))
	}
	tw.Flush()
	fmt.Fprintln(w, "(vip) holds the VIP, * is the bootstrap node")
	if unverified {
		fmt.Fprintln(w, "! says it is a server without a valid server claim: counted as an agent (a host holding only the agent token, or tokens that do not belong together)")
	}
	if st.Node.Standby != "" {
		fmt.Fprintf(w, "this node (%s) is in standby: %s\n", Clean(st.Node.Name), Clean(st.Node.Standby))
	}
	if st.Node.Detail != "" && st.Node.Standby == "" {
		fmt.Fprintf(w, "this node (%s) is %s: %s\n", Clean(st.Node.Name), Dash(st.Node.Phase), Clean(st.Node.Detail))
	}
	if r := c.VIPReleased; r != nil {
		fmt.Fprintf(w, "this node (%s) released the VIP %s ago (rke2-killall.sh): %s", Clean(st.Node.Name), Ago(now, r.At, time.Second), Clean(r.Reason))
		if r.Error != "" {
			fmt.Fprintf(w, "; the script failed: %s", Clean(r.Error))
		}
		fmt.Fprintln(w)
	}
	if st.Node.Error != "" {
		fmt.Fprintf(w, "this node (%s) last error: %s\n", Clean(st.Node.Name), Clean(st.Node.Error))
	}
}

// printEtcd is the etcd line: voters, learners, how many answer, the
// quorum margin, and a warning when quorum is at risk or lost.
func printEtcd(w io.Writer, e *status.Etcd) {
	if e == nil {
		return
	}
	if e.Voters > 0 {
		learners := 0
		for _, m := range e.Members {
			if m.Learner {
				learners++
			}
		}
		fmt.Fprintf(w, "etcd: %d voters, %d learners, %d answer, quorum margin %d\n", e.Voters, learners, e.Healthy, e.QuorumMargin)
	}
	switch {
	case e.Voters > 0 && e.MajorityGone:
		survivor := "no voter reports"
		if s := e.NewestSurvivor; s != nil {
			survivor = fmt.Sprintf("the newest survivor is %s at revision %d (`rke2-hanode recover --from %s --confirm`)", Clean(s.Name), s.Revision, Clean(s.Name))
		}
		fmt.Fprintf(w, "WARNING: etcd quorum is lost: a majority of the voters is gone; bring servers back, or recover: %s\n", survivor)
	case e.Voters > 0 && e.QuorumAtRisk:
		fmt.Fprintf(w, "WARNING: etcd quorum is at risk: one more server failure loses it\n")
	}
	if e.Error != "" {
		fmt.Fprintf(w, "etcd on this server does not answer: %s\n", Clean(e.Error))
	}
}

// PhaseKey is what changes when any member changes phase or state: the
// key of a Screen that prints only changes.
func PhaseKey(st status.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%v|%s|", st.Cluster.BootstrapNode, st.Cluster.JoinSlot, st.Cluster.ClusterReady, st.Node.Error)
	if e := st.Cluster.Etcd; e != nil {
		fmt.Fprintf(&b, "etcd %d/%d %d %v|", e.Healthy, e.Voters, e.QuorumMargin, e.MajorityGone)
	}
	for _, m := range st.Members {
		fmt.Fprintf(&b, "%s=%s/%s,", m.Name, m.Phase, m.State)
	}
	return b.String()
}
