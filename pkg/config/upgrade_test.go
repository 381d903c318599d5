package config

import (
	"strings"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/upgrade"
)

// TestUpgradeKeys: upgrade-agents-max-unavailable takes a count or a
// percentage (default 10%), upgrade-drain true or false (default false);
// anything else is refused naming the key.
func TestUpgradeKeys(t *testing.T) {
	c, err := load(t, validServer)
	if err != nil {
		t.Fatal(err)
	}
	if c.UpgradeBudget() != upgrade.DefaultBudget || c.UpgradeDrain {
		t.Fatalf("defaults: budget %v drain %v", c.UpgradeBudget(), c.UpgradeDrain)
	}
	c, err = load(t, validServer+"upgrade-agents-max-unavailable: 3\nupgrade-drain: true\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.UpgradeBudget() != (upgrade.Budget{N: 3}) || !c.UpgradeDrain {
		t.Fatalf("set: budget %v drain %v", c.UpgradeBudget(), c.UpgradeDrain)
	}
	for body, want := range map[string]string{
		"upgrade-agents-max-unavailable: 0\n":    "must be a count of agents (1 or more) or a percentage",
		"upgrade-agents-max-unavailable: 150%\n": "must be a count of agents",
		"upgrade-agents-max-unavailable: half\n": "must be a count of agents",
		"upgrade-drain: yes-please\n":            "want true or false",
	} {
		_, err := load(t, validServer+body)
		key, _, _ := strings.Cut(body, ":")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: err = %v, want %q naming %s", body, err, want, key)
		}
	}
}
