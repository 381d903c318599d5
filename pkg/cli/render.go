package cli

import (
	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/node"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
)

func newRenderCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "render", Short: "Print what rke2-hanode would install"}
	kv := &cobra.Command{
		Use:   "kube-vip [--config FILE]",
		Short: "Print the kube-vip RBAC and DaemonSet YAML written into RKE2's manifests folder",
		Args:  cobra.NoArgs,
	}
	path := configFlags(kv)
	kv.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := loadConfig(cmd, *path)
		if err != nil {
			return usageErr(err)
		}
		data, err := vip.RenderManifests(node.KubeVIPOptions(c))
		if err != nil {
			return usageErr(err)
		}
		_, err = cmd.OutOrStdout().Write(data)
		return err
	}
	cmd.AddCommand(kv)
	return cmd
}
