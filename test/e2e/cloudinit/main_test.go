package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		repl    []string
		want    []string // substrings of the script, in order
		wantErr string
	}{
		{
			name: "write_files and both runcmd forms",
			in: "#cloud-config\nwrite_files:\n  - path: /etc/x/token\n    permissions: \"0600\"\n    content: |\n      it's secret\n" +
				"runcmd:\n  - echo one\n  - [sh, -c, \"echo two\"]\n",
			want: []string{
				"mkdir -p '/etc/x'",
				`printf '%s' 'it'\''s secret` + "\n' > '/etc/x/token'",
				"chmod 0600 '/etc/x/token'",
				"sh -c 'echo one'",
				"'sh' '-c' 'echo two'",
			},
		},
		{
			name: "replacement",
			in:   "#cloud-config\nruncmd:\n  - ping 10.0.0.11\n",
			repl: []string{"10.0.0.11=10.99.0.11"},
			want: []string{"sh -c 'ping 10.99.0.11'"},
		},
		{name: "replacement not found", in: "#cloud-config\nruncmd: []\n", repl: []string{"nope=x"}, wantErr: `replace "nope": not found`},
		{name: "no header", in: "runcmd: []\n", wantErr: "first line must be #cloud-config"},
		{name: "unknown key", in: "#cloud-config\npackages: [curl]\n", wantErr: "field packages not found"},
		{name: "relative path", in: "#cloud-config\nwrite_files:\n  - path: etc/x\n", wantErr: `write_files[0].path "etc/x"`},
		{name: "bad mode", in: "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: rw\n", wantErr: `permissions "rw"`},
		{name: "bad runcmd", in: "#cloud-config\nruncmd:\n  - {a: b}\n", wantErr: "want a string or a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			err := render(&b, []byte(tt.in), tt.repl)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, w := range tt.want {
				i := strings.Index(out, w)
				if i < 0 {
					t.Fatalf("script lacks %q:\n%s", w, out)
				}
				out = out[i+len(w):]
			}
		})
	}
}

// TestShippedUserData renders the shipped examples and runs the script
// with sh against stand-ins for curl and sh's pipeline target, checking the
// installer is called with the role and flags the example promises.
func TestShippedUserData(t *testing.T) {
	for _, role := range []string{"server", "agent"} {
		t.Run(role, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "cloud-init", role+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var b strings.Builder
			err = render(&b, data, []string{
				"/etc/rke2-hanode/token=" + dir + "/token",
				"curl -sfL=" + dir + "/fakecurl",
			})
			if err != nil {
				t.Fatal(err)
			}
			// fakecurl prints an installer that records its arguments.
			fake := "#!/bin/sh\necho 'echo \"$@\" > " + dir + "/args'\n"
			if err := os.WriteFile(filepath.Join(dir, "fakecurl"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
			script := strings.ReplaceAll(b.String(), "chown 'root:root'", ": ")
			cmd := exec.Command("sh", "-c", script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("script: %v\n%s\n%s", err, out, script)
			}
			args, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(args), role+" --token-file "+dir+"/token") || !strings.Contains(string(args), "--vip 10.0.0.200") {
				t.Errorf("installer args = %q", args)
			}
			fi, err := os.Stat(filepath.Join(dir, "token"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("token mode = %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

// TestRenderUserData: the seed for a real cloud-init is the file itself
// with the replacements applied, and only once it decodes as the modelled
// subset.
func TestRenderUserData(t *testing.T) {
	in := "#cloud-config\nruncmd:\n  - ping 10.0.0.11\n"
	var b strings.Builder
	if err := renderUserData(&b, []byte(in), []string{"10.0.0.11=10.99.0.11"}); err != nil {
		t.Fatal(err)
	}
	if want := "#cloud-config\nruncmd:\n  - ping 10.99.0.11\n"; b.String() != want {
		t.Errorf("user-data = %q, want %q", b.String(), want)
	}
	if err := renderUserData(&b, []byte("#cloud-config\npackages: [curl]\n"), nil); err == nil || !strings.Contains(err.Error(), "field packages not found") {
		t.Errorf("unknown key: err = %v", err)
	}
}
