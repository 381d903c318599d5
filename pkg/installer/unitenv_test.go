package installer

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestPointUnitAtConfig(t *testing.T) {
	custom := "/srv/rke2/config.yaml"

	// A host without /etc/sysconfig: /etc/default/<unit>, other lines kept.
	root := t.TempDir()
	def := filepath.Join(root, "etc/default/rke2-server")
	os.MkdirAll(filepath.Dir(def), 0o755)
	os.WriteFile(def, []byte("HOME=/root\n# a comment\nHTTP_PROXY=http://proxy:3128\n"), 0o640)
	changed, err := PointUnitAtConfig(UnitEnvOptions{Root: root, Role: RoleServer, ConfigFile: custom})
	if err != nil || !reflect.DeepEqual(changed, []string{def}) {
		t.Fatalf("changed %v, %v", changed, err)
	}
	if got := readFile(t, def); got != "HOME=/root\n# a comment\nHTTP_PROXY=http://proxy:3128\nRKE2_CONFIG_FILE="+custom+"\n" {
		t.Fatalf("%s:\n%s", def, got)
	}
	if st, _ := os.Stat(def); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the file's own 0640", st.Mode().Perm())
	}
	// Again: nothing to change.
	if changed, err = PointUnitAtConfig(UnitEnvOptions{Root: root, Role: RoleServer, ConfigFile: custom}); err != nil || len(changed) != 0 {
		t.Fatalf("second run changed %v, %v", changed, err)
	}
	// Back to the default config: the line is corrected, not left naming the old file.
	if _, err = PointUnitAtConfig(UnitEnvOptions{Root: root, Role: RoleServer, ConfigFile: "/etc/rancher/rke2/config.yaml"}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, def); !strings.Contains(got, "RKE2_CONFIG_FILE=/etc/rancher/rke2/config.yaml\n") || strings.Contains(got, custom) {
		t.Fatalf("%s:\n%s", def, got)
	}

	// A host with /etc/sysconfig (the RPM family): /etc/sysconfig/<unit>,
	// and a stale line in /etc/default, read first, is corrected too.
	root = t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/sysconfig"), 0o755)
	def = filepath.Join(root, "etc/default/rke2-agent")
	os.MkdirAll(filepath.Dir(def), 0o755)
	os.WriteFile(def, []byte("RKE2_CONFIG_FILE=\"/old/config.yaml\"\n"), 0o644)
	sys := filepath.Join(root, "etc/sysconfig/rke2-agent")
	changed, err = PointUnitAtConfig(UnitEnvOptions{Root: root, Role: RoleAgent, ConfigFile: custom})
	if err != nil || !reflect.DeepEqual(changed, []string{def, sys}) {
		t.Fatalf("changed %v, %v", changed, err)
	}
	if got := readFile(t, sys); got != "RKE2_CONFIG_FILE="+custom+"\n" {
		t.Fatalf("%s:\n%s", sys, got)
	}
	if got := readFile(t, def); got != "RKE2_CONFIG_FILE="+custom+"\n" {
		t.Fatalf("%s:\n%s", def, got)
	}

	// The default config on a clean host: no file is written.
	root = t.TempDir()
	if changed, err = PointUnitAtConfig(UnitEnvOptions{Root: root, Role: RoleServer, ConfigFile: "/etc/rancher/rke2/config.yaml"}); err != nil || len(changed) != 0 {
		t.Fatalf("default config changed %v, %v", changed, err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); err == nil {
		t.Error("files written for the default config")
	}
}

// Under systemd, Start points the unit at a non-default config before the
// unit starts: without it RKE2 would read /etc/rancher/rke2/config.yaml and
// a joiner would start without server:.
func TestSystemdStartPointsUnitAtConfig(t *testing.T) {
	root := t.TempDir()
	fake := &fakeSystemd{states: []fakeState{{active: "inactive", sub: "dead", job: true}}}
	m, _ := newTestSystemd(t, fake)
	m.config, m.envRoot = "/srv/rke2/config.yaml", root
	if err := m.Start(context.Background(), RoleServer); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "etc/default/rke2-server")); got != "RKE2_CONFIG_FILE=/srv/rke2/config.yaml\n" {
		t.Fatalf("environment file:\n%s", got)
	}
}
