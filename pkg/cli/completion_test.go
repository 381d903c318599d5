package cli

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// verbs are the visible commands of DESIGN.md §4 plus completion.
var verbs = []string{"run", "preflight", "status", "render", "config", "demo", "version", "completion"}

func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "complete -o default -F __start_rke2-hanode rke2-hanode",
		"zsh":  "#compdef rke2-hanode",
		"fish": "complete -c rke2-hanode",
	} {
		code, out, errOut := run("completion", shell)
		if code != ExitOK {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errOut)
		}
		if !strings.Contains(out, marker) {
			t.Errorf("completion %s lacks %q", shell, marker)
		}
		// The scripts ask the binary for its verbs at run time (cobra's
		// __complete), so check that it answers with every verb.
		if !strings.Contains(out, "__complete") {
			t.Errorf("completion %s does not ask the binary for candidates", shell)
		}
	}
	code, out, _ := run("__complete", "")
	if code != ExitOK {
		t.Fatalf("__complete: exit %d", code)
	}
	for _, v := range verbs {
		if !strings.Contains(out, "\n"+v+"\t") && !strings.HasPrefix(out, v+"\t") {
			t.Errorf("completion candidates lack verb %s:\n%s", v, out)
		}
	}
	if strings.Contains(out, "\nman\t") {
		t.Errorf("the hidden man verb is offered for completion")
	}
	code, out, _ = run("__complete", "completion", "")
	if code != ExitOK || !strings.Contains(out, "bash") || !strings.Contains(out, "zsh") || !strings.Contains(out, "fish") || strings.Contains(out, "powershell") {
		t.Errorf("completion completes shells as %q, want bash, zsh and fish", out)
	}
	if code, _, errOut := run("completion", "tcsh"); code != ExitUsage || !strings.Contains(errOut, `shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d %q, want a usage error naming the shell", code, errOut)
	}
}

func TestManPage(t *testing.T) {
	code, page, errOut := run("man")
	if code != ExitOK {
		t.Fatalf("man: exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(page, ".TH RKE2-HANODE 1 ") {
		t.Fatalf("man page does not start with .TH:\n%s", page[:min(200, len(page))])
	}
	for _, v := range append(verbs, "render kube-vip", "config init") {
		if !strings.Contains(page, ".SS \"rke2\\-hanode "+strings.ReplaceAll(v, "-", `\-`)) {
			t.Errorf("man page has no section for %s", v)
		}
	}
	for _, want := range []string{`\fB\-\-expect\-servers\fR`, `\fB\-\-address\fR`, ".SH EXIT STATUS", "/etc/rke2\\-hanode/config.yaml"} {
		if !strings.Contains(page, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if strings.Contains(page, `.SS "rke2\-hanode man`) {
		t.Error("man page documents its own hidden verb")
	}
	for i, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, ".") && !strings.HasPrefix(line, `.\"`) && !knownMacro(line) {
			t.Errorf("line %d is an unexpected roff request (unescaped text?): %q", i+1, line)
		}
	}
	// groff, when there, must read it without a warning.
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("groff -ww: %v\n%s", err, stderr.String())
		}
	}
}

func knownMacro(line string) bool {
	for _, m := range []string{".TH ", ".SH ", ".SS ", ".PP", ".TP", ".B ", ".I ", ".BR ", ".nf", ".fi", ".RS", ".RE"} {
		if line == strings.TrimSpace(m) || strings.HasPrefix(line, m) {
			return true
		}
	}
	return false
}

func TestRoffText(t *testing.T) {
	for in, want := range map[string]string{
		"--flag":         `\-\-flag`,
		`a\b`:            `a\eb`,
		".starts a line": `\&.starts a line`,
		"x\n'quote":      "x\n\\&'quote",
	} {
		if got := roffText(in); got != want {
			t.Errorf("roffText(%q) = %q, want %q", in, got, want)
		}
	}
}
