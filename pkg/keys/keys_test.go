package keys

import (
	"bytes"
	"testing"
)

func TestDeriveSeparatesPurposeClusterAndToken(t *testing.T) {
	base, err := Derive("secret", PurposeGossip, "rke2", 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(base) != 32 {
		t.Fatalf("len = %d", len(base))
	}
	again, _ := Derive("secret", PurposeGossip, "rke2", 32)
	if !bytes.Equal(base, again) {
		t.Fatal("derivation is not deterministic")
	}
	for name, args := range map[string][3]string{
		"purpose": {"secret", PurposeRaftCA, "rke2"},
		"cluster": {"secret", PurposeGossip, "other"},
		"token":   {"secret2", PurposeGossip, "rke2"},
	} {
		k, err := Derive(args[0], args[1], args[2], 32)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(k, base) {
			t.Errorf("another %s gives the same key", name)
		}
	}
	if _, err := Derive("", PurposeGossip, "rke2", 32); err == nil {
		t.Error("empty token accepted")
	}
}
