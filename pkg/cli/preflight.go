package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
	"github.com/rke2-hanode/rke2-hanode/pkg/node"
	"github.com/rke2-hanode/rke2-hanode/pkg/vip"
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
					line(out, "fail", "config", p.String())
				}
			}
			return usageErr(fmt.Errorf("configuration is invalid"))
		}
		line(out, "ok", "config", fmt.Sprintf("%s: node %s, role %s", describeFile(cmd, *path), c.NodeName, c.Role))
		for _, w := range c.Warnings() {
			line(out, "warn", "config", w)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		defer cancel()
		if failed := hostChecks(ctx, out, c); failed > 0 {
			return runtimeErr(fmt.Errorf("%d host check%s failed", failed, map[bool]string{true: "", false: "s"}[failed == 1]))
		}
		return nil
	}
	return cmd
}

// hostChecks prints the VIP and RKE2 host checks and counts the failures.
func hostChecks(ctx context.Context, out io.Writer, c *config.Config) int {
	role := installer.Role(c.Role)
	state, err := installer.Inspect(ctx, installer.InspectOptions{RKE2Bin: c.RKE2Bin, RKE2DataDir: c.RKE2DataDir})
	if err != nil {
		line(out, "warn", "rke2-install", "could not inspect the existing RKE2: "+err.Error())
	}
	failed := 0
	// Before a cluster exists nobody may answer ARP for the VIP; once this
	// host holds a datastore, kube-vip answering is expected.
	for _, ch := range vip.Preflight(ctx, vip.PreflightOptions{Interface: c.Interface, VIP: c.VIP, CheckARP: !state.HasDatastore}) {
		line(out, string(ch.Status), ch.Name, ch.Detail)
		if ch.Status == vip.StatusFail {
			failed++
		}
	}
	nodeIP, _, _ := node.HostAddress(c) // "" when unknown: the check says so
	for _, ch := range installer.Preflight(installer.PreflightOptions{Role: role, NodeIP: nodeIP, Found: &state, RKE2ConfigDir: c.RKE2ConfigDir,
		Online: c.InstallMethod == "script" && c.ArtifactPath == "", CISProfile: c.Profile()}) {
		line(out, string(ch.Status), ch.Name, ch.Detail)
		if ch.Status == installer.StatusFail {
			failed++
		}
	}
	return failed
}

func line(out io.Writer, status, name, detail string) {
	fmt.Fprintf(out, "%-5s %-16s %s\n", strings.ToUpper(status), name, detail)
}

func describeFile(cmd *cobra.Command, path string) string {
	if cmd.Flags().Changed("config") {
		return path
	}
	return path + " (default location; may be absent)"
}
