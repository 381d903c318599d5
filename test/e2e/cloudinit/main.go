package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// userData is the subset of #cloud-config this runner models.
type userData struct {
	WriteFiles []writeFile `yaml:"write_files"`
	RunCmd     []runCmd    `yaml:"runcmd"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Content     string `yaml:"content"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
}

// runCmd is one runcmd entry: a string (run by sh -c) or a list (argv).
type runCmd struct {
	Shell string
	Argv  []string
}

func (r *runCmd) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Decode(&r.Shell)
	case yaml.SequenceNode:
		return n.Decode(&r.Argv)
	}
	return fmt.Errorf("runcmd: line %d: want a string or a list of strings", n.Line)
}

type replacements []string

func (r *replacements) String() string { return strings.Join(*r, ",") }
func (r *replacements) Set(s string) error {
	if !strings.Contains(s, "=") {
		return fmt.Errorf("-replace %q: want OLD=NEW", s)
	}
	*r = append(*r, s)
	return nil
}

func main() {
	var repl replacements
	fs := flag.NewFlagSet("cloudinit", flag.ContinueOnError)
	fs.Var(&repl, "replace", "OLD=NEW applied to the file's text before decoding (repeatable)")
	userDataOut := fs.Bool("user-data", false, "print the user-data itself with the replacements applied (for a real cloud-init's seed), not a script")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: cloudinit [-user-data] [-replace OLD=NEW]... FILE")
		os.Exit(2)
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloudinit:", err)
		os.Exit(1)
	}
	out := render
	if *userDataOut {
		out = renderUserData
	}
	if err := out(os.Stdout, data, repl); err != nil {
		fmt.Fprintf(os.Stderr, "cloudinit: %s: %v\n", fs.Arg(0), err)
		os.Exit(1)
	}
}

// renderUserData writes data with the replacements applied, once it has
// decoded as the subset modelled here.
func renderUserData(w io.Writer, data []byte, replace []string) error {
	data, _, err := substitute(data, replace)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// render writes the shell script for user-data data.
func render(w io.Writer, data []byte, replace []string) error {
	_, ud, err := substitute(data, replace)
	if err != nil {
		return err
	}
	var b strings.Builder
	if err := renderScript(&b, ud); err != nil {
		return err
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// substitute applies the replacements to data and decodes the result.
func substitute(data []byte, replace []string) ([]byte, userData, error) {
	var ud userData
	for _, r := range replace {
		old, repl, _ := strings.Cut(r, "=")
		if !bytes.Contains(data, []byte(old)) {
			return nil, ud, fmt.Errorf("replace %q: not found in the file", old)
		}
		data = bytes.ReplaceAll(data, []byte(old), []byte(repl))
	}
	if !bytes.HasPrefix(data, []byte("#cloud-config\n")) {
		return nil, ud, errors.New("first line must be #cloud-config")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&ud); err != nil {
		return nil, ud, fmt.Errorf("decode: %w", err)
	}
	return data, ud, nil
}

func renderScript(b *strings.Builder, ud userData) error {
	b.WriteString("#!/bin/sh\n# generated from #cloud-config: write_files, then runcmd\nset -eu\n")
	for i, f := range ud.WriteFiles {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("write_files[%d].path %q: want an absolute path", i, f.Path)
		}
		perm := f.Permissions
		if perm == "" {
			perm = "0644" // cloud-init's default
		}
		if _, err := strconv.ParseUint(perm, 8, 32); err != nil {
			return fmt.Errorf("write_files[%d].permissions %q: want an octal mode", i, perm)
		}
		owner := f.Owner
		if owner == "" {
			owner = "root:root"
		}
		fmt.Fprintf(b, "mkdir -p %s\n", quote(path.Dir(f.Path)))
		fmt.Fprintf(b, "printf '%%s' %s > %s\n", quote(f.Content), quote(f.Path))
		fmt.Fprintf(b, "chmod %s %s\nchown %s %s\n", perm, quote(f.Path), quote(owner), quote(f.Path))
	}
	for i, c := range ud.RunCmd {
		switch {
		case c.Shell != "":
			fmt.Fprintf(b, "sh -c %s\n", quote(c.Shell))
		case len(c.Argv) > 0:
			q := make([]string, len(c.Argv))
			for j, a := range c.Argv {
				q[j] = quote(a)
			}
			b.WriteString(strings.Join(q, " ") + "\n")
		default:
			return fmt.Errorf("runcmd[%d]: empty", i)
		}
	}
	return nil
}

// quote makes s one single-quoted shell word.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
