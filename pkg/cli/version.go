package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/version"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "rke2-hanode %s (commit %s, %s)\n", version.Version, version.Commit, version.GoVersion())
			return nil
		},
	}
}
