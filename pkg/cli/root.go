// Package cli is rke2-hanode's command line: one cobra command per verb of
// DESIGN.md §4. It parses, loads configuration and hands over to the
// packages that do the work; it holds no logic of its own beyond printing.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
)

// Exit codes (contract).
const (
	ExitOK      = 0
	ExitRuntime = 1
	ExitUsage   = 2
)

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error   { return &exitError{code: ExitUsage, err: err} }
func runtimeErr(err error) error { return &exitError{code: ExitRuntime, err: err} }

// Execute runs the command line with args and returns the process exit code.
func Execute(args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "rke2-hanode:", err)
	var ee *exitError
	var ce *config.Error
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ce):
		return ExitUsage
	default:
		// cobra's own errors are about flags and arguments.
		return ExitUsage
	}
}

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "rke2-hanode",
		Short:         "Forms a highly available RKE2 cluster behind a kube-vip VIP, host by host, without an orchestrator",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newRunCmd(),
		newPreflightCmd(),
		newStatusCmd(),
		newUpgradeCmd(),
		newRemoveCmd(),
		newRejoinCmd(),
		newRecoverCmd(),
		newRenderCmd(),
		newConfigCmd(),
		newDemoCmd(),
		newVersionCmd(),
		newTokenCmd(),
		newCompletionCmd(),
		newManCmd(),
	)
	root.CompletionOptions.DisableDefaultCmd = true // ours offers bash, zsh and fish
	return root
}

// configFlags adds --config and one flag per key to cmd.
func configFlags(cmd *cobra.Command) *string {
	path := cmd.Flags().String("config", config.DefaultFile, "config file; drop-ins are read from FILE.d/*.yaml")
	config.AddFlags(cmd.Flags())
	return path
}

// loadConfig loads the configuration the way `run` does.
func loadConfig(cmd *cobra.Command, path string) (*config.Config, error) {
	return config.Load(config.LoadOptions{
		File:         path,
		FileRequired: cmd.Flags().Changed("config"),
		Env:          os.Environ(),
		Flags:        cmd.Flags(),
	})
}
