package keys

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestShippedPlaceholdersAreRefused: the cloud-init examples must not
// carry a token that works if a user forgets to change it (the old
// placeholder passed any check).
func TestShippedPlaceholdersAreRefused(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/cloud-init/*.yaml")
	if len(files) == 0 {
		t.Fatal("no cloud-init examples found")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			WriteFiles []struct {
				Path    string `yaml:"path"`
				Content string `yaml:"content"`
			} `yaml:"write_files"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		found := 0
		for _, w := range doc.WriteFiles {
			if filepath.Base(w.Path) != "token" && filepath.Base(w.Path) != "agent-token" {
				continue
			}
			found++
			if err := CheckStrength(trimNL(w.Content)); err == nil {
				t.Errorf("%s: %s holds a placeholder that works as a token", f, w.Path)
			}
		}
		if found == 0 {
			t.Errorf("%s: no token file in write_files", f)
		}
	}
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}
