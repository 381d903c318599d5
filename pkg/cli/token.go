package cli

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
)

var reClusterName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make cluster tokens",
	}
	var cluster string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a new server token and the agent token that goes with it",
		Long: `Prints two lines, for scripts to read:

  server-token: <64 hex digits>
  agent-token: <32 hex digits>.<64 hex digits>

The server token goes to servers only (their token or token-file); the agent
token to every host (agents' token, servers' agent-token). The agent token
begins with the fingerprint of the key servers sign their claims with, which
depends on the cluster name: give the cluster-name the hosts will use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !reClusterName.MatchString(cluster) || len(cluster) > 63 {
				return usageErr(fmt.Errorf("--cluster-name %q: must be 1-63 lower-case letters, digits, '-', '_' or '.'", cluster))
			}
			tok, err := claims.Generate(cluster)
			if err != nil {
				return runtimeErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "server-token: %s\nagent-token: %s\n", tok.Server, tok.Agent)
			return nil
		},
	}
	gen.Flags().StringVar(&cluster, "cluster-name", "rke2", "the cluster-name the hosts will use (the agent token's fingerprint depends on it)")
	cmd.AddCommand(gen)
	return cmd
}
