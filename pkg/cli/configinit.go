package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/fsutil"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with config files"}
	cmd.AddCommand(newConfigInitCmd())
	return cmd
}

func newConfigInitCmd() *cobra.Command {
	var output string
	var force bool
	cmd := &cobra.Command{
		Use:   "init [flags]",
		Short: "Write a config file (mode 0600) from flags and RKE2_HANODE_* variables, validated as the daemon will load it",
		Example: `  rke2-hanode config init --role server --expect-servers 3 --token-file /etc/rke2-hanode/token \
    --join 10.0.0.11,10.0.0.12 --vip 10.0.0.200 --interface eth0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Flags and RKE2_HANODE_* variables, so that a script can pass
			// the token in the environment rather than on a command line.
			c, err := config.Load(config.LoadOptions{Flags: cmd.Flags(), Env: os.Environ(), SkipFileChecks: true, Hostname: func() string { return "placeholder" }})
			if err != nil {
				return usageErr(err)
			}
			if c.SourceOf("node-name").Kind == config.SourceDefault {
				c.NodeName = "" // resolved from the host name where it runs
			}
			data, err := config.Marshal(c)
			if err != nil {
				return runtimeErr(err)
			}
			if output == "-" {
				_, err := cmd.OutOrStdout().Write(data)
				return err
			}
			if _, err := os.Stat(output); err == nil && !force {
				return runtimeErr(fmt.Errorf("%s exists: keep it, or pass --force to replace it", output))
			} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return runtimeErr(err)
			}
			if err := fsutil.WriteFileAtomic(output, data, 0o600); err != nil {
				return runtimeErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", output)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", config.DefaultFile, "file to write, or - for standard output")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing file")
	config.AddFlags(cmd.Flags())
	return cmd
}
