package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's key table must list every key with its default and meaning,
// and nothing else, so the documentation cannot drift from the code.
func TestREADMEKeyTable(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9-]+)` \\| (.*?) \\| (.*?) \\|$")
	inREADME := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		if _, ok := lookupKey(m[1]); ok || strings.Contains(m[1], "-") {
			inREADME[m[1]] = [2]string{m[2], m[3]}
		}
	}
	for _, k := range Keys() {
		got, ok := inREADME[k.Name]
		if !ok {
			t.Errorf("README lacks key %s", k.Name)
			continue
		}
		wantDef := "—"
		if k.Default != "" {
			wantDef = "`" + k.Default + "`"
		}
		if got[0] != wantDef || got[1] != k.Help {
			t.Errorf("README row for %s = %q | %q, want %q | %q", k.Name, got[0], got[1], wantDef, k.Help)
		}
		delete(inREADME, k.Name)
	}
	for k := range inREADME {
		t.Errorf("README documents %s, which is not a key", k)
	}
}
