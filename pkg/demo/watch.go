package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

// statusTimeout bounds one host's /status request.
const statusTimeout = 2 * time.Second

// Status asks the host's daemon for its /status.
func (n *Node) Status(ctx context.Context) (status.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	_, st, err := statusview.Fetch(ctx, n.HTTPAddress)
	if err != nil {
		return st, fmt.Errorf("%s: %w", n.Name, err)
	}
	return st, nil
}

// Row is one host's line in the live table.
type Row struct {
	Node    *Node
	Status  status.Status
	Err     error
	ReadyAt time.Time
}

// Snapshot asks every running host for its status, in parallel.
func (c *Cluster) Snapshot(ctx context.Context) []Row {
	rows := make([]Row, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		rows[i].Node = n
		if !n.Running() {
			rows[i].Err = fmt.Errorf("not running")
			continue
		}
		wg.Add(1)
		go func(i int, n *Node) {
			defer wg.Done()
			rows[i].Status, rows[i].Err = n.Status(ctx)
		}(i, n)
	}
	wg.Wait()
	return rows
}

// AllReady reports whether every row's host is in phase ready.
func AllReady(rows []Row) bool {
	for _, r := range rows {
		if r.Err != nil || r.Status.Node.Phase != status.PhaseReady {
			return false
		}
	}
	return len(rows) > 0
}

// Draw writes the live table: one line per host and the cluster line as
// the first ready-or-most-advanced server sees it.
func Draw(w io.Writer, rows []Row, start, now time.Time) {
	var cl status.Cluster
	for _, r := range rows {
		if r.Err == nil && r.Node.Role == "server" && (cl.Name == "" || r.Status.Cluster.ClusterReady) {
			cl = r.Status.Cluster
		}
	}
	fmt.Fprintf(w, "t+%-6s bootstrap %s · cluster ready %s · join slot %s · VIP %s %s\n",
		now.Sub(start).Truncate(100*time.Millisecond), statusview.Dash(cl.BootstrapNode), statusview.YesNo(cl.ClusterReady),
		statusview.Dash(cl.JoinSlot), statusview.Dash(cl.VIP), map[bool]string{true: "answers", false: "silent"}[cl.VIPReachable])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLE\tADDRESS\tPHASE\tIN PHASE\tREADY AFTER\tNOTE")
	for _, r := range rows {
		phase, since, note := "-", "-", ""
		if r.Err != nil {
			note = statusview.Shorten(r.Err.Error(), 50)
			if r.Node.Running() && time.Since(r.Node.Started()) < 10*time.Second {
				note = "daemon starting"
			}
		} else {
			phase = statusview.Dash(r.Status.Node.Phase)
			since = statusview.Ago(now, r.Status.Node.Since, 100*time.Millisecond)
			if r.Status.Node.Bootstrap {
				note = "bootstrap"
			}
			if r.Status.Cluster.VIPHolder == r.Node.Name {
				note = strings.TrimSpace(note + " holds VIP")
			}
			if r.Status.Node.Error != "" {
				note = statusview.Shorten(r.Status.Node.Error, 60)
			}
		}
		ready := "-"
		if !r.ReadyAt.IsZero() {
			ready = r.ReadyAt.Sub(start).Truncate(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node.Name, r.Node.Role, r.Node.IP, phase, since, ready, statusview.Clean(note))
	}
	tw.Flush()
}

// Watch polls the cluster every interval, calls draw with the rows (ready
// times filled in) and returns once every host is ready or ctx ends.
func (c *Cluster) Watch(ctx context.Context, start time.Time, interval time.Duration, draw func([]Row)) ([]Row, error) {
	readyAt := map[string]time.Time{}
	var rows []Row
	err := WaitFor(ctx, interval, func() bool {
		rows = c.Snapshot(ctx)
		now := time.Now()
		for i := range rows {
			name := rows[i].Node.Name
			if rows[i].Err == nil && rows[i].Status.Node.Phase == status.PhaseReady {
				if _, ok := readyAt[name]; !ok {
					readyAt[name] = now
				}
			}
			rows[i].ReadyAt = readyAt[name]
		}
		if draw != nil {
			draw(rows)
		}
		return AllReady(rows)
	})
	return rows, err
}

// TimesToReady lists each host's time from start to ready, slowest last.
func TimesToReady(rows []Row, start time.Time) []string {
	sorted := append([]Row(nil), rows...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].ReadyAt.Before(sorted[j].ReadyAt) })
	var out []string
	for _, r := range sorted {
		out = append(out, fmt.Sprintf("%-10s %-6s ready after %s", r.Node.Name, r.Node.Role, r.ReadyAt.Sub(start).Truncate(10*time.Millisecond)))
	}
	return out
}
