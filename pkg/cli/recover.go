package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/node"
)

func newRecoverCmd() *cobra.Command {
	var from string
	var confirm, force bool
	cmd := &cobra.Command{
		Use:   "recover --from NODE --confirm [--force-survivor] [--config FILE]",
		Short: "After a majority of the servers is gone for good: make NODE (this host) the cluster's only server again",
		Long: "Quorum-loss recovery, never automatic. Run it on the surviving server NODE with its rke2-hanode stopped\n" +
			"(systemctl stop rke2-hanode): it refuses while a quorum of the raft voters still answers, or when the newest\n" +
			"survivor its daemon last recorded (status cluster.etcd.newest_survivor) is another server, or none, without\n" +
			"--force-survivor; it stops rke2-server,\n" +
			"runs RKE2's cluster-reset (rke2 server --cluster-reset) and recovers raft to NODE alone with a new recovery\n" +
			"epoch. Then start rke2-hanode again; the other servers, started with their old disks, see the new epoch,\n" +
			"move server/db aside themselves and rejoin one at a time.",
		Args: cobra.NoArgs,
	}
	path := configFlags(cmd)
	cmd.Flags().StringVar(&from, "from", "", "the surviving server: this host's node-name")
	cmd.Flags().BoolVar(&confirm, "confirm", false, "do it (without it recover only says what it would do)")
	cmd.Flags().BoolVar(&force, "force-survivor", false, "recover from NODE although the last assessment its daemon recorded names another survivor with newer data, or none")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := loadConfig(cmd, *path)
		if err != nil {
			return err
		}
		err = node.Recover(cmd.Context(), c, node.RecoverOptions{From: from, Confirm: confirm, ForceSurvivor: force, Out: cmd.OutOrStdout()})
		switch {
		case errors.Is(err, node.ErrRecoverUsage):
			return usageErr(err)
		case err != nil:
			return runtimeErr(err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "recovered")
		return nil
	}
	return cmd
}
