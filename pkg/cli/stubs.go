package cli

import "github.com/spf13/cobra"

func newRenderCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "render", Short: "Print what rke2-hanode would install"}
	kv := &cobra.Command{
		Use:   "kube-vip [--config FILE]",
		Short: "Print the kube-vip RBAC and DaemonSet YAML",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return notAvailable("render kube-vip") },
	}
	configFlags(kv)
	cmd.AddCommand(kv)
	return cmd
}

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo [--servers 3] [--agents 2]",
		Short: "Run a simulated cluster on loopback addresses (no root needed)",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return notAvailable("demo") },
	}
	cmd.Flags().Int("servers", 3, "servers to start (odd)")
	cmd.Flags().Int("agents", 2, "agents to start")
	return cmd
}
