package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

func newStatusCmd() *cobra.Command {
	var address string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--address URL] [--json]",
		Short: "Show the cluster as the local daemon sees it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			raw, st, err := fetchStatus(ctx, address)
			if err != nil {
				return runtimeErr(err)
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			printStatus(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "http://127.0.0.1:9349", "the daemon's HTTP address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the /status JSON")
	return cmd
}

func fetchStatus(ctx context.Context, address string) ([]byte, status.Status, error) {
	var st status.Status
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	url := strings.TrimRight(address, "/") + "/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, st, fmt.Errorf("status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, st, fmt.Errorf("status: is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, st, fmt.Errorf("status: read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, st, fmt.Errorf("status: %s answered %s", url, resp.Status)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, st, fmt.Errorf("status: %s: %w", url, err)
	}
	return raw, st, nil
}

// printStatus draws the member table and the cluster line.
func printStatus(w io.Writer, st status.Status, now time.Time) {
	c := st.Cluster
	fmt.Fprintf(w, "cluster %s: bootstrap %s, cluster ready %s, join slot %s, VIP %s (%s%s)\n",
		orDash(c.Name), orDash(c.BootstrapNode), yesNo(c.ClusterReady), orDash(c.JoinSlot), orDash(c.VIP),
		map[bool]string{true: "reachable", false: "not reachable"}[c.VIPReachable], holderText(c.VIPHolder))
	if c.Raft.State != "" {
		fmt.Fprintf(w, "raft: this server is %s, the leader is %s, %d servers joined after the bootstrap\n", c.Raft.State, orDash(c.Raft.Leader), c.JoinedServers)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tPHASE\tSINCE\tSTATE\tADDRESS\t")
	for _, m := range st.Members {
		name := m.Name
		if m.Name == c.VIPHolder && m.Name != "" {
			name += " (vip)"
		}
		if m.Name == c.BootstrapNode && m.Name != "" {
			name += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", name, m.Role, m.Phase, ago(now, m.Since), m.State, m.Address)
	}
	tw.Flush()
	fmt.Fprintln(w, "(vip) holds the VIP, * is the bootstrap node")
	if st.Node.Error != "" {
		fmt.Fprintf(w, "this node (%s) last error: %s\n", st.Node.Name, st.Node.Error)
	}
}

func holderText(h string) string {
	if h == "" {
		return ""
	}
	return ", held by " + h
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Truncate(time.Second).String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
