package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/rke2-hanode/rke2-hanode/pkg/claims"
	"github.com/rke2-hanode/rke2-hanode/pkg/keys"
)

func TestTokenGenerate(t *testing.T) {
	code, out, errs := run("token", "generate", "--cluster-name", "prod")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	m := regexp.MustCompile(`^server-token: ([0-9a-f]{64})\nagent-token: ([0-9a-f]{32}\.[0-9a-f]{64})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output %q, want two lines server-token: … and agent-token: …", out)
	}
	for _, tok := range m[1:] {
		if err := keys.CheckStrength(tok); err != nil {
			t.Errorf("generated token refused: %v", err)
		}
	}
	if _, err := claims.TrustedFingerprint(m[1], m[2], "prod"); err != nil {
		t.Errorf("the two tokens do not belong together: %v", err)
	}
	if _, err := claims.TrustedFingerprint(m[1], m[2], "rke2"); err == nil {
		t.Error("the agent token's fingerprint does not depend on the cluster name")
	}
	if code, _, errs := run("token", "generate", "--cluster-name", "Bad Name"); code != ExitUsage || !strings.Contains(errs, "--cluster-name") {
		t.Errorf("bad cluster name: exit %d, %q", code, errs)
	}
}
