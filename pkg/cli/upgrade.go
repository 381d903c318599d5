package cli

import (
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

func newUpgradeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upgrade status|pause|resume",
		Short: "Show or steer the rolling RKE2 upgrade",
		Long: "A rolling RKE2 upgrade starts when the hosts' rke2-version (or rke2-channel) changes: servers one at a time,\n" +
			"then agents in batches of upgrade-agents-max-unavailable. `upgrade status` shows the plan and progress.",
	}
	var address string
	var asJSON bool
	st := &cobra.Command{
		Use:   "status [--address URL] [--json]",
		Short: "Show the roll's plan and progress as the local daemon sees it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			_, s, err := statusview.Fetch(ctx, address)
			if err != nil {
				return runtimeErr(err)
			}
			if s.Upgrade == nil {
				return runtimeErr(fmt.Errorf("upgrade status: the daemon at %s reports no upgrade: it predates rolling upgrades, or is an agent that has not heard from a server", address))
			}
			if asJSON {
				b, err := json.MarshalIndent(s.Upgrade, "", "  ")
				if err != nil {
					return runtimeErr(err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return err
			}
			printUpgrade(cmd.OutOrStdout(), *s.Upgrade, time.Now())
			return nil
		},
	}
	st.Flags().StringVar(&address, "address", "http://127.0.0.1:9349", "the daemon's HTTP address")
	st.Flags().BoolVar(&asJSON, "json", false, "print the upgrade object of /status as JSON")
	pause := &cobra.Command{
		Use:   "pause [--config FILE]",
		Short: "Let no further host begin its upgrade (hosts upgrading now finish); run on a server",
		Args:  cobra.NoArgs,
	}
	pausePath, pauseTimeout := adminFlags(pause, 3*time.Minute)
	pause.RunE = func(cmd *cobra.Command, _ []string) error {
		return callDaemon(cmd, *pausePath, *pauseTimeout, "upgrade-pause", struct{}{})
	}
	resume := &cobra.Command{
		Use:   "resume [--config FILE]",
		Short: "Continue a paused roll, and retry a host whose upgrade failed; run on a server",
		Args:  cobra.NoArgs,
	}
	resumePath, resumeTimeout := adminFlags(resume, 3*time.Minute)
	resume.RunE = func(cmd *cobra.Command, _ []string) error {
		return callDaemon(cmd, *resumePath, *resumeTimeout, "upgrade-resume", struct{}{})
	}
	cmd.AddCommand(st, pause, resume)
	return cmd
}

// printUpgrade draws the roll: one line for the roll, one for what blocks
// it, then a row per host.
func printUpgrade(w io.Writer, u status.Upgrade, now time.Time) {
	fmt.Fprintf(w, "upgrade: %s, target %s", u.Phase, statusview.Dash(u.Target))
	if u.Paused {
		fmt.Fprint(w, ", paused")
	}
	fmt.Fprintf(w, ", agents in batches of %d\n", u.MaxUnavailable)
	if u.Blocked != "" {
		fmt.Fprintf(w, "blocked: %s\n", u.Blocked)
	}
	if len(u.Servers)+len(u.Agents) > 0 {
		fmt.Fprintf(w, "next: %s\n", strings.Join(append(append([]string{}, u.Servers...), u.Agents...), ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tRUNNING\tWANTED\tSTATE\tSINCE\tREASON\t")
	for _, h := range u.Hosts {
		state := statusview.Dash(h.State)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", statusview.Clean(h.Name), statusview.Clean(h.Role), statusview.Dash(h.Running), statusview.Dash(h.Wanted), state, statusview.Ago(now, h.Since, time.Second), statusview.Dash(h.Reason))
	}
	tw.Flush()
}
