package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

// statusTimeout bounds one /status request.
const statusTimeout = 5 * time.Second

func newStatusCmd() *cobra.Command {
	var address string
	var asJSON, watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status [--address URL] [--json] [--watch [--interval D]]",
		Short: "Show the cluster as the local daemon sees it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if watch {
				if asJSON {
					return usageErr(fmt.Errorf("status: --watch draws the table; it cannot be combined with --json"))
				}
				if interval <= 0 {
					return usageErr(fmt.Errorf("status: --interval %s: must be above 0, e.g. 2s", interval))
				}
				watchStatus(cmd.Context(), out, address, interval, isTerminal(out))
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), statusTimeout)
			defer cancel()
			raw, st, err := statusview.Fetch(ctx, address)
			if err != nil {
				return runtimeErr(err)
			}
			if asJSON {
				_, err := out.Write(raw)
				return err
			}
			statusview.PrintStatus(out, st, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "http://127.0.0.1:9349", "the daemon's HTTP address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the /status JSON")
	cmd.Flags().BoolVar(&watch, "watch", false, "redraw the table every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch asks the daemon")
	return cmd
}

// watchStatus redraws the status table until ctx ends, as the demo draws
// its cluster: in place on a terminal, only the changes elsewhere. A daemon
// that does not answer is shown as such, and watched on.
func watchStatus(ctx context.Context, out io.Writer, address string, every time.Duration, tty bool) {
	screen := statusview.Screen{Out: out, TTY: tty}
	for {
		rctx, cancel := context.WithTimeout(ctx, statusTimeout)
		_, st, err := statusview.Fetch(rctx, address)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var b bytes.Buffer
		now := time.Now()
		fmt.Fprintf(&b, "%s, every %s (Ctrl-C to stop)\n", now.Format("15:04:05"), every)
		key := "error: "
		if err != nil {
			fmt.Fprintln(&b, statusview.Clean(err.Error()))
			key += err.Error()
		} else {
			statusview.PrintStatus(&b, st, now)
			key = statusview.PhaseKey(st)
		}
		screen.Draw(b.String(), key)
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
