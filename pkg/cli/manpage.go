package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/version"
)

// newManCmd prints the manual page, rke2-hanode(1), generated from the
// command tree so that it never drifts from --help. The packages ship its
// output; it is hidden because users read the page, not the verb.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man",
		Short:  "Print the manual page rke2-hanode(1) in roff",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeManPage(cmd.OutOrStdout(), cmd.Root())
		},
	}
}

// writeManPage renders root and every visible command below it as one
// section-1 page.
func writeManPage(w io.Writer, root *cobra.Command) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH RKE2-HANODE 1 \"\" %s \"User Commands\"\n", roffQuote("rke2-hanode "+version.Version))
	b.WriteString(".SH NAME\nrke2-hanode \\- " + roffText(root.Short) + "\n")
	b.WriteString(".SH SYNOPSIS\n.B rke2-hanode\n\\fICOMMAND\\fR [\\fIflags\\fR]\n")
	b.WriteString(".SH DESCRIPTION\n" + roffParagraphs(`rke2-hanode runs on every host of an RKE2 cluster. The hosts find each other by encrypted gossip, elect one bootstrap server with raft, install RKE2, start the first server with kube-vip holding the virtual IP, and join the other servers one at a time and the agents through the VIP.

Progress is reported as Prometheus metrics, a status API and a status page on http-address, and as sd_notify STATUS lines.`))
	b.WriteString(".SH COMMANDS\n")
	runFlags := map[string]string{}
	if run, _, err := root.Find([]string{"run"}); err == nil && run != root {
		run.Flags().VisitAll(func(f *pflag.Flag) { runFlags[f.Name] = f.Usage })
	}
	for _, c := range visibleCommands(root) {
		writeCommand(&b, c, runFlags)
	}
	b.WriteString(".SH CONFIGURATION\n" + roffParagraphs(fmt.Sprintf(`The daemon reads %s, then %s.d/*.yaml in lexical order (later wins), then RKE2_HANODE_<KEY> environment variables, then flags of the same names. Keys are kebab-case; unknown keys are an error. A file that holds the token must not be readable by group or others.`, config.DefaultFile, config.DefaultFile)))
	b.WriteString(".SH EXIT STATUS\n.TP\n.B 0\nsuccess\n.TP\n.B 1\nruntime failure\n.TP\n.B 2\nusage or configuration error\n")
	b.WriteString(".SH FILES\n.TP\n.I " + config.DefaultFile + "\nthe configuration\n.TP\n.I /var/lib/rke2-hanode\nthe raft store and this daemon's own state\n.TP\n.I /etc/rancher/rke2/config.yaml\nRKE2's configuration, written by the daemon\n")
	b.WriteString(".SH SEE ALSO\n.BR systemctl (1),\n.BR journalctl (1)\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// visibleCommands lists root's commands depth first, in name order,
// leaving out hidden ones and cobra's help.
func visibleCommands(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		kids := append([]*cobra.Command(nil), c.Commands()...)
		sort.Slice(kids, func(i, j int) bool { return kids[i].Name() < kids[j].Name() })
		for _, k := range kids {
			if k.Hidden || k.Name() == "help" || !k.IsAvailableCommand() && !k.HasAvailableSubCommands() {
				continue
			}
			if k.Runnable() {
				out = append(out, k)
			}
			walk(k)
		}
	}
	walk(root)
	return out
}

// writeCommand writes one command's subsection. Flags the command shares
// with run (the configuration keys) are named once, under run.
func writeCommand(b *strings.Builder, c *cobra.Command, runFlags map[string]string) {
	path := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
	use := strings.TrimSpace(strings.TrimPrefix(c.Use, c.Name()))
	fmt.Fprintf(b, ".SS %s\n", roffQuote(strings.TrimSpace("rke2-hanode "+path+" "+use)))
	text := c.Long
	if text == "" {
		text = c.Short
	}
	b.WriteString(roffParagraphs(text))
	shared := 0
	var own []*pflag.Flag
	c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		if usage, ok := runFlags[f.Name]; ok && c.Name() != "run" && usage == f.Usage {
			shared++
			return
		}
		own = append(own, f)
	})
	for _, f := range own {
		b.WriteString(".TP\n")
		flag := "\\fB\\-\\-" + roffText(f.Name) + "\\fR"
		if f.Shorthand != "" {
			flag = "\\fB\\-" + roffText(f.Shorthand) + "\\fR, " + flag
		}
		if t := f.Value.Type(); t != "bool" {
			flag += " \\fI" + roffText(t) + "\\fR"
		}
		b.WriteString(flag + "\n")
		usage := f.Usage
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		b.WriteString(roffText(usage) + "\n")
	}
	if shared > 0 {
		b.WriteString(".PP\nIt also takes the configuration flags of \\fBrun\\fR.\n")
	}
}

// roffText escapes s for a roff text line: backslashes and hyphens (so
// that flags copy as ASCII), and a line starting with a control character.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// roffParagraphs turns text with blank-line paragraphs and indented
// example lines into roff: .PP paragraphs, examples verbatim (.nf/.fi).
func roffParagraphs(text string) string {
	var b strings.Builder
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		lines := strings.Split(para, "\n")
		b.WriteString(".PP\n")
		inExample := false
		for _, l := range lines {
			example := strings.HasPrefix(l, "  ")
			if example != inExample {
				if example {
					b.WriteString(".nf\n.RS\n")
				} else {
					b.WriteString(".RE\n.fi\n")
				}
				inExample = example
			}
			if example {
				l = strings.TrimSpace(l)
			}
			b.WriteString(roffText(l) + "\n")
		}
		if inExample {
			b.WriteString(".RE\n.fi\n")
		}
	}
	return b.String()
}

func roffQuote(s string) string {
	return `"` + strings.ReplaceAll(roffText(s), `"`, `\(dq`) + `"`
}
