package node

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestProgressStampedWithTheNodeClock: progress.json's times come from the
// phase machine's clock, not the wall clock.
func TestProgressStampedWithTheNodeClock(t *testing.T) {
	w := newWorld("agent", false)
	dir := t.TempDir()
	n := newTestNode(t, w, "agent", dir)
	want := n.clk.Now()
	n.markReady()
	p, err := loadProgress(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !p.UpdatedAt.Equal(want) || !p.ReadyAt.Equal(want) {
		t.Fatalf("progress stamped updated %v, ready %v; the node's clock says %v", p.UpdatedAt, p.ReadyAt, want)
	}
}

func TestProgressVersions(t *testing.T) {
	dir := t.TempDir()
	if err := saveProgress(dir, progress{Role: "server", StartedRKE2: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(progressPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"version": 1`) {
		t.Fatalf("saved progress carries no version:\n%s", data)
	}

	tests := []struct {
		name    string
		in      string
		want    progress
		wantErr string
	}{
		{name: "written before versions", in: `{"role":"server","started_rke2":true,"bootstrap":true,"ready":false,"updated_at":"2026-01-01T00:00:00Z"}`,
			want: progress{Version: 1, Role: "server", StartedRKE2: true, Bootstrap: true}},
		{name: "ours", in: `{"version":1,"role":"agent"}`, want: progress{Version: 1, Role: "agent"}},
		{name: "an optional field of a newer build", in: `{"version":1,"role":"agent","timeline":[1,2]}`, want: progress{Version: 1, Role: "agent"}},
		{name: "newer major", in: `{"version":2,"role":"agent"}`, wantErr: "progress.json is version 2, written by a newer rke2-hanode; this build reads up to version 1"},
		{name: "negative version", in: `{"version":-1}`, wantErr: "is damaged (version -1)"},
		{name: "unknown role", in: `{"version":1,"role":"master"}`, wantErr: `is damaged (role "master")`},
		{name: "bad CA hash", in: `{"version":1,"role":"agent","ca_hash":"xyz"}`, wantErr: `ca_hash "xyz" is not 64 hex characters`},
		{name: "wrong type", in: `{"version":"1"}`, wantErr: "is damaged"},
		{name: "truncated", in: `{"version":1,`, wantErr: "move it away"},
		{name: "oversized", in: `{"role":"` + strings.Repeat("x", maxProgressBytes) + `"}`, wantErr: "over 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(progressPath(dir), []byte(tt.in), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadProgress(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), progressPath(dir)) {
					t.Fatalf("err = %v, want it to name the file and contain %q", err, tt.wantErr)
				}
				return
			}
			got.UpdatedAt = tt.want.UpdatedAt
			if err != nil || got != tt.want {
				t.Fatalf("loaded %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// FuzzDecodeProgress: whatever decodes saves and loads back unchanged, and
// nothing panics.
func FuzzDecodeProgress(f *testing.F) {
	f.Add([]byte(`{"version":1,"role":"server","started_rke2":true,"bootstrap":true,"ca_hash":"` + strings.Repeat("ab", 32) + `","ready":true,"ready_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"role":"agent"}`))
	f.Add([]byte(`{"version":9}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeProgress("progress.json", data)
		if err != nil {
			if !strings.Contains(err.Error(), "progress.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", p, err)
		}
		again, err := decodeProgress("progress.json", enc)
		if err != nil {
			t.Fatalf("re-encoded %s refused: %v", enc, err)
		}
		if !again.ReadyAt.Equal(p.ReadyAt) || !again.UpdatedAt.Equal(p.UpdatedAt) {
			t.Fatalf("times changed: %+v -> %+v", p, again)
		}
		again.ReadyAt, again.UpdatedAt = p.ReadyAt, p.UpdatedAt
		if again != p {
			t.Fatalf("round trip: %+v -> %+v", p, again)
		}
	})
}
