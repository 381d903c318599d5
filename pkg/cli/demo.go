package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/demo"
	"github.com/rke2-hanode/rke2-hanode/pkg/statusview"
)

func newDemoCmd() *cobra.Command {
	var opts demo.Options
	var timeout time.Duration
	var hold bool
	cmd := &cobra.Command{
		Use:   "demo [--servers 3] [--agents 2]",
		Short: "Run a simulated cluster on loopback addresses (no root needed)",
		Long: `Starts real rke2-hanode daemons, one per 127.x address, each supervising rke2sim
(the project's stand-in for the rke2 binary) as its RKE2, with the VIP on a loopback
address. Draws the cluster until every host is ready, prints each host's time to ready
and metrics URL, and cleans everything up on exit or Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			var err error
			if opts.Daemon, opts.Sim, err = demo.FindBinaries(); err != nil {
				return runtimeErr(err)
			}
			opts.Env = append(opts.Env, demoSimEnv()...)
			return runDemo(ctx, cmd.OutOrStdout(), opts, timeout, hold)
		},
	}
	cmd.Flags().IntVar(&opts.Servers, "servers", 3, "servers to start (1, 3, 5 or 7)")
	cmd.Flags().IntVar(&opts.Agents, "agents", 2, "agents to start")
	cmd.Flags().StringVar(&opts.Base, "base-address", "127.77.0.11", "address of the first host; the others follow, the VIP is .200")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "give up if the cluster is not ready by then")
	cmd.Flags().BoolVar(&hold, "hold", false, "keep the cluster running after it is ready, until Ctrl-C")
	return cmd
}

// demoSimEnv gives rke2sim visible but short delays, unless the caller set them.
func demoSimEnv() []string {
	var env []string
	for k, v := range map[string]string{"RKE2SIM_START_DELAY": "2s", "RKE2SIM_JOIN_DELAY": "1500ms", "RKE2SIM_AGENT_DELAY": "1s"} {
		if os.Getenv(k) == "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func runDemo(ctx context.Context, out io.Writer, opts demo.Options, timeout time.Duration, hold bool) error {
	c, err := demo.New(opts)
	if err != nil {
		return usageErr(err)
	}
	defer func() {
		fmt.Fprintln(out, "stopping every host and cleaning up…")
		c.Close()
	}()
	fmt.Fprintf(out, "demo cluster: %d servers, %d agents, VIP %s, folders under %s\n", opts.Servers, opts.Agents, c.VIP, c.Opts.Dir)
	start := time.Now()
	if err := c.StartAll(); err != nil {
		return runtimeErr(err)
	}
	tty := isTerminal(out)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	screen := statusview.Screen{Out: out, TTY: tty}
	rows, err := c.Watch(wctx, start, 500*time.Millisecond, func(rows []demo.Row) {
		var b bytes.Buffer
		demo.Draw(&b, rows, start, time.Now())
		// Off a terminal the table is printed only when a phase changed.
		var phases []string
		for _, r := range rows {
			phases = append(phases, r.Status.Node.Phase)
		}
		screen.Draw(b.String(), strings.Join(phases, ","))
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C
		}
		for _, r := range rows {
			if r.Status.Node.Phase != "ready" {
				fmt.Fprintf(out, "\n%s is not ready; last lines of %s:\n%s", r.Node.Name, r.Node.LogPath, tail(r.Node.LogPath, 15))
			}
		}
		return runtimeErr(fmt.Errorf("demo: the cluster was not ready within %s", timeout))
	}
	fmt.Fprintf(out, "\nall %d hosts ready in %s\n", len(rows), time.Since(start).Truncate(10*time.Millisecond))
	for _, l := range demo.TimesToReady(rows, start) {
		fmt.Fprintln(out, "  "+l)
	}
	fmt.Fprintln(out, "metrics and status pages:")
	for _, n := range c.Nodes {
		fmt.Fprintf(out, "  %-10s http://%s/metrics   page: http://%s/   (status: rke2-hanode status --address http://%s)\n", n.Name, n.HTTPAddress, n.HTTPAddress, n.HTTPAddress)
	}
	if hold {
		fmt.Fprintln(out, "holding the cluster; Ctrl-C stops it")
		<-ctx.Done()
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error() + "\n"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
