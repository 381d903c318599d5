package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rke2-hanode/rke2-hanode/pkg/status"
)

func TestUpgradeStatus(t *testing.T) {
	since := time.Now().Add(-90 * time.Second)
	doc := status.Status{Upgrade: &status.Upgrade{
		Phase: "failed", Target: "v1.37.1+rke2r1", MaxUnavailable: 2,
		Blocked: "server s1 failed: install script exited 1; fix it and run `rke2-hanode upgrade resume` to retry it",
		Servers: []string{"s1", "s0"}, Agents: []string{"a0"},
		Hosts: []status.UpgradeHost{
			{Name: "s1", Role: "server", Wanted: "v1.37.1+rke2r1", Running: "v1.36.3+rke2r1", State: "failed", Since: since, Reason: "install script exited 1"},
			{Name: "s2", Role: "server", Wanted: "v1.37.1+rke2r1", Running: "v1.37.1+rke2r1", State: "done", Since: since},
		},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	defer srv.Close()

	var out, errb bytes.Buffer
	if code := Execute([]string{"upgrade", "status", "--address", srv.URL}, &out, &errb); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"upgrade: failed, target v1.37.1+rke2r1, agents in batches of 2",
		"blocked: server s1 failed: install script exited 1",
		"next: s1, s0, a0",
		"s1    server  v1.36.3+rke2r1  v1.37.1+rke2r1  failed",
		"install script exited 1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// A daemon that reports no upgrade object says so.
	doc.Upgrade = nil
	out.Reset()
	errb.Reset()
	if code := Execute([]string{"upgrade", "status", "--address", srv.URL}, &out, &errb); code != ExitRuntime || !strings.Contains(errb.String(), "reports no upgrade") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}
