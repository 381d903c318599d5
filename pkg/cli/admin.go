package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/adminsock"
	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/node"
)

// The operator verbs that change the cluster go to the local daemon's
// admin socket (<data-dir>/admin.sock, root or the daemon's user only),
// found from the same configuration `run` loads.

// adminFlags adds --config (and the config flags, for --data-dir) and
// --timeout to cmd.
func adminFlags(cmd *cobra.Command, wait time.Duration) (*string, *time.Duration) {
	path := configFlags(cmd)
	timeout := cmd.Flags().Duration("timeout", wait, "how long to wait for the outcome")
	return path, timeout
}

// callDaemon runs verb on the daemon the configuration names, printing
// its progress lines, then its outcome.
func callDaemon(cmd *cobra.Command, path string, timeout time.Duration, verb string, req any) error {
	c, err := loadConfig(cmd, path)
	if err != nil {
		return usageErr(err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	out := cmd.OutOrStdout()
	msg, err := adminsock.Call(ctx, adminsock.Path(c.DataDir), verb, req, func(line string) { fmt.Fprintln(out, "…", line) })
	if err != nil {
		return runtimeErr(err)
	}
	fmt.Fprintln(out, msg)
	return nil
}

func newRemoveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove NODE [--config FILE] [--timeout 15m]",
		Short: "Remove a server from the cluster (its etcd member, its Node), if quorum allows it",
		Long: "Run on a server. The local daemon checks the removal against its own view (NODE must be an etcd voter,\n" +
			"no other removal in flight, quorum kept by the servers that answer: a refusal gives the numbers), then asks\n" +
			"the raft leader, which checks again, commits it and deletes NODE's Node through the Kubernetes API (RKE2\n" +
			"removes the etcd member). It waits until the removal is done or failed and says which. A removed server\n" +
			"that is still running stops RKE2; to bring it back, run `rke2-hanode rejoin --wipe` on it.",
		Args: cobra.ExactArgs(1),
	}
	path, timeout := adminFlags(cmd, 15*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return callDaemon(cmd, *path, *timeout, "remove", node.RemoveRequest{Node: args[0]})
	}
	return cmd
}

func newRejoinCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rejoin --wipe [--config FILE]",
		Short: "Wipe this server's old membership so that it joins the cluster again (daemon stopped)",
		Long: "For a server the cluster removed (status says: run `rke2-hanode rejoin --wipe`). Stop the daemon first\n" +
			"(systemctl stop rke2-hanode). It stops RKE2, moves RKE2's datastore (<rke2-data-dir>/server/db) and the\n" +
			"daemon's raft store (<data-dir>/raft) aside with a .wiped-<time> suffix (nothing is deleted; tokens and\n" +
			"certificates stay), and resets the progress file. Started again, the daemon tells the raft leader it was\n" +
			"wiped and joins in its turn through the join slot.",
		Args: cobra.NoArgs,
	}
	path := configFlags(cmd)
	wipe := cmd.Flags().Bool("wipe", false, "required: confirms that RKE2's datastore on this host is to be moved aside")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !*wipe {
			return usageErr(errors.New("rejoin: --wipe is required: it moves this server's RKE2 datastore aside so that it joins again as a new member"))
		}
		c, err := loadConfig(cmd, *path)
		if err != nil {
			return usageErr(err)
		}
		return runRejoin(cmd.Context(), cmd.OutOrStdout(), c)
	}
	return cmd
}

func runRejoin(ctx context.Context, out io.Writer, c *config.Config) error {
	did, err := node.Wipe(ctx, c, zap.NewNop(), time.Now())
	for _, line := range did {
		fmt.Fprintln(out, line)
	}
	if err != nil {
		return runtimeErr(err)
	}
	fmt.Fprintln(out, "wiped: start the daemon (systemctl start rke2-hanode); it joins the cluster again in its turn")
	return nil
}
