package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// Where the packages install the completion scripts (the shells' own
// vendor folders, loaded without any user setup).
const (
	bashCompletionPath = "/usr/share/bash-completion/completions/rke2-hanode"
	zshCompletionPath  = "/usr/share/zsh/vendor-completions/_rke2-hanode"
	fishCompletionPath = "/usr/share/fish/vendor_completions.d/rke2-hanode.fish"
)

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script for bash, zsh or fish",
		Long: fmt.Sprintf(`Prints a completion script for the given shell on standard output.

The packages install them where the shells look by themselves:
  bash  %s
  zsh   %s
  fish  %s
Without the package, load one into the running shell, for example:
  source <(rke2-hanode completion bash)`, bashCompletionPath, zshCompletionPath, fishCompletionPath),
		Args:                  cobra.ExactArgs(1),
		ValidArgs:             []string{"bash", "zsh", "fish"},
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return usageErr(fmt.Errorf("completion: shell %q: want bash, zsh or fish", args[0]))
		},
	}
}
