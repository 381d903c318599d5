package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
)

func newPreflightCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "preflight [--config FILE]",
		Short: "Check the config and this host; exit 1 on a failed host check, 2 on a bad config",
		Args:  cobra.NoArgs,
	}
	path := configFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		out := cmd.OutOrStdout()
		c, err := loadConfig(cmd, *path)
		if err != nil {
			if ce, ok := err.(*config.Error); ok {
				for _, p := range ce.Problems {
					fmt.Fprintf(out, "FAIL  config      %s\n", p)
				}
			}
			return usageErr(fmt.Errorf("configuration is invalid"))
		}
		fmt.Fprintf(out, "ok    config      %s: node %s, role %s\n", describeFile(cmd, *path), c.NodeName, c.Role)
		return nil
	}
	return cmd
}

func describeFile(cmd *cobra.Command, path string) string {
	if cmd.Flags().Changed("config") {
		return path
	}
	return path + " (default location; may be absent)"
}
